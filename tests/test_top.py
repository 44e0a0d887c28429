"""`get_process_window` and `arsenal top`: the window sample through the Python API and REST, the
command's one-shot outputs, and the live view driven by keys in a real pseudo-terminal."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

import arsenal
from arsenal.api import create_app
from arsenal.client import Arsenal
from arsenal.dist import Atom
from arsenal.ops.errors import ErrorCode, OperationError
from arsenal.ops.plain import pid_text

pytestmark = pytest.mark.timeout(120)

# A loop that keeps a scheduler busy in bursts (work, then a 1 ms sleep) and ends by itself.
BUSY_LOOP = """
    begin
        Stop = erlang:monotonic_time(millisecond) + 60000,
        spawn(fun() ->
            Loop = fun L(N) ->
                case erlang:monotonic_time(millisecond) < Stop of
                    true -> _ = lists:sum(lists:seq(1, 2000)), receive after 1 -> ok end, L(N + 1);
                    false -> N
                end
            end,
            Loop(0)
        end)
    end
"""
# Twelve sleeping processes with 1010, 1020 ... 1120 unread messages: more than any other process on
# the node holds (demo_busy_mailbox stops at 500), so their order is known and does not move.
QUEUES = """
    [begin
         P = spawn(fun() -> timer:sleep(60000) end),
         [P ! {fill, J} || J <- lists:seq(1, 1000 + 10 * I)],
         P
     end || I <- lists:seq(1, 12)]
