"""The protected-process rule (ARCHITECTURE.md, safety rule 4), shared by every operation that
kills, suspends, restarts or replaces the state of a process.

The node decides what is protected (the agent's ``protected/1``: the kernel
application's processes, ``init``, ``code_server``, the agent's own calls); an
admin may force the operation, and the audit log records that they did.
"""

from __future__ import annotations

from ..dist import Atom
from .base import Context
from .errors import ErrorCode, OperationError
from .targets import check_target, process_ref

__all__ = ["ensure_not_protected"]


async def ensure_not_protected(ctx: Context, pid: str, *, force: bool, action: str) -> None:
    """Refuse ``action`` on ``pid`` if it is one of the VM's own processes, unless an admin forces it."""
    node = ctx.require_node()
    result = await node.agent_call("protected", [process_ref(pid)])
    check_target(result, pid, node)
    _, protected, owner = result  # type: ignore[misc]
    if not protected:
        return
    if force and ctx.principal.role == "admin":
        return
    whose = f" ({owner})" if owner != Atom("undefined") else ""
    how = "an admin can force it with force=true" if not force else "only an admin may force it"
    raise OperationError(
        ErrorCode.protected_process,
        f"{pid}{whose} is one of the VM's own processes; {action} it is refused: {how}",
        {"pid": pid, "owner": str(owner)},
    )
