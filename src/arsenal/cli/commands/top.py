"""`arsenal top`: a live view of one node, like observer_cli's home page.

A header (node, uptime, processes, run queue, memory by type, scheduler usage)
over a table of the top processes, refreshed every interval. Each refresh is one
``get_process_window`` call whose window *is* the interval, so "reductions" means
"reductions over the last interval", as in observer_cli. Keys change the ranking
and the page; stdin is read in cbreak mode by the event loop, so reading keys
never holds up a refresh, and the terminal is put back on every way out (``q``,
Ctrl-C, an error).

When stdout is not a terminal (a pipe, a file, CI) it prints one frame and exits,
as ``--once`` does; ``--json`` prints one sample as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import termios
import threading
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ...client import Arsenal
from ...ops.errors import as_operation_error
from ...ops.processes import MAX_LIMIT, MAX_WINDOW_OFFSET, ProcessWindow, SortKey
from ..main import (
    CookieOption,
    NodeOption,
    TimeoutOption,
    app,
    console,
    errors,
    human_bytes,
    node_name,
    run_job,
)

OPERATION = "get_process_window"
MIN_INTERVAL = 1.0
MAX_INTERVAL = 60.0
MAX_WINDOW = 5.0  # seconds: the operation's largest window; a longer interval sleeps the rest
QUICK_WINDOW = 0.5  # seconds: the first sample after a start or a change, so the view answers at once
RETRY_DELAY = 1.0  # seconds between samples while the node is away (the Node reconnects meanwhile)
# A sample that has not come back this long after its window ended is given up and tried again:
# a live view must not sit on one stuck call (seen once, on a node restarted under it).
SAMPLE_GRACE = 10.0
# Lines of a frame that are not process rows: the table's head (2) and the footer (1), plus one spare.
TABLE_CHROME = 4

SORT_NAMES = {
    "reductions": SortKey.reductions,
    "reds": SortKey.reductions,
    "memory": SortKey.memory,
    "mem": SortKey.memory,
    "message_queue_len": SortKey.message_queue_len,
    "queue": SortKey.message_queue_len,
    "mailbox": SortKey.message_queue_len,
    "mq": SortKey.message_queue_len,
}
SORT_KEYS = {"r": SortKey.reductions, "m": SortKey.memory, "b": SortKey.message_queue_len}
SORT_COLUMNS = {
    SortKey.reductions: "reductions Δ",
    SortKey.memory: "memory",
    SortKey.message_queue_len: "queue",
}
SORT_LABELS = {
    SortKey.reductions: "reductions",
    SortKey.memory: "memory",
    SortKey.message_queue_len: "message queue",
}
# Escape sequences of the keys that send more than one byte.
SEQUENCES = {"\x1b[6~": "pgdn", "\x1b[5~": "pgup"}
FOOTER = "m memory  r reductions  b mailbox  n/PgDn next page  p/PgUp previous  +/- interval  q quit"
FOOTER_NO_KEYS = "stdin is not a terminal: keys are off; Ctrl-C quits"


class Action(Enum):
    """What a key asks the view to do."""

    nothing = "nothing"
    redraw = "redraw"
    resample = "resample"
    quit = "quit"


@dataclass
class TopState:
    """What the view shows: the choices the keys make and the last sample (or error)."""

    node: str
    sort: SortKey
    interval: float
    fixed_rows: int | None = None
    page: int = 1
    sample: ProcessWindow | None = None
    error: str | None = None
    sampling: bool = True
    keys: bool = True
    height: int = 24
    header_lines: int = 5

    @property
    def rows(self) -> int:
        """Rows per page: --limit, or as many as fit under the header."""
        if self.fixed_rows is not None:
            return self.fixed_rows
        return max(1, min(MAX_LIMIT, self.height - self.header_lines - TABLE_CHROME))

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.rows

    def params(self, window: float) -> dict[str, Any]:
        return {
            "sort_by": self.sort.value,
            "window_ms": round(window * 1000),
            "limit": self.rows,
            "offset": self.offset,
        }

    def press(self, key: str) -> Action:
        """Apply one key; say whether the view needs a new sample, a redraw, or to stop."""
        if key in ("q", "Q"):
            return Action.quit
        if key in SORT_KEYS:
            if SORT_KEYS[key] is self.sort:
                return Action.nothing
            self.sort, self.page = SORT_KEYS[key], 1
            return Action.resample
        if key in ("n", "pgdn"):
            if not self._has_next_page():
                return Action.nothing
            self.page += 1
            return Action.resample
        if key in ("p", "pgup"):
            if self.page == 1:
                return Action.nothing
            self.page -= 1
            return Action.resample
        if key in ("+", "="):
            self.interval = min(MAX_INTERVAL, self.interval + 1)
            return Action.redraw
        if key in ("-", "_"):
            self.interval = max(MIN_INTERVAL, self.interval - 1)
            return Action.redraw
        return Action.nothing

    def _has_next_page(self) -> bool:
        if self.offset + self.rows > MAX_WINDOW_OFFSET:
            return False
        return self.sample is None or self.offset + self.rows < self.sample.process_count


# ---------------------------------------------------------------------- rendering


def _percent_bar(share: float, width: int = 10) -> Text:
    filled = round(max(0.0, min(1.0, share)) * width)
    colour = "green" if share < 0.6 else "yellow" if share < 0.85 else "red"
    bar = Text("|" * filled, style=colour)
    bar.append(" " * (width - filled))
    bar.append(f" {share:4.0%}")
    return bar


def _uptime(seconds: float) -> str:
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02}:{minutes:02}:{secs:02}"
    return f"{days}d {clock}" if days else clock


def _header(state: TopState) -> list[Text]:
    """The lines above the table: the node's figures, the schedulers, and what is shown."""
    sample = state.sample
    lines: list[Text] = []
    shown = sample.node if sample is not None else state.node
    title = Text.assemble(("arsenal top", "bold"), " — ", (shown, "bold cyan"))
    if sample is None:
        lines.append(title)
        lines.append(Text("waiting for the first sample …", style="dim"))
    else:
        title.append(f"   uptime {_uptime(sample.uptime_seconds)}")
        title.append(f"   processes {sample.process_count:,} / {sample.process_limit:,}")
        title.append("   run queue ")
        title.append(f"{sample.run_queue:,}", style="bold" if sample.run_queue else "")
        title.append(f"   IO in {human_bytes(sample.io_input)} out {human_bytes(sample.io_output)}")
        lines.append(title)
        memory = sample.memory
        lines.append(
            Text(
                f"memory  total {human_bytes(memory.total)}  processes {human_bytes(memory.processes)}  "
                f"ets {human_bytes(memory.ets)}  binary {human_bytes(memory.binary)}  "
                f"atom {human_bytes(memory.atom)}  code {human_bytes(memory.code)}  "
                f"system {human_bytes(memory.system)}"
            )
        )
        schedulers = Text("schedulers  avg ")
        schedulers.append_text(_percent_bar(sample.scheduler_usage))
        for row in sample.schedulers:
            if row.type == "normal":
                schedulers.append(f"   {row.id} ")
                schedulers.append_text(_percent_bar(row.utilization, 6))
        dirty = [row.utilization for row in sample.schedulers if row.type != "normal"]
        if dirty:
            schedulers.append(f"   dirty cpu avg {sum(dirty) / len(dirty):.0%}")
        lines.append(schedulers)
    lines.append(_status_line(state))
    if state.error:
        lines.append(Text(f"{state.error} — retrying every {RETRY_DELAY:g} s", style="bold red"))
    return lines


