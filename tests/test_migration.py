"""Process migration and load balancing on a local cluster of three real nodes.

Every failure case checks both nodes afterwards: exactly one process holds the name, on the
source, with its state intact and answering (so it was resumed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from arsenal.client import Arsenal
from arsenal.cluster import LocalCluster
from arsenal.dist import Atom, Pid
from arsenal.ops.errors import ErrorCode, OperationError

from .helpers import fails

pytestmark = pytest.mark.timeout(180)

MOD = "arsenal_test_migrate"
BIG = 64 * 1024 * 1024
UNDEFINED = Atom("undefined")

ONLY_HERE = b"""
-module(arsenal_test_only_here).
-behaviour(gen_server).
-export([init/1, handle_call/3, handle_cast/2]).
init(S) -> {ok, S}.
handle_call(get, _From, S) -> {reply, S, S}.
handle_cast(_, S) -> {noreply, S}.
"""
OTHER_VERSION = ONLY_HERE.replace(b"{reply, S, S}", b"{reply, {other, S}, S}")


@pytest.fixture
async def service(cluster: LocalCluster, cookie: str) -> AsyncIterator[Arsenal]:
    async with Arsenal(cookie=cookie) as arsenal:
        await arsenal.attach(cluster.names[0], discover=True)
        yield arsenal


async def start(cluster: LocalCluster, node: str, name: str, ballast: int = 0) -> Pid:
    ok, pid = await cluster.rpc(node, MOD, "start", [Atom(name), ballast])
    assert ok == Atom("ok")
    return pid


async def whereis(cluster: LocalCluster, node: str, name: str) -> Any:
    return await cluster.rpc(node, "erlang", "whereis", [Atom(name)])


async def state(cluster: LocalCluster, node: str, ref: Any) -> Any:
    return await cluster.rpc(node, MOD, "state_of", [ref])


async def alive(cluster: LocalCluster, pid: Pid) -> bool:
    return await cluster.rpc(str(pid.node), "erlang", "is_process_alive", [pid])


async def only_on_source(cluster: LocalCluster, source: str, target: str, name: str, old: Pid) -> None:
    """After a failed migration: the name is held by the old process on the source, which answers
    (it was resumed), and by nothing new on the target."""
    assert await whereis(cluster, source, name) == old
    assert await whereis(cluster, target, name) != old
    suspended = await cluster.rpc(source, "erlang", "process_info", [old, Atom("current_function")])
    assert suspended[1][0] != Atom("sys"), suspended


async def holders_are(cluster: LocalCluster, name: str, check: Any, timeout: float = 15.0) -> None:
    """Wait until global:whereis_name(name) satisfies ``check`` on every node."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        seen = [await cluster.rpc(node, "global", "whereis_name", [Atom(name)]) for node in cluster.names]
        if all(check(pid) for pid in seen):
            return
        assert loop.time() < deadline, f"global:whereis_name({name}) is {seen}"
        await asyncio.sleep(0.05)


def seq(value: Any) -> list[int]:
    return list(value[Atom("seq")])


# ---------------------------------------------------------------------- success


