"""``/api/v1/processes/{pid}/debug``: the interactive debugger over a WebSocket.

Query: ``node`` (default: the first attached), ``force`` (an admin debugging one of the VM's own
processes), ``hold_ms`` (how long a breakpoint may hold the process before it is released by
itself; default 300000). Client messages (JSON objects)::

    {"break": "{:increment, n} when n > 5", "when": "%{counter: c} when c > 10"}   # "when" optional
    {"clear": 1}          {"continue": true}     {"step": true}
    {"back": true}        {"forward": true}      {"state": true}      {"watch": "counter"}
    {"recording": ID}     # step back through a stored recording of this process

Server messages: ``ready`` (pid, node, language, state, hold_ms), ``breakpoint`` (id, pattern,
when), ``cleared`` (id), ``held`` (step, kind, from, message, state, breakpoint: the process
waits before handling message), ``event`` (a message that passed), ``state`` (the state after
a step; or, answering back/forward/state, the state at ``cursor``), ``released`` (step,
reason: continue, step, timeout), ``watch`` (path, values over the history; then path, step,
value on each new state), ``error`` (errors as REST has them), ``ended`` (reason: detached,
owner_down, target_down: REASON, node_down). Terms are ``{"text", "json"}``: source text in
the node's language and lossless tagged JSON. Closing the socket detaches: a held process is
released and the debug function removed.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from ..ops.debugger import DEFAULT_HOLD_MS, DebugSession, HistoryEntry
from ..ops.errors import ErrorCode, OperationError, as_operation_error
from ..security.context import current_principal
from .messages import client_message, error_message, send_json

if TYPE_CHECKING:
    from ..client import Arsenal

__all__ = ["add_debug_websocket"]

MAX_MESSAGE = 16 * 1024
COMMANDS = ("break", "clear", "continue", "step", "back", "forward", "watch", "state", "recording")


def add_debug_websocket(app: FastAPI, service: Arsenal) -> None:
    @app.websocket("/api/v1/processes/{pid}/debug")
    async def debug(
        websocket: WebSocket,
        pid: str,
        node: str | None = None,
        force: bool = False,
        hold_ms: int = DEFAULT_HOLD_MS,
    ) -> None:
        await websocket.accept()
        try:
            principal = current_principal() or service.principal
            if principal.role not in ("operator", "admin"):
                raise OperationError(
                    ErrorCode.forbidden, "the debugger holds processes: it needs an operator or admin key"
                )
            beam = service.pool.get(node)
            session = await DebugSession.start(beam, pid, principal=principal, force=force, hold_ms=hold_ms)
        except Exception as exc:
            await send_json(websocket, error_message(as_operation_error(exc)))
            await websocket.close(code=1008)
            return
        session.services = service.services
        await send_json(
            websocket,
            {
                "type": "ready",
                "pid": str(session.pid),
                "node": beam.name,
                "language": session.language,
                "hold_ms": session.hold_ms,
                "state": session.term_json(session.history[-1].state),
            },
        )
        lock = asyncio.Lock()
        pusher = asyncio.create_task(_push(websocket, session, lock))
        try:
            await _serve(websocket, session, lock)
        except WebSocketDisconnect:
            pass
        finally:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pusher
            await session.detach()


async def _push(websocket: WebSocket, session: DebugSession, lock: asyncio.Lock) -> None:
    """Session events to the client; new states also update the watches."""
    async for event in session.events():
        async with lock:
            await send_json(websocket, session.describe(event))
            if event.type == "state":
                entry = HistoryEntry(event.step, event.state)
                for path in session.watches:
                    step, value, found = session.watch_value(path, entry)
                    await send_json(websocket, _watch_point(session, path, step, value, found))
    with contextlib.suppress(Exception):
        await websocket.close()


async def _serve(websocket: WebSocket, session: DebugSession, lock: asyncio.Lock) -> None:
    while True:
        text = await websocket.receive_text()
        try:
            reply = await _handle(session, _parse(text))
        except Exception as exc:
            reply = error_message(as_operation_error(exc))
        if reply is not None:
            async with lock:
                await send_json(websocket, reply)


async def _handle(session: DebugSession, message: dict[str, Any]) -> dict[str, Any] | None:
    if "break" in message:
        when = message.get("when")
        if when is not None and not isinstance(when, str):
            raise OperationError(ErrorCode.validation_error, '"when" is a state pattern, as text')
        point = await session.break_on(_text(message["break"], "break"), when)
        return {"type": "breakpoint", "id": point.id, "pattern": point.pattern, "when": point.when}
    if "clear" in message:
        number = message["clear"]
        if not isinstance(number, int):
            raise OperationError(ErrorCode.validation_error, '"clear" takes a breakpoint id (a number)')
        await session.clear(number)
        return {"type": "cleared", "id": number}
    if message.get("continue"):
        await session.continue_()
        return None
    if message.get("step"):
        await session.step()
        return None
    if "recording" in message:
        entry = session.open_recording(_text(message.get("recording"), "recording"))
        return {**_state(session, entry), "recording": message["recording"], "states": len(session.history)}
    if message.get("back") or message.get("forward"):
        entry = session.back() if message.get("back") else session.forward()
        return _state(session, entry)
    if message.get("state"):
        step, state = await session.current_state()
        return _state(session, HistoryEntry(step, state))
    path = _text(message.get("watch"), "watch")
    values = session.watch(path)
    return {
        "type": "watch",
        "path": path,
        "values": [_watch_value(session, step, value, found) for step, value, found in values],
    }


def _state(session: DebugSession, entry: HistoryEntry) -> dict[str, Any]:
    return {
        "type": "state",
        "step": entry.step,
        "cursor": session.cursor,
        "live": session.cursor is None,
        "state": session.term_json(entry.state),
    }


def _watch_value(session: DebugSession, step: int, value: Any, found: bool) -> dict[str, Any]:
    return {"step": step, "found": found, "value": session.term_json(value) if found else None}


def _watch_point(session: DebugSession, path: str, step: int, value: Any, found: bool) -> dict[str, Any]:
    return {"type": "watch", "path": path, **_watch_value(session, step, value, found)}


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 2000:
        raise OperationError(ErrorCode.validation_error, f'"{what}" takes text (1 to 2000 characters)')
    return value


def _parse(text: str) -> dict[str, Any]:
    return client_message(
        text,
        max_bytes=MAX_MESSAGE,
        accepts=lambda message: any(key in message for key in COMMANDS),
        usage='send one of {"break": PATTERN, "when"?: STATE_PATTERN}, {"clear": ID}, {"continue": true}, '
        '{"step": true}, {"back": true}, {"forward": true}, {"watch": PATH}, {"state": true}, '
        '{"recording": ID}',
    )
