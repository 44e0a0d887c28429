"""Read-only that holds: a node attached read-only stays so across detach, attach and restarts of
Arsenal until an admin lifts it; attaching and detaching are an admin's, on record with the node.
Over REST, with real keys, a real node and a real store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from arsenal.api import create_app
from arsenal.client import Arsenal
from arsenal.security import AuditLog, KeyStore

from .nodes import BeamNode

pytestmark = pytest.mark.timeout(120)


class Rest:
    """One Arsenal (one home: its store) served over REST, with an admin and an operator key."""

    def __init__(self, service: Arsenal, client: httpx.AsyncClient, keys: dict[str, dict[str, str]]) -> None:
        self.service = service
        self.client = client
        self.admin = keys["admin"]
        self.operator = keys["operator"]

    async def attach(self, who: dict[str, str], name: str, **fields: Any) -> httpx.Response:
        return await self.client.post("/api/v1/nodes", headers=who, json={"name": name, **fields})

    async def detach(self, who: dict[str, str], name: str) -> httpx.Response:
        return await self.client.delete(f"/api/v1/nodes/{name}", headers=who)

    async def write(self) -> httpx.Response:
        """A write on the (only) attached node, by the operator."""
        return await self.client.post("/api/v1/processes/demo_worker_1/gc", headers=self.operator, json={})

    def audit(self, operation: str) -> list[dict[str, Any]]:
        return AuditLog(self.service.services.store).query(limit=100, operation=operation)


def _headers(keys: KeyStore, role: str, **grants: Any) -> dict[str, str]:
    _, text = keys.create(role, name=f"{role}-holds", **grants)
    return {"Authorization": f"Bearer {text}"}


@asynccontextmanager
async def serving(home: Path, cookie: str) -> AsyncIterator[Rest]:
    async with Arsenal(cookie=cookie, home=home) as service:
        keys = KeyStore(service.services.store)
        made = {"admin": _headers(keys, "admin"), "operator": _headers(keys, "operator")}
        transport = httpx.ASGITransport(app=create_app(service, rate_limit=1000))
        async with httpx.AsyncClient(transport=transport, base_url="http://arsenal") as client:
            yield Rest(service, client, made)


def _code(answer: httpx.Response) -> str:
    return answer.json()["errors"][0]["code"]


async def test_read_only_holds_until_an_admin_lifts_it(
    make_node: Callable[..., BeamNode], cookie: str, tmp_path: Path
) -> None:
    target = make_node("rohold", demo=True).name
    async with serving(tmp_path, cookie) as rest:
        refused = await rest.attach(rest.operator, target, read_only=True)
        assert refused.status_code == 403 and _code(refused) == "forbidden", refused.text
        assert "attach_node is for admins" in refused.json()["errors"][0]["detail"]

        attached = await rest.attach(rest.admin, target, read_only=True)
        assert attached.status_code == 200 and attached.json()["data"]["node"]["read_only"], attached.text
        assert _code(await rest.write()) == "read_only"
        assert (await rest.detach(rest.operator, target)).status_code == 403

        # Detached and attached again without read_only: still read-only.
        assert (await rest.detach(rest.admin, target)).status_code == 200
        again = await rest.attach(rest.admin, target)
        assert again.status_code == 200 and again.json()["data"]["node"]["read_only"], again.text
        assert _code(await rest.write()) == "read_only"
        assert (await rest.detach(rest.admin, target)).status_code == 200

    # Arsenal restarted (the same home): still read-only.
    async with serving(tmp_path, cookie) as rest:
        restarted = await rest.attach(rest.admin, target)
        assert restarted.json()["data"]["node"]["read_only"], restarted.text
        assert _code(await rest.write()) == "read_only"

        # Only an explicit read_only=false lifts it, on the node as attached (no detach needed).
        lifted = await rest.attach(rest.admin, target, read_only=False)
        assert lifted.status_code == 200 and not lifted.json()["data"]["node"]["read_only"], lifted.text
        written = await rest.write()
        assert written.status_code == 200, written.text

        # Lifted stays lifted.
        assert (await rest.detach(rest.admin, target)).status_code == 200
        assert not (await rest.attach(rest.admin, target)).json()["data"]["node"]["read_only"]
        assert (await rest.write()).status_code == 200

        # Every attach and detach is on record with the node acted on and who did it.
        attaches, detaches = rest.audit("attach_node"), rest.audit("detach_node")
        assert attaches and detaches
        assert {row["node"] for row in attaches + detaches} == {target}
        lift = [row for row in attaches if row["params"].get("read_only") is False]
        assert {(row["phase"], row["role"], row["outcome"]) for row in lift} == {
            ("intent", "admin", None),
            ("result", "admin", "ok"),
        }


async def test_the_operator_refusals_are_on_record_with_the_node(
    make_node: Callable[..., BeamNode], cookie: str, tmp_path: Path
) -> None:
    target = make_node("roaudit").name
    async with serving(tmp_path, cookie) as rest:
        assert (await rest.attach(rest.operator, target)).status_code == 403
        assert (await rest.detach(rest.operator, target)).status_code == 403
        refused = [row for row in rest.audit("attach_node") + rest.audit("detach_node")]
        assert {(row["operation"], row["phase"], row["node"]) for row in refused} == {
            ("attach_node", "refused", target),
            ("detach_node", "refused", target),
        }
        # An admin limited to other nodes may not attach this one.
        elsewhere = _headers(KeyStore(rest.service.services.store), "admin", nodes=["other@nowhere"])
        limited = await rest.attach(elsewhere, target)
        assert limited.status_code == 403 and f"not {target}" in limited.json()["errors"][0]["detail"]
