"""The closed set of error codes every operation fails with, and their HTTP statuses.

Whatever goes wrong below (a dropped connection, a bad pid, a remote crash, a
bug), the caller gets one :class:`OperationError` with a code from this set and a
message that says what to do next. :func:`as_operation_error` is the one place
that translates lower layers' exceptions.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from ..beam.errors import AgentError, ReadOnlyNode, UnknownNode
from ..dist import (
    ConnectFailed,
    CookieRejected,
    DistError,
    DistTimeout,
    EpmdUnreachable,
    NodeDown,
    NodeNotFound,
    NotAllowed,
    RpcError,
)
from ..dist._format import brief
from ..sandbox.errors import SandboxError

__all__ = ["ErrorCode", "OperationError", "as_operation_error"]

log = logging.getLogger("arsenal.ops")


class ErrorCode(StrEnum):
    """Every way an operation can fail. The value is the code; :attr:`status` the HTTP status."""

    validation_error = "validation_error"
    unauthorized = "unauthorized"
    not_found = "not_found"
    node_down = "node_down"
    timeout = "timeout"
    forbidden = "forbidden"
    read_only = "read_only"
    protected_process = "protected_process"
    conflict = "conflict"
    limit_exceeded = "limit_exceeded"
    remote_error = "remote_error"
    agent_error = "agent_error"
    internal_error = "internal_error"

    @property
    def status(self) -> int:
        return _STATUS[self]


_STATUS = {
    ErrorCode.unauthorized: 401,
    ErrorCode.validation_error: 422,
    ErrorCode.not_found: 404,
    ErrorCode.node_down: 503,
    ErrorCode.timeout: 504,
    ErrorCode.forbidden: 403,
    ErrorCode.read_only: 403,
    ErrorCode.protected_process: 403,
    ErrorCode.conflict: 409,
    ErrorCode.limit_exceeded: 429,
    ErrorCode.remote_error: 502,
    ErrorCode.agent_error: 502,
    ErrorCode.internal_error: 500,
}


class OperationError(Exception):
    """An operation failed; ``code`` says how, the message says what to do."""

    def __init__(self, code: ErrorCode, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}

    @property
    def status(self) -> int:
        return self.code.status

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code.value,
            "status": self.status,
            "message": self.message,
            "details": self.details,
        }


def as_operation_error(exc: BaseException, operation: str = "") -> OperationError:
    """Translate any exception from a lower layer into an :class:`OperationError`."""
    if isinstance(exc, OperationError):
        return exc
    if isinstance(exc, ValidationError):
        return _validation(exc, operation)
    if isinstance(exc, SandboxError):
        return _sandbox_error(exc)
    if isinstance(exc, RpcError):  # before DistError, which it is too
        return _remote_error(exc, operation)
    for kinds, code in _DIST_CODES:
        if isinstance(exc, kinds):
            return OperationError(code, str(exc))
    if isinstance(exc, TimeoutError):
        return OperationError(ErrorCode.timeout, f"{operation or 'the operation'} did not finish in time")
    log.error("operation %s failed unexpectedly", operation, exc_info=exc)
    return OperationError(
        ErrorCode.internal_error,
        f"{operation or 'the operation'} failed inside Arsenal ({type(exc).__name__}); this is a bug, "
        "the log has the details",
    )


def _remote_error(exc: RpcError, operation: str) -> OperationError:
    """A call that raised on the node: its reason and stacktrace as Erlang writes them."""
    from ..terms.render import render
    from .plain import frame_lines

    try:
        reason = render(exc.reason, max_items=20, max_depth=8, max_binary=200)
    except (TypeError, ValueError):  # not a term the renderer knows: its Python form, cut
        reason = brief(exc.reason, 500)
    details: dict[str, Any] = {"kind": exc.kind, "reason": reason}
    if isinstance(exc.stacktrace, list) and exc.stacktrace:
        details["stacktrace"] = frame_lines(exc.stacktrace[:20], "erlang")
    where = f" in {exc.mfa}" if exc.mfa else ""
    return OperationError(
        ErrorCode.remote_error,
        f"remote {exc.kind}{where}: {reason}; the node raised while running {operation or 'the operation'}",
        details,
    )


_DIST_CODES: list[tuple[type[BaseException] | tuple[type[BaseException], ...], ErrorCode]] = [
    (UnknownNode, ErrorCode.not_found),
    (ReadOnlyNode, ErrorCode.read_only),
    (AgentError, ErrorCode.agent_error),
    ((CookieRejected, NotAllowed), ErrorCode.forbidden),
    (DistTimeout, ErrorCode.timeout),
    ((NodeDown, NodeNotFound, EpmdUnreachable, ConnectFailed), ErrorCode.node_down),
    (DistError, ErrorCode.node_down),
]


_SANDBOX_CODES = {
    "not_found": ErrorCode.not_found,
    "conflict": ErrorCode.conflict,
    "compatibility": ErrorCode.conflict,
    "validation": ErrorCode.validation_error,
    "syntax": ErrorCode.validation_error,
    "compile": ErrorCode.validation_error,
    "policy": ErrorCode.forbidden,
    "node_down": ErrorCode.node_down,
    "timeout": ErrorCode.timeout,
    "limit": ErrorCode.limit_exceeded,
}


def _sandbox_error(exc: SandboxError) -> OperationError:
    """A sandbox's failure, with the agent's findings or compile errors (file and line) in details."""
    from .plain import plain

    code = _SANDBOX_CODES.get(exc.kind, ErrorCode.remote_error)
    details: dict[str, Any] = {"stage": exc.kind}
    raw = exc.details.get("raw")
    if isinstance(raw, dict):
        details.update({k: v for k, v in plain(raw, "erlang").items() if k not in ("stage", "message")})
    if exc.kind == "policy" and details.get("findings"):
        said = "; ".join(
            f"{f.get('call')} ({f.get('file', '')}:{f.get('line')}: {f.get('reason')})"
            for f in details["findings"][:3]
        )
        return OperationError(code, f"{exc}: {said}", details)
    if exc.kind in ("compile", "syntax") and details.get("errors"):
        said = "; ".join(
            f"{e.get('file', '')}:{e.get('line')}: {e.get('message')}" for e in details["errors"][:3]
        )
        return OperationError(code, f"{exc}: {said}", details)
    hint = {
        "policy": "; the findings say which calls and why (see the sandbox's security policy)",
        "compile": "; the errors give file and line",
        "syntax": "; the errors give file and line",
    }.get(exc.kind, "")
    return OperationError(code, f"{exc}{hint}", details)


def _validation(exc: ValidationError, operation: str) -> OperationError:
    problems = [
        {"field": ".".join(str(p) for p in err["loc"]) or "(params)", "problem": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]
    said = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:5])
    return OperationError(
        ErrorCode.validation_error,
        f"invalid parameters for {operation or 'the operation'}: {said}",
        {"errors": problems},
    )