@pytest.mark.parametrize("strategy", ["stop_then_start", "start_then_switch"])
async def test_migrate_a_named_server_keeps_state_messages_and_callers(
    cluster: LocalCluster, service: Arsenal, strategy: str
) -> None:
    a, b, _ = cluster.names
    name = f"mig_{strategy}"
    # A large state takes a while to cross: the casts and the call below queue while it is suspended.
    old = await start(cluster, a, name, 24 * 1024 * 1024)
    await cluster.rpc(a, MOD, "casts", [Atom(name), 1, 10])
    watcher = await cluster.rpc(a, MOD, "during_suspension", [old, old, 11, 60])

    result = await service.run(
        "migrate_process",
        {"process": name, "target_node": b, "strategy": strategy, "max_state_bytes": BIG},
        node=a,
    )
    seen = await cluster.rpc(a, MOD, "report", [watcher])
    assert seen[Atom("suspended")] is True and seen[Atom("queued")] >= 51, seen
    # The call queued in the old mailbox was forwarded with its From: the new process answered it.
    assert seen[Atom("call")] == (Atom("added"), Atom(b), 60)

    assert result.strategy.value == strategy and result.source_node == a and result.target_node == b
    assert result.old_pid == f"<0.{old.id}.{old.serial}>" and result.local_name == name
    assert result.forwarded >= 51 and result.left_behind == 0 and result.calls_synced
    assert result.stopped == "stopped" and result.warnings == []
    assert result.state_bytes > 24 * 1024 * 1024
    steps = [s.step for s in result.steps]
    assert set(steps) == {"check", "suspend", "get_state", "start", "handover", "switch", "forward", "stop"}
    if strategy == "start_then_switch":  # the new process exists before the old one is paused
        assert steps.index("start") < steps.index("suspend")
    assert all(s.ok for s in result.steps)

    new = await whereis(cluster, b, name)
    assert isinstance(new, Pid) and str(new.node) == b and result.new_pid == f"<0.{new.id}.{new.serial}>"
    assert await whereis(cluster, a, name) == UNDEFINED
    assert not await alive(cluster, old)
    moved = await state(cluster, b, Atom(name))
    assert seq(moved) == list(range(1, 61)) and moved[Atom("count")] == 60
    assert moved[Atom("ballast")] == 24 * 1024 * 1024
    # It is a real gen_server there, with the same initial call, and can move again.
    again = await service.run(
        "migrate_process", {"process": name, "target_node": a, "max_state_bytes": BIG}, node=b
    )
    assert again.forwarded == 0 and isinstance(await whereis(cluster, a, name), Pid)
    assert seq(await state(cluster, a, Atom(name))) == list(range(1, 61))


async def test_migrate_a_global_name_and_find_its_node(cluster: LocalCluster, service: Arsenal) -> None:
    a, b, c = cluster.names
    ok, old = await cluster.rpc(a, MOD, "start_global", [Atom("mig_global"), 24 * 1024 * 1024])
    assert ok == Atom("ok")
    dest = (Atom("global"), Atom("mig_global"))
    # A fresh cluster's global may still be syncing: wait until every node sees the name.
    await holders_are(cluster, "mig_global", lambda pid: pid == old)
    await cluster.rpc(a, MOD, "casts", [dest, 1, 10])
    watcher = await cluster.rpc(a, MOD, "during_suspension", [old, dest, 11, 40])
    # node= is another node: the global name is located, its node is the source.
    result = await service.run(
        "migrate_process",
        {"process": "mig_global", "global_name": True, "target_node": b, "max_state_bytes": BIG},
        node=c,
    )
    assert result.source_node == a and result.global_names == ["mig_global"] and result.local_name is None
    seen = await cluster.rpc(a, MOD, "report", [watcher])
    assert seen[Atom("call")] == (Atom("added"), Atom(b), 40)
    await cluster.rpc(b, MOD, "casts", [dest, 41, 50])
    await holders_are(cluster, "mig_global", lambda pid: isinstance(pid, Pid) and str(pid.node) == b)
    assert not await alive(cluster, old)
    assert seq(await state(cluster, b, dest)) == list(range(1, 51))


# ---------------------------------------------------------------------- failures


async def test_a_target_without_the_module_or_with_another_version(
    cluster: LocalCluster, service: Arsenal
) -> None:
    a, b, _ = cluster.names
    await cluster.rpc(a, MOD, "load_source", [ONLY_HERE])
    ok, old = await cluster.rpc(
        a, "gen_server", "start",
        [(Atom("local"), Atom("only_here")), Atom("arsenal_test_only_here"), {Atom("v"): 1}, []],
    )  # fmt: skip
    assert ok == Atom("ok")
    params = {"process": "only_here", "target_node": b}
    error = await fails(ErrorCode.conflict, service.run("migrate_process", params, node=a))
    assert error.details["reason"] == "module_missing" and "does not have module" in error.message
    assert error.details["step"] == "check" and error.details["rollback"] == []
    await only_on_source(cluster, a, b, "only_here", old)
    assert await cluster.rpc(a, "gen_server", "call", [Atom("only_here"), Atom("get")]) == {Atom("v"): 1}

    await cluster.rpc(b, MOD, "load_source", [OTHER_VERSION])
    error = await fails(ErrorCode.conflict, service.run("migrate_process", params, node=a))
    assert error.details["reason"] == "module_differs" and "md5" in error.message
    await only_on_source(cluster, a, b, "only_here", old)


