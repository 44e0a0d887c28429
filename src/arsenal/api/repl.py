"""``/api/v1/sandboxes/{sandbox_id}/repl``: a REPL session in a sandbox over a WebSocket.

Client messages (JSON objects)::

    {"input": "x = 1"}          # one line or several; kept until the input is complete
    {"complete": "Enum.ma"}     # names for completion
    {"cancel": true}            # forget an incomplete input

Server messages: ``{"type": "ready", "sandbox_id", "language"}`` first; then for each input
``{"type": "incomplete"}`` (send more lines), ``{"type": "result", "text", "value", "output",
"warnings", "binding", ...}``, ``{"type": "magic", "text"}`` or ``{"type": "error", "text",
...}``; ``{"type": "completions", "items": [...]}``. The session (and its bindings) ends with
the socket. Magic commands are those of :mod:`arsenal.ops.repl` (``:help``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from ..ops.errors import ErrorCode, OperationError, as_operation_error
from ..ops.repl import Repl
from ..sandbox.manager import SandboxError, SandboxManager
from ..security.context import current_principal
from .messages import client_message, error_message, send_json

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
            await send_json(websocket, error_message(error))
            await websocket.close(code=1008)
            return
        manager = service.services.get(SandboxManager)
        try:
            session = await Repl(manager, sandbox_id).start()
        except SandboxError as exc:
            await send_json(websocket, error_message(as_operation_error(exc)))
            await websocket.close(code=1008)
            return
        await send_json(websocket, {"type": "ready", "sandbox_id": sandbox_id, "language": session.language})
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
        try:
            message = _parse(text)
        except OperationError as error:
            await send_json(websocket, error_message(error))
            continue
        if message.get("cancel"):
            buffer = []
            continue
        if isinstance(message.get("complete"), str):
            items = await session.complete(message["complete"][:200])
            await send_json(websocket, {"type": "completions", "items": items})
            continue
        buffer.append(message["input"])
        code = "\n".join(buffer)
        if not code.strip().startswith(":") and not await session.is_complete(code):
            await send_json(websocket, {"type": "incomplete"})
            continue
        buffer = []
        try:
            reply = await session.handle(code)
        except SandboxError as exc:
            await send_json(websocket, error_message(as_operation_error(exc), text=str(exc)))
            continue
        await send_json(websocket, reply.to_json())


def _parse(text: str) -> dict[str, Any]:
    return client_message(
        text,
        max_bytes=MAX_MESSAGE,
        accepts=lambda m: (
            any(isinstance(m.get(key), str) for key in ("input", "complete")) or bool(m.get("cancel"))
        ),
        usage='send {"input": CODE}, {"complete": PREFIX} or {"cancel": true}',
    )