def _status_line(state: TopState) -> Text:
    status = Text("sort: ")
    status.append(SORT_LABELS[state.sort], style="bold")
    sample = state.sample
    if state.sort is SortKey.reductions and sample is not None and sample.sort is state.sort:
        status.append(f" over the last {sample.window_ms / 1000:g} s")
    first = state.offset + 1
    status.append(f"   page {state.page} (rows {first:,}-{state.offset + state.rows:,})")
    status.append(f"   interval {state.interval:g} s")
    if state.sampling:
        status.append("   sampling …", style="dim")
    return status


def _table(state: TopState) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=True)
    for column, justify, ratio in (
        ("pid", "left", None),
        ("name or initial call", "left", 3),
        ("memory", "right", None),
        ("reductions Δ", "right", None),
        ("reductions", "right", None),
        ("queue", "right", None),
        ("status", "left", None),
        ("current function", "left", 3),
    ):
        table.add_column(
            column,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=True,
            overflow="ellipsis",
            ratio=ratio,
            style="bold" if column == SORT_COLUMNS[state.sort] else None,
        )
    sample = state.sample
    current = sample is not None and sample.sort is state.sort and sample.offset == state.offset
    if sample is None or not current:
        return table
    for row in sample.processes:
        table.add_row(
            row.pid,
            row.registered_name or row.initial_call or "",
            human_bytes(row.memory),
            f"{row.reductions_delta:,}",
            f"{row.reductions:,}",
            f"{row.message_queue_len:,}",
            row.status,
            row.current_function or "",
        )
    if not sample.processes:
        table.add_row("", Text("no processes on this page (p goes back)", style="dim"))
    return table


