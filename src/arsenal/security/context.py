"""The principal of the request being served (set by the API's authentication middleware).

A context variable, so everything a request runs — its operation, a WebSocket's channels, a
debug session — acts as the request's key without passing it along, and falls back to the
in-process principal outside a request.
"""

from __future__ import annotations

from contextvars import ContextVar

from ..ops.base import Principal

__all__ = ["current_principal", "request_principal"]

request_principal: ContextVar[Principal | None] = ContextVar("arsenal_principal", default=None)


def current_principal() -> Principal | None:
    return request_principal.get()
