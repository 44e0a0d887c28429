"""The JSON envelopes every REST answer is wrapped in (JSON:API style).

Success: ``{"data": ..., "meta": {...}, "links": {...}}``.
Failure: ``{"errors": [{"code", "status", "title", "detail", "meta"}], "meta": {...}}`` with the
HTTP status of the error's code. ``status`` is a string, as JSON:API has it; ``detail`` is the
message that says what to do; ``meta`` holds the error's details (for example which field was
invalid). No Python traceback is ever part of an answer.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ..ops.errors import ErrorCode, OperationError
from .correlation import current_correlation_id

__all__ = ["ErrorEnvelope", "ErrorObject", "error_response", "success_response"]

TITLES = {
    ErrorCode.validation_error: "Invalid request",
    ErrorCode.unauthorized: "Unauthorized",
    ErrorCode.not_found: "Not found",
    ErrorCode.node_down: "Node down",
    ErrorCode.timeout: "Timed out",
    ErrorCode.forbidden: "Forbidden",
    ErrorCode.read_only: "Node is read-only",
    ErrorCode.protected_process: "Protected process",
    ErrorCode.conflict: "Conflict",
    ErrorCode.limit_exceeded: "Limit exceeded",
    ErrorCode.remote_error: "The node raised",
    ErrorCode.agent_error: "Agent error",
    ErrorCode.internal_error: "Internal error",
}


class ErrorObject(BaseModel):
    """One error, JSON:API style."""

    code: str = Field(description="One of the closed set: " + ", ".join(c.value for c in ErrorCode) + ".")
    status: str = Field(description="The HTTP status, as a string.")
    title: str = Field(description="A short, fixed summary of the code.")
    detail: str = Field(description="What went wrong and what to do about it.")
    meta: dict[str, Any] = Field(default_factory=dict, description="Details, e.g. the invalid fields.")


class ErrorEnvelope(BaseModel):
    """Every failed answer."""

    errors: list[ErrorObject]
    meta: dict[str, Any] = Field(default_factory=dict)


def error_object(error: OperationError, status: int | None = None) -> dict[str, Any]:
    return {
        "code": error.code.value,
        "status": str(status or error.status),
        "title": TITLES.get(error.code, error.code.value),
        "detail": error.message,
        "meta": _jsonable(error.details),
    }


def error_response(
    error: OperationError, meta: dict[str, Any] | None = None, *, status: int | None = None
) -> JSONResponse:
    """The error envelope, with the code's HTTP status (or ``status`` where the API says otherwise)."""
    return JSONResponse(
        {"errors": [error_object(error, status)], "meta": _with_correlation(meta or {})},
        status_code=status or error.status,
    )


def success_response(
    data: Any, meta: dict[str, Any], links: dict[str, Any] | None = None, status: int = 200
) -> JSONResponse:
    return JSONResponse(
        {"data": data, "meta": _with_correlation(meta), "links": links or {}}, status_code=status
    )


def _with_correlation(meta: dict[str, Any]) -> dict[str, Any]:
    """Every answer's meta names its request's correlation id (an operation's own id wins)."""
    correlation_id = current_correlation_id()
    if correlation_id is not None:
        meta.setdefault("correlation_id", correlation_id)
    return meta


def _jsonable(value: Any) -> Any:
    """Details are plain data already; anything else is shown as text rather than failing."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
