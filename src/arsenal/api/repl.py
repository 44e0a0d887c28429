"""``/api/v1/sandboxes/{sandbox_id}/repl``: a REPL session in a sandbox over a WebSocket.

Client messages (JSON objects)::

    {"input": "x = 1"}          # one line or several; kept until the input is complete
    {"complete": "Enum.ma"}     # names for completion
    {"cancel": true}            # forget an incomplete input

Server messages: ``{"type": "ready", "sandbox_id", "language"}`` first; then for each input
``{"type": "incomplete"}`` (send more lines), ``{"type": "result", "text", "value", "output",
"warnings", "binding", ...}``, ``{"type": "magic", "text"}`` or ``{"type": "error", "text",
...}``; ``{"type": "completions", "items": [...]}``. The session (and its bindings) ends with
the socket. Magic commands are those of :mod:`arsenal.sandbox.repl` (``:help``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from ..ops.errors import ErrorCode, OperationError
from ..ops.sandboxes import _error as sandbox_error
from ..sandbox.manager import SandboxError, SandboxManager
from ..sandbox.repl import Repl
from ..security.context import current_principal
from .envelope import error_object

if TYPE_CHECKING:
    from ..client import Arsenal

__all__ = ["add_repl_websocket"]

MAX_MESSAGE = 256 * 1024


def add_repl_websocket(app: FastAPI, service: Arsenal) -> None:
    @app.websocket("/api/v1/sandboxes/{sandbox_id}/repl")
    async def repl(websocket: WebSocket, sandbox_id: str) -> None:
        await websocket.accept()
        principal = current_principal() or service.principal
        if principal.role not in ("operator", "admin"):
            error = OperationError(
                ErrorCode.forbidden, "the REPL runs code: it needs an operator or admin key"
            )
            await _send(websocket, {"type": "error", "errors": [error_object(error)]})
            await websocket.close(code=1008)
            return
        manager = service.services.get(SandboxManager)
        try:
            session = await Repl(manager, sandbox_id).start()
        except SandboxError as exc:
            await _send(websocket, {"type": "error", "errors": [error_object(sandbox_error(exc))]})
            await websocket.close(code=1008)
            return
        await _send(websocket, {"type": "ready", "sandbox_id": sandbox_id, "language": session.language})
        try:
            await _serve(websocket, session)
        except WebSocketDisconnect:
            pass
        finally:
            await session.close()


async def _serve(websocket: WebSocket, session: Repl) -> None:
    buffer: list[str] = []
    while True:
        text = await websocket.receive_text()
        message = _parse(text)
        if isinstance(message, OperationError):
            await _send(websocket, {"type": "error", "errors": [error_object(message)]})
            continue
        if message.get("cancel"):
            buffer = []
            continue
        if isinstance(message.get("complete"), str):
            items = await session.complete(message["complete"][:200])
            await _send(websocket, {"type": "completions", "items": items})
            continue
        buffer.append(message["input"])
        code = "\n".join(buffer)
        if not code.strip().startswith(":") and not await session.is_complete(code):
            await _send(websocket, {"type": "incomplete"})
            continue
        buffer = []
        try:
            reply = await session.handle(code)
        except SandboxError as exc:
            await _send(
                websocket, {"type": "error", "text": str(exc), "errors": [error_object(sandbox_error(exc))]}
            )
            continue
        await _send(websocket, reply.to_json())


def _parse(text: str) -> dict[str, Any] | OperationError:
    if len(text) > MAX_MESSAGE:
        return OperationError(ErrorCode.limit_exceeded, f"messages are at most {MAX_MESSAGE // 1024} KiB")
    try:
        message = json.loads(text)
    except ValueError:
        message = None
    if not isinstance(message, dict) or not (
        isinstance(message.get("input"), str)
        or isinstance(message.get("complete"), str)
        or message.get("cancel")
    ):
        return OperationError(
            ErrorCode.validation_error, 'send {"input": CODE}, {"complete": PREFIX} or {"cancel": true}'
        )
    return message


async def _send(websocket: WebSocket, message: dict[str, Any]) -> None:
    await websocket.send_text(json.dumps(message, default=str))