@pytest.mark.parametrize("strategy", ["stop_then_start", "start_then_switch"])
async def test_a_name_taken_on_the_target_rolls_back(
    cluster: LocalCluster, service: Arsenal, strategy: str
) -> None:
    a, b, _ = cluster.names
    old = await start(cluster, a, "taken")
    await cluster.rpc(a, MOD, "casts", [Atom("taken"), 1, 5])
    other = await start(cluster, b, "taken")
    error = await fails(
        ErrorCode.conflict,
        service.run("migrate_process", {"process": "taken", "target_node": b, "strategy": strategy}, node=a),
    )
    assert error.details["reason"] == "name_taken" and error.details["step"] == "handover"
    assert error.details["rolled_back"] is True and "rolled back" in error.message
    assert {s["step"] for s in error.details["rollback"]} == {"kill_new", "resume"}
    assert await whereis(cluster, b, "taken") == other  # the target's own process is untouched
    await only_on_source(cluster, a, b, "taken", old)
    assert seq(await state(cluster, a, old)) == [1, 2, 3, 4, 5]
    assert seq(await state(cluster, b, other)) == []


async def test_a_state_over_the_limit_rolls_back(cluster: LocalCluster, service: Arsenal) -> None:
    a, b, _ = cluster.names
    old = await start(cluster, a, "too_big", 2 * 1024 * 1024)
    error = await fails(
        ErrorCode.limit_exceeded,
        service.run(
            "migrate_process",
            {
                "process": "too_big",
                "target_node": b,
                "max_state_bytes": 1024 * 1024,
                "strategy": "start_then_switch",
            },
            node=a,
        ),
    )
    assert error.details["reason"] == "state_too_large" and error.details["step"] == "get_state"
    assert [s["step"] for s in error.details["rollback"]] == ["kill_new", "resume"]
    await only_on_source(cluster, a, b, "too_big", old)
    assert (await state(cluster, a, old))[Atom("ballast")] == 2 * 1024 * 1024


async def test_not_a_gen_server_unknown_and_dead_nodes(cluster: LocalCluster, service: Arsenal) -> None:
    a, b, c = cluster.names
    plain = await cluster.rpc(
        a, "arsenal_test_support", "register_and_sleep_async", [Atom("plain_proc"), 60_000]
    )
    error = await fails(
        ErrorCode.validation_error,
        service.run("migrate_process", {"process": "plain_proc", "target_node": b}, node=a),
    )
    assert error.details["reason"] == "not_gen_server"
    assert (
        await whereis(cluster, a, "plain_proc") == plain
        and await whereis(cluster, b, "plain_proc") == UNDEFINED
    )

    old = await start(cluster, a, "stays")
    await fails(
        ErrorCode.not_found,
        service.run("migrate_process", {"process": "stays", "target_node": "nobody@localhost"}, node=a),
    )
    await fails(
        ErrorCode.not_found, service.run("migrate_process", {"process": "nobody", "target_node": b}, node=a)
    )
    await fails(
        ErrorCode.validation_error,
        service.run("migrate_process", {"process": "stays", "target_node": a}, node=a),
    )
    cluster.kill(c)  # still attached to Arsenal, gone from the cluster
    error = await fails(
        ErrorCode.node_down, service.run("migrate_process", {"process": "stays", "target_node": c}, node=a)
    )
    assert error.details["reason"] in ("not_connected", "unreachable")
    assert await whereis(cluster, a, "stays") == old
    assert seq(await state(cluster, a, old)) == []


async def test_the_target_killed_mid_way_rolls_back(cluster: LocalCluster, service: Arsenal) -> None:
    a, _, c = cluster.names
    # 48 MiB of state take a while to cross: the target is killed while the old one is suspended.
    old = await start(cluster, a, "orphan", 48 * 1024 * 1024)
    await cluster.rpc(a, MOD, "casts", [Atom("orphan"), 1, 3])
    moving = asyncio.create_task(
        service.run(
            "migrate_process", {"process": "orphan", "target_node": c, "max_state_bytes": BIG}, node=a
        )
    )
    while True:
        where = await cluster.rpc(a, "erlang", "process_info", [old, Atom("current_function")])
        if where[1][:2] == (Atom("sys"), Atom("suspend_loop")):
            break
        assert not moving.done(), moving
    cluster.kill(c)
    with pytest.raises(OperationError) as failed:
        await moving
    assert failed.value.details["rolled_back"] is True, failed.value.message
    assert failed.value.code in (ErrorCode.remote_error, ErrorCode.node_down, ErrorCode.timeout)
    assert await whereis(cluster, a, "orphan") == old
    resumed = await state(cluster, a, old)
    assert seq(resumed) == [1, 2, 3] and resumed[Atom("ballast")] == 48 * 1024 * 1024


