"""System and node operations against real nodes: facts, memory, applications, names, ports, ETS,
schedulers, health, bottlenecks, message queues; attaching and detaching nodes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

import arsenal
from arsenal.client import Arsenal
from arsenal.dist import Atom
from arsenal.ops.errors import ErrorCode

from .helpers import INVALID_PID, elixir_version, fails, otp_release

pytestmark = pytest.mark.timeout(90)


async def _atom_count(node) -> int:
    await asyncio.sleep(0.05)
    return await node.node.call("erlang", "system_info", [Atom("atom_count")])


async def _eval(node, source: str):
    return await node.node.call("arsenal_test_support", "eval", [source.encode()])


# ---------------------------------------------------------------------- facts and memory


async def test_system_info_and_memory(erl, elixir, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        info = await node.get_system_info()
        assert info.node == erl.name and info.language == "erlang"
        assert info.otp_release == await otp_release(node.node) and info.erts_version
        assert 0 < info.process_count <= info.process_limit
        assert 0 < info.atom_count <= info.atom_limit and 0 < info.port_count <= info.port_limit
        assert info.schedulers >= 1 and info.schedulers_online >= 1 and info.uptime_seconds > 0
        assert info.distribution.alive and info.distribution.hidden_node_count >= 1  # Arsenal itself

        memory = await node.get_memory_info()
        assert memory.total == memory.by_type["total"] > 0
        assert {"processes", "ets", "binary", "atom", "code", "system"} <= set(memory.by_type)
        allocators = {a.name: a for a in memory.allocators}
        assert {"eheap_alloc", "ets_alloc", "binary_alloc"} <= set(allocators)
        heap = allocators["eheap_alloc"]
        assert 0 < heap.blocks_size <= heap.carriers_size and 0 < heap.usage <= 1
    async with arsenal.attach(elixir.name, cookie=cookie, reconnect=False) as node:
        assert (await node.get_system_info()).language == "elixir"


async def test_applications_with_versions_and_process_counts(elixir, cookie) -> None:
    async with arsenal.attach(elixir.name, cookie=cookie, reconnect=False) as node:
        listed = await node.list_applications()
        apps = {a.name: a for a in listed.applications}
        assert {"kernel", "stdlib", "elixir", "arsenal_demo"} <= set(apps)
        assert apps["arsenal_demo"].version and apps["arsenal_demo"].process_count >= 5
        assert apps["kernel"].process_count > 5
        counted = sum(a.process_count for a in listed.applications) + listed.other_processes
        assert abs(counted - listed.process_count) < 20  # processes come and go between the two reads
        await fails(ErrorCode.validation_error, node.list_applications(timeout_ms=10))


async def test_registered_names_and_ports(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        names = await node.list_registered_processes(limit=1000)
        local = {r.name: r for r in names.local}
        assert local["demo_worker_1"].pid.startswith("<0.") and "init" in local
        assert names.local_count == len(names.local)
        assert names.global_count == len(names.global_names)
        assert names.pg.running is False and names.pg.groups == []  # looked up, not started
        few = await node.list_registered_processes(limit=3)
        assert len(few.local) == 3 and few.local_count == names.local_count

        ports = await node.list_ports(limit=2)
        assert 1 <= len(ports.ports) <= 2 and ports.port_count >= len(ports.ports)
        assert all(p.port.startswith("#Port<") and p.name for p in ports.ports)
        io = [p.input + p.output for p in ports.ports]
        assert io == sorted(io, reverse=True)
        await fails(ErrorCode.validation_error, node.list_ports(limit=0))


async def test_pg_groups_are_listed_when_pg_runs(make_node, cookie) -> None:
    target = make_node("pg", extra=["-kernel", "start_pg", "true"])
    async with arsenal.attach(target.name, cookie=cookie, reconnect=False) as node:
        await _eval(
            node,
            "spawn(fun() -> pg:join(arsenal_test_group, self()), "
            "receive stop -> ok after 60000 -> ok end end)",
        )
        for _ in range(50):
            names = await node.list_registered_processes()
            if names.pg.groups:
                break
            await asyncio.sleep(0.05)
        assert names.pg.running
        group = next(g for g in names.pg.groups if g.group == "arsenal_test_group")
        assert group.member_count == group.local_member_count == 1


# ---------------------------------------------------------------------- ETS


async def test_ets_list_sorted_and_paged(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        by_memory = await node.list_ets_tables(sort_by="memory", limit=1000)
        memories = [t.memory for t in by_memory.tables]
        assert memories == sorted(memories, reverse=True) and by_memory.next_offset is None
        assert by_memory.table_count == len(by_memory.tables)
        ac_tab = next(t for t in by_memory.tables if t.id == "ac_tab")
        assert ac_tab.named_table and ac_tab.owner_name == "application_controller"

        seen: list[str] = []
        offset: int | None = 0
        while offset is not None:
            page = await node.list_ets_tables(sort_by="size", limit=4, offset=offset)
            seen += [t.id for t in page.tables]
            offset = page.next_offset
        assert len(seen) == len(set(seen)) >= by_memory.table_count - 2
        await fails(ErrorCode.validation_error, node.list_ets_tables(sort_by="name"))


async def test_ets_rows_paged_with_a_key_cursor(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        first = await node.get_ets_table(table="ac_tab", limit=3)
        assert first.table.type == "set" and first.table.size > 3
        rows = list(first.rows)
        cursor = first.next_cursor
        while cursor:
            page = await node.get_ets_table(table="ac_tab", limit=3, cursor=cursor)
            rows += page.rows
            cursor = page.next_cursor
        assert len(rows) == first.table.size
        assert len({json.dumps(r, sort_keys=True) for r in rows}) == len(rows)

        # By id, as list_ets_tables writes unnamed tables; and a private table is refused (one of the
        # test's own: a bare node has one on OTP 25, `code`'s, and none from OTP 26 on).
        await _eval(
            node,
            "begin Parent = self(), "
            "spawn(fun() -> register(arsenal_test_private_owner, self()), ets:new(x, [private]), "
            "Parent ! ready, receive stop -> ok end end), "
            "receive ready -> ok end end",
        )
        try:
            tables = (await node.list_ets_tables(limit=1000)).tables
            unnamed = next(t for t in tables if t.id.startswith("#Ref<") and t.protection != "private")
            assert (await node.get_ets_table(table=unnamed.id, limit=1)).table.id == unnamed.id
            private = next(t for t in tables if t.protection == "private")
            error = await fails(ErrorCode.forbidden, node.get_ets_table(table=private.id))
            assert "private" in error.message
        finally:
            await _eval(node, "arsenal_test_private_owner ! stop")


async def test_ets_errors_and_no_atoms(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        before = await _atom_count(node)
        for table in ("no_such_table_xq81", "Elixir.NoSuch.Table9", "#Ref<0.1.2.3>"):
            await fails(ErrorCode.not_found, node.get_ets_table(table=table))
        assert await _atom_count(node) == before
        for bad in ({"table": "a b"}, {"table": "ac_tab", "limit": 501}, {"table": "ac_tab", "cursor": "x"}):
            await fails(ErrorCode.validation_error, node.get_ets_table(**bad))
        # A cursor naming an atom the node does not know is refused (binary_to_term [safe]).
        import base64

        from arsenal.dist.etf import term_to_binary

        forged = "k:" + base64.urlsafe_b64encode(term_to_binary(Atom("never_seen_atom_q7z"))).decode()
        await fails(ErrorCode.validation_error, node.get_ets_table(table="ac_tab", cursor=forged))
        assert await _atom_count(node) == before


_OWNER = """spawn(fun() ->
    B = ets:new(arsenal_test_bag, [bag, named_table, public]),
    [ets:insert(B, {I rem 4, I}) || I <- lists:seq(1, 24)],
    ets:insert(B, {big, lists:seq(1, 5000)}),
    S = ets:new(arsenal_test_set, [set, named_table, public]),
    [ets:insert(S, {I, I}) || I <- lists:seq(1, 10)],
    receive stop -> ok after 60000 -> ok end end)"""


async def test_ets_bag_pages_by_offset_and_big_rows_are_truncated(make_node, cookie) -> None:
    target = make_node("ets")
    async with arsenal.attach(target.name, cookie=cookie, reconnect=False) as node:
        await _eval(node, _OWNER)
        await asyncio.sleep(0.2)
        rows = []
        cursor = None
        pages = 0
        while True:
            page = await node.get_ets_table(table="arsenal_test_bag", limit=10, cursor=cursor)
            rows += page.rows
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                break
            assert cursor.startswith("o:")
        assert pages == 3 and len(rows) == 25
        big = [r for r in rows if isinstance(r, dict) and r.get("$truncated")]
        assert len(big) == 1 and big[0]["words"] > 5000 and big[0]["preview"].startswith("{big,")
        assert len([r for r in rows if isinstance(r, list)]) == 24

        # A set's key cursor whose key is deleted meanwhile: a conflict, not a wrong page.
        first = await node.get_ets_table(table="arsenal_test_set", limit=3)
        last_key = first.rows[-1][0]
        await _eval(node, f"ets:delete(arsenal_test_set, {last_key})")
        await fails(
            ErrorCode.conflict,
            node.get_ets_table(table="arsenal_test_set", limit=3, cursor=first.next_cursor),
        )


# ---------------------------------------------------------------------- schedulers, health


async def test_scheduler_usage_restores_the_flag(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        usage = await node.get_scheduler_usage(interval=0.2)
        assert usage.interval_ms == 200 and 0 <= usage.total <= 1
        normal = [s for s in usage.schedulers if s.type == "normal"]
        assert len(normal) >= 1 and all(0 <= s.utilization <= 1 for s in usage.schedulers)
        flag = await node.node.call("erlang", "statistics", [Atom("scheduler_wall_time")])
        assert flag == Atom("undefined")  # sampling turned the flag on and back off
        for bad in (0.05, 11):
            await fails(ErrorCode.validation_error, node.get_scheduler_usage(interval=bad))


async def test_health_score_with_reasons(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        for _ in range(100):  # the demo's mailbox fills up to 500 in its first second
            if (await node.analyze_message_queue(pid="demo_busy_mailbox", interval=0, sample=0)).after >= 100:
                break
            await asyncio.sleep(0.05)
        health = await node.analyze_system_health(queue_threshold=100, memory_threshold=1_000_000)
        assert 0 <= health.score <= 100 and health.status in ("healthy", "degraded", "critical")
        checks = {r.check: r for r in health.reasons}
        expected = {"process_count", "atom_count", "large_queues", "memory_hogs", "supervised_share"}
        assert expected <= set(checks)
        assert health.score == max(0, 100 - sum(r.penalty for r in health.reasons))
        assert "demo_busy_mailbox" in {p.name for p in health.large_queues}
        assert checks["large_queues"].value == health.large_queue_count >= 1
        assert "demo_big_state" in {p.name for p in health.memory_hogs}
        assert 0 < health.supervised_share <= 1 and health.supervisor_count >= 2
        assert health.supervised_count >= 7  # the demo tree and kernel's
        assert all(p.name is None for p in health.orphans)

        # An OTP process outside any supervision tree is an anti-pattern, and named as such.
        stray = await _eval(node, "proc_lib:spawn(timer, sleep, [3000])")
        flagged = await node.analyze_system_health(limit=100)
        row = next(p for p in flagged.unsupervised if p.pid == f"<0.{stray.id}.{stray.serial}>")
        assert row.initial_call == "timer:sleep/1"
        reason = next(r for r in flagged.reasons if r.check == "unsupervised_otp_processes")
        assert reason.value == flagged.unsupervised_count >= 1 and reason.penalty > 0

        calm = await node.analyze_system_health()
        assert calm.large_queue_count == 0
        await fails(ErrorCode.validation_error, node.analyze_system_health(limit=0))


_DEADLOCK = """begin
    Caller = fun() -> receive {go, Other} -> catch gen_server:call(Other, ping, 30000) end end,
    A = spawn(Caller), B = spawn(Caller),
    A ! {go, B}, B ! {go, A},
    Sink = spawn(fun() -> receive stop -> ok after 60000 -> ok end end),
    spawn(fun() -> [begin [Sink ! {tick, N} || N <- lists:seq(1, 20)], timer:sleep(10) end
                    || _ <- lists:seq(1, 2000)] end),
    {A, B, Sink}
