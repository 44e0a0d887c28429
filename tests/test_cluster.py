"""Cluster operations on a local cluster of three real nodes: discovery, joins and leaves,
health and topology, partitions cut and healed, partial results, cross-node process lists."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from arsenal.client import Arsenal
from arsenal.cluster import LocalCluster
from arsenal.cluster.membership import ClusterMembership
from arsenal.dist import Atom
from arsenal.ops.cluster import node_cursor
from arsenal.ops.errors import ErrorCode

from .helpers import fails
from .nodes import registered_with_epmd

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def service(cookie: str) -> AsyncIterator[Arsenal]:
    async with Arsenal(cookie=cookie) as arsenal:
        yield arsenal


async def eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy; fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert loop.time() < deadline, "the condition never held"
        await asyncio.sleep(0.05)


def attached(service: Arsenal) -> set[str]:
    return {node.name for node in service.pool.nodes}


def events(service: Arsenal, kind: str, node: str) -> list[dict[str, Any]]:
    membership = service.services.get(ClusterMembership)
    return [e for e in membership.events if e["event"] == kind and e["node"] == node]


# ---------------------------------------------------------------------- discovery, joins, leaves


async def test_discovery_attaches_peers_then_follows_joins_and_leaves(
    cluster: LocalCluster, service: Arsenal
) -> None:
    first, *others = cluster.names
    await service.attach(first, discover=True)
    assert attached(service) == set(cluster.names)
    found = service.services.get(ClusterMembership).last_discovery
    assert found is not None and sorted(found.attached) == sorted(others) and found.failed == []
    # Hidden peers (the cluster helper's own node, Arsenal itself) are reported, never attached.
    helper = str((await cluster._node()).name)
    assert helper in found.hidden and service.pool.local.name in found.hidden
    assert not set(found.hidden) & attached(service)

    joined = await cluster.add_node()
    await eventually(lambda: joined in attached(service) and events(service, "attached", joined))
    assert events(service, "nodeup", joined)
    assert (await service.run("node_info", {"name": joined})).node == joined

    cluster.kill(joined)
    down = await eventually(lambda: events(service, "nodedown", joined))
    assert {e["observer"] for e in down} <= set(cluster.names) and down[0]["reason"]
    await eventually(lambda: events(service, "marked_down", joined))
    listed = await service.run("cluster_events", {})
    member = next(m for m in listed.members if m.node == joined)
    assert member.status == "down" and not member.connected and member.seen_by == []
    assert listed.following and listed.auto_attach
    assert {m.status for m in listed.members if m.node != joined} == {"up"}


async def test_attach_node_operation_discovers(cluster: LocalCluster, service: Arsenal) -> None:
    result = await service.run("attach_node", {"name": cluster.names[1], "discover": True})
    assert result.discovery is not None
    assert sorted(result.discovery.visible) == sorted(n for n in cluster.names if n != cluster.names[1])
    assert sorted(result.discovery.attached) == sorted(result.discovery.visible)
    assert attached(service) == set(cluster.names)


# ---------------------------------------------------------------------- health and topology


async def test_health_and_topology_of_a_healthy_cluster(cluster: LocalCluster, service: Arsenal) -> None:
    await service.attach(cluster.names[0], discover=True)
    health = await service.run("cluster_health", {})
    assert health.score == 100 and health.status == "healthy" and health.reasons == []
    assert sorted(row.node for row in health.nodes) == sorted(cluster.names)
    for row in health.nodes:
        assert row.reachable and row.latency_ms is not None and row.latency_ms > 0
        assert 0 < row.process_count <= row.process_limit and row.memory_total > 0
        assert row.run_queue is not None and row.run_queue >= 0 and row.visible_nodes == 2
        assert row.otp_release and row.language == "erlang" and row.error is None
    assert not health.partitioned and health.missing == [] and health.missing_edges == []

    topology = await service.run("cluster_topology", {})
    assert topology.components == [sorted(cluster.names)] and not topology.partitioned
    assert len(topology.edges) == 3 and all(len(edge.seen_by) == 2 for edge in topology.edges)
    assert topology.missing_edges == [] and topology.missing == []
    assert topology.arsenal_node in topology.hidden_nodes
    assert all(n.reachable and n.attached for n in topology.nodes)


async def test_cut_link_is_a_partition_and_healing_joins_it_again(
    cluster: LocalCluster, service: Arsenal
) -> None:
    a, b, c = cluster.names
    await service.attach(a, discover=True)
    await cluster.cut(a, b)
    topology = await service.run("cluster_topology", {})
    assert {a, b} not in [{e.a, e.b} for e in topology.edges]
    assert {a, b} in [{e.a, e.b} for e in topology.missing_edges]
    # global may then drop more links (prevent_overlapping_partitions), at its own pace: either c
    # still joins both sides (one component, a missing edge) or the parts are apart already.
    if topology.partitioned:
        assert not any(a in part and b in part for part in topology.components)
    assert all(node.reachable for node in topology.nodes)  # Arsenal still reaches every side
    health = await service.run("cluster_health", {})
    assert health.status != "healthy" and health.score < 100
    named = next(r for r in health.reasons if "partitioned" in r.reason or "not fully meshed" in r.reason)
    assert a in named.reason and b in named.reason

    await cluster.heal_all()
    healed = await service.run("cluster_topology", {})
    assert healed.components == [sorted(cluster.names)] and healed.missing_edges == []
    assert (await service.run("cluster_health", {})).score == 100

    await cluster.partition([a])  # a apart from both others: two parts at least, a alone in one
    split = await service.run("cluster_topology", {})
    assert split.partitioned and [a] in split.components
    assert {frozenset((a, b)), frozenset((a, c))} <= {frozenset((e.a, e.b)) for e in split.missing_edges}
    health = await service.run("cluster_health", {})
    partition = next(r for r in health.reasons if "partitioned" in r.reason)
    assert partition.severity == "critical" and health.status == "critical" and a in partition.reason
    await cluster.heal_all()
    assert (await service.run("cluster_topology", {})).components == [sorted(cluster.names)]


async def test_a_killed_node_gives_partial_results_naming_it(cluster: LocalCluster, service: Arsenal) -> None:
    a, b, gone = cluster.names
    await service.attach(a, discover=True)
    cluster.kill(gone)
    await eventually(lambda: not service.pool.get(gone).connected)

    health = await service.run("cluster_health", {"node_timeout_ms": 300})
    assert [(m.node, m.reason) for m in health.missing] == [(gone, "node_down")]
    rows = {row.node: row for row in health.nodes}
    assert not rows[gone].reachable and "node_down" in (rows[gone].error or "")
    assert rows[a].reachable and rows[b].reachable
    assert health.score < 100 and any(r.node == gone and r.severity == "critical" for r in health.reasons)

    topology = await service.run("cluster_topology", {})
    assert topology.components == [sorted([a, b])] and [m.node for m in topology.missing] == [gone]
    assert [n.node for n in topology.nodes if not n.reachable] == [gone]

    processes = await service.run("cluster_process_list", {"limit": 5})
    assert [m.node for m in processes.missing] == [gone]
    assert {row.node for row in processes.processes} <= {a, b} and set(processes.process_counts) == {a, b}
    trees = await service.run("cluster_supervision_trees", {"max_depth": 2})
    assert [m.node for m in trees.missing] == [gone] and {t.node for t in trees.trees} == {a, b}
    await fails(ErrorCode.node_down, service.run("node_info", {"name": gone}))


async def test_a_hung_node_is_missing_after_its_timeout(cluster: LocalCluster, service: Arsenal) -> None:
    a, b, hung = cluster.names
    await service.attach(a, discover=True)
    group = cluster.processes[hung].pid
    os.killpg(group, signal.SIGSTOP)
    try:
        health = await service.run("cluster_health", {"node_timeout_ms": 1500})
        assert [(m.node, m.reason) for m in health.missing] == [(hung, "timeout")]
        assert "1500 ms" in health.missing[0].message
        assert {row.node for row in health.nodes if row.reachable} == {a, b}
        processes = await service.run("cluster_process_list", {"limit": 3, "node_timeout_ms": 1500})
        assert [(m.node, m.reason) for m in processes.missing] == [(hung, "timeout")]
        assert len(processes.processes) == 3
        await fails(ErrorCode.timeout, service.run("node_info", {"name": hung, "node_timeout_ms": 1500}))
    finally:
        os.killpg(group, signal.SIGCONT)


# ---------------------------------------------------------------------- processes across nodes


async def test_cluster_process_list_is_merged_sorted_and_paged(
    cluster: LocalCluster, service: Arsenal
) -> None:
    await service.attach(cluster.names[0], discover=True)
    first = await service.run("cluster_process_list", {"sort_by": "memory", "limit": 5})
    assert len(first.processes) == 5 and first.next_cursor
    assert set(first.process_counts) == set(cluster.names)
    assert first.process_count == sum(first.process_counts.values())
    memory = [row.memory for row in first.processes]
    assert memory == sorted(memory, reverse=True)

    seen: list[tuple[str, str]] = []
    ranked: list[tuple[int, str]] = []
    cursor: str | None = None
    for _ in range(100):
        params: dict[str, Any] = {"sort_by": "memory", "limit": 40}
        if cursor:
            params["cursor"] = cursor
        page = await service.run("cluster_process_list", params)
        seen += [(row.node, row.pid) for row in page.processes]
        ranked += [(-row.memory, row.node) for row in page.processes]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert cursor is None, "paging never ended"
    assert len(seen) == len(set(seen)), "a process was listed twice"
    assert ranked == sorted(ranked), "pages are not in (memory, node) order"
    assert {node for node, _ in seen} == set(cluster.names)
    # Processes come and go while paging (each page runs agent calls): close to every process.
    assert abs(len(seen) - first.process_count) < 30

    workers = await service.run("cluster_process_list", {"name": "demo_worker", "sort_by": "reductions"})
    assert workers.processes and all(
        "demo_worker" in (row.registered_name or "") for row in workers.processes
    )
    assert {row.node for row in workers.processes} == set(cluster.names)
    reductions = [row.reductions for row in workers.processes]
    assert reductions == sorted(reductions, reverse=True)
    await fails(ErrorCode.validation_error, service.run("cluster_process_list", {"cursor": "12:<0.1.0>"}))


def test_node_cursor_maps_the_merged_order_to_each_node() -> None:
    cursor = "4096:b@h:<0.77.0>"
    assert node_cursor(cursor, "b@h") == "4096:<0.77.0>"  # same node: after that row
    assert node_cursor(cursor, "a@h") == "4096:<0.0.0>"  # named before: equal values came already
    assert node_cursor(cursor, "c@h") == "4097:<0.0.0>"  # named after: equal values still to come
    assert node_cursor(None, "a@h") is None


async def test_supervision_trees_and_node_info(cluster: LocalCluster, service: Arsenal) -> None:
    await service.attach(cluster.names[0], discover=True)
    trees = await service.run("cluster_supervision_trees", {"max_depth": 3})
    assert sorted(tree.node for tree in trees.trees) == sorted(cluster.names) and trees.missing == []
    for tree in trees.trees:
        names = {root.name for root in tree.roots}
        assert "kernel_sup" in names and "arsenal_demo_erl_sup" in names

    info = await service.run("node_info", {"name": cluster.names[1]})
    assert info.node == cluster.names[1] and info.attached and info.connected
    assert sorted(info.visible) == sorted(n for n in cluster.names if n != cluster.names[1])
    assert service.pool.local.name in info.hidden and info.process_count > 0 and info.latency_ms > 0


# ---------------------------------------------------------------------- bad input


async def test_unknown_nodes_and_other_cookies_are_specific_errors(
    cluster: LocalCluster, service: Arsenal, make_node: Callable[..., Any]
) -> None:
    a, b, _ = cluster.names
    await service.attach(a)  # no discovery: the peers are members Arsenal does not see
    unknown = await fails(ErrorCode.not_found, service.run("node_info", {"name": "nobody@nohost"}))
    assert "not a known member" in unknown.message
    member = await fails(ErrorCode.not_found, service.run("node_info", {"name": b}))
    assert "not attached" in member.message and a in member.message
    health = await service.run("cluster_health", {})
    assert {m.node for m in health.missing if m.reason == "not_attached"} == set(cluster.names) - {a}

    # A peer with a cookie of its own: a reaches it (per-node cookie), Arsenal's cookie is refused.
    other = make_node("othercookie", cookie="another_cookie_" + os.urandom(4).hex())
    await cluster.rpc(a, "erlang", "set_cookie", [Atom(other.name), Atom(other.cookie)])
    assert await cluster.rpc(a, "net_kernel", "connect_node", [Atom(other.name)]) is True
    found = await service.discover(a)
    failures = {f["node"]: f for f in found.failed}
    assert failures[other.name]["reason"] == "forbidden"
    assert other.name not in attached(service) and b in attached(service)
    await fails(ErrorCode.forbidden, service.run("attach_node", {"name": other.name}))


# ---------------------------------------------------------------------- the command line


async def test_cluster_commands(cluster: LocalCluster, cookie: str) -> None:
    async def arsenal(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "arsenal.cli.main", "cluster", *args]
        command += ["--node", cluster.names[0], "--cookie", cookie]
        return await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60)

    health = await arsenal("health", "--json")
    assert health.returncode == 0, health.stderr
    assert json.loads(health.stdout)["score"] == 100
    assert {row["node"] for row in json.loads(health.stdout)["nodes"]} == set(cluster.names)
    alone = await arsenal("health", "--json", "--no-discover")
    missing = {m["node"]: m["reason"] for m in json.loads(alone.stdout)["missing"]}
    assert missing == {name: "not_attached" for name in cluster.names[1:]}

    topology = await arsenal("topology")
    assert topology.returncode == 0 and "one component" in topology.stdout, topology.stderr
    # The link matrix: every node sees the two others (●), none is missing (x).
    rows = [line for line in topology.stdout.splitlines() if re.match(r"\s*\d+ \S+@", line)]
    assert len(rows) == 3 and all(row.count("●") == 2 and " x " not in row for row in rows)
    ps = await arsenal("ps", "--limit", "6", "--sort", "reds")
    assert ps.returncode == 0, ps.stderr
    assert "on 3 nodes by reductions" in ps.stdout and "next page: --cursor" in ps.stdout
    bad = await arsenal("ps", "--cursor", "nonsense")
    assert bad.returncode == 2 and "cursor" in bad.stderr


# ---------------------------------------------------------------------- REST and the WebSocket


async def test_rest_routes_and_the_cluster_channel(cluster: LocalCluster, service: Arsenal) -> None:
    from urllib.parse import quote

    import httpx
    from httpx_ws import aconnect_ws
    from httpx_ws.transport import ASGIWebSocketTransport

    from arsenal.api import create_app

    base = "http://arsenal.test"
    first, second, _ = cluster.names
    app = create_app(service, auth=False)
    async with (
        ASGIWebSocketTransport(app=app) as transport,
        httpx.AsyncClient(transport=transport, base_url=base) as client,
        aconnect_ws(f"{base}/api/v1/ws", client) as ws,
    ):
        await ws.send_json({"subscribe": "cluster"})
        assert await ws.receive_json(timeout=10) == {"type": "subscribed", "channel": "cluster"}
        attach = await client.post("/api/v1/nodes", json={"name": first, "discover": True})
        assert attach.status_code == 200, attach.text
        assert sorted(attach.json()["data"]["discovery"]["attached"]) == sorted(cluster.names[1:])

        health = (await client.get("/api/v1/cluster/health")).json()["data"]
        assert health["score"] == 100 and len(health["nodes"]) == 3
        topology = (await client.get("/api/v1/cluster/topology")).json()["data"]
        assert topology["components"] == [sorted(cluster.names)]
        info = await client.get(f"/api/v1/cluster/nodes/{quote(second)}/info")
        assert info.status_code == 200 and info.json()["data"]["node"] == second
        unknown = await client.get("/api/v1/cluster/nodes/nobody@nohost/info")
        assert unknown.status_code == 404 and unknown.json()["errors"][0]["code"] == "not_found"
        page = await client.get("/api/v1/cluster/processes", params={"limit": 4, "sort_by": "reductions"})
        assert page.status_code == 200 and len(page.json()["data"]["processes"]) == 4
        assert "cursor=" in page.json()["links"]["next"]
        trees = (await client.get("/api/v1/cluster/supervision-trees", params={"max_depth": 1})).json()
        assert len(trees["data"]["trees"]) == 3

        joined = await cluster.add_node()
        pushed: list[dict[str, Any]] = []
        while not any(m["data"]["event"] == "attached" and m["data"]["node"] == joined for m in pushed):
            message = await ws.receive_json(timeout=15)
            assert message["type"] == "cluster" and message["channel"] == "cluster"
            pushed.append(message)
        assert any(m["data"]["event"] == "nodeup" and m["data"]["node"] == joined for m in pushed)
        listed = (await client.get("/api/v1/cluster/events")).json()["data"]
        assert joined in {m["node"] for m in listed["members"] if m["status"] == "up" and m["attached"]}


async def test_a_key_granted_some_nodes_sees_only_those(cluster: LocalCluster, service: Arsenal) -> None:
    from arsenal.ops.base import Principal

    a, b, c = cluster.names
    await service.attach(a, discover=True)
    viewer = Principal(name="ops", role="viewer", key_id="k1", nodes=(a, b))
    health = await service.run("cluster_health", {}, principal=viewer)
    assert [(m.node, m.reason) for m in health.missing] == [(c, "forbidden")]
    assert {row.node for row in health.nodes if row.reachable} == {a, b}
    listed = await service.run("cluster_process_list", {"limit": 5}, principal=viewer)
    assert {row.node for row in listed.processes} <= {a, b} and set(listed.process_counts) == {a, b}
    await fails(ErrorCode.forbidden, service.run("node_info", {"name": c}, principal=viewer))


def test_demo_cluster_starts_meshed_nodes_and_stops_them(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "ARSENAL_HOME": str(tmp_path / "arsenal")}
    env.pop("ARSENAL_COOKIE", None)
    done = subprocess.run(
        [sys.executable, "-m", "arsenal.cli.main", "demo", "--cluster", "2", "--no-serve"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = " ".join(done.stdout.split())  # rich wraps long lines
    assert "The demo cluster is up" in text and "health 100/100" in text
    names = re.findall(r"arsenal_demo_\w+@\S+?(?=[ ,(])", text.split("The demo cluster is up:")[1])
    assert len(set(names)) == 2 and any("_ex_" in name for name in names)
    for name in set(names):  # the nodes stop with the command (EPMD notices within moments)
        for _ in range(100):
            if not registered_with_epmd(name.split("@")[0]):
                break
            time.sleep(0.05)
        assert not registered_with_epmd(name.split("@")[0])