def render_frame(state: TopState, console: Console) -> RenderableType:
    """One whole frame; also measures the header so the table fills the rest of the screen."""
    header = _header(state)
    state.height = console.size.height
    state.header_lines = sum(len(console.render_lines(line, pad=False)) for line in header)
    footer = Text(FOOTER if state.keys else FOOTER_NO_KEYS, style="reverse")
    return Group(*header, _table(state), footer)


# ---------------------------------------------------------------------- the terminal


@contextlib.contextmanager
def cbreak(fd: int) -> Iterator[None]:
    """Keys without Enter and without echo; the terminal's mode is put back however we leave."""
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def split_keys(data: str) -> list[str]:
    """The keys in what one read returned: single characters, and the escape sequences we know."""
    keys: list[str] = []
    index = 0
    while index < len(data):
        for sequence, name in SEQUENCES.items():
            if data.startswith(sequence, index):
                keys.append(name)
                index += len(sequence)
                break
        else:
            if data[index] == "\x1b":  # an escape sequence we do not use: skip the rest of it
                keys.append("esc")
                index = len(data)
            else:
                keys.append(data[index])
                index += 1
    return keys


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Log lines would tear the full-screen view: the view shows errors itself while it runs."""
    logger = logging.getLogger("arsenal")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


# ---------------------------------------------------------------------- sampling


async def _sample(service: Arsenal, state: TopState, window: float) -> ProcessWindow:
    result = await service.run(
        OPERATION, state.params(window), node=state.node, timeout=window + SAMPLE_GRACE
    )
    assert isinstance(result, ProcessWindow)
    return result


class TopView:
    """The live loop: a sampler task that refreshes the frame, and keys that steer it."""

    def __init__(self, service: Arsenal, state: TopState, redraw: Callable[[], None]) -> None:
        self.service = service
        self.state = state
        self.redraw = redraw
        self.wake = asyncio.Event()
        self.sampler: asyncio.Task[None] | None = None

    def start_sampling(self) -> None:
        self.sampler = asyncio.create_task(self._sample_forever())

    async def restart_sampling(self) -> None:
        await self.stop_sampling()
        self.start_sampling()

    async def stop_sampling(self) -> None:
        if self.sampler is not None:
            self.sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.sampler
            self.sampler = None

    async def _sample_forever(self) -> None:
        window = min(QUICK_WINDOW, self.state.interval)
        while True:
            self.state.sampling = True
            self.redraw()
            try:
                self.state.sample = await _sample(self.service, self.state, window)
                self.state.error = None
                rest = max(0.0, self.state.interval - window)
            except Exception as exc:  # the node went away, timed out...: show it and try again
                self.state.error = as_operation_error(exc, OPERATION).message
                rest = RETRY_DELAY
            self.state.sampling = False
            self.redraw()
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), rest)
            window = min(MAX_WINDOW, self.state.interval)

    async def handle(self, key: str) -> bool:
        """Act on one key; False when it is time to stop."""
        action = self.state.press(key)
        if action is Action.quit:
            return False
        if action is Action.resample:
            await self.restart_sampling()
        elif action is Action.redraw:
            self.wake.set()  # a shorter interval applies now, not after the old one ran out
            self.redraw()
        return True


async def _live(name: str, cookie: str | None, timeout: float, state: TopState) -> None:
    async with Arsenal(cookie=cookie) as service:
        await service.attach(name, timeout=timeout, reconnect=True)
        loop = asyncio.get_running_loop()
        keys: asyncio.Queue[str] = asyncio.Queue()
        stdin = sys.stdin.fileno() if sys.stdin.isatty() else None
        state.keys = stdin is not None
        with contextlib.ExitStack() as stack:
            stack.enter_context(quiet_logs())
            if stdin is not None:
                stack.enter_context(cbreak(stdin))
            live = stack.enter_context(
                Live(
                    get_renderable=lambda: render_frame(state, console),
                    console=console,
                    screen=True,
                    auto_refresh=False,
                    redirect_stdout=False,
                    redirect_stderr=False,
                )
            )
            view = TopView(service, state, live.refresh)
            if stdin is not None:
                loop.add_reader(stdin, _read_keys, stdin, keys, loop)
                stack.callback(loop.remove_reader, stdin)
            # Redraw at once when the terminal is resized (POSIX, and only from the main thread).
            if hasattr(signal, "SIGWINCH") and threading.current_thread() is threading.main_thread():
                loop.add_signal_handler(signal.SIGWINCH, live.refresh)
                stack.callback(loop.remove_signal_handler, signal.SIGWINCH)
            view.start_sampling()
            try:
                while await view.handle(await keys.get()):
                    pass
            finally:
                await view.stop_sampling()


def _read_keys(fd: int, keys: asyncio.Queue[str], loop: asyncio.AbstractEventLoop) -> None:
    try:
        data = os.read(fd, 64)
    except OSError:
        data = b""
    if not data:  # stdin closed: no more keys will come; stop watching it rather than spin
        loop.remove_reader(fd)
        return
    for key in split_keys(data.decode(errors="replace")):
        keys.put_nowait(key)


async def _one_sample(name: str, cookie: str | None, timeout: float, state: TopState) -> ProcessWindow:
    async with Arsenal(cookie=cookie) as service:
        await service.attach(name, timeout=timeout, reconnect=False)
        return await _sample(service, state, min(MAX_WINDOW, state.interval))


# ---------------------------------------------------------------------- the command


@app.command()
def top(
    node: NodeOption = None,
    cookie: CookieOption = None,
    sort: Annotated[
        str,
        typer.Option(
            "--sort", "-s", help="reductions (reds, over the interval), memory (mem) or mailbox (queue)."
        ),
    ] = "reductions",
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit", "-l", min=1, max=MAX_LIMIT, help="Rows per page. Default: what fits the terminal."
        ),
    ] = None,
    interval: Annotated[
        float,
        typer.Option(
            "--interval",
            "-i",
            min=MIN_INTERVAL,
            max=MAX_INTERVAL,
            help="Seconds between refreshes; reductions are counted over it (up to 5 s).",
        ),
    ] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one sample as JSON and exit.")] = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """A live view of a node, like observer_cli: its figures and the top processes, refreshed.

    Keys: m memory, r reductions, b mailbox, n/PgDn and p/PgUp pages, +/- interval, q quit.
    Without a terminal (or with --once) it prints one frame; --json prints one sample.
    """
    key = SORT_NAMES.get(sort)
    if key is None:
        errors.print(f"[red]error:[/red] unknown sort {sort!r}; use one of: {', '.join(sorted(SORT_NAMES))}")
        raise typer.Exit(2)
    name = node_name(node)
    state = TopState(node=name, sort=key, interval=interval, fixed_rows=limit)
    if as_json or once or not sys.stdout.isatty():
        if state.fixed_rows is None and (as_json or not console.is_terminal):
            state.fixed_rows = 20
        elif state.fixed_rows is None:
            render_frame(state, console)  # sizes the page to the terminal, less the shell's prompt
            state.fixed_rows = max(1, state.rows - 2)
        state.sample = run_job(lambda: _one_sample(name, cookie, timeout, state))
        state.sampling = state.keys = False
        if as_json:
            print(state.sample.model_dump_json(indent=2))
        else:
            console.print(Group(*_header(state), _table(state)))
        return
    run_job(lambda: _live(name, cookie, timeout, state))
