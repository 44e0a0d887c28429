"""Distributed registries on a local cluster of three real nodes: global names and pg groups seen
from every node, merged; a killed node; a global name conflict across a partition, before and
after it heals; Horde absent; no atom made by requests."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from arsenal.client import Arsenal
from arsenal.cluster import LocalCluster
from arsenal.dist import Atom
from arsenal.ops.base import Principal
from arsenal.ops.errors import ErrorCode, OperationError
from arsenal.ops.registries import ClusterRegistries, NodeRegistries

from .helpers import eval_erlang, fails

pytestmark = pytest.mark.timeout(180)

SLEEPER = "spawn(timer, sleep, [infinity])"


@pytest.fixture
async def service(cookie: str) -> AsyncIterator[Arsenal]:
    async with Arsenal(cookie=cookie) as arsenal:
        yield arsenal


async def eventually(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Await ``check()`` until it returns something truthy; fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert loop.time() < deadline, "the condition never held"
        await asyncio.sleep(0.1)


def pid_of(raw: Any) -> str:
    return f"<0.{raw.id}.{raw.serial}>"


async def registries(service: Arsenal, **params: Any) -> ClusterRegistries:
    result = await service.run("cluster_registries", params)
    assert isinstance(result, ClusterRegistries)
    return result


def on(result: ClusterRegistries, node: str) -> NodeRegistries:
    return next(view for view in result.nodes if view.node == node)


async def attach_synced(service: Arsenal, cluster: LocalCluster) -> None:
    """Attach the cluster, and wait until global has synchronised every node with the others (it
    does so at its own pace after nodes connect; a name registered before that reaches only part of
    the cluster until then)."""
    await service.attach(cluster.names[0], discover=True)
    for node in cluster.running:
        assert await eval_erlang(service, node, "global:sync()") == Atom("ok")


async def register_global(service: Arsenal, node: str, name: str) -> str:
    """A sleeping process on ``node`` registered in global as ``name``; its pid text."""
    raw = await eval_erlang(service, node, f"P = {SLEEPER}, yes = global:register_name({name}, P), P")
    return pid_of(raw)


# ---------------------------------------------------------------------- global and pg


async def test_global_names_and_pg_groups_seen_from_every_node(
    cluster: LocalCluster, service: Arsenal
) -> None:
    a, b, c = cluster.names
    await attach_synced(service, cluster)
    on_a = await register_global(service, a, "arsenal_reg_on_a")
    on_b = await register_global(service, b, "arsenal_reg_on_b")
    for node in cluster.names:  # a scope of its own on every node, and the default scope on two
        await eval_erlang(service, node, "{ok, _} = pg:start(arsenal_scope), ok")
    for node in (a, b):
        await eval_erlang(service, node, "{ok, _} = pg:start(pg), ok")
    workers_a = await eval_erlang(
        service, a, f"P = {SLEEPER}, Q = {SLEEPER}, ok = pg:join(arsenal_scope, workers, [P, Q]), [P, Q]"
    )
    worker_b = await eval_erlang(service, b, f"P = {SLEEPER}, ok = pg:join(arsenal_scope, workers, P), P")
    tagged_c = await eval_erlang(service, c, f"P = {SLEEPER}, ok = pg:join(arsenal_scope, {{tag, 1}}, P), P")
    default_b = await eval_erlang(service, b, f"P = {SLEEPER}, ok = pg:join(pg, default_group, P), P")

    async def synced() -> ClusterRegistries | None:
        result = await registries(service)
        groups = {(g.scope, g.group): g for g in result.pg_groups}
        workers = groups.get(("arsenal_scope", "workers"))
        if workers and workers.agreed and set(workers.member_counts.values()) == {3}:
            return result
        return None

    result = await synced() or await eventually(synced)
    assert result.missing == [] and sorted(view.node for view in result.nodes) == sorted(cluster.names)
    # Every node resolves both names to the process on the node it runs on.
    for node in cluster.names:
        names = {row.name: (row.pid, row.node) for row in on(result, node).global_names.names}
        assert names["arsenal_reg_on_a"] == (on_a, a) and names["arsenal_reg_on_b"] == (on_b, b)
    merged = {view.name: view for view in result.global_names}
    assert merged["arsenal_reg_on_a"].agreed and merged["arsenal_reg_on_a"].node == a
    assert merged["arsenal_reg_on_b"].pid == on_b and set(merged["arsenal_reg_on_b"].seen_by) == set(
        cluster.names
    )
    assert result.conflicts == [] and result.resolved == []

    groups = {(g.scope, g.group): g for g in result.pg_groups}
    workers = groups[("arsenal_scope", "workers")]
    expected = {(pid_of(p), a) for p in workers_a} | {(pid_of(worker_b), b)}
    assert {(m.pid, m.node) for m in workers.members} == expected
    assert workers.member_counts == {node: 3 for node in sorted(cluster.names)}
    tagged = groups[("arsenal_scope", "{tag,1}")]
    assert [(m.pid, m.node) for m in tagged.members] == [(pid_of(tagged_c), c)]
    default = groups[("pg", "default_group")]
    assert [(m.pid, m.node) for m in default.members] == [(pid_of(default_b), b)]
    assert set(default.member_counts) == {a, b}  # c runs no default scope
    scopes_c = {scope.scope for scope in on(result, c).pg.scopes}
    assert scopes_c == {"arsenal_scope"} and on(result, a).pg.scope_count == 2

    # Horde is not on these nodes: said clearly, per node.
    for view in result.nodes:
        assert view.horde is not None and not view.horde.present
        assert view.horde.reason == f"Horde is not loaded on {view.node}"
        assert view.horde.registries == [] and view.horde.supervisors == []


async def test_bounds_node_filter_and_kinds(cluster: LocalCluster, service: Arsenal) -> None:
    a, b, _ = cluster.names
    await attach_synced(service, cluster)
    for index in range(3):
        await register_global(service, b, f"arsenal_bounded_{index}")
    await eval_erlang(service, b, "{ok, _} = pg:start(arsenal_scope), ok")
    await eval_erlang(
        service,
        b,
        f"[ok = pg:join(arsenal_scope, crowd, {SLEEPER}) || _ <- lists:seq(1, 4)], "
        f"ok = pg:join(arsenal_scope, other, {SLEEPER}), ok",
    )
    result = await registries(service, nodes=[b], limit=1, member_limit=2)
    assert [view.node for view in result.nodes] == [b] and result.missing == []
    names = result.nodes[0].global_names
    assert names.truncated and names.count >= 3 and len(names.names) == 1
    (scope,) = result.nodes[0].pg.scopes
    assert scope.truncated and scope.group_count == 2 and len(scope.groups) == 1
    result = await registries(service, nodes=[b], member_limit=2, kinds=["pg"])
    view = result.nodes[0]
    assert view.global_names is None and view.horde is None and result.global_names == []
    crowd = next(g for g in view.pg.scopes[0].groups if g.group == "crowd")
    assert crowd.member_count == 4 and len(crowd.members) == 2 and crowd.truncated

    viewer = Principal(name="ops", role="viewer", key_id="k1", nodes=(a,))
    refused = await service.run("cluster_registries", {"nodes": [a, b]}, principal=viewer)
    assert [(m.node, m.reason) for m in refused.missing] == [(b, "forbidden")]
    assert [view.node for view in refused.nodes] == [a]
    missing = await fails(ErrorCode.not_found, registries(service, nodes=["nobody@nohost"]))
    assert "nobody@nohost" in missing.message and a in missing.message
    await fails(ErrorCode.validation_error, registries(service, kinds=["zookeeper"]))
    await fails(ErrorCode.validation_error, registries(service, limit=0))


# ---------------------------------------------------------------------- failures


async def test_a_killed_node_is_missing_and_named(cluster: LocalCluster, service: Arsenal) -> None:
    a, b, gone = cluster.names
    await attach_synced(service, cluster)
    pid = await register_global(service, a, "arsenal_survivor")
    cluster.kill(gone)

    async def down() -> bool:
        return not service.pool.get(gone).connected

    await eventually(down)
    result = await registries(service, node_timeout_ms=1000)
    assert [(m.node, m.reason) for m in result.missing] == [(gone, "node_down")]
    assert sorted(view.node for view in result.nodes) == sorted([a, b])
    merged = {view.name: view for view in result.global_names}
    assert merged["arsenal_survivor"].agreed and merged["arsenal_survivor"].pid == pid
    assert set(merged["arsenal_survivor"].seen_by) == {a, b}


async def test_a_global_conflict_across_a_partition_and_its_resolution(
    cluster: LocalCluster, service: Arsenal
) -> None:
    a, b, c = cluster.names
    await attach_synced(service, cluster)
    await cluster.partition([a])  # a alone on one side, b and c on the other
    on_a = await register_global(service, a, "arsenal_clash")
    on_b = await register_global(service, b, "arsenal_clash")
    assert on_a  # each side registered the name for a process of its own

    async def conflicted() -> ClusterRegistries | None:
        result = await registries(service)
        return result if result.conflicts else None

    result = await eventually(conflicted)
    (conflict,) = result.conflicts
    assert conflict.name == "arsenal_clash" and result.missing == []
    sides = {(side.pid, side.node): side.seen_by for side in conflict.sides}
    # c is with b, unless global (prevent_overlapping_partitions) dropped its links too: then it
    # lacks the name or has b's, never a's.
    assert set(sides) == {(on_a, a), (on_b, b)} and sides[(on_a, a)] == [a]
    assert sides[(on_b, b)] in ([b], sorted([b, c]))
    assert a in conflict.message and b in conflict.message and on_a in conflict.message
    view = next(v for v in result.global_names if v.name == "arsenal_clash")
    assert not view.agreed and view.pid is None
    assert view.seen_by[a].pid == on_a and view.seen_by[b].pid == on_b
    assert c in view.seen_by or c in view.not_seen_by

    await cluster.heal_all()
    resolved: list[Any] = []

    async def agreed() -> ClusterRegistries | None:
        result = await registries(service)
        resolved.extend(result.resolved)
        view = next((v for v in result.global_names if v.name == "arsenal_clash"), None)
        return result if result.conflicts == [] and (view is None or view.agreed) and resolved else None

    after = await eventually(agreed, timeout=40.0)
    (settled,) = resolved  # reported once, by the first call that saw the nodes agree
    assert settled.name == "arsenal_clash" and after.conflicts == []
    # OTP's default resolver (global:random_exit_name/3) keeps one process and kills the other.
    assert settled.kept is not None and (settled.kept.pid, settled.kept.node) in {(on_a, a), (on_b, b)}
    (lost,) = settled.lost
    assert {(lost.pid, lost.node), (settled.kept.pid, settled.kept.node)} == {(on_a, a), (on_b, b)}
    assert lost.alive is False and "kept" in settled.message and lost.pid in settled.message
    view = next(v for v in after.global_names if v.name == "arsenal_clash")
    assert view.pid == settled.kept.pid and set(view.seen_by) == set(cluster.names)
    assert (await registries(service)).resolved == []  # said once


# ---------------------------------------------------------------------- safety, REST and CLI


async def test_requests_create_no_atom(cluster: LocalCluster, service: Arsenal) -> None:
    b = cluster.names[1]
    await attach_synced(service, cluster)
    await registries(service)  # warm up: the agent and what it uses are loaded

    async def atoms() -> list[int]:
        return [
            await service.pool.get(n).call("erlang", "system_info", [Atom("atom_count")])
            for n in cluster.names
        ]

    before = await atoms()
    junk = [
        {"nodes": ["zz_never_an_atom_q1@nohost"]},
        {"nodes": [f"{b.split('@')[0]}_zz_never@nohost"]},
        {"kinds": ["zz_never_an_atom_kind"]},
        {"nodes": ["Elixir.Never.An.Atom"], "limit": 5},
        {"limit": 10**9},
        {"zz_unknown_param": "zz_never_an_atom_q2"},
    ]
    for params in junk:
        try:
            await service.run("cluster_registries", params)
        except OperationError as exc:
            assert exc.code in (ErrorCode.not_found, ErrorCode.validation_error)
    for kinds in (["global"], ["pg"], ["horde"], ["global", "pg", "horde"]):
        await registries(service, kinds=kinds, limit=3, member_limit=1)
    assert await atoms() == before


async def test_rest_route_and_cli(cluster: LocalCluster, service: Arsenal, cookie: str) -> None:
    import httpx

    from arsenal.api import create_app

    a, b, _ = cluster.names
    await attach_synced(service, cluster)
    pid = await register_global(service, b, "arsenal_rest_name")
    app = create_app(service, auth=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/api/v1/cluster/registries", params={"nodes": [a, b], "limit": 50})
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert sorted(view["node"] for view in data["nodes"]) == sorted([a, b])
        name = next(v for v in data["global_names"] if v["name"] == "arsenal_rest_name")
        assert name["agreed"] and name["pid"] == pid and name["node"] == b
        bad = await client.get("/api/v1/cluster/registries", params={"nodes": "nobody@nohost"})
        assert bad.status_code == 404 and bad.json()["errors"][0]["code"] == "not_found"

    async def arsenal(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "arsenal.cli.main", "cluster", "registries", *args]
        command += ["--node", a, "--cookie", cookie]
        return await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60)

    listed = await arsenal("--json", "--kind", "global")
    assert listed.returncode == 0, listed.stderr
    parsed = json.loads(listed.stdout)
    assert {view["node"] for view in parsed["nodes"]} == set(cluster.names)
    assert any(v["name"] == "arsenal_rest_name" and v["node"] == b for v in parsed["global_names"])
    table = await arsenal()
    assert table.returncode == 0, table.stderr
    text = " ".join(table.stdout.split())
    assert "arsenal_rest_name" in text and "Horde is not loaded on" in text


# ---------------------------------------------------------------------- Horde, when present

# Hex cannot be reached from this machine's test runs, so Horde itself cannot be installed. These
# modules stand in for it: they carry Horde's module names and reproduce what Arsenal relies on —
# the processes Horde starts (Name.Supervisor running Horde.RegistrySupervisor or
# Horde.DynamicSupervisor, Name the implementation) and the public functions Arsenal calls
# (Horde.Registry.count/select, Horde.DynamicSupervisor.count_children/which_children,
# Horde.Cluster.members). Compiled with erlc and loaded into one node only.
HORDE_STAND_IN = {
    "Elixir.Horde.Registry": """
