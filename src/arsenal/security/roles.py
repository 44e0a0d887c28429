"""Roles and grants, enforced by the registry's authorization hook on every operation.

| role | may run |
|---|---|
| ``viewer`` | ``read`` operations |
| ``operator`` | ``read`` and ``write`` operations |
| ``admin`` | everything: ``destructive`` operations, code loading, ``force``, new atoms, and the
  operations marked admin-only (attaching and detaching nodes, which can lift read-only) |

A key may also be limited to some nodes and some operations (its grants). A refused write is
recorded in the audit trail like any other write (the registry does that).
"""

from __future__ import annotations

from typing import Any

from ..ops.base import Context, Operation, Params
from ..ops.errors import ErrorCode, OperationError

__all__ = ["ROLES", "authorize"]

ROLES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "operator": frozenset({"read", "write"}),
    "admin": frozenset({"read", "write", "destructive"}),
}
# Parameters that lift a protection: only an admin may set them.
_ADMIN_FLAGS = ("force", "allow_new_atoms")


def authorize(operation: type[Operation[Any, Any]], ctx: Context, params: Params | None) -> None:
    """Raise ``forbidden`` unless the caller's role and grants allow ``operation`` (and, once they
    are validated, ``params``: the flags that lift a protection)."""
    principal = ctx.principal
    allowed = ROLES.get(principal.role, frozenset())
    who = f"key {principal.key_id} ({principal.role})" if principal.key_id else principal.role
    if operation.severity.value not in allowed:
        need = "an operator or admin" if operation.severity.value == "write" else "an admin"
        raise OperationError(
            ErrorCode.forbidden,
            f"{operation.name} is a {operation.severity.value} operation: {who} may not run it; "
            f"it needs {need} key",
        )
    if operation.admin_only and principal.role != "admin":
        raise OperationError(
            ErrorCode.forbidden,
            f"{operation.name} is for admins: {who} may not run it; it needs an admin key",
        )
    for flag in _ADMIN_FLAGS:
        if params is not None and getattr(params, flag, False) and principal.role != "admin":
            raise OperationError(ErrorCode.forbidden, f"{flag}=true needs an admin key; {who} may not set it")
    if principal.operations is not None and operation.name not in principal.operations:
        raise OperationError(
            ErrorCode.forbidden,
            f"{who} is granted only {', '.join(principal.operations)}, not {operation.name}",
        )
    node = operation.target_node(ctx, params)
    if principal.nodes is not None and node is not None and node not in principal.nodes:
        raise OperationError(
            ErrorCode.forbidden,
            f"{who} is granted only the nodes {', '.join(principal.nodes)}, not {node}",
        )
