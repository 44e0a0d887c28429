"""Other people's processes, on real nodes: supervisors that are forks of OTP's supervisor (the
test_supervisor2 fixture, nested with OTP's), processes that do not speak the sys protocol (a plain
proc_lib receive loop, a hibernating one, a raw spawn), what Arsenal leaves in mailboxes and as
seq_trace tokens, acceptor-style helpers linked to supervised processes, and the supervisor state
layouts of other OTP releases (OTP 29's on a node in a Debian root, when one is built).

The fixtures are tests/erlang/arsenal_test_other.erl and tests/erlang/test_supervisor2.erl.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from arsenal.client import Arsenal
from arsenal.dist import Atom, Pid, charlist
from arsenal.ops.base import Principal
from arsenal.ops.errors import ErrorCode

from .compat import Workspace, otp_targets, required, workspace
from .helpers import eval_erlang, fails
from .nodes import ROOT, BeamNode

pytestmark = pytest.mark.timeout(180)

FORK = "test_supervisor2"
# The processes of a node that hold a sequential trace token.
TOKEN_HOLDERS = (
    "[P || P <- erlang:processes(), erlang:process_info(P, sequential_trace_token) "
    "=/= {sequential_trace_token, []}, erlang:process_info(P, sequential_trace_token) =/= undefined]"
)


@pytest.fixture
def other(make_node: Callable[..., BeamNode]) -> BeamNode:
    """A throwaway node: the tests start trees and loops on it and break things."""
    return make_node("other")


@pytest.fixture
async def service(other: BeamNode, cookie: str) -> AsyncIterator[Arsenal]:
    service = Arsenal(cookie=cookie, principal=Principal(name="test", role="admin"))
    await service.attach(other.name, reconnect=False)
    yield service
    await service.close()


async def _call(service: Arsenal, module: str, function: str, *args: Any) -> Any:
    return await service.pool.get().call(module, function, list(args))


async def _other(service: Arsenal, function: str, *args: Any) -> Any:
    return await _call(service, "arsenal_test_other", function, *args)


async def _mailbox(service: Arsenal, name: str) -> tuple[int, list[Any]]:
    length, messages = await _other(service, "mailbox", Atom(name))
    return length, messages


def _text(pid: Pid) -> str:
    return f"<0.{pid.id}.{pid.serial}>"


async def _whereis(service: Arsenal, name: str) -> Pid:
    pid = await _call(service, "erlang", "whereis", Atom(name))
    assert isinstance(pid, Pid), name
    return pid


# ====================================================================== supervisor forks


async def test_a_fork_is_a_supervisor_everywhere(service: Arsenal) -> None:
    await _other(service, "start_fork_tree")
    await _other(service, "start_fork_simple")

    listed = await service.run("list_supervisors", {"name": "arsenal_"})
    rows = {row.name: row for row in listed.supervisors}
    assert {"arsenal_fork_top", "arsenal_otp_mid", "arsenal_fork_leaf", "arsenal_fork_simple"} <= set(rows)
    assert rows["arsenal_fork_top"].behaviour == FORK and rows["arsenal_fork_top"].module == FORK
    assert rows["arsenal_otp_mid"].behaviour == "supervisor"
    assert rows["arsenal_otp_mid"].module == "arsenal_test_other"

    flags = await service.run("get_supervisor_flags", {"name": "arsenal_fork_top"})
    assert (flags.strategy, flags.intensity, flags.period) == ("one_for_one", 10, 10)
    assert flags.module == "arsenal_test_other" and flags.behaviour == FORK
    assert flags.layout == "state12" and flags.kind == "supervisor"

    # The tree goes through the fork, OTP's supervisor under it, and the fork under that.
    tree = await service.run("get_supervision_tree", {"name": "arsenal_fork_top"})
    (top,) = tree.roots
    assert (top.type, top.strategy, top.behaviour, top.module) == (
        "supervisor",
        "one_for_one",
        FORK,
        "arsenal_test_other",
    )
    kids = {c.name: c for c in top.children}
    assert kids["arsenal_top_w"].restart == "temporary" and kids["arsenal_top_w"].type == "worker"
    mid = kids["arsenal_otp_mid"]
    assert (mid.type, mid.strategy, mid.behaviour) == ("supervisor", "rest_for_one", "supervisor")
    mids = {c.name: c for c in mid.children}
    leaf = mids["arsenal_fork_leaf"]
    assert (leaf.type, leaf.strategy, leaf.behaviour) == ("supervisor", "one_for_all", FORK)
    assert {c.name for c in leaf.children} == {"arsenal_leaf_w1", "arsenal_leaf_w2"}
    assert all(c.restart == "permanent" for c in leaf.children)
    assert mids["arsenal_mid_w"].restart == "transient"
    assert tree.node_count == 7 and not tree.truncated

    # The whole node's tree has the fork as a root, not its workers.
    everything = await service.run("get_supervision_tree", {})
    roots = {r.name for r in everything.roots}
    assert {"arsenal_fork_top", "arsenal_fork_simple"} <= roots
    assert not roots & {"arsenal_otp_mid", "arsenal_fork_leaf", "arsenal_leaf_w1"}

    children = await service.run("which_children", {"name": "arsenal_fork_leaf"})
    assert {c.id for c in children.children} == {"arsenal_leaf_w1", "arsenal_leaf_w2"}
    simple = await service.run("which_children", {"name": "arsenal_fork_simple"})
    assert {c.name for c in simple.children} == {"arsenal_simple_w1", "arsenal_simple_w2"}
    assert all(c.id is None and c.restart == "transient" for c in simple.children)
    assert (await service.run("get_supervisor_flags", {"name": "arsenal_fork_simple"})).strategy == (
        "simple_one_for_one"
    )


async def test_operations_on_a_fork(service: Arsenal) -> None:
    await _other(service, "start_fork_tree")

    # Impact: the fork under OTP's supervisor restarts its children (one_for_all).
    impact = await service.run("trace_failure_impact", {"pid": "arsenal_leaf_w1", "reason": "crash"})
    effects = {a.name: a.effect for a in impact.affected}
    assert effects["arsenal_leaf_w1"] == "restarted", impact
    assert effects["arsenal_leaf_w2"] == "terminated_and_restarted", impact
    assert "arsenal_fork_leaf" in next(a.why for a in impact.affected if a.name == "arsenal_leaf_w1")

    changed = await service.run(
        "change_supervisor_strategy", {"name": "arsenal_fork_leaf", "strategy": "one_for_one"}
    )
    assert (changed.old_strategy, changed.new_strategy) == ("one_for_all", "one_for_one")
    assert (
        await service.run("get_supervisor_flags", {"name": "arsenal_fork_leaf"})
    ).strategy == "one_for_one"
    impact = await service.run("trace_failure_impact", {"pid": "arsenal_leaf_w1", "reason": "crash"})
    effects = {a.name: a.effect for a in impact.affected}
    assert effects["arsenal_leaf_w1"] == "restarted" and "arsenal_leaf_w2" not in effects

    before = await _whereis(service, "arsenal_leaf_w2")
    await service.run("terminate_child", {"name": "arsenal_fork_leaf", "child": "arsenal_leaf_w2"})
    restarted = await service.run("restart_child", {"name": "arsenal_fork_leaf", "child": "arsenal_leaf_w2"})
    assert restarted.new_pid and restarted.new_pid != _text(before)

    paused = await service.run("pause_supervision", {"name": "arsenal_fork_top", "auto_resume_seconds": 30})
    assert paused is not None
    assert (await service.run("get_supervisor_flags", {"name": "arsenal_fork_top"})).paused is True
    await service.run("resume_supervision", {"name": "arsenal_fork_top"})
    assert (await service.run("get_supervisor_flags", {"name": "arsenal_fork_top"})).paused is False

    health = await service.run("analyze_system_health", {"limit": 100})
    flagged = {p.name for p in health.unsupervised}
    assert not flagged & {"arsenal_leaf_w1", "arsenal_leaf_w2", "arsenal_mid_w", "arsenal_top_w"}, flagged

    await _other(service, "stop", Atom("arsenal_fork_top"))


async def test_a_layout_it_does_not_know_is_refused_saying_what_it_saw(
    service: Arsenal, tmp_path: Path
) -> None:
    """A fork whose state record has one more field: flags and strategy changes are refused with what
    was seen; its children are still read (restart types from get_childspec)."""
    source = (ROOT / "tests/erlang/test_supervisor2.erl").read_text()
    source = source.replace("-module(test_supervisor2).", "-module(test_supervisor3).")
    source = source.replace("-record(state, {name,", "-record(state, {name, generation = 0,")
    assert "generation = 0" in source
    (tmp_path / "test_supervisor3.erl").write_text(source)
    erlc = await asyncio.create_subprocess_exec(
        "erlc", "-o", str(tmp_path), str(tmp_path / "test_supervisor3.erl")
    )
    assert await erlc.wait() == 0
    await _call(service, "code", "add_patha", charlist(str(tmp_path)))
    node = service.pool.get().name
    await eval_erlang(
        service,
        node,
        "arsenal_test_other:start_unlinked(fun() -> test_supervisor3:start_link({local, arsenal_fork_odd}, "
        "arsenal_test_other, fork_leaf) end)",
    )

    error = await fails(
        ErrorCode.agent_error, service.run("get_supervisor_flags", {"name": "arsenal_fork_odd"})
    )
    assert "13 fields tagged state" in error.message, error.message
    assert "state: atom, tuple, integer, atom, tuple" in error.message, error.message
    assert error.details == {"reason": "unsupported_state"}
    await fails(
        ErrorCode.agent_error,
        service.run("change_supervisor_strategy", {"name": "arsenal_fork_odd", "strategy": "one_for_one"}),
    )
    children = await service.run("which_children", {"name": "arsenal_fork_odd"})
    assert {(c.name, c.restart) for c in children.children} == {
        ("arsenal_leaf_w1", "permanent"),
        ("arsenal_leaf_w2", "permanent"),
    }
    (root,) = (await service.run("get_supervision_tree", {"name": "arsenal_fork_odd"})).roots
    assert root.type == "supervisor" and root.strategy is None and len(root.children) == 2


# ====================================================================== processes without sys


async def test_no_sys_message_to_a_process_that_does_not_speak_sys(service: Arsenal) -> None:
    await _other(service, "start_plain_loops")
    for name in ("arsenal_plain_loop", "arsenal_plain_hib", "arsenal_raw_loop"):
        # not_sys_process comes only from the check made before anything is sent (a process that was
        # sent a request and never answered gives a timeout), and the mailbox below stays empty.
        error = await fails(
            ErrorCode.validation_error, service.run("get_genserver_state", {"pid": name, "timeout": 5})
        )
        assert "is not a sys process" in error.message and error.details == {"reason": "not_sys_process"}
        await fails(ErrorCode.validation_error, service.run("create_checkpoint", {"pid": name, "name": "x"}))
        await fails(
            ErrorCode.validation_error,
            service.run("set_process_state", {"pid": name, "state": "1", "format": "erlang"}),
        )
        assert await _mailbox(service, name) == (0, []), name
    # Still answering its own protocol: nothing was left in the way.
    node = service.pool.get().name
    reply = await eval_erlang(
        service, node, "arsenal_plain_loop ! {ping, self()}, receive {pong, N} -> N after 2000 -> none end"
    )
    assert reply == 0


# ====================================================================== nothing left in mailboxes


async def test_operations_leave_nothing_in_mailboxes(service: Arsenal) -> None:
    """Every operation that sends a process something, against a gen_server, supervisors (OTP's and a
    fork) and plain loops: afterwards their mailboxes are as empty as before."""
    await _other(service, "start_fork_tree")
    await _other(service, "start_plain_loops")
    server, otp_sup, fork_sup = "arsenal_leaf_w1", "arsenal_otp_mid", "arsenal_fork_leaf"
    plain = ("arsenal_plain_loop", "arsenal_plain_hib", "arsenal_raw_loop")
    everyone = (server, otp_sup, fork_sup, *plain)
    for name in everyone:
        assert await _mailbox(service, name) == (0, []), name

    async def attempt(operation: str, params: dict[str, Any]) -> None:
        try:
            await service.run(operation, params)
        except Exception as error:  # refusals are expected for some targets: only mailboxes matter here
            assert getattr(error, "code", None) is not None, error

    for name in everyone:
        await attempt("get_genserver_state", {"pid": name, "timeout": 2})
        await attempt("create_checkpoint", {"pid": name, "name": f"cp_{name}"})
        await attempt("get_supervisor_flags", {"name": name})
        await attempt("which_children", {"name": name})
        await attempt("get_supervision_tree", {"name": name})
        await attempt("find_process_dependencies", {"pid": name})
        await attempt("trace_failure_impact", {"pid": name})
        session = await service.run("trace_process", {"pid": name, "max_events": 20, "duration": 5})
        await service.run("stop_trace", {"id": session.id})
    await attempt("set_process_state", {"pid": server, "state": "#{calls => 7}", "format": "erlang"})
    for sup in (otp_sup, fork_sup):
        await attempt("pause_supervision", {"name": sup, "auto_resume_seconds": 30})
        await attempt("resume_supervision", {"name": sup})
        await attempt("change_supervisor_strategy", {"name": sup, "strategy": "one_for_all"})
    await attempt("analyze_system_health", {})
    await attempt("list_supervisors", {})
    await asyncio.sleep(0.3)  # anything sent late would be in by now
    for name in everyone:
        assert await _mailbox(service, name) == (0, []), name
    node = service.pool.get().name
    flags = await eval_erlang(
        service,
        node,
        "[{N, erlang:trace_info(whereis(N), flags)} || N <- " + "[" + ", ".join(everyone) + "]]",
    )
    assert all(f == (Atom("flags"), []) for _, f in flags), flags
    await _other(service, "stop", Atom("arsenal_fork_top"))


# ====================================================================== seq_trace tokens


async def test_a_flow_leaves_no_seq_trace_token_anywhere(service: Arsenal) -> None:
    """A message through a chain to a process that never receives another one, and a flow cut short
    by its event limit while the chain goes on talking: afterwards no process holds a token."""
    node = service.pool.get().name
    holders = TOKEN_HOLDERS
    sink = await eval_erlang(
        service, node, "spawn(fun() -> receive _ -> receive never -> ok after 60000 -> ok end end end)"
    )
    b = await _call(service, "arsenal_test_support", "forwarder", sink)
    a = await _call(service, "arsenal_test_support", "forwarder", b)
    flow = await service.run("trace_message_flow", {"pid": _text(a), "message": "hello", "idle": 0.5})
    assert flow.end_reason == "idle" and len(flow.edges) == 3, flow
    assert await eval_erlang(service, node, holders) == []

    # Two processes that keep passing a message back and forth: the flow stops at max_events, the
    # traced message goes on.
    pair = await eval_erlang(
        service,
        node,
        "Loop = fun L(Other) -> receive {ball, N} when N < 100000 -> timer:sleep(5), "
        "Other() ! {ball, N + 1}, L(Other) after 30000 -> ok end end, "
        "Me = self(), A = spawn(fun() -> receive {peer, P} -> Loop(fun() -> P end) end end), "
        "B = spawn(fun() -> Loop(fun() -> A end) end), A ! {peer, B}, B",
    )
    cut = await service.run(
        "trace_message_flow",
        {"pid": _text(pair), "message": {"$tuple": [{"$atom": "ball"}, 0]}, "max_events": 6},
    )
    assert cut.end_reason == "max_events"
    await asyncio.sleep(0.2)
    assert await eval_erlang(service, node, holders) == []
    assert await _call(service, "seq_trace", "get_system_tracer") is False


# ====================================================================== health and linked helpers


async def test_health_does_not_flag_helpers_linked_to_supervised_processes(service: Arsenal) -> None:
    await _other(service, "start_pool")
    await _other(service, "start_lone_server")
    node = service.pool.get().name
    acceptors = await _call(service, "gen_server", "call", Atom("arsenal_pool_listener"), Atom("acceptors"))
    helpers = await eval_erlang(
        service,
        node,
        "{links, L} = erlang:process_info(hd(gen_server:call(arsenal_pool_listener, acceptors)), links), "
        "[P || P <- L, P =/= whereis(arsenal_pool_listener)]",
    )
    lone_helpers = await _call(service, "gen_server", "call", Atom("arsenal_lone_server"), Atom("acceptors"))
    assert len(acceptors) == 3 and len(helpers) == 1 and len(lone_helpers) == 1

    health = await service.run("analyze_system_health", {"limit": 100})
    flagged = {p.pid for p in health.unsupervised}
    names = {p.name for p in health.unsupervised}
    # The pool's listener is supervised; its acceptors and the acceptor's own helper are linked to it.
    assert "arsenal_pool_listener" not in names
    assert not flagged & {_text(p) for p in [*acceptors, *helpers]}, health.unsupervised
    # A server started by hand is unsupervised, and so is the helper linked to it.
    assert "arsenal_lone_server" in names
    assert _text(lone_helpers[0]) in flagged
    await _other(service, "stop", Atom("arsenal_pool_sup"))


# ====================================================================== other OTP releases


def _otp29() -> Any:
    found = [t for t in otp_targets() if t.release == "29"]
    if not found:
        if required:
            raise AssertionError("no OTP 29 root: scripts/compat_roots.sh builds it")
        pytest.skip("no OTP 29 root (scripts/compat_roots.sh builds one)")
    return found[0]


@pytest.fixture(scope="module")
def otp29_space() -> Iterator[Workspace]:
    yield from workspace(_otp29())


@pytest.fixture
async def otp29(otp29_space: Workspace, cookie: str) -> AsyncIterator[Arsenal]:
    node = otp29_space.erl_demo_node(cookie).start()
    service = Arsenal(cookie=cookie, principal=Principal(name="test", role="admin"))
    try:
        await service.attach(node.name, reconnect=False)
        yield service
    finally:
        await service.close()
        node.kill()


async def test_otp29_supervisor_layout_and_a_fork_on_it(otp29: Arsenal) -> None:
    """OTP 29's supervisor state has 16 fields; the fork, built from OTP 25's source, keeps 12 on the
    same node: each is read by its shape."""
    node = otp29.pool.get()
    assert node.info.otp_release == "29"
    kernel = await otp29.run("get_supervisor_flags", {"name": "kernel_sup"})
    assert (kernel.strategy, kernel.layout) == ("one_for_all", "state16")
    demo = await otp29.run("get_supervisor_flags", {"name": "arsenal_demo_erl_sup"})
    assert (demo.strategy, demo.intensity, demo.period, demo.layout) == ("one_for_one", 10, 10, "state16")
    changed = await otp29.run(
        "change_supervisor_strategy", {"name": "arsenal_demo_erl_sup", "strategy": "rest_for_one"}
    )
    assert changed is not None
    assert (
        await otp29.run("get_supervisor_flags", {"name": "arsenal_demo_erl_sup"})
    ).strategy == "rest_for_one"
    children = await otp29.run("which_children", {"name": "arsenal_demo_erl_sup"})
    assert {c.restart for c in children.children} == {"permanent"}
    impact = await otp29.run("trace_failure_impact", {"pid": "demo_worker_1", "reason": "crash"})
    effects = {a.name: a.effect for a in impact.affected}
    assert effects["demo_worker_2"] == "terminated_and_restarted", impact  # rest_for_one: the ones after

    await _call(otp29, "arsenal_test_other", "start_fork_tree")
    fork = await otp29.run("get_supervisor_flags", {"name": "arsenal_fork_leaf"})
    assert (fork.strategy, fork.layout, fork.behaviour) == ("one_for_all", "state12", FORK)
    (top,) = (await otp29.run("get_supervision_tree", {"name": "arsenal_fork_top"})).roots
    mid = next(c for c in top.children if c.name == "arsenal_otp_mid")
    assert mid.strategy == "rest_for_one" and top.strategy == "one_for_one"
    assert next(c for c in mid.children if c.name == "arsenal_fork_leaf").strategy == "one_for_all"

    paused = await otp29.run("pause_supervision", {"name": "arsenal_otp_mid", "auto_resume_seconds": 30})
    assert paused is not None
    await otp29.run("resume_supervision", {"name": "arsenal_otp_mid"})
    await _call(otp29, "arsenal_test_other", "start_plain_loops")
    await fails(ErrorCode.validation_error, otp29.run("get_genserver_state", {"pid": "arsenal_plain_loop"}))
    assert await _call(otp29, "arsenal_test_other", "mailbox", Atom("arsenal_plain_loop")) == (0, [])

    sink = await eval_erlang(otp29, node.name, "spawn(fun() -> receive _ -> timer:sleep(60000) end end)")
    first = await _call(otp29, "arsenal_test_support", "forwarder", sink)
    flow = await otp29.run("trace_message_flow", {"pid": _text(first), "message": "hello", "idle": 0.5})
    assert len(flow.edges) >= 2, flow  # and on: loading timer for the sink goes through code_server
    assert await eval_erlang(otp29, node.name, TOKEN_HOLDERS) == []
