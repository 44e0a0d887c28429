"""``GET /api/v1/session``: who the key is, so a page can show and hide what its role may do.

The dashboard calls it to log in (a refused key answers 401 like every route) and hides the
actions the role may not run; the server still refuses them, the page only saves the click.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI
from pydantic import BaseModel, Field

from ..security.context import current_principal
from ..security.roles import ROLES

if TYPE_CHECKING:
    from ..client import Arsenal

__all__ = ["SessionInfo", "add_session_route"]


class SessionInfo(BaseModel):
    name: str = Field(description="The key's name (`local` for an API served without keys).")
    role: str = Field(description="viewer, operator or admin.")
    key_id: str | None = Field(None, description="The key's id, if the request showed a key.")
    rights: list[str] = Field(description="Severities the role may run: read, write, destructive.")
    nodes: list[str] | None = Field(None, description="The only nodes the key may use; null: all.")
    operations: list[str] | None = Field(None, description="The only operations the key may run; null: all.")


def add_session_route(app: FastAPI, service: Arsenal, prefix: str) -> None:
    @app.get(
        f"{prefix}/session",
        operation_id="get_session",
        tags=["security"],
        summary="The calling key's name, role, rights and grants.",
    )
    async def session() -> dict[str, SessionInfo]:
        principal = current_principal() or service.principal
        info = SessionInfo(
            name=principal.name,
            role=principal.role,
            key_id=principal.key_id,
            rights=sorted(ROLES.get(principal.role, frozenset())),
            nodes=list(principal.nodes) if principal.nodes is not None else None,
            operations=list(principal.operations) if principal.operations is not None else None,
        )
        return {"data": info}