"""


async def _eval(node, source: str):
    return await node.node.call("arsenal_test_support", "eval", [source.encode()])


async def _kill(node, pids: list[str]) -> None:
    listed = ", ".join(f'list_to_pid("{pid}")' for pid in pids)
    await _eval(node, f"[exit(P, kill) || P <- [{listed}]]")


# ---------------------------------------------------------------------- the operation


async def test_a_busy_process_tops_the_window_by_reductions(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        busy = pid_text(await _eval(node, BUSY_LOOP))
        try:
            window = await node.get_process_window(window_ms=500, limit=50)
        finally:
            await _kill(node, [busy])
        rows = {row.pid: row for row in window.processes}
        assert busy in rows, [(r.pid, r.reductions_delta) for r in window.processes[:5]]
        assert rows[busy].reductions_delta > 0 and rows[busy].reductions >= rows[busy].reductions_delta
        deltas = [row.reductions_delta for row in window.processes]
        assert deltas == sorted(deltas, reverse=True)
        # The agent's own call is not a process of the node's: it never ranks.
        assert not any("arsenal_agent" in (row.current_function or "") for row in window.processes)

        # The header's figures come from the same call.
        assert window.node == erl.name and window.sort == "reductions" and window.window_ms == 500
        assert 20 < window.process_count <= window.process_limit
        assert window.uptime_seconds > 0 and window.run_queue >= 0
        memory = window.memory
        assert memory.total >= memory.processes + memory.system - 1 and memory.processes > 0
        assert 0 < memory.ets < memory.total and 0 < memory.atom < memory.total and memory.binary > 0
        normal = [s for s in window.schedulers if s.type == "normal"]
        assert normal and all(0.0 <= s.utilization <= 1.0 for s in window.schedulers)
        assert 0.0 < window.scheduler_usage <= 1.0  # the busy loop ran during the window


async def test_sorting_by_memory_and_by_queue_and_paging(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        by_memory = await node.get_process_window(sort_by="memory", window_ms=100, limit=10)
        assert by_memory.sort == "memory"
        memories = [row.memory for row in by_memory.processes]
        assert memories == sorted(memories, reverse=True) and len(memories) == 10
        assert by_memory.processes[0].registered_name == "demo_big_state"

        queued = [pid_text(pid) for pid in await _eval(node, QUEUES)]
        try:
            first = await node.get_process_window(sort_by="message_queue_len", window_ms=100, limit=5)
            second = await node.get_process_window(
                sort_by="message_queue_len", window_ms=100, limit=5, offset=5
            )
        finally:
            await _kill(node, queued)
        assert [row.message_queue_len for row in first.processes] == [1120, 1110, 1100, 1090, 1080]
        assert [row.message_queue_len for row in second.processes] == [1070, 1060, 1050, 1040, 1030]
        assert second.offset == 5 and second.limit == 5
        pages = [row.pid for row in first.processes + second.processes]
        assert len(set(pages)) == 10 and set(pages) <= set(queued)


async def test_scheduler_wall_time_is_put_back_as_it_was(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        state = [Atom("scheduler_wall_time")]
        before = await node.node.call("erlang", "statistics", state)
        await node.get_process_window(window_ms=100, limit=1)
        after = await node.node.call("erlang", "statistics", state)
        assert (before == Atom("undefined")) == (after == Atom("undefined"))


async def test_bad_windows_and_pages_are_validation_errors(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        for bad in (
            {"window_ms": 50},
            {"window_ms": 5001},
            {"window_ms": -1},
            {"limit": 0},
            {"limit": 1001},
            {"offset": -1},
            {"offset": 100_001},
            {"sort_by": "heap_size"},
            {"interval": 1},
        ):
            with pytest.raises(OperationError) as err:
                await node.get_process_window(**bad)
            assert err.value.code is ErrorCode.validation_error, bad
        # The agent checks too: a window out of range never reaches timer:sleep.
        refused = await node.node.agent_call("proc_window", [{Atom("window_ms"): 10**9}], 5.0)
        assert refused == (Atom("error"), (Atom("bad_window_ms"), 10**9))


async def test_rest_serves_the_window_and_not_a_process_called_window(erl, cookie) -> None:
    async with Arsenal(cookie=cookie) as service:
        await service.attach(erl.name, reconnect=False)
        transport = httpx.ASGITransport(app=create_app(service, auth=False), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://arsenal.test") as client:
            response = await client.get(
                "/api/v1/processes/window",
                params={"sort_by": "memory", "window_ms": 100, "limit": 3},
            )
            assert response.status_code == 200, response.text
            data = response.json()["data"]
            assert data["sort"] == "memory" and len(data["processes"]) == 3
            assert {"total", "processes", "ets", "binary", "atom"} <= set(data["memory"])
            bad = await client.get("/api/v1/processes/window", params={"window_ms": 10})
            assert bad.status_code == 422


# ---------------------------------------------------------------------- the command, one shot


def _arsenal(*args: str, cookie: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "arsenal.cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "ARSENAL_COOKIE": cookie},
        timeout=60,
    )


def test_top_once_and_json_and_without_a_terminal(erl, cookie) -> None:
    once = _arsenal("top", "--node", erl.name, "--once", "--sort", "memory", "--limit", "5", cookie=cookie)
    assert once.returncode == 0, once.stderr
    assert erl.name in once.stdout and "sort: memory" in once.stdout and "run queue" in once.stdout
    assert "demo_big_state" in once.stdout and "schedulers" in once.stdout

    data = json.loads(
        _arsenal("top", "--node", erl.name, "--json", "--sort", "queue", "--limit", "3", cookie=cookie).stdout
    )
    assert data["node"] == erl.name and data["sort"] == "message_queue_len"
    assert data["window_ms"] == 2000  # the default interval is the window
    assert len(data["processes"]) == 3 and data["processes"][0]["registered_name"] == "demo_busy_mailbox"

    # stdout is a pipe here: no --once needed, one frame and out.
    piped = _arsenal("top", "--node", erl.name, "--interval", "1", "--limit", "4", cookie=cookie)
    assert piped.returncode == 0, piped.stderr
    assert "sort: reductions over the last 1 s" in piped.stdout and "demo_spinner" in piped.stdout

    bad_sort = _arsenal("top", "--node", erl.name, "--sort", "heap", cookie=cookie)
    assert bad_sort.returncode == 2 and "unknown sort" in bad_sort.stderr
    fast = _arsenal("top", "--node", erl.name, "--interval", "0.5", cookie=cookie)
    assert fast.returncode == 2
    gone = _arsenal("top", "--node", "nobody_xyz", "--once", cookie=cookie)
    assert gone.returncode == 4 and "Traceback" not in gone.stderr


# ---------------------------------------------------------------------- the live view, in a pty

_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07]*\x07|[()][0-9A-Za-z]|[=>78])")


def _take_controlling_tty() -> None:
    """In the child, after setsid: make its stdin (the pty) its controlling terminal, so ^C signals it."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """A command in a real pseudo-terminal: keys go in, the screen's output is collected by a thread."""

    def __init__(self, argv: list[str], cookie: str, rows: int = 30, columns: int = 150) -> None:
        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.mode = termios.tcgetattr(self.slave)
        env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
        env.update(TERM="xterm-256color", ARSENAL_COOKIE=cookie)
        self.proc = subprocess.Popen(
            argv,
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            env=env,
            start_new_session=True,
            preexec_fn=_take_controlling_tty,
        )
        self.raw = bytearray()
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while not self.done.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    return
                with self.lock:
                    self.raw += chunk

    def output(self) -> bytes:
        with self.lock:
            return bytes(self.raw)

    def text(self, start: int = 0) -> str:
        return _ANSI.sub("", self.output()[start:].decode(errors="replace"))

    def last_frame(self) -> str:
        """The screen as last drawn: rich's full-screen view starts every frame at the home position."""
        raw = self.output()
        return _ANSI.sub("", raw[raw.rfind(b"\x1b[H") :].decode(errors="replace"))

    def wait_for(self, pattern: str, start: int = 0, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.text(start)):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} on the screen; it shows:\n{self.text(start)[-3000:]}")

    def wait_frame(self, check, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frame = self.last_frame()
            if check(frame):
                return frame
            time.sleep(0.1)
        raise AssertionError(f"no such frame; the last one:\n{self.last_frame()}")

    def press(self, keys: bytes) -> int:
        """Send keys; return where the output stood, so a test can wait for what follows."""
        mark = len(self.output())
        os.write(self.master, keys)
        return mark

    def wait_exit(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.done.set()
        self.reader.join(timeout=5)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def terminal() -> Iterator[Callable[..., Terminal]]:
    opened: list[Terminal] = []

    def start(*args: str, cookie: str) -> Terminal:
        term = Terminal([sys.executable, "-m", "arsenal.cli.main", "top", *args], cookie)
        opened.append(term)
        return term

    yield start
    for term in opened:
        term.close()


def _rows(frame: str) -> list[str]:
    return [line for line in frame.splitlines() if line.strip().startswith("<0.")]


def test_live_view_keys_pages_and_quit(erl, cookie, terminal) -> None:
    term = terminal("--node", erl.name, "--interval", "1", "--limit", "5", cookie=cookie)
    first = term.wait_frame(lambda f: "q quit" in f and len(_rows(f)) == 5)
    assert "sort: reductions" in first and "page 1 (rows 1-5)" in first and erl.name in first
    assert "memory  total" in first and "schedulers  avg" in first and "run queue" in first
    assert "demo_spinner" in first  # it burns reductions all the time
    assert termios.tcgetattr(term.slave)[3] & termios.ICANON == 0  # cbreak while it runs

    mark = term.press(b"m")
    term.wait_for(r"sort: memory", start=mark)
    by_memory = term.wait_frame(lambda f: "sort: memory" in f and "sampling" not in f and len(_rows(f)) == 5)
    assert "demo_big_state" in by_memory
    page_one = {row.split()[0] for row in _rows(by_memory)}

    mark = term.press(b"n")
    term.wait_for(r"page 2 \(rows 6-10\)", start=mark)
    page_two = term.wait_frame(lambda f: "page 2" in f and "sampling" not in f and len(_rows(f)) == 5)
    # Memory moves between samples, so pages of two samples may share a process at the edge; the
    # largest one is never on the second page.
    assert "sort: memory" in page_two and "demo_big_state" not in page_two
    assert {row.split()[0] for row in _rows(page_two)} != page_one

    mark = term.press(b"\x1b[5~")  # PgUp: back to page 1
    term.wait_for(r"page 1 \(rows 1-5\)", start=mark)
    mark = term.press(b"b")
    term.wait_for(r"sort: message queue", start=mark)
    term.wait_frame(lambda f: "demo_busy_mailbox" in f and "sort: message queue" in f)
    mark = term.press(b"+")
    term.wait_for(r"interval 2 s", start=mark)

    term.press(b"q")
    assert term.wait_exit() == 0
    assert termios.tcgetattr(term.slave) == term.mode  # the terminal is as it was
    assert term.output().rstrip().endswith(b"\x1b[?1049l")  # and back from the alternate screen


def test_live_view_ctrl_c_restores_the_terminal(erl, cookie, terminal) -> None:
    term = terminal("--node", erl.name, "--interval", "1", cookie=cookie)
    term.wait_frame(lambda f: "q quit" in f and _rows(f))
    term.press(b"\x03")
    assert term.wait_exit() == 130
    assert termios.tcgetattr(term.slave) == term.mode


def test_live_view_survives_the_node_going_away(make_node, cookie, terminal) -> None:
    target = make_node("topgone")
    term = terminal("--node", target.name, "--interval", "1", "--limit", "3", cookie=cookie)
    term.wait_frame(lambda f: "q quit" in f and len(_rows(f)) == 3)

    target.kill()
    target.wait_unregistered()
    down = term.wait_frame(lambda f: "retrying" in f)
    assert target.name in down and "sort: reductions" in down and "q quit" in down
    assert term.proc.poll() is None  # still running, still drawing

    make_node("topgone", alive=target.alive)  # the same node, started again
    # Not "sampling" too: at a 1 s interval the next 1 s window starts as soon as one ends, so a
    # frame without the indicator lasts only until the next redraw and polling may never see it.
    back = term.wait_frame(lambda f: "retrying" not in f and len(_rows(f)) == 3)
    assert target.name in back

    term.press(b"q")
    assert term.wait_exit() == 0
    assert termios.tcgetattr(term.slave) == term.mode