end"""


async def test_bottlenecks_find_deadlocks_and_growing_queues(make_node, cookie) -> None:
    target = make_node("neck")
    async with arsenal.attach(target.name, cookie=cookie, reconnect=False) as node:
        a, b, sink = await _eval(node, _DEADLOCK)
        await asyncio.sleep(0.2)
        found = await node.detect_bottlenecks(interval=0.3)
        deadlocks = [c for c in found.call_chains if c.deadlock]
        assert deadlocks and {p.pid for p in deadlocks[0].processes} == {
            f"<0.{a.id}.{a.serial}>",
            f"<0.{b.id}.{b.serial}>",
        }
        assert found.waiting_call_count >= 2
        assert f"<0.{sink.id}.{sink.serial}>" in {g.pid for g in found.growing_queues}
        assert any(f.startswith("deadlock") for f in found.findings)
        await fails(ErrorCode.validation_error, node.detect_bottlenecks(interval=20))

        queue = await node.analyze_message_queue(pid=f"<0.{sink.id}.{sink.serial}>", interval=0.2)
        assert queue.after > queue.before and queue.growth_per_s > 0 and queue.copied
        assert queue.shapes[0].shape == "{tick, ...}/2" and queue.messages[0] == ["tick", 1]
        measured = await node.analyze_message_queue(pid=queue.pid, interval=0, max_copy=10)
        assert not measured.copied and measured.messages == [] and measured.after > 10


async def test_analyze_message_queue_errors(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        queue = await node.analyze_message_queue(pid="demo_busy_mailbox", interval=0, sample=5)
        assert queue.name == "demo_busy_mailbox" and queue.after >= 1 and len(queue.messages) <= 5
        for pid, code in (
            ("<0.32000.8000>", ErrorCode.not_found),
            (INVALID_PID, ErrorCode.validation_error),
            ("nobody_registered_here_q1", ErrorCode.not_found),
            ("not a name!", ErrorCode.validation_error),
        ):
            await fails(code, node.analyze_message_queue(pid=pid, interval=0))


# ---------------------------------------------------------------------- nodes


async def test_attach_list_and_detach_nodes(erl, elixir, make_node, cookie) -> None:
    async with Arsenal(cookie=cookie) as service:
        assert (await service.run("list_nodes")).nodes == []
        attached = await service.run("attach_node", {"name": erl.name})
        assert attached.node.name == erl.name and attached.node.default and not attached.already_attached
        assert attached.node.language == "erlang" and attached.node.elixir_version is None
        assert attached.node.otp_release == await otp_release(service.pool.get(erl.name))
        short = elixir.name.split("@")[0]
        second = await service.run("attach_node", {"name": short, "read_only": True})
        assert second.node.name == elixir.name and second.node.read_only and not second.node.default
        assert second.node.elixir_version == await elixir_version(service.pool.get(elixir.name))
        again = await service.run("attach_node", {"name": erl.name})
        assert again.already_attached
        held = await service.run("attach_node", {"name": elixir.name})  # read_only left out: it holds
        assert held.already_attached and held.node.read_only
        lifted = await service.run("attach_node", {"name": elixir.name, "read_only": False})
        assert not lifted.node.read_only  # lifted in place, by the (local) admin
        listed = (await service.run("list_nodes")).nodes
        assert [(n.name, n.connected, n.language) for n in listed] == [
            (erl.name, True, "erlang"),
            (elixir.name, True, "elixir"),
        ]
        # Operations reach either node through the pool.
        info = await service.run("get_system_info", node=elixir.name)
        assert info.language == "elixir"

        await service.run("get_system_info", node=erl.name)  # its first call may load a module
        atoms = await service.run("get_system_info", node=erl.name)
        await fails(ErrorCode.node_down, service.run("attach_node", {"name": "nobody_here_zq9"}))
        other = make_node("cookie", cookie="another-cookie")
        await fails(ErrorCode.forbidden, service.run("attach_node", {"name": other.name}))
        await fails(ErrorCode.validation_error, service.run("attach_node", {"name": "bad name!"}))
        await asyncio.sleep(0.05)
        assert (await service.run("get_system_info", node=erl.name)).atom_count == atoms.atom_count

        gone = await service.run("detach_node", {"name": elixir.name})
        assert gone.remaining == [erl.name]
        await fails(ErrorCode.not_found, service.run("detach_node", {"name": elixir.name}))
        await fails(ErrorCode.not_found, service.run("get_system_info", node=elixir.name))
        assert [n.name for n in (await service.run("list_nodes")).nodes] == [erl.name]


# ---------------------------------------------------------------------- CLI


def _arsenal(*args: str, cookie: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ARSENAL_COOKIE": cookie}
    return subprocess.run(
        [sys.executable, "-m", "arsenal.cli.main", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_cli_apps_ets_health(elixir, erl, cookie) -> None:
    apps = _arsenal("apps", "--node", elixir.name, "--json", cookie=cookie)
    assert apps.returncode == 0, apps.stderr
    assert "arsenal_demo" in {a["name"] for a in json.loads(apps.stdout)["applications"]}
    table = _arsenal("apps", "--node", elixir.name, cookie=cookie)
    assert table.returncode == 0 and "arsenal_demo" in table.stdout

    listed = _arsenal("ets", "--node", erl.name, "--sort", "size", "--limit", "5", cookie=cookie)
    assert listed.returncode == 0, listed.stderr
    assert "ETS tables by size" in listed.stdout
    rows = _arsenal("ets", "ac_tab", "--node", erl.name, "--limit", "2", "--json", cookie=cookie)
    assert rows.returncode == 0, rows.stderr
    page = json.loads(rows.stdout)
    assert len(page["rows"]) == 2 and page["next_cursor"]
    missing = _arsenal("ets", "no_such_table_cli", "--node", erl.name, cookie=cookie)
    assert missing.returncode == 3 and "no ETS table" in missing.stderr
    bad_sort = _arsenal("ets", "--node", erl.name, "--sort", "bogus", cookie=cookie)
    assert bad_sort.returncode == 2

    health = _arsenal("health", "--node", erl.name, "--queue-threshold", "100", cookie=cookie)
    assert health.returncode == 0, health.stderr
    assert "/100" in health.stdout and "large_queues" in health.stdout


async def test_elixir_node_health_and_names(elixir, cookie) -> None:
    async with arsenal.attach(elixir.name, cookie=cookie, reconnect=False) as node:
        health = await node.analyze_system_health(limit=100)
        assert health.supervisor_count >= 4 and health.supervised_count >= 8
        assert not [p for p in health.unsupervised if p.name and p.name.startswith("ArsenalDemo.")], [
            (p.name, p.initial_call) for p in health.unsupervised
        ]
        tables = (await node.list_ets_tables(limit=1000)).tables
        ac_tab = next(t for t in tables if t.id == "ac_tab")
        assert ac_tab.name == ":ac_tab" and ac_tab.owner_name == ":application_controller"
        page = await node.get_ets_table(table=ac_tab.name, limit=1)
        assert page.table.id == "ac_tab" and len(page.rows) == 1
        names = await node.list_registered_processes(limit=1000)
        assert "ArsenalDemo.Supervisor" in {r.name for r in names.local}


async def test_a_purged_agent_module_is_loaded_again(make_node, cookie) -> None:
    target = make_node("purge")
    async with arsenal.attach(target.name, cookie=cookie, reconnect=False) as node:
        for step in ("purge", "delete", "purge"):
            await node.node.call("code", step, [Atom("arsenal_agent_sys")])
        assert (await node.get_system_info()).node == target.name


async def test_rest_routes(erl, cookie) -> None:
    import httpx

    from arsenal.api import create_app

    async with Arsenal(cookie=cookie) as service:
        await service.attach(erl.name, reconnect=False)
        transport = httpx.ASGITransport(app=create_app(service, auth=False), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://arsenal.test") as client:
            health = await client.get("/api/v1/system/health", params={"queue_threshold": 100})
            assert health.status_code == 200, health.text
            assert 0 <= health.json()["data"]["score"] <= 100
            metrics = (await client.get("/api/v1/system/metrics")).json()["data"]
            assert metrics["node"] == erl.name and metrics["process_count"] > 0
            ets = (await client.get("/api/v1/ets", params={"limit": 3})).json()["data"]
            assert len(ets["tables"]) == 3
            page = await client.get("/api/v1/ets/ac_tab", params={"limit": 2})
            assert page.status_code == 200 and len(page.json()["data"]["rows"]) == 2
            missing = await client.get("/api/v1/ets/no_such_table_rest")
            assert missing.status_code == 404 and missing.json()["errors"][0]["code"] == "not_found"
            nodes = (await client.get("/api/v1/nodes")).json()["data"]["nodes"]
            assert [n["name"] for n in nodes] == [erl.name]
            bad = await client.post("/api/v1/nodes", json={"name": "nobody_rest_q3"})
            assert bad.status_code == 503 and bad.json()["errors"][0]["code"] == "node_down"
