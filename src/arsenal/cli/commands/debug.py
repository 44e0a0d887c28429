"""`arsenal debug PID`: the interactive debugger at a prompt (or driven through a pipe).

Commands, one a line::

    b PATTERN [if STATE]   break before a message matching PATTERN (its own `when` guard allowed),
                           only while the last state matches STATE; `b PATTERN when %{...}` (a
                           `when` followed by a map, tuple or list) is the same as `if`
    d ID                   delete breakpoint ID
    c                      continue to the next breakpoint       s   step one message
    back / fwd             walk the states seen so far          p   show the state
    rec ID                 step back through a stored recording of this process
    w PATH                 watch PATH (`counter`, `history.0`) over the states seen and to come
    q                      detach (a held process is released) and quit; so does the end of input

Each event is printed as one line (`event`, `held`, `state`, `released`, `watch`, `ended`,
`error`), flushed at once, so a script can read them as they come.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from typing import Annotated

import typer

from ...client import Arsenal
from ...ops.debugger import DEFAULT_HOLD_MS, DebugEvent, DebugSession, HistoryEntry
from ...ops.errors import OperationError, as_operation_error
from ..main import CookieOption, NodeOption, TimeoutOption, app, node_name, run_job

_STATE_WHEN = re.compile(r"\s+when\s+(?=[%#{\[])")
_IF = re.compile(r"\s+if\s+")


@app.command("debug")
def debug(
    pid: Annotated[str, typer.Argument(help="<0.123.0>, 0.123.0 or a registered name.")],
    node: NodeOption = None,
    breaks: Annotated[
        list[str] | None,
        typer.Option("--break", "-b", help="A breakpoint to set at once (repeatable), as for the b command."),
    ] = None,
    hold_ms: Annotated[
        int, typer.Option(help="Longest hold at a breakpoint before the process is released by itself.")
    ] = DEFAULT_HOLD_MS,
    force: Annotated[bool, typer.Option(help="Debug one of the VM's own processes (admin only).")] = False,
    cookie: CookieOption = None,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Hold a gen_server/gen_statem/gen_event process at breakpoints; step, look back, watch."""
    name = node_name(node)
    run_job(lambda: _debug(name, pid, breaks or [], hold_ms, force, cookie, timeout))


async def _debug(
    node: str, target: str, breaks: list[str], hold_ms: int, force: bool, cookie: str | None, timeout: float
) -> None:
    async with Arsenal(cookie=cookie) as service:
        await service.attach(node, timeout=timeout, reconnect=False)
        beam = service.pool.get(node)
        session = await DebugSession.start(
            beam, target, principal=service.principal, force=force, hold_ms=hold_ms
        )
        session.services = service.services
        printer = asyncio.create_task(_print_events(session))
        try:
            state = _state(session, session.history[-1])
            _say(f"ready: debugging {target} ({session.pid}) on {beam.name}; state: {state}")
            for text in breaks:
                await _run_command(session, f"b {text}")
            await _prompt(session)
        finally:
            await session.detach()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(printer, 5.0)
            printer.cancel()


async def _prompt(session: DebugSession) -> None:
    """Commands from stdin until q, the end of input, or the end of the session."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while session.ended is None:
            line_task = asyncio.ensure_future(reader.readline())
            ended = asyncio.ensure_future(session.wait_ended())
            done, _ = await asyncio.wait({line_task, ended}, return_when=asyncio.FIRST_COMPLETED)
            ended.cancel()
            if line_task not in done:
                line_task.cancel()
                return
            raw = line_task.result()
            if not raw:
                return
            line = raw.decode(errors="replace").strip()
            if line in ("q", "quit", "exit"):
                return
            if line:
                await _run_command(session, line)
    finally:
        transport.close()


async def _run_command(session: DebugSession, line: str) -> None:
    word, _, rest = line.partition(" ")
    rest = rest.strip()
    try:
        if word in ("b", "break"):
            pattern, when = _split_break(rest)
            point = await session.break_on(pattern, when)
            _say(f"breakpoint {point.id}: {point.pattern}" + (f" if {point.when}" if point.when else ""))
        elif word in ("d", "clear", "delete"):
            await session.clear(int(rest))
            _say(f"cleared {rest}")
        elif word in ("c", "continue"):
            await session.continue_()
        elif word in ("s", "step"):
            await session.step()
        elif word in ("rec", "recording"):
            entry = session.open_recording(rest)
            _say(f"recording {rest}: {len(session.history)} states; back/fwd walk them")
            _show_entry(session, entry)
        elif word == "back":
            _show_entry(session, session.back())
        elif word in ("fwd", "forward"):
            _show_entry(session, session.forward())
        elif word in ("p", "print"):
            step, state = await session.current_state()
            _show_entry(session, HistoryEntry(step, state))
        elif word in ("w", "watch"):
            for step, value, found in session.watch(rest):
                _say(f"watch step {step}: {rest} = {session.render(value) if found else '(not there)'}")
        else:
            _say(f"error: unknown command {line!r}; use b, d, c, s, back, fwd, rec, p, w, q")
    except (OperationError, ValueError) as exc:
        message = exc.message if isinstance(exc, OperationError) else str(exc)
        _say(f"error: {message}")
    except Exception as exc:  # a node error: show it, the prompt goes on
        _say(f"error: {as_operation_error(exc).message}")


def _split_break(text: str) -> tuple[str, str | None]:
    """``PATTERN [if STATE]``, or ``PATTERN when STATE`` when the part after the last ``when`` is a
    map, tuple or list (a guard never starts like that)."""
    parts = _IF.split(text, maxsplit=1)
    if len(parts) == 2:
        return parts[0], parts[1]
    matches = list(_STATE_WHEN.finditer(text))
    if matches:
        return text[: matches[-1].start()], text[matches[-1].end() :]
    return text, None


async def _print_events(session: DebugSession) -> None:
    async for event in session.events():
        _print_event(session, event)


def _print_event(session: DebugSession, event: DebugEvent) -> None:
    if event.type == "in":
        sender = f" from {event.sender}" if event.sender else ""
        text = f"{event.kind} {session.render(event.message)}{sender}"
        if event.held:
            why = f" (breakpoint {event.breakpoint})" if event.breakpoint else " (stepping)"
            _say(f"held step {event.step}: {text}{why}")
            _say(f"  state: {_state(session, session.history[-1])}")
        else:
            _say(f"event step {event.step}: {text}")
    elif event.type == "state":
        entry = HistoryEntry(event.step, event.state)
        for path in session.watches:
            step, value, found = session.watch_value(path, entry)
            _say(f"watch step {step}: {path} = {session.render(value) if found else '(not there)'}")
    elif event.type == "released":
        _say(f"released step {event.step} ({event.reason})")
    elif event.type == "ended":
        _say(f"ended: {event.reason}")


def _show_entry(session: DebugSession, entry: HistoryEntry) -> None:
    where = "live" if session.cursor is None else f"history {session.cursor + 1}/{len(session.history)}"
    _say(f"state step {entry.step} ({where}): {_state(session, entry)}")


def _state(session: DebugSession, entry: HistoryEntry) -> str:
    return session.render(entry.state)


def _say(text: str) -> None:
    print(text, flush=True)
