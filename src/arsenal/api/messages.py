"""What a WebSocket client sends, and what is sent back: JSON objects, bounded, checked once.

Every socket of the API (``/api/v1/ws``, a sandbox's REPL, a process's debugger) reads one JSON
object per message; a message too large, not JSON, or not one the socket understands is an
error answer on the socket (which stays open), with a line saying what to send.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import WebSocket

from ..ops.errors import ErrorCode, OperationError
from .envelope import error_object

__all__ = ["client_message", "error_message", "send_json"]


def client_message(
    text: str, *, max_bytes: int, accepts: Callable[[dict[str, Any]], bool], usage: str
) -> dict[str, Any]:
    """The JSON object ``text`` holds; :class:`OperationError` when it is larger than ``max_bytes``
    (``limit_exceeded``), or not an object that ``accepts`` (``validation_error``, saying ``usage``)."""
    if len(text) > max_bytes:
        size = f"{max_bytes // 1024} KiB" if max_bytes >= 1024 else f"{max_bytes} bytes"
        raise OperationError(ErrorCode.limit_exceeded, f"messages are at most {size}")
    try:
        message = json.loads(text)
    except ValueError:
        message = None
    if not isinstance(message, dict) or not accepts(message):
        raise OperationError(ErrorCode.validation_error, usage)
    return message


def error_message(error: OperationError, **extra: Any) -> dict[str, Any]:
    """An error answer, as every socket sends it: ``{"type": "error", "errors": [...]}``."""
    return {"type": "error", "errors": [error_object(error)], **extra}


async def send_json(websocket: WebSocket, message: dict[str, Any]) -> None:
    await websocket.send_text(json.dumps(message, default=str))