-module('Elixir.Horde.Registry').
-export([start_link/1, count/1, select/2]).
start_link(Name) ->
    Sup = list_to_atom(atom_to_list(Name) ++ ".Supervisor"),
    supervisor:start_link({local, Sup}, 'Elixir.Horde.RegistrySupervisor', Name).
count(Name) -> ets:info(keys(Name), size).
select(Name, Spec) -> ets:select(keys(Name), [{{K, '_', {P, V}}, G, B} || {{K, P, V}, G, B} <- Spec]).
keys(Name) -> list_to_existing_atom("keys_" ++ atom_to_list(Name)).
""",
    "Elixir.Horde.RegistrySupervisor": """
-module('Elixir.Horde.RegistrySupervisor').
-behaviour(supervisor).
-export([init/1]).
init(Name) ->
    {ok, {#{strategy => one_for_all},
          [#{id => impl, start => {'Elixir.Horde.RegistryImpl', start_link, [Name]}}]}}.
""",
    "Elixir.Horde.RegistryImpl": """
-module('Elixir.Horde.RegistryImpl').
-behaviour(gen_server).
-export([start_link/1, init/1, handle_call/3, handle_cast/2]).
start_link(Name) -> gen_server:start_link({local, Name}, ?MODULE, Name, []).
init(Name) ->
    ets:new(list_to_atom("keys_" ++ atom_to_list(Name)), [named_table, public, set]),
    {ok, Name}.
handle_call({register, Key, Value, Pid}, _From, Name) ->
    ets:insert(list_to_existing_atom("keys_" ++ atom_to_list(Name)), {Key, {Name, node()}, {Pid, Value}}),
    {reply, {ok, self()}, Name}.
handle_cast(_Message, Name) -> {noreply, Name}.
""",
    "Elixir.Horde.DynamicSupervisor": """
-module('Elixir.Horde.DynamicSupervisor').
-behaviour(supervisor).
-export([start_link/1, init/1, count_children/1, which_children/1]).
start_link(Name) ->
    Sup = list_to_atom(atom_to_list(Name) ++ ".Supervisor"),
    supervisor:start_link({local, Sup}, ?MODULE, Name).
init(Name) ->
    {ok, {#{strategy => one_for_all},
          [#{id => impl, type => supervisor,
             start => {supervisor, start_link, [{local, Name}, 'Elixir.Horde.DynamicSupervisorImpl', []]}}]}}.
count_children(Name) -> maps:from_list(supervisor:count_children(Name)).
which_children(Name) -> supervisor:which_children(Name).
""",
    "Elixir.Horde.DynamicSupervisorImpl": """
-module('Elixir.Horde.DynamicSupervisorImpl').
-behaviour(supervisor).
-export([init/1]).
init([]) -> {ok, {#{strategy => one_for_one}, []}}.
""",
    "Elixir.Horde.Cluster": """
-module('Elixir.Horde.Cluster').
-export([members/1]).
members(Name) -> [{Name, node()}].
""",
}


async def load_horde_stand_in(service: Arsenal, node: str, directory: Any) -> None:
    for module, source in HORDE_STAND_IN.items():
        (directory / f"{module}.erl").write_text(source)
    sources = [str(directory / f"{module}.erl") for module in HORDE_STAND_IN]
    done = await asyncio.to_thread(
        subprocess.run, ["erlc", "-o", str(directory), *sources], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for module in HORDE_STAND_IN:
        beam = (directory / f"{module}.beam").read_bytes()
        loaded = await service.pool.get(node).call(
            "code", "load_binary", [Atom(module), list(f"{module}.beam".encode()), beam]
        )
        assert loaded == (Atom("module"), Atom(module))


async def test_horde_registries_and_supervisors_when_present(
    cluster: LocalCluster, service: Arsenal, tmp_path: Any
) -> None:
    a, b, _ = cluster.names
    await attach_synced(service, cluster)
    await load_horde_stand_in(service, b, tmp_path)
    await eval_erlang(
        service,
        b,
        "{ok, R} = 'Elixir.Horde.Registry':start_link('Elixir.Arsenal.Reg'), unlink(R), "
        "{ok, S} = 'Elixir.Horde.DynamicSupervisor':start_link('Elixir.Arsenal.Sup'), unlink(S), ok",
    )
    users = await eval_erlang(
        service,
        b,
        f"[begin P = {SLEEPER}, {{ok, _}} = gen_server:call('Elixir.Arsenal.Reg', "
        "{register, {user, N}, #{role => admin}, P}), P end || N <- [1, 2, 3]]",
    )
    child = await eval_erlang(
        service,
        b,
        "{ok, C} = supervisor:start_child('Elixir.Arsenal.Sup', #{id => worker_1, "
        "start => {gen_event, start_link, []}}), C",
    )

    result = await registries(service, kinds=["horde"], limit=2, member_limit=5)
    assert on(result, a).horde.present is False and on(result, a).horde.reason.endswith(a)
    horde = on(result, b).horde
    assert horde.present and horde.version is None  # modules loaded, no horde application
    (registry,) = horde.registries
    assert registry.name == "'Elixir.Arsenal.Reg'" and registry.error is None
    assert registry.key_count == 3 and registry.truncated and len(registry.entries) == 2
    by_pid = {pid_of(p): p for p in users}
    for entry in registry.entries:
        assert entry.pid in by_pid and entry.node == b
        assert entry.key.startswith("{user,") and entry.value == "#{role => admin}"
    assert registry.members == [f"{{'Elixir.Arsenal.Reg',{b}}}"]
    (supervisor,) = horde.supervisors
    assert supervisor.members == [f"{{'Elixir.Arsenal.Sup',{b}}}"] and supervisor.error is None
    assert supervisor.name == "'Elixir.Arsenal.Sup'" and supervisor.child_count == 1
    assert [(c.id, c.pid, c.node, c.type) for c in supervisor.children] == [
        ("worker_1", pid_of(child), b, "worker")
    ]
    # Above member_limit children, which_children is not asked: the count only.
    few = await registries(service, nodes=[b], kinds=["horde"], limit=10, member_limit=1)
    registry, supervisor = few.nodes[0].horde.registries[0], few.nodes[0].horde.supervisors[0]
    assert registry.key_count == 3 and len(registry.entries) == 3 and not registry.truncated
    assert supervisor.child_count == 1 and not supervisor.truncated
    await eval_erlang(
        service,
        b,
        "{ok, _} = supervisor:start_child('Elixir.Arsenal.Sup', "
        "#{id => worker_2, start => {gen_event, start_link, []}}), ok",
    )
    crowded = await registries(service, nodes=[b], kinds=["horde"], member_limit=1)
    supervisor = crowded.nodes[0].horde.supervisors[0]
    assert supervisor.child_count == 2 and supervisor.truncated and supervisor.children == []
