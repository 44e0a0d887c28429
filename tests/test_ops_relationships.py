"""Relationship operations against real nodes: reads on the shared demo nodes, kills on throwaway ones."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from typing import Any

import arsenal
from arsenal.client import Arsenal
from arsenal.dist import Atom, Pid
from arsenal.ops.errors import ErrorCode
from arsenal.ops.plain import pid_text
from arsenal.ops.relationships import TreeNode

from .helpers import fails

SUP = "arsenal_demo_erl_sup"
WORKERS = [
    "demo_worker_1",
    "demo_worker_2",
    "demo_worker_3",
    "demo_big_state",
    "demo_busy_mailbox",
    "demo_spinner",
]


def _find(nodes: Iterable[TreeNode], name: str) -> TreeNode:
    for item in nodes:
        if item.name == name:
            return item
        try:
            return _find(item.children, name)
        except LookupError:
            continue
    raise LookupError(name)


def _all(nodes: Iterable[TreeNode]) -> list[TreeNode]:
    found: list[TreeNode] = []
    for item in nodes:
        found.append(item)
        found.extend(_all(item.children))
    return found


async def _whereis(node: arsenal.NodeClient, name: str) -> Any:
    return await node.node.call("erlang", "whereis", [Atom(name)])


async def _alive(node: arsenal.NodeClient, pid: Pid) -> bool:
    return await node.node.call("erlang", "is_process_alive", [pid]) is True


async def _until(predicate: Any, tries: int = 200) -> None:
    for _ in range(tries):
        if await predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


# ---------------------------------------------------------------------------- build_process_tree


async def test_process_tree_of_one_application(elixir, cookie) -> None:
    async with arsenal.attach(elixir.name, cookie=cookie, reconnect=False) as node:
        tree = await node.build_process_tree(application="arsenal_demo")
        assert [a.name for a in tree.applications] == ["arsenal_demo"] and tree.other == []
        app = tree.applications[0]
        assert app.kind == "application" and app.version and app.pid is None
        (master,) = app.children
        assert master.kind == "application_master" and master.application == "arsenal_demo"
        (top,) = master.children
        assert (top.name, top.kind, top.supervised) == ("ArsenalDemo.Supervisor", "supervisor", True)
        pair = _find([top], "ArsenalDemo.PairSupervisor")
        assert [c.name for c in pair.children] == ["ArsenalDemo.Counter1", "ArsenalDemo.Counter2"]
        assert all(c.kind == "worker" and c.supervised and c.memory for c in pair.children)
        services = _find([top], "ArsenalDemo.ServiceSupervisor")
        assert [c.name for c in services.children] == [
            ":arsenal_demo_pool",
            ":arsenal_demo_events",
            ":arsenal_demo_cascade",
        ]
        processes = [n for n in _all(tree.applications) if n.kind != "application"]
        assert tree.node_count == len(processes) + 1 and not tree.truncated
        assert tree.supervised_count == len(processes) and tree.unsupervised_count == 0

        small = await node.build_process_tree(application="arsenal_demo", max_nodes=5)
        assert small.truncated and small.node_count == 5 == len(_all(small.applications))
        shallow = await node.build_process_tree(application="arsenal_demo", max_depth=2)
        cut = shallow.applications[0].children[0].children[0]
        assert shallow.truncated and cut.truncated and cut.children == []

        await fails(ErrorCode.not_found, node.build_process_tree(application="zz_never_an_app_rel"))
        await fails(ErrorCode.not_found, node.build_process_tree(application="init"))


async def test_whole_process_tree_shows_unsupervised_and_unowned_processes(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        stray: Pid = await node.node.call("erlang", "spawn", [Atom("timer"), Atom("sleep"), [60_000]])
        try:
            tree = await node.build_process_tree(max_nodes=5000)
        finally:
            await node.node.call("erlang", "exit", [stray, Atom("kill")])
        kernel = next(a for a in tree.applications if a.name == "kernel")
        top = kernel.children[0].children[0]
        assert top.name == "kernel_sup" and top.supervised is True
        # global_name_server spawns helpers that no supervisor supervises.
        gns = _find([top], "global_name_server")
        assert gns.supervised and gns.children
        assert all(c.supervised is False and c.kind == "process" for c in gns.children)
        # Processes of no application: init and its erts helpers, the demo tree, a spawned process.
        init = _find(tree.other, "init")
        assert "erts_code_purger" in {c.name for c in init.children}
        demo = _find(tree.other, SUP)
        assert demo.kind == "supervisor" and [c.name for c in demo.children] == WORKERS
        mine = [n for n in _all(tree.other) if n.pid == pid_text(stray)]
        assert len(mine) == 1 and mine[0].supervised is False and mine[0].kind == "process"
        everything = _all(tree.applications) + _all(tree.other)
        assert len({n.pid for n in everything if n.pid}) == len([n for n in everything if n.pid])
        assert tree.supervised_count + tree.unsupervised_count == tree.node_count - len(tree.applications)


# ---------------------------------------------------------------------------- build_relationship_graph


async def test_graph_around_a_process(elixir, cookie) -> None:
    async with arsenal.attach(elixir.name, cookie=cookie, reconnect=False) as node:
        graph = await node.build_relationship_graph(pid="arsenal_demo_cascade", radius=1)
        ids = {n.name: n.id for n in graph.nodes}
        cascade, sup = ids[":arsenal_demo_cascade"], ids["ArsenalDemo.ServiceSupervisor"]
        monitors = {(e.source, e.target) for e in graph.edges if e.type == "monitor"}
        assert {
            (cascade, ids[":arsenal_demo_pool"]),
            (cascade, ids[":arsenal_demo_events"]),
            (cascade, ids["ArsenalDemo.Counter1"]),
        } <= monitors
        links = [(e.source, e.target) for e in graph.edges if e.type == "link"]
        assert [pair for pair in links if cascade in pair] == [(sup, cascade)]
        assert len({frozenset(pair) for pair in links}) == len(links)
        assert (sup, cascade) in {(e.source, e.target) for e in graph.edges if e.type == "parent"}
        kinds = {n.name: n.kind for n in graph.nodes}
        assert (
            kinds["ArsenalDemo.ServiceSupervisor"] == "supervisor"
            and kinds[":arsenal_demo_cascade"] == "process"
        )
        assert not graph.truncated

        wider = await node.build_relationship_graph(pid="arsenal_demo_cascade", radius=3)
        assert {n.id for n in graph.nodes} < {n.id for n in wider.nodes}
        app = await node.build_relationship_graph(application="arsenal_demo")
        assert len(app.nodes) >= 13 and {n.application for n in app.nodes} == {"arsenal_demo"}

        await fails(
            ErrorCode.validation_error,
            node.build_relationship_graph(pid="arsenal_demo_cascade", application="arsenal_demo"),
        )
        await fails(ErrorCode.not_found, node.build_relationship_graph(pid="zz_no_such_name_rel"))
        await fails(ErrorCode.not_found, node.build_relationship_graph(application="zz_never_an_app_rel"))
        await fails(ErrorCode.validation_error, node.build_relationship_graph(pid="<0.1.2.3>"))


async def test_graph_of_a_whole_node_has_ports_and_limits(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        graph = await node.build_relationship_graph(max_nodes=2000, max_edges=10000)
        ids = {n.id for n in graph.nodes}
        ports = {n.id for n in graph.nodes if n.kind == "port"}
        assert ports and all(p.startswith("#Port<0.") for p in ports)
        assert {e.target for e in graph.edges if e.type == "link"} & ports
        assert all(e.source in ids and e.target in ids for e in graph.edges)
        assert {"link", "parent"} <= {e.type for e in graph.edges}

        few = await node.build_relationship_graph(max_nodes=3)
        assert few.truncated and len(few.nodes) <= 3
        one = await node.build_relationship_graph(max_edges=1)
        assert one.truncated and len(one.edges) == 1


# ---------------------------------------------------------------------------- trace_failure_impact


async def test_impact_in_the_elixir_demo(elixir, cookie) -> None:
    async with arsenal.attach(elixir.name, cookie=cookie, reconnect=False) as node:
        counter = await node.trace_failure_impact(pid="ArsenalDemo.Counter1")
        effects = {row.name: row.effect for row in counter.affected}
        assert effects == {
            "ArsenalDemo.Counter1": "restarted",
            "ArsenalDemo.Counter2": "terminated_and_restarted",
            ":arsenal_demo_cascade": "notified",
        }
        assert (counter.reason, counter.exit_reason) == ("kill", "killed")
        assert counter.summary == {"restarted": 1, "terminated_and_restarted": 1, "notified": 1}
        why = {row.name: row.why for row in counter.affected}
        assert "one_for_all" in why["ArsenalDemo.Counter2"] and "monitors" in why[":arsenal_demo_cascade"]

        pool = await node.trace_failure_impact(pid="arsenal_demo_pool")
        effects = {row.name: row.effect for row in pool.affected}
        assert effects == {
            ":arsenal_demo_pool": "restarted",
            ":arsenal_demo_events": "terminated_and_restarted",
            ":arsenal_demo_cascade": "terminated_and_restarted",
        }
        # The last child of a rest_for_one supervisor takes nobody with it.
        cascade = await node.trace_failure_impact(pid="arsenal_demo_cascade", reason="shutdown")
        assert [(r.name, r.effect) for r in cascade.affected] == [(":arsenal_demo_cascade", "restarted")]

        await fails(
            ErrorCode.validation_error,
            node.trace_failure_impact(pid="arsenal_demo_pool", reason="zz_no_atom_rel"),
        )
        await fails(ErrorCode.not_found, node.trace_failure_impact(pid="zz_no_such_name_rel"))
        await fails(ErrorCode.validation_error, node.trace_failure_impact(pid="<0.1.2.3>"))


async def test_impact_of_a_supervisor_dying_on_erl(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        impact = await node.trace_failure_impact(pid=SUP)
        effects = {row.name: row.effect for row in impact.affected}
        assert effects == {SUP: "dies", **dict.fromkeys(WORKERS, "dies")}
        assert all(r.depth == 1 and "does not trap exits" in r.why for r in impact.affected if r.name != SUP)
        few = await node.trace_failure_impact(pid=SUP, max_affected=3)
        assert few.truncated and len(few.affected) == 3 and not impact.truncated
        # normal does not travel through links to processes that do not trap exits.
        calm = await node.trace_failure_impact(pid=SUP, reason="normal")
        assert [(r.name, r.effect) for r in calm.affected] == [(SUP, "dies")]


async def test_impact_predictions_match_real_kills(make_node, cookie) -> None:
    target = make_node("relkill", demo=True)
    async with arsenal.attach(target.name, cookie=cookie, reconnect=False) as node:
        before = {name: await _whereis(node, name) for name in WORKERS}

        # one_for_one: only the killed child is restarted.
        impact = await node.trace_failure_impact(pid="demo_worker_2")
        assert [(r.name, r.effect) for r in impact.affected] == [("demo_worker_2", "restarted")]
        await node.node.call("erlang", "exit", [before["demo_worker_2"], Atom("kill")])

        async def restarted() -> bool:
            now = await _whereis(node, "demo_worker_2")
            return isinstance(now, Pid) and now != before["demo_worker_2"]

        await _until(restarted)
        after = {name: await _whereis(node, name) for name in WORKERS}
        assert {n for n in WORKERS if after[n] != before[n]} == {"demo_worker_2"}

        # Nine more restarts: the supervisor is at its intensity (10 in 10 s); one more is too many.
        for _ in range(9):
            old = await _whereis(node, "demo_worker_1")
            await node.node.call("erlang", "exit", [old, Atom("kill")])

            async def replaced(old: Pid = old) -> bool:
                now = await _whereis(node, "demo_worker_1")
                return isinstance(now, Pid) and now != old

            await _until(replaced)
        sup = await _whereis(node, SUP)
        live = {name: await _whereis(node, name) for name in WORKERS}
        impact = await node.trace_failure_impact(pid="demo_worker_1")
        effects = {r.name: r.effect for r in impact.affected}
        assert effects == {SUP: "escalates", **dict.fromkeys(WORKERS, "dies")}
        assert impact.notes and "intensity" in impact.notes[0]

        await node.node.call("erlang", "exit", [live["demo_worker_1"], Atom("kill")])
        await _until(lambda: _dead(node, sup))
        predicted = {r.pid for r in impact.affected if r.effect in ("dies", "escalates")}
        assert predicted == {pid_text(p) for p in [sup, *live.values()]}
        assert [name for name, pid in live.items() if await _alive(node, pid)] == []


async def _dead(node: arsenal.NodeClient, pid: Pid) -> bool:
    return not await _alive(node, pid)


# ---------------------------------------------------------------------------- find_process_dependencies


async def test_dependencies_in_the_elixir_demo(elixir, cookie) -> None:
    async with arsenal.attach(elixir.name, cookie=cookie, reconnect=False) as node:
        deps = await node.find_process_dependencies(pid="arsenal_demo_cascade")
        assert deps.name == ":arsenal_demo_cascade" and deps.application == "arsenal_demo"
        chain = deps.upstream.chain
        assert [c.name for c in chain[:2]] == ["ArsenalDemo.ServiceSupervisor", "ArsenalDemo.Supervisor"]
        assert chain[-1].kind == "application_master" and chain[-1].application == "arsenal_demo"
        assert {m.name for m in deps.upstream.monitors.items} == {
            ":arsenal_demo_pool",
            ":arsenal_demo_events",
            "ArsenalDemo.Counter1",
        }
        assert deps.upstream.monitors.total == 3 and deps.upstream.blocked_on is None
        assert deps.upstream.linked.total == 0 and deps.downstream.children.total == 0

        counter = await node.find_process_dependencies(pid="ArsenalDemo.Counter1")
        assert ":arsenal_demo_cascade" in {m.name for m in counter.downstream.monitored_by.items}

        sup = await node.find_process_dependencies(pid="ArsenalDemo.PairSupervisor", limit=1)
        assert sup.downstream.children.total == 2 and len(sup.downstream.children.items) == 1
        assert sup.downstream.children.items[0].linked is True

        await fails(ErrorCode.not_found, node.find_process_dependencies(pid="zz_no_such_name_rel"))
        await fails(ErrorCode.validation_error, node.find_process_dependencies(pid="<0.1.2.3>"))


async def test_dependencies_tables_ports_and_a_gone_process(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        code = await node.find_process_dependencies(pid="code_server")
        assert "code_names" in {t.name for t in code.ets_tables.items}
        assert code.ets_tables.total == len(code.ets_tables.items)

        graph = await node.build_relationship_graph(max_nodes=2000, max_edges=10000)
        holder, port = next((e.source, e.target) for e in graph.edges if e.target.startswith("#Port"))
        held = await node.find_process_dependencies(pid=holder)
        assert port in {p.id for p in held.ports.items} or port in {
            i.pid for i in held.downstream.linked.items
        }

        gone: Pid = await node.node.call("erlang", "spawn", [Atom("timer"), Atom("sleep"), [60_000]])
        await node.node.call("erlang", "exit", [gone, Atom("kill")])
        await _until(lambda: _dead(node, gone))
        err = await fails(ErrorCode.not_found, node.find_process_dependencies(pid=pid_text(gone)))
        assert "not alive" in err.message
        await fails(ErrorCode.not_found, node.trace_failure_impact(pid=pid_text(gone)))


async def test_dependencies_see_a_blocked_call(make_node, cookie) -> None:
    target = make_node("relblock", demo=True)
    async with arsenal.attach(target.name, cookie=cookie, reconnect=False) as node:
        worker = await _whereis(node, "demo_worker_3")
        await node.node.call("sys", "suspend", [worker])
        caller: Pid = await node.node.call(
            "erlang", "spawn", [Atom("gen_server"), Atom("call"), [worker, Atom("ping"), 30_000]]
        )

        async def waiting() -> bool:
            info = await node.node.call("erlang", "process_info", [caller, Atom("current_function")])
            return info == (Atom("current_function"), (Atom("gen"), Atom("do_call"), 4))

        await _until(waiting)
        deps = await node.find_process_dependencies(pid=pid_text(caller))
        blocked = deps.upstream.blocked_on
        assert blocked is not None and blocked.certain and blocked.function == "gen:do_call/4"
        assert [c.name for c in blocked.candidates] == ["demo_worker_3"]
        assert "gen:do_call/4" in blocked.detected_by

        # A supervisor that does not answer which_children is an error on its node, not a hang.
        sup = await _whereis(node, SUP)
        await node.node.call("sys", "suspend", [sup])
        tree = await node.build_process_tree()
        stuck = _find(tree.other, SUP)
        assert stuck.error and "did not answer" in stuck.error
        assert [c.name for c in stuck.children] == WORKERS and all(c.supervised for c in stuck.children)


# ---------------------------------------------------------------------------- node down, REST, CLI


async def test_node_down(make_node, cookie) -> None:
    target = make_node("reldown")
    async with arsenal.attach(target.name, cookie=cookie, reconnect=False) as node:
        target.kill()
        await fails(ErrorCode.node_down, node.build_process_tree())


async def test_rest_routes(elixir, cookie) -> None:
    import httpx

    from arsenal.api import create_app

    async with Arsenal(cookie=cookie) as service:
        await service.attach(elixir.name, reconnect=False)
        transport = httpx.ASGITransport(app=create_app(service, auth=False), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://arsenal.test") as client:
            impact = await client.get("/api/v1/processes/ArsenalDemo.Counter1/impact")
            assert impact.status_code == 200, impact.text
            rows = impact.json()["data"]["affected"]
            assert {r["name"]: r["effect"] for r in rows}[
                "ArsenalDemo.Counter2"
            ] == "terminated_and_restarted"
            tree = await client.get("/api/v1/system/process-tree", params={"application": "arsenal_demo"})
            assert (
                tree.status_code == 200 and tree.json()["data"]["applications"][0]["name"] == "arsenal_demo"
            )
            graph = await client.get("/api/v1/system/relationships", params={"pid": "arsenal_demo_cascade"})
            assert graph.status_code == 200 and graph.json()["data"]["edges"]
            deps = await client.get("/api/v1/processes/arsenal_demo_cascade/dependencies")
            assert deps.status_code == 200 and deps.json()["data"]["upstream"]["monitors"]["total"] == 3
            missing = await client.get(
                "/api/v1/system/process-tree", params={"application": "zz_no_app_rest"}
            )
            assert missing.status_code == 404 and missing.json()["errors"][0]["code"] == "not_found"


def _arsenal(*args: str, cookie: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ARSENAL_COOKIE": cookie}
    return subprocess.run(
        [sys.executable, "-m", "arsenal.cli.main", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_cli(elixir, cookie) -> None:
    impact = _arsenal("impact", "ArsenalDemo.Counter1", "--node", elixir.name, "--json", cookie=cookie)
    assert impact.returncode == 0, impact.stderr
    effects = {r["name"]: r["effect"] for r in json.loads(impact.stdout)["affected"]}
    assert effects["ArsenalDemo.Counter2"] == "terminated_and_restarted"
    tree = _arsenal("ptree", "--app", "arsenal_demo", "--node", elixir.name, cookie=cookie)
    assert tree.returncode == 0, tree.stderr
    assert "ArsenalDemo.PairSupervisor" in tree.stdout and "application_master" in tree.stdout
    missing = _arsenal("deps", "zz_no_such_name_cli", "--node", elixir.name, cookie=cookie)
    assert missing.returncode == 3 and "zz_no_such_name_cli" in missing.stderr