async def test_protected_and_read_only_are_refused(cluster: LocalCluster, cookie: str) -> None:
    a, b, c = cluster.names
    await start(cluster, a, "ro_server")
    async with Arsenal(cookie=cookie) as service:
        await service.attach(a)
        await service.attach(b, read_only=True)
        await service.attach(c)
        await fails(
            ErrorCode.read_only,
            service.run("migrate_process", {"process": "ro_server", "target_node": b}, node=a),
        )
        await fails(
            ErrorCode.protected_process,
            service.run("migrate_process", {"process": "code_server", "target_node": c}, node=a),
        )
    assert isinstance(await whereis(cluster, a, "ro_server"), Pid)


# ---------------------------------------------------------------------- sets and balancing


async def test_migrate_processes_each_with_its_own_rollback(cluster: LocalCluster, service: Arsenal) -> None:
    a, b, c = cluster.names
    p1 = await start(cluster, a, "set_1")
    p2 = await start(cluster, a, "set_2")
    p3 = await start(cluster, a, "set_3")
    await start(cluster, b, "set_3")  # the name is taken on b: that one fails and rolls back
    result = await service.run(
        "migrate_processes",
        {
            "migrations": [
                {"process": "set_1", "target_node": b},
                {"process": "set_3", "target_node": b},
                {"process": "set_2", "node": a, "target_node": c},
            ],
            "concurrency": 2,
        },
        node=a,
    )
    assert [o.status for o in result.outcomes] == ["migrated", "failed", "migrated"]
    assert (result.migrated, result.failed, result.skipped) == (2, 1, 0)
    assert result.outcomes[1].error["code"] == "conflict"
    assert result.outcomes[1].error["details"]["reason"] == "name_taken"
    assert str((await whereis(cluster, b, "set_1")).node) == b and not await alive(cluster, p1)
    assert str((await whereis(cluster, c, "set_2")).node) == c and not await alive(cluster, p2)
    assert await whereis(cluster, a, "set_3") == p3


async def registered_with(cluster: LocalCluster, node: str, prefix: str) -> int:
    names = await cluster.rpc(node, "erlang", "registered", [])
    return sum(1 for name in names if str(name).startswith(prefix))


async def test_balance_proposes_then_applies_moves(cluster: LocalCluster, service: Arsenal) -> None:
    a, b, c = cluster.names
    await cluster.rpc(a, MOD, "start_many", [Atom("bal"), 12, 0])
    params = {"modules": [MOD], "max_moves": 20}
    plan = await service.run("balance_cluster_load", params)
    assert plan.dry_run and plan.movable[a] == 12 and plan.movable[b] == plan.movable[c] == 0
    assert plan.moves and {m.source_node for m in plan.moves} == {a}
    assert {m.target_node for m in plan.moves} == {b, c} and all(m.module == MOD for m in plan.moves)
    spread = max(plan.loads.values()) - min(plan.loads.values())
    assert max(plan.projected.values()) - min(plan.projected.values()) < spread
    assert await registered_with(cluster, a, "bal_") == 12  # a dry run moves nothing

    await fails(ErrorCode.validation_error, service.run("balance_cluster_load", {"dry_run": False}))
    done = await service.run("balance_cluster_load", {**params, "dry_run": False})
    assert done.migrations is not None and done.migrations.failed == 0
    assert done.migrations.migrated == len(done.moves) > 0 and done.after is not None
    counts = {node: await registered_with(cluster, node, "bal_") for node in (a, b, c)}
    assert sum(counts.values()) == 12 and counts[a] < 12 and counts[b] >= 1 and counts[c] >= 1
    assert counts[a] == 12 - len(done.moves)
    assert max(done.after.values()) - min(done.after.values()) < max(done.loads.values()) - min(
        done.loads.values()
    )


