"""Authentication of every request: ``Authorization: Bearer <API key>``.

A pure ASGI middleware in front of the whole API (REST and WebSockets). It checks the key
against the store (so keys made or revoked by ``arsenal keys`` count at once), applies the
key's rate limit, and sets the request's principal (role and grants), which the operation
pipeline then authorizes. Browsers cannot set headers on a WebSocket, so a WebSocket may give
its key as ``?access_token=`` instead. The OpenAPI document and its docs page are public: they
hold no data and do nothing.

A missing, malformed, unknown, wrong or revoked key is ``401 unauthorized``; too many requests
``429 limit_exceeded``. Neither the key nor anything of it is ever logged or echoed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from ..ops.base import Principal
from ..ops.errors import ErrorCode, OperationError
from ..security.context import request_principal
from ..security.keys import ApiKey, KeyStore
from ..web import is_public_path
from .correlation import current_correlation_id
from .envelope import error_object

__all__ = ["PUBLIC_PATHS", "AuthMiddleware", "RateLimiter"]

PUBLIC_PATHS = frozenset({"/api/v1/openapi.json", "/api/v1/docs"})
_WHY = {
    "missing": "no API key: send Authorization: Bearer <key> (make one: `arsenal keys create --role viewer`)",
    "malformed": "that is not an Arsenal API key (they look like ars_<id>_<secret>)",
    "unknown": "no such API key; `arsenal keys list` shows the keys",
    "wrong": "the API key does not match; check it was copied whole",
    "revoked": "this API key was revoked; ask for a new one",
}


class RateLimiter:
    """A token bucket per key: ``rate`` requests a second, bursts of ``burst``."""

    def __init__(
        self, rate: float = 200.0, burst: int = 400, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key_id: str) -> bool:
        now = self.clock()
        tokens, last = self._buckets.get(key_id, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key_id] = (tokens, now)
            return False
        self._buckets[key_id] = (tokens - 1.0, now)
        return True


def principal_of(key: ApiKey) -> Principal:
    return Principal(
        name=key.name,
        role=key.role,
        key_id=key.id,
        nodes=tuple(key.nodes) if key.nodes is not None else None,
        operations=tuple(key.operations) if key.operations is not None else None,
    )


class AuthMiddleware:
    def __init__(self, app: ASGIApp, keys: KeyStore, limiter: RateLimiter | None = None) -> None:
        self.app = app
        self.keys = keys
        self.limiter = limiter or RateLimiter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or _is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        token = _token(scope)
        key, why = self.keys.verify(token) if token else (None, "missing")
        if key is None:
            await _refuse(scope, receive, send, OperationError(ErrorCode.unauthorized, _WHY[why]))
            return
        if not self.limiter.allow(key.id):
            error = OperationError(
                ErrorCode.limit_exceeded,
                f"too many requests with key {key.id} (at most {self.limiter.rate:g}/s); slow down",
            )
            await _refuse(scope, receive, send, error)
            return
        marker = request_principal.set(principal_of(key))
        try:
            await self.app(scope, receive, send)
        finally:
            request_principal.reset(marker)


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or is_public_path(path)


def _token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            return credentials.strip() if scheme.lower() == "bearer" else None
    if scope["type"] == "websocket":
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        tokens = query.get("access_token")
        return tokens[0] if tokens else None
    return None


async def _refuse(scope: Scope, receive: Receive, send: Send, error: OperationError) -> None:
    if scope["type"] == "websocket":
        await receive()  # the connect event; closing now refuses the handshake (the client sees 403)
        await send({"type": "websocket.close", "code": 1008, "reason": error.message[:120]})
        return
    body = json.dumps(
        {"errors": [error_object(error)], "meta": {"correlation_id": current_correlation_id()}}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if error.code is ErrorCode.unauthorized:
        headers.append((b"www-authenticate", b'Bearer realm="arsenal"'))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
