"""The interactive debugger (issue 6) against real nodes: holding at breakpoints, stepping,
history, watches, release on disconnect, a target that dies while held, the WebSocket and the CLI."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from httpx_ws import aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport

from arsenal.api.app import create_app
from arsenal.beam.errors import ReadOnlyNode
from arsenal.client import Arsenal
from arsenal.dist import Atom, Pid
from arsenal.ops.debugger import DebugSession, get_in, message_pattern
from arsenal.ops.errors import ErrorCode, OperationError
from arsenal.ops.plain import pid_text

from .helpers import eval_erlang, fails

WORKER = "Elixir.ArsenalDemo.StatefulWorker"
COUNTER = "Elixir.ArsenalDemo.Counter1"
BASE = "http://arsenal.test"


@pytest.fixture
async def service(elixir, cookie) -> AsyncIterator[Arsenal]:
    async with Arsenal(cookie=cookie) as arsenal:
        await arsenal.attach(elixir.name, reconnect=False)
        yield arsenal


@pytest.fixture
async def worker(service) -> AsyncIterator[str]:
    """A StatefulWorker of this test's own (ArsenalDemo.Counter1 gets the demo's load traffic),
    started unlinked on the Elixir demo node and killed afterwards: its pid as text."""
    node = service.pool.get()
    ok, pid = await node.call("gen_server", "start", [Atom(WORKER), [(Atom("initial"), 100)], []], 10.0)
    assert ok == Atom("ok")
    yield pid_text(pid)
    await node.call("erlang", "exit", [pid, Atom("kill")], 5.0)


def _increment(service: Arsenal, by: int, target: str = COUNTER) -> asyncio.Task[Any]:
    """A call into the worker that waits while the worker is held (GenServer.call's 5 s timeout)."""
    node = service.pool.get()
    return asyncio.create_task(_call(node, "increment", target, by))


async def _call(node: Any, function: str, target: str, *args: Any) -> Any:
    ref = (
        target
        if not target.startswith("<")
        else await node.call("erlang", "list_to_pid", [list(target.encode())], 5.0)
    )
    return await node.call(WORKER, function, [Atom(ref) if isinstance(ref, str) else ref, *args], 10.0)


async def _counter(service: Arsenal, target: str = COUNTER) -> int:
    summary = await _call(service.pool.get(), "get_state", target)
    return int(summary[Atom("counter")])


async def _debug_funs(node: Any, pid: Pid) -> list[Any]:
    """The sys debug options the process has (sys:get_status's fourth item)."""
    status = await node.call("sys", "get_status", [pid], 10.0)
    return list(status[3][3])


async def _in(session: DebugSession, timeout: float = 10.0) -> Any:
    event = await session.wait_for("in", timeout)
    assert event.type == "in", event
    return event


async def _still_waiting(task: asyncio.Task[Any]) -> bool:
    """A held call cannot complete: give it every chance to, then look."""
    for _ in range(20):
        await asyncio.sleep(0.02)
    return not task.done()


# ---------------------------------------------------------------------------------------- patterns


def test_message_patterns_parse_both_flavours() -> None:
    spec = message_pattern("{:increment, n} when n > 5", "elixir")
    assert spec == [([(Atom("increment"), Atom("$1"))], [(Atom(">"), Atom("$1"), 5)], [True])]
    assert message_pattern("{notify, _}", "erlang") == [([(Atom("notify"), Atom("_"))], [], [True])]
    with pytest.raises(Exception, match="column"):
        message_pattern("{:increment, ", "elixir")


def test_local_paths() -> None:
    state = {Atom("counter"): 3, Atom("history"): [{Atom("op"): Atom("init")}]}
    assert get_in(state, "counter") == 3
    assert get_in(state, "history.0.op") == Atom("init")
    with pytest.raises(ValueError):
        get_in(state, "missing")


# ---------------------------------------------------------------------------------------- holding


async def test_breakpoint_holds_step_and_continue(service, worker) -> None:
    node = service.pool.get()
    start = await _counter(service, worker)
    session = await DebugSession.start(node, worker, hold_ms=60_000)
    try:
        assert session.history[0].state[Atom("counter")] == start
        point = await session.break_on("{:increment, n} when n > 100")

        small = _increment(service, 1, worker)
        passed = await _in(session)
        assert not passed.held and passed.message == (Atom("increment"), 1) and passed.kind == "call"
        assert await small == start + 1

        big = _increment(service, 500, worker)
        held = await _in(session)
        assert held.held and held.breakpoint == point.id and held.message == (Atom("increment"), 500)
        assert held.sender is not None and session.held is held
        assert await _still_waiting(big)
        # The state shown while held is the one before the message.
        assert session.history[-1].state[Atom("counter")] == start + 1

        # Step: exactly this message is handled, and the process is held at the next one.
        assert await session.step() is True
        assert await big == start + 501
        state = await session.wait_for("state", 10)
        assert state.state[Atom("counter")] == start + 501
        following = _increment(service, 2, worker)
        held = await _in(session)
        assert held.held and held.breakpoint is None and held.message == (Atom("increment"), 2)
        assert await _still_waiting(following)

        # Continue: runs until a breakpoint matches again.
        assert await session.continue_() is True
        assert await following == start + 503
        assert await _increment(service, 3, worker) == start + 506
        assert (await _in(session)).held is False
        held_again = _increment(service, 101, worker)
        assert (await _in(session)).held
        await session.clear(point.id)
        await session.continue_()
        assert await held_again == start + 607
        assert await _increment(service, 200, worker) == start + 807
    finally:
        await session.detach()
    assert await _debug_funs(node, session.pid) == []
    assert await _counter(service, worker) == start + 807


async def test_conditional_breakpoint_back_forward_and_watch(service, worker) -> None:
    node = service.pool.get()
    start = await _counter(service, worker)
    async with await DebugSession.start(node, worker, hold_ms=60_000) as session:
        await session.break_on("{:increment, _}", when=f"%{{counter: c}} when c >= {start + 10}")
        assert await _increment(service, 4, worker) == start + 4
        assert await _increment(service, 20, worker) == start + 24  # the state before it was below the limit
        held_call = _increment(service, 1, worker)
        event = await session.wait_for("in", 10)
        while not event.held:
            event = await session.wait_for("in", 10)
        assert event.message == (Atom("increment"), 1)
        assert await _still_waiting(held_call)
        await session.continue_()
        assert await held_call == start + 25
        await session.wait_for("state", 10)
        counters = [entry.state[Atom("counter")] for entry in session.history]
        assert counters[0] == start and counters[-1] == start + 25

        values = session.watch("counter")
        assert [value for _, value, found in values if found] == counters
        assert session.watch("history.0.counter")[-1][1] == start + 25
        assert session.watch("no_such_key")[-1][2] is False

        back = session.back()
        assert back.state[Atom("counter")] == counters[-2]
        assert session.back().state[Atom("counter")] == counters[-3]
        assert session.forward().state[Atom("counter")] == counters[-2]
        assert session.forward().state[Atom("counter")] == counters[-1] and session.cursor is None
        step, state = await session.current_state()
        assert state[Atom("counter")] == start + 25 and step == session.history[-1].step


async def test_closing_the_owner_releases_a_held_process(service, worker) -> None:
    node = service.pool.get()
    start = await _counter(service, worker)
    session = await DebugSession.start(node, worker, hold_ms=60_000)
    await session.break_on("{:increment, _}")
    call = _increment(service, 7, worker)
    assert (await _in(session)).held
    assert await _still_waiting(call)
    await session.close()  # no detach request: the node sees its owner go
    assert await call == start + 7
    for _ in range(100):
        if await _debug_funs(node, session.pid) == []:
            break
        await asyncio.sleep(0.05)
    assert await _debug_funs(node, session.pid) == []
    for _ in range(100):
        if await node.call("erlang", "is_process_alive", [session.session], 10.0) is False:
            break
        await asyncio.sleep(0.05)
    assert await node.call("erlang", "is_process_alive", [session.session], 10.0) is False
    assert await _counter(service, worker) == start + 7


async def test_hold_timeout_releases_by_itself(service, worker) -> None:
    node = service.pool.get()
    start = await _counter(service, worker)
    async with await DebugSession.start(node, worker, hold_ms=200) as session:
        await session.break_on("{:increment, _}")
        call = _increment(service, 1, worker)
        assert (await _in(session)).held
        released = await session.wait_for("released", 10)
        assert released.reason == "timeout"
        assert await call == start + 1


# ---------------------------------------------------------------------------------------- bad cases


async def test_target_killed_while_held_and_not_compliant(make_node, cookie) -> None:
    target = make_node("dbg")
    async with Arsenal(cookie=cookie) as service:
        await service.attach(target.name, reconnect=False)
        node = service.pool.get()
        manager = await eval_erlang(service, target.name, "{ok, P} = gen_event:start({local, dbg_events}), P")
        async with await DebugSession.start(node, "dbg_events", hold_ms=60_000) as session:
            await session.break_on("{notify, {hello, _}}")
            await node.call("gen_event", "notify", [manager, Atom("other")], 5.0)
            assert not (await _in(session)).held
            await node.call("gen_event", "notify", [manager, (Atom("hello"), 1)], 5.0)
            held = await _in(session)
            assert held.held and held.message == (Atom("notify"), (Atom("hello"), 1))
            await node.call("erlang", "exit", [manager, Atom("kill")], 5.0)
            ended = await session.wait_for("ended", 10)
            assert ended.type == "ended" and ended.reason == "target_down: killed"
            await fails(ErrorCode.conflict, session.step())

        await eval_erlang(
            service, target.name, "register(dbg_plain, spawn(fun() -> receive stop -> ok end end))"
        )
        error = await fails(ErrorCode.validation_error, DebugSession.start(node, "dbg_plain"))
        assert "sys-compliant" in error.message
        await fails(ErrorCode.not_found, DebugSession.start(node, "no_such_name"))
        await fails(ErrorCode.protected_process, DebugSession.start(node, "code_server"))
        node.read_only = True  # attached read-only: holding a process is a change, refused
        with pytest.raises(ReadOnlyNode):
            await DebugSession.start(node, "dbg_events")
        node.read_only = False

        compliant = await eval_erlang(service, target.name, "{ok, P} = gen_event:start(), P")
        async with await DebugSession.start(node, pid_text(compliant)) as session:
            await fails(ErrorCode.validation_error, session.break_on("{no_such_atom_xyzzy, _}"))
            await fails(ErrorCode.validation_error, session.break_on("{notify, "))
        assert await _debug_funs(node, compliant) == []
        assert await node.call("erlang", "is_process_alive", [compliant], 5.0) is True


# ---------------------------------------------------------------------------------------- WebSocket


async def _next(ws: Any, kind: str, log: list[dict[str, Any]]) -> dict[str, Any]:
    """The next server message of type ``kind``; others (the demo's load traffic) are skipped,
    and every message is kept in ``log``."""
    while True:
        message = await ws.receive_json(timeout=10)
        log.append(message)
        if message["type"] == kind:
            return message
        assert message["type"] in ("event", "state", "watch", "held", "released"), message


def _count(text: str) -> int:
    match = re.search(r"counter: (\d+)", text)
    assert match, text
    return int(match.group(1))


async def test_websocket_debugger_on_counter1(service) -> None:
    """ArsenalDemo.Counter1, with the demo's load generator calling it five times a second."""
    node = service.pool.get()
    app = create_app(service, auth=False)
    async with (
        ASGIWebSocketTransport(app=app) as transport,
        httpx.AsyncClient(transport=transport, base_url=BASE) as client,
    ):
        async with aconnect_ws(f"{BASE}/api/v1/processes/{COUNTER}/debug?hold_ms=60000", client) as ws:
            ready = await ws.receive_json(timeout=10)
            assert ready["type"] == "ready" and ready["language"] == "elixir"
            first = _count(ready["state"]["text"])
            log: list[dict[str, Any]] = []
            await ws.send_json({"break": "{:increment, n} when n > 50"})
            assert (await _next(ws, "breakpoint", log))["id"] == 1
            await ws.send_json({"watch": "counter"})
            watch = await ws.receive_json(timeout=10)
            while "values" not in watch:
                watch = await ws.receive_json(timeout=10)
            assert watch["values"][0]["value"]["json"] == first

            call = _increment(service, 60)
            held = await _next(ws, "held", log)
            assert held["message"]["text"] == "{:increment, 60}" and held["kind"] == "call"
            assert held["breakpoint"] == 1
            before = _count(held["state"]["text"])
            assert await _still_waiting(call)
            await ws.send_json({"step": True})
            seen: dict[str, dict[str, Any]] = {}
            while not {"released", "state", "watch"} <= seen.keys():
                message = await ws.receive_json(timeout=10)
                log.append(message)
                if message.get("step") == held["step"]:
                    seen.setdefault(message["type"], message)
            assert seen["released"]["reason"] == "step"
            assert _count(seen["state"]["state"]["text"]) == before + 60
            assert seen["watch"]["value"]["json"] == before + 60
            assert await call == before + 60

            await ws.send_json({"back": True})
            back = await _next(ws, "state", log)
            while "cursor" not in back:
                back = await _next(ws, "state", log)
            assert back["live"] is False and _count(back["state"]["text"]) == before
            await ws.send_json({"nonsense": 1})
            assert (await _next(ws, "error", log))["errors"][0]["code"] == "validation_error"

            # Step mode: the next message, whoever sent it, is held; then the client goes away.
            if not any(m["type"] == "held" and m["step"] > held["step"] for m in log):
                await _next(ws, "held", log)
            call = _increment(service, 1)
            assert await _still_waiting(call)
        assert await call > before + 60
        pid = await node.call("erlang", "whereis", [Atom(COUNTER)], 5.0)
        for _ in range(100):
            if await _debug_funs(node, pid) == []:
                break
            await asyncio.sleep(0.05)
        assert await _debug_funs(node, pid) == []

        async with aconnect_ws(f"{BASE}/api/v1/processes/no_such_process/debug", client) as ws:
            error = await ws.receive_json(timeout=10)
            assert error["type"] == "error" and error["errors"][0]["code"] == "not_found"


# ---------------------------------------------------------------------------------------- CLI


async def _expect(stream: asyncio.StreamReader, text: str, timeout: float = 20.0) -> str:
    """The next output line holding ``text`` (earlier lines are skipped)."""
    seen = []
    async with asyncio.timeout(timeout):
        while line := (await stream.readline()).decode():
            seen.append(line)
            if text in line:
                return line
    raise AssertionError(f"no line with {text!r}; saw {seen}")


async def test_cli_debug(service, worker, elixir, cookie) -> None:
    start = await _counter(service, worker)
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "arsenal", "debug", worker, "-n", elixir.name, "--break", "{:increment, 9}"],
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "ARSENAL_COOKIE": cookie},
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        await _expect(proc.stdout, "breakpoint 1")
        call = _increment(service, 9, worker)
        held = await _expect(proc.stdout, "held")
        assert "{:increment, 9}" in held and "(breakpoint 1)" in held
        assert await _still_waiting(call)
        proc.stdin.write(b"p\n")
        state = await _expect(proc.stdout, "state step")
        assert f"counter: {start}" in state
        proc.stdin.write(b"w counter\ns\n")
        await _expect(proc.stdout, f"counter = {start}")
        assert await call == start + 9
        await _expect(proc.stdout, f"counter = {start + 9}")
        proc.stdin.write(b"c\nb {:nothing_like_this_atom_qq}\nq\n")
        error = await _expect(proc.stdout, "error")
        assert "does not exist" in error
        await _expect(proc.stdout, "ended")
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert await _increment(service, 1, worker) == start + 10


async def test_stepping_back_through_a_recording(service, worker) -> None:
    """A stored recording's states come before the live ones: back and forward walk through it."""
    node = service.pool.get()
    start = await _counter(service, worker)
    started = await service.run("start_recording", {"pids": [worker], "duration": 30})
    for by in (1, 2, 3):
        assert await _increment(service, by, worker) == start + sum(range(1, by + 1))
    stopped = await service.run("stop_recording", {"id": started.id})
    history = await service.run("get_process_history", {"pid": worker})
    assert ("recording", stopped.id) in [(e["source"], e.get("id")) for e in history.events]
    async with await DebugSession.start(node, worker, hold_ms=60_000) as session:
        session.services = service.services
        first = session.open_recording(stopped.id)
        assert first.kind == "initial" and first.state[Atom("counter")] == start
        walked = [session.forward().state[Atom("counter")] for _ in range(3)]
        assert walked == [start + 1, start + 3, start + 6]
        assert session.back().state[Atom("counter")] == start + 3
        assert session.watch("counter")[0][1] == start
        with pytest.raises(OperationError) as missing:
            session.open_recording("no_such_recording")
        assert missing.value.code is ErrorCode.not_found