# ---------------------------------------------------------------------- REST and the command line


async def test_rest_routes(cluster: LocalCluster, service: Arsenal) -> None:
    import httpx

    from arsenal.api import create_app

    a, b, c = cluster.names
    old = await start(cluster, a, "rest_server")
    await start(cluster, a, "rest_other")
    app = create_app(service, auth=False)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://arsenal.test") as client:
        moved = await client.post(
            "/api/v1/cluster/migrations",
            params={"node": a},
            json={"process": "rest_server", "target_node": b},
        )
        assert moved.status_code == 200, moved.text
        assert moved.json()["data"]["target_node"] == b and moved.json()["data"]["old_pid"].startswith("<0.")
        again = await client.post(
            "/api/v1/cluster/migrations",
            params={"node": a},
            json={"process": "rest_server", "target_node": b},
        )
        assert again.status_code == 404 and again.json()["errors"][0]["code"] == "not_found"
        batch = await client.post(
            "/api/v1/cluster/migrations/batch",
            params={"node": a},
            json={"migrations": [{"process": "rest_other", "target_node": c}]},
        )
        assert batch.status_code == 200 and batch.json()["data"]["migrated"] == 1, batch.text
        plan = await client.post("/api/v1/cluster/balance", json={"modules": [MOD]})
        assert plan.status_code == 200 and plan.json()["data"]["dry_run"] is True, plan.text
    assert not await alive(cluster, old)
    assert str((await whereis(cluster, b, "rest_server")).node) == b
    assert str((await whereis(cluster, c, "rest_other")).node) == c


async def test_cluster_migrate_and_balance_commands(cluster: LocalCluster, cookie: str) -> None:
    import json
    import subprocess
    import sys

    a, b, _ = cluster.names
    await start(cluster, a, "cli_server")
    await cluster.rpc(a, MOD, "start_many", [Atom("cli_bal"), 6, 0])

    async def arsenal(*args: str) -> subprocess.CompletedProcess[str]:
        command = [
            sys.executable,
            "-m",
            "arsenal.cli.main",
            "cluster",
            *args,
            "--node",
            a,
            "--cookie",
            cookie,
        ]
        return await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=120)

    moved = await arsenal("migrate", "cli_server", "--to", b, "--json")
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["target_node"] == b
    assert str((await whereis(cluster, b, "cli_server")).node) == b
    shown = await arsenal("migrate", "cli_server", "--to", b)
    assert shown.returncode != 0 and "no process is registered as cli_server" in shown.stderr
    plan = await arsenal("balance", "--module", MOD, "--prefix", "cli_bal")
    assert plan.returncode == 0, plan.stderr
    assert "move(s) proposed" in plan.stdout and "cli_bal_" in plan.stdout
    assert await registered_with(cluster, a, "cli_bal_") == 6


def test_plan_moves_evens_out_and_respects_modules_and_bounds() -> None:
    from arsenal.ops.migration import plan_moves

    def rows(node: str, *weights: int, md5: bytes = b"m1") -> list[dict[str, Any]]:
        return [{"pid": f"{node}{i}", "weight": w, "md5": md5} for i, w in enumerate(weights)]

    # By memory: the loaded node gives the process nearest half the gap, then stops when no move
    # narrows it any more.
    loads = {"a": 1000, "b": 100, "c": 400}
    moves, projected = plan_moves(loads, {"a": rows("a", 500, 300, 90, 10)}, {"b": {b"m1"}, "c": {b"m1"}}, 10)
    assert [(s, t, r["weight"]) for s, t, r in moves] == [("a", "b", 500), ("a", "c", 90)]
    assert projected == {"a": 410, "b": 600, "c": 490}
    assert sum(projected.values()) == sum(loads.values())
    # A node without the module (or with another md5) never receives it; max_moves bounds the plan.
    moves, _ = plan_moves(
        {"a": 20, "b": 0, "c": 0}, {"a": rows("a", *[1] * 10)}, {"c": {b"m1"}, "b": {b"x"}}, 3
    )
    assert len(moves) == 3 and {t for _, t, _ in moves} == {"c"}
    assert plan_moves({"a": 5, "b": 5}, {"a": rows("a", 1, 1)}, {"b": {b"m1"}}, 5)[0] == []
