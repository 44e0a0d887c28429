"""One correlation id per HTTP request: in the answer's ``meta``, its ``X-Correlation-ID`` header,
and the pipeline's audit and telemetry events, so one request can be followed through all three.

A client may send its own id (``X-Correlation-ID``, or ``X-Request-ID`` as proxies set it); one that
is not 1-64 characters of ``A-Z a-z 0-9 . _ : -`` is replaced by a fresh id rather than refused,
since a request should not fail over a tracing header. The id lives in a context variable set by
a pure ASGI middleware, which runs the app in the same task, so the envelopes can read it without
every handler passing it along.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HEADER", "CorrelationMiddleware", "current_correlation_id", "new_correlation_id"]

HEADER = "x-correlation-id"
_INCOMING = (b"x-correlation-id", b"x-request-id")
_VALID = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")
_current: ContextVar[str | None] = ContextVar("arsenal_correlation_id", default=None)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def current_correlation_id() -> str | None:
    """The id of the request being answered (None outside a request)."""
    return _current.get()


def _incoming(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name in _INCOMING and _VALID.match(value):
            return value.decode("ascii")
    return new_correlation_id()


class CorrelationMiddleware:
    """Give every HTTP request and WebSocket an id, and echo it in the response headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        correlation_id = _incoming(scope)
        token = _current.set(correlation_id)
        header = (HEADER.encode(), correlation_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _current.reset(token)
