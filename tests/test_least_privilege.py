"""Least privilege in the catalogue: running a caller's MFA on an attached node is code execution (an
admin's), and a checkpoint is a write to Arsenal's store (an operator's, audited)."""

from __future__ import annotations

from arsenal.client import Arsenal
from arsenal.ops.base import Principal
from arsenal.ops.errors import ErrorCode
from arsenal.security import AuditLog

from .helpers import eval_erlang, fails
from .nodes import BeamNode


async def test_an_operator_cannot_run_an_mfa_on_an_attached_node(erl: BeamNode, cookie: str) -> None:
    marker = "arsenal_least_privilege_marker"
    spawn = {"module": "erlang", "function": "register", "args": [{"atom": marker}, {"atom": "init"}]}
    async with Arsenal(cookie=cookie, principal=Principal(name="op", role="operator")) as operator:
        await operator.attach(erl.name, reconnect=False)
        for params in (
            {"module": "os", "function": "cmd", "args": ["id"]},
            {"module": "erlang", "function": "halt", "args": []},
            spawn,
        ):
            error = await fails(ErrorCode.forbidden, operator.run("start_process", params))
            assert "for admins" in error.message and "admin key" in error.message
        refused = AuditLog(operator.services.store).query(limit=20, operation="start_process")
        assert refused and all(row["outcome"] == "refused" for row in refused), refused
        assert await eval_erlang(operator, erl.name, f"whereis('{marker}')") != "init"
    async with Arsenal(cookie=cookie, principal=Principal(name="adm", role="admin")) as admin:
        await admin.attach(erl.name, reconnect=False)
        started = await admin.run("start_process", {"module": "timer", "function": "sleep", "args": [100]})
        assert started.pid.startswith("<")


async def test_checkpoints_are_an_operators_write_and_audited(erl: BeamNode, cookie: str) -> None:
    async with Arsenal(cookie=cookie, principal=Principal(name="v", role="viewer")) as viewer:
        await viewer.attach(erl.name, reconnect=False)
        error = await fails(
            ErrorCode.forbidden, viewer.run("create_checkpoint", {"pid": "demo_worker_1", "name": "lp"})
        )
        assert "write operation" in error.message
        listed = (await viewer.run("list_checkpoints", {"pid": "demo_worker_1"})).checkpoints
        assert "lp" not in {c.name for c in listed}
    async with Arsenal(cookie=cookie, principal=Principal(name="op", role="operator")) as operator:
        await operator.attach(erl.name, reconnect=False)
        made = await operator.run("create_checkpoint", {"pid": "demo_worker_1", "name": "lp"})
        assert made.name == "lp"
        rows = AuditLog(operator.services.store).query(limit=20, operation="create_checkpoint")
        assert any(row["outcome"] == "ok" and row["principal"] == "op" for row in rows), rows
    async with Arsenal(cookie=cookie, principal=Principal(name="adm", role="admin")) as admin:
        await admin.attach(erl.name, reconnect=False)
        await admin.run("delete_checkpoint", {"pid": "demo_worker_1", "name": "lp"})
