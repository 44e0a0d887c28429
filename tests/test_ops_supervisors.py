"""Supervisor operations against real nodes: reads on the shared demo nodes, changes on throwaway ones."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

import arsenal
from arsenal.dist import Atom
from arsenal.ops.errors import ErrorCode

from .conftest import COOKIE
from .helpers import INVALID_PID, fails
from .nodes import BeamNode, elixir_demo_node

SUP = "arsenal_demo_erl_sup"
ORDER = [
    "demo_worker_1",
    "demo_worker_2",
    "demo_worker_3",
    "demo_big_state",
    "demo_busy_mailbox",
    "demo_spinner",
]


async def _atom_count(node: arsenal.NodeClient) -> int:
    return await node.node.call("erlang", "system_info", [Atom("atom_count")])  # type: ignore[return-value]


async def _until(predicate: object, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if await predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


@pytest.fixture
def exdemo() -> Iterator[BeamNode]:
    """A throwaway Elixir demo node, for tests that break things."""
    node = elixir_demo_node(cookie=COOKIE).start()
    yield node
    node.kill()


# ---------------------------------------------------------------------------- reads


@pytest.mark.timeout(60)
async def test_list_flags_and_children_on_erl(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        listed = await node.list_supervisors()
        names = {row.name for row in listed.supervisors}
        assert {SUP, "kernel_sup", "logger_sup"} <= names
        assert listed.total == len(listed.supervisors)
        kernel = next(row for row in listed.supervisors if row.name == "kernel_sup")
        assert kernel.application == "kernel" and kernel.kind == "supervisor" and kernel.module == "kernel"
        ours = next(row for row in listed.supervisors if row.name == SUP)
        assert ours.module == SUP and ours.application is None
        only = await node.list_supervisors(name="demo", limit=1)
        assert [row.name for row in only.supervisors] == [SUP] and only.total == 1
        capped = await node.list_supervisors(limit=1)
        assert len(capped.supervisors) == 1 and capped.total >= 4

        flags = await node.get_supervisor_flags(name=SUP)
        assert (flags.strategy, flags.intensity, flags.period) == ("one_for_one", 10, 10)
        assert flags.auto_shutdown == "never" and flags.paused is False and flags.module == SUP
        by_pid = await node.get_supervisor_flags(name=ours.pid)
        assert by_pid.name == SUP and by_pid.pid == ours.pid
        assert (await node.get_supervisor_flags(name="kernel_sup")).strategy == "one_for_all"

        children = await node.which_children(name=SUP)
        assert children.total == 6 and children.name == SUP
        assert sorted(c.id for c in children.children) == sorted(ORDER)
        worker = next(c for c in children.children if c.id == "demo_worker_1")
        assert worker.name == "demo_worker_1" and worker.state == "running" and worker.pid.startswith("<0.")
        assert worker.type == "worker" and worker.restart == "permanent"
        assert worker.modules == ["arsenal_demo_erl_worker"]
        two = await node.which_children(name=SUP, limit=2)
        assert len(two.children) == 2 and two.total == 6

        tree = await node.get_supervision_tree(name=SUP)
        (root,) = tree.roots
        assert root.name == SUP and root.strategy == "one_for_one" and root.type == "supervisor"
        assert sorted(c.id for c in root.children) == sorted(ORDER) and tree.node_count == 7
        assert not tree.truncated

        everything = await node.get_supervision_tree()
        roots = {r.name: r for r in everything.roots}
        assert {SUP, "kernel_sup"} <= set(roots)
        assert roots["kernel_sup"].application == "kernel"
        logger = next(c for c in roots["kernel_sup"].children if c.name == "logger_sup")
        assert logger.type == "supervisor" and logger.strategy == "one_for_one" and logger.children
        star = await node.get_supervision_tree(name="*", max_depth=1)
        assert all(r.children == [] and r.truncated for r in star.roots if r.type == "supervisor")
        small = await node.get_supervision_tree(max_nodes=3)
        assert small.node_count == 3 and small.truncated


@pytest.mark.timeout(60)
async def test_elixir_tree_shows_each_strategy(elixir, cookie) -> None:
    async with arsenal.attach(elixir.name, cookie=cookie, reconnect=False) as node:
        tree = await node.get_supervision_tree(name="ArsenalDemo.Supervisor")
        (root,) = tree.roots
        assert root.name == "ArsenalDemo.Supervisor" and root.strategy == "one_for_one"
        assert root.application == "arsenal_demo"
        subs = {c.name: c for c in root.children}
        assert subs["ArsenalDemo.PairSupervisor"].strategy == "one_for_all"
        assert subs["ArsenalDemo.ServiceSupervisor"].strategy == "rest_for_one"
        dynamic = subs["ArsenalDemo.DynamicWorkers"]
        assert dynamic.type == "supervisor" and dynamic.strategy == "one_for_one"
        assert {c.name for c in dynamic.children} >= {"ArsenalDemo.Dynamic1", "ArsenalDemo.Dynamic2"}
        assert all(c.id is None and c.restart for c in dynamic.children)
        pair = [c.id for c in subs["ArsenalDemo.PairSupervisor"].children]
        assert sorted(pair) == ["ArsenalDemo.Counter1", "ArsenalDemo.Counter2"]
        assert subs["ArsenalDemo.LoadGenerator"].type == "worker"

        everything = await node.get_supervision_tree(max_depth=2)
        assert "ArsenalDemo.Supervisor" in {r.name for r in everything.roots}
        listed = await node.list_supervisors(name="ArsenalDemo")
        kinds = {row.name: row.kind for row in listed.supervisors}
        assert kinds["ArsenalDemo.DynamicWorkers"] == "dynamic"
        assert kinds["ArsenalDemo.PairSupervisor"] == "supervisor"

        flags = await node.get_supervisor_flags(name="ArsenalDemo.DynamicWorkers")
        assert flags.kind == "dynamic" and flags.strategy == "one_for_one"
        assert flags.module == "ArsenalDemo.DynamicWorkers"
        pair_flags = await node.get_supervisor_flags(name="ArsenalDemo.PairSupervisor")
        assert (pair_flags.strategy, pair_flags.intensity, pair_flags.period) == ("one_for_all", 5, 10)
        kids = await node.which_children(name="ArsenalDemo.ServiceSupervisor")
        assert [c.id for c in kids.children] == [
            ":arsenal_demo_cascade",
            ":arsenal_demo_events",
            ":arsenal_demo_pool",
        ]

        # Changing the strategy of a DynamicSupervisor is refused before anything changes.
        await fails(
            ErrorCode.conflict,
            node.change_supervisor_strategy(name="ArsenalDemo.DynamicWorkers", strategy="one_for_all"),
        )


@pytest.mark.timeout(60)
async def test_read_errors_and_no_atoms(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        # Not supervisors: a gen_server, and a plain process that never reads its mailbox (never blocks).
        for name in ("demo_worker_1", "demo_busy_mailbox", "demo_spinner"):
            for call in (
                node.get_supervisor_flags(name=name),
                node.which_children(name=name),
                node.get_supervision_tree(name=name),
            ):
                error = await fails(ErrorCode.validation_error, call)
                assert "is not a supervisor" in error.message and "list_supervisors" in error.message
        error = await fails(ErrorCode.validation_error, node.which_children(name="demo_worker_1"))
        assert "arsenal_demo_erl_worker" in error.message

        before = await _atom_count(node)
        for _ in range(2):
            for name, code in (
                ("no_such_supervisor_q1w2e3", ErrorCode.not_found),
                ("<0.32000.8000>", ErrorCode.not_found),  # valid, not alive
                (INVALID_PID, ErrorCode.validation_error),
                ("<1.2.3>", ErrorCode.validation_error),
                ("not a name!", ErrorCode.validation_error),
            ):
                await fails(code, node.get_supervisor_flags(name=name))
                await fails(code, node.which_children(name=name))
                await fails(code, node.get_supervision_tree(name=name))
            empty = await node.list_supervisors(name="no_such_sup_r4t5y6")
            assert empty.supervisors == [] and empty.total == 0
            await fails(
                ErrorCode.not_found,
                node.restart_child(name=SUP, child="no_such_child_u7i8o9"),
            )
        await asyncio.sleep(0.2)
        assert await _atom_count(node) == before

        for bad in ({"limit": 0}, {"limit": 5000}, {"nope": 1}):
            await fails(ErrorCode.validation_error, node.list_supervisors(**bad))
        await fails(ErrorCode.validation_error, node.get_supervision_tree(max_depth=0))
        await fails(ErrorCode.validation_error, node.get_supervision_tree(max_nodes=5000))
        await fails(ErrorCode.validation_error, node.change_supervisor_strategy(name=SUP, strategy="x"))
        await fails(
            ErrorCode.validation_error,
            node.change_supervisor_strategy(name=SUP, strategy="simple_one_for_one"),
        )
        await fails(ErrorCode.validation_error, node.simulate_failure(name=SUP, child="a", reason="boom"))
        await fails(ErrorCode.validation_error, node.simulate_failure(name=SUP, child="a", wait_ms=20000))


# ---------------------------------------------------------------------------- changes


@pytest.mark.timeout(90)
async def test_child_operations(make_node, cookie) -> None:
    target = make_node("supops", demo=True)
    async with arsenal.attach(target.name, cookie=cookie, reconnect=False) as node:
        # A node that lost the agent's module gets it back on the next call.
        assert await node.node.call("code", "delete", [Atom("arsenal_agent_sup")]) is True
        await node.node.call("code", "purge", [Atom("arsenal_agent_sup")])
        assert SUP in {row.name for row in (await node.list_supervisors()).supervisors}

        first = await node.get_process_info(pid="demo_worker_1", fields=["registered_name"])

        stopped = await node.terminate_child(name=SUP, child="demo_worker_1")
        assert stopped.id == "demo_worker_1" and stopped.pid == first.pid
        row = next(c for c in (await node.which_children(name=SUP)).children if c.id == "demo_worker_1")
        assert row.pid is None and row.state == "undefined"
        await fails(ErrorCode.conflict, node.simulate_failure(name=SUP, child="demo_worker_1"))

        again = await node.restart_child(name=SUP, child="demo_worker_1")
        assert again.new_pid and again.new_pid != first.pid
        error = await fails(ErrorCode.conflict, node.restart_child(name=SUP, child="demo_worker_1"))
        assert "terminate_child first" in error.message
        await fails(ErrorCode.conflict, node.delete_child(name=SUP, child=again.new_pid))

        # By pid, then delete the stopped child's spec.
        worker3 = await node.get_process_info(pid="demo_worker_3", fields=["registered_name"])
        await node.terminate_child(name=SUP, child=worker3.pid)
        deleted = await node.delete_child(name=SUP, child="demo_worker_3")
        assert deleted.id == "demo_worker_3"
        ids = [c.id for c in (await node.which_children(name=SUP)).children]
        assert "demo_worker_3" not in ids and len(ids) == 5
        await fails(ErrorCode.not_found, node.delete_child(name=SUP, child="demo_worker_3"))
        await fails(ErrorCode.not_found, node.terminate_child(name=SUP, child="<0.32000.8000>"))
        await fails(ErrorCode.validation_error, node.terminate_child(name="demo_worker_1", child="x"))

        # The VM's own supervisors and processes are protected.
        for call in (
            node.terminate_child(name="kernel_sup", child="code_server"),
            node.restart_child(name="kernel_sup", child="code_server"),
            node.simulate_failure(name="logger_sup", child="logger_handler_watcher"),
            node.pause_supervision(name="kernel_sup"),
            node.change_supervisor_strategy(name="kernel_sup", strategy="one_for_one"),
        ):
            await fails(ErrorCode.protected_process, call)
        assert (await node.get_supervisor_flags(name="kernel_sup")).strategy == "one_for_all"

    async with arsenal.attach(target.name, cookie=cookie, reconnect=False, read_only=True) as ro:
        for call in (
            ro.terminate_child(name=SUP, child="demo_worker_2"),
            ro.restart_child(name=SUP, child="demo_worker_2"),
            ro.delete_child(name=SUP, child="demo_worker_2"),
            ro.simulate_failure(name=SUP, child="demo_worker_2"),
            ro.pause_supervision(name=SUP),
            ro.resume_supervision(name=SUP),
            ro.change_supervisor_strategy(name=SUP, strategy="one_for_all"),
        ):
            await fails(ErrorCode.read_only, call)
        assert (await ro.which_children(name=SUP)).total == 5


@pytest.mark.timeout(90)
async def test_simulate_failure_follows_the_strategy_it_is_switched_to(make_node, cookie) -> None:
    target = make_node("supfail", demo=True)
    async with arsenal.attach(target.name, cookie=cookie, reconnect=False) as node:
        report = await node.simulate_failure(name=SUP, child="demo_worker_2", reason="kill")
        assert report.child_died and report.supervisor_alive and report.reason == "kill"
        assert report.restarted == ["demo_worker_2"]
        assert {c.outcome for c in report.changes if c.id != "demo_worker_2"} == {"unchanged"}

        changed = await node.change_supervisor_strategy(name=SUP, strategy="rest_for_one")
        assert (changed.old_strategy, changed.new_strategy) == ("one_for_one", "rest_for_one")
        assert (await node.get_supervisor_flags(name=SUP)).strategy == "rest_for_one"
        report = await node.simulate_failure(name=SUP, child="demo_worker_3", reason="crash")
        assert report.reason == "{arsenal,simulated_failure}"
        assert sorted(report.restarted) == sorted(ORDER[2:])

        await node.change_supervisor_strategy(name=SUP, strategy="one_for_all")
        worker1 = await node.get_process_info(pid="demo_worker_1", fields=["registered_name"])
        report = await node.simulate_failure(name=SUP, child=worker1.pid, reason="shutdown")
        assert sorted(report.restarted) == sorted(ORDER) and report.pid == worker1.pid

        # The supervisor itself was never restarted: same pid, its children intact.
        flags = await node.get_supervisor_flags(name=SUP)
        assert flags.strategy == "one_for_all" and flags.intensity == 10
        await fails(ErrorCode.not_found, node.simulate_failure(name=SUP, child="nobody_here"))


@pytest.mark.timeout(90)
async def test_pause_and_resume(make_node, cookie) -> None:
    target = make_node("suppause", demo=True)
    async with arsenal.attach(target.name, cookie=cookie, reconnect=False) as node:
        paused = await node.pause_supervision(name=SUP, auto_resume_seconds=600)
        assert paused.paused and paused.name == SUP
        assert (await node.get_supervisor_flags(name=SUP)).paused is True
        await fails(ErrorCode.conflict, node.pause_supervision(name=SUP))
        error = await fails(ErrorCode.timeout, node.which_children(name=SUP))
        assert "resume_supervision" in error.message

        # A child that dies while paused stays dead...
        await node.node.call("arsenal_demo_erl", "crash", [Atom("demo_spinner")])
        await asyncio.sleep(0.3)
        assert await node.node.call("erlang", "whereis", [Atom("demo_spinner")]) == Atom("undefined")

        # ...and is restarted on resume.
        resumed = await node.resume_supervision(name=SUP)
        assert resumed.paused is False
        await fails(ErrorCode.conflict, node.resume_supervision(name=SUP))

        async def back() -> bool:
            return await node.node.call("erlang", "whereis", [Atom("demo_spinner")]) != Atom("undefined")

        await _until(back)
        assert (await node.which_children(name=SUP)).total == 6
        watchdogs = await node.node.call("erlang", "processes", [])
        assert not [
            p
            for p in watchdogs  # type: ignore[union-attr]
            if await node.node.call("erlang", "process_info", [p, Atom("initial_call")])
            == (Atom("initial_call"), (Atom("arsenal_agent_sup"), Atom("pause_watchdog"), 2))
        ]

        # A forgotten pause ends by itself.
        await node.pause_supervision(name=SUP, auto_resume_seconds=1)

        async def running() -> bool:
            return (await node.get_supervisor_flags(name=SUP)).paused is False

        await _until(running)
        await fails(ErrorCode.validation_error, node.pause_supervision(name="demo_worker_1"))
        await fails(ErrorCode.validation_error, node.pause_supervision(name=SUP, auto_resume_seconds=0))


@pytest.mark.timeout(90)
async def test_elixir_one_for_all_and_dynamic_children(exdemo, cookie) -> None:
    async with arsenal.attach(exdemo.name, cookie=cookie, reconnect=False) as node:
        report = await node.simulate_failure(
            name="ArsenalDemo.PairSupervisor", child="ArsenalDemo.Counter1", reason="kill"
        )
        assert sorted(report.restarted) == ["ArsenalDemo.Counter1", "ArsenalDemo.Counter2"]
        assert report.id == "ArsenalDemo.Counter1"

        dynamic = await node.which_children(name="ArsenalDemo.DynamicWorkers")
        assert dynamic.total >= 2 and all(c.id is None for c in dynamic.children)
        one = next(c for c in dynamic.children if c.name == "ArsenalDemo.Dynamic1")
        assert one.restart is not None
        await fails(ErrorCode.conflict, node.restart_child(name="ArsenalDemo.DynamicWorkers", child=one.pid))
        two = next(c for c in dynamic.children if c.name == "ArsenalDemo.Dynamic2")
        report = await node.simulate_failure(name="ArsenalDemo.DynamicWorkers", child=two.pid, reason="kill")
        outcomes = {c.outcome for c in report.changes if c.old_pid == two.pid or c.outcome == "started"}
        assert outcomes == {"removed", "started"} and report.supervisor_alive
        gone = await node.terminate_child(name="ArsenalDemo.DynamicWorkers", child=one.pid)
        assert gone.pid == one.pid
        after = await node.which_children(name="ArsenalDemo.DynamicWorkers")
        assert one.pid not in {c.pid for c in after.children} and after.total == dynamic.total - 1
        added = await node.add_dynamic_child(
            name="ArsenalDemo.DynamicWorkers", module="gen_event", function="start_link"
        )
        again = await node.which_children(name="ArsenalDemo.DynamicWorkers")
        assert added.pid in {c.pid for c in again.children} and again.total == dynamic.total
        await fails(
            ErrorCode.conflict, node.add_child(name="ArsenalDemo.DynamicWorkers", id="e", module="gen_event")
        )


@pytest.mark.timeout(90)
async def test_add_children_start_and_stop_supervisors(make_node, cookie) -> None:
    target = make_node("supadd", demo=True)
    async with arsenal.attach(target.name, cookie=cookie, reconnect=False) as node:
        added = await node.add_child(name=SUP, id="events", module="gen_event", function="start_link")
        assert added.id == "events" and added.pid.startswith("<0.")
        row = next(c for c in (await node.which_children(name=SUP)).children if c.id == "events")
        assert row.pid == added.pid and row.restart == "temporary"
        await fails(ErrorCode.conflict, node.add_child(name=SUP, id="events", module="gen_event"))
        await node.terminate_child(name=SUP, child="events")  # a temporary child is forgotten too
        assert "events" not in {c.id for c in (await node.which_children(name=SUP)).children}

        before = await _atom_count(node)
        missing = await fails(
            ErrorCode.not_found, node.add_child(name=SUP, id="x1", module="no_such_module_zq1", function="go")
        )
        assert "no_such_module_zq1" in missing.message
        await fails(
            ErrorCode.not_found, node.add_child(name=SUP, id="x2", module="lists", function="nope_zq2")
        )
        await fails(
            ErrorCode.validation_error,
            node.start_supervisor(module="disk_log_sup", arg=[], register_as="brand_new_name_zq3"),
        )
        await fails(ErrorCode.not_found, node.start_supervisor(module="NoSuch.ElixirModule.Zq4"))
        await asyncio.sleep(0.2)
        assert await _atom_count(node) == before

        for bad in ([{"a": 1}], [None], [1.5], [[[[[[[[[[1]]]]]]]]]]):
            await fails(ErrorCode.validation_error, node.add_child(name=SUP, id="x", module="m", args=bad))
        await fails(ErrorCode.validation_error, node.add_child(name=SUP, id="x", module="not a module"))
        # A start that fails is a conflict that says why; the supervisor is still fine.
        failed = await fails(
            ErrorCode.conflict,
            node.add_child(name=SUP, id="rev", module="lists", function="reverse", args=[[1]]),
        )
        assert "did not start" in failed.message
        await fails(ErrorCode.conflict, node.add_dynamic_child(name=SUP, args=[1]))

        # A simple_one_for_one supervisor of OTP's own, started outside any tree.
        started = await node.start_supervisor(module="disk_log_sup", arg=[], register_as="disk_log_sup")
        assert started.name == "disk_log_sup" and started.module == "disk_log_sup"
        assert (await node.get_supervisor_flags(name="disk_log_sup")).strategy == "simple_one_for_one"
        await fails(
            ErrorCode.conflict, node.start_supervisor(module="disk_log_sup", register_as="disk_log_sup")
        )
        child = await node.add_dynamic_child(name="disk_log_sup", args=[123])
        kids = await node.which_children(name="disk_log_sup")
        assert [c.pid for c in kids.children] == [child.pid] and kids.children[0].restart == "temporary"
        await fails(
            ErrorCode.validation_error, node.add_dynamic_child(name="disk_log_sup", module="gen_event")
        )
        await fails(ErrorCode.conflict, node.add_child(name="disk_log_sup", id="y", module="gen_event"))
        await fails(
            ErrorCode.conflict, node.change_supervisor_strategy(name="disk_log_sup", strategy="one_for_all")
        )
        await fails(ErrorCode.conflict, node.restart_child(name="disk_log_sup", child=child.pid))
        await fails(ErrorCode.conflict, node.start_supervisor(module="arsenal_demo_erl_sup"))

        stopped = await node.stop_supervisor(name="disk_log_sup")
        assert stopped.pid == started.pid and stopped.parent is None
        await fails(ErrorCode.not_found, node.get_supervisor_flags(name="disk_log_sup"))
        await fails(ErrorCode.not_found, node.stop_supervisor(name=started.pid))
        await fails(ErrorCode.protected_process, node.stop_supervisor(name="kernel_sup"))
        await fails(
            ErrorCode.protected_process, node.add_child(name="kernel_sup", id="z", module="gen_event")
        )
        await fails(ErrorCode.validation_error, node.stop_supervisor(name="demo_worker_1"))

    async with arsenal.attach(target.name, cookie=cookie, reconnect=False, read_only=True) as ro:
        for call in (
            ro.add_child(name=SUP, id="events", module="gen_event"),
            ro.add_dynamic_child(name=SUP, args=[]),
            ro.start_supervisor(module="disk_log_sup"),
            ro.stop_supervisor(name=SUP),
        ):
            await fails(ErrorCode.read_only, call)


# ---------------------------------------------------------------------------- CLI


def _arsenal(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ARSENAL_COOKIE": COOKIE}
    return subprocess.run(
        [sys.executable, "-m", "arsenal.cli.main", *args], capture_output=True, text=True, env=env, timeout=60
    )


@pytest.mark.timeout(90)
def test_cli_tree_children_and_supervisors(erl) -> None:
    shown = _arsenal("tree", SUP, "--node", erl.name)
    assert shown.returncode == 0, shown.stderr
    assert SUP in shown.stdout and "one_for_one" in shown.stdout and "demo_worker_1" in shown.stdout

    data = json.loads(_arsenal("tree", "--node", erl.name, "--depth", "2", "--json").stdout)
    assert SUP in {root["name"] for root in data["roots"]}

    kids = _arsenal("children", SUP, "--node", erl.name)
    assert kids.returncode == 0 and "demo_big_state" in kids.stdout and "permanent" in kids.stdout
    listed = json.loads(_arsenal("supervisors", "--node", erl.name, "--json").stdout)
    assert SUP in {row["name"] for row in listed["supervisors"]}

    wrong = _arsenal("tree", "demo_worker_1", "--node", erl.name)
    assert wrong.returncode == 2 and "not a supervisor" in wrong.stderr and "Traceback" not in wrong.stderr
    missing = _arsenal("children", "no_such_sup_p0o9", "--node", erl.name)
    assert missing.returncode == 3
