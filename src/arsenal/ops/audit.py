"""The audit trail, read back: who ran which write or destructive operation, on which node,
with what parameters (secrets redacted), and how it ended. Admins only."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..security.audit import AuditLog
from .base import Context, Operation, Params, Result
from .errors import ErrorCode, OperationError
from .registry import register

__all__ = ["ListAudit", "require_admin"]


def require_admin(ctx: Context, what: str) -> None:
    if ctx.principal.role != "admin":
        raise OperationError(ErrorCode.forbidden, f"{what} needs an admin key")


class AuditParams(Params):
    limit: int = Field(100, ge=1, le=1000)
    before: float | None = Field(None, description="Only entries before this time (paging back).")
    operation: str | None = Field(None, max_length=100)
    principal: str | None = Field(None, max_length=200, description="A key's name (or `local`).")
    outcome: Literal["ok", "error", "refused", "intent"] | None = Field(
        None, description="ok / error (results), refused, or intent (written before an operation ran)."
    )
    correlation_id: str | None = Field(None, max_length=64)


class AuditPage(Result):
    entries: list[dict[str, Any]] = Field(
        description="Newest first: time, phase (intent, result, refused), principal, key_id, role, "
        "operation, severity, node, params (secrets redacted), outcome, error_code, duration_ms, "
        "correlation_id."
    )


@register
class ListAudit(Operation[AuditParams, AuditPage]):
    name = "list_audit"
    category = "security"
    summary = "The audit trail: every write and destructive operation, before and after, and refused ones."
    cost = "A read of Arsenal's own database (indexed by time)."
    params = AuditParams
    result = AuditPage
    path = "/api/v1/audit"
    cli_name = "audit"
    needs_node = False
    example = {"limit": 20, "outcome": "refused"}

    async def execute(self, ctx: Context, params: AuditParams) -> AuditPage:
        require_admin(ctx, "reading the audit trail")
        log = AuditLog(ctx.services.store)
        outcome = params.outcome
        entries = log.query(
            limit=params.limit,
            before=params.before,
            operation=params.operation,
            principal=params.principal,
            outcome=None if outcome == "intent" else outcome,
            correlation_id=params.correlation_id,
        )
        if outcome == "intent":
            entries = [e for e in entries if e["phase"] == "intent"]
        return AuditPage(entries=entries)
