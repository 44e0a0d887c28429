"""One Arsenal against every OTP release in use: this machine's and each Debian root's (OTP 27 on
trixie, OTP 29 on sid; see tests/compat.py). The same checks run on each: attach with the right agent
build, ps, the supervision tree with strategies, supervisor changes, GenServer state read and
written, checkpoints, tracing that leaves nothing behind, rendering in the node's own syntax, and the
Elixir demo application."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from arsenal.beam import AgentError, Node
from arsenal.beam.agent import AgentLoader
from arsenal.client import Arsenal
from arsenal.dist import Atom
from arsenal.ops.base import Principal
from arsenal.ops.errors import ErrorCode
from arsenal.sandbox.manager import SandboxManager

from .compat import COMPAT_ROOTS, Workspace, otp_targets, required, workspace
from .helpers import eval_erlang, fails
from .nodes import BeamNode

TARGETS = otp_targets()
SUP = "arsenal_demo_erl_sup"

pytestmark = pytest.mark.timeout(300)


def test_every_otp_line_is_covered() -> None:
    """With the roots built (`make test` builds them), OTP 25 or 27 on the host plus 27 and 29."""
    releases = {t.release for t in TARGETS}
    if not required and not {"27", "29"} <= releases:
        pytest.skip(f"no compat roots under {COMPAT_ROOTS}: run scripts/compat_roots.sh (needs root)")
    assert {"27", "29"} <= releases, (releases, COMPAT_ROOTS)
    assert releases & {"25", "26"} or TARGETS[0].release == "27", releases


@pytest.fixture(scope="module", params=TARGETS, ids=lambda t: t.id)
def space(request: pytest.FixtureRequest) -> Iterator[Workspace]:
    yield from workspace(request.param)


@pytest.fixture(scope="module")
def erl_node(space: Workspace, cookie: str) -> Iterator[BeamNode]:
    node = space.erl_demo_node(cookie).start()
    yield node
    node.kill()


@pytest.fixture(scope="module")
def ex_node(space: Workspace, cookie: str) -> Iterator[BeamNode]:
    node = space.elixir_demo_node(cookie).start(timeout=120)
    yield node
    node.kill()


async def _attached(node: BeamNode, cookie: str) -> Arsenal:
    service = Arsenal(cookie=cookie, principal=Principal(name="compat", role="admin"))
    await service.attach(node.name, reconnect=False)
    return service


@pytest_asyncio.fixture
async def erl(erl_node: BeamNode, cookie: str) -> AsyncIterator[Arsenal]:
    service = await _attached(erl_node, cookie)
    yield service
    await service.close()


@pytest_asyncio.fixture
async def ex(ex_node: BeamNode, cookie: str) -> AsyncIterator[Arsenal]:
    service = await _attached(ex_node, cookie)
    yield service
    await service.close()


async def test_attach_loads_the_build_of_the_nodes_otp_line(space: Workspace, erl: Arsenal) -> None:
    node = erl.pool.get()
    assert node.info.otp_release == space.target.release
    build = AgentLoader().build_for(space.target.release)
    if required:  # every line has its own build once the roots exist
        assert str(build.otp_release) == space.target.release
    for module in build.modules:
        md5 = await node.call("erlang", "get_module_info", [Atom(module.name), Atom("md5")])
        assert md5 == module.md5, module.name


async def test_ps_and_registered_names(erl: Arsenal) -> None:
    top = await erl.run("list_processes", {"sort_by": "memory", "limit": 5})
    assert len(top.processes) == 5
    assert all(p.memory > 0 for p in top.processes)
    registered = await erl.run("list_registered_processes", {})
    names = {p.name for p in registered.local}
    assert {SUP, "demo_worker_1", "code_server"} <= names


async def test_tree_keeps_strategies_and_children(erl: Arsenal) -> None:
    tree = await erl.run("get_supervision_tree", {"name": SUP})
    root = tree.roots[0] if hasattr(tree, "roots") else tree.tree
    text = tree.model_dump_json()
    assert '"one_for_one"' in text, text[:500]
    assert "demo_worker_1" in text
    assert root is not None


async def test_supervisor_flags_and_strategy_change(erl: Arsenal) -> None:
    flags = await erl.run("get_supervisor_flags", {"name": SUP})
    assert (flags.strategy, flags.intensity, flags.period) == ("one_for_one", 10, 10)
    changed = await erl.run("change_supervisor_strategy", {"name": SUP, "strategy": "one_for_all"})
    assert changed.model_dump().get("previous", "one_for_one") == "one_for_one"
    assert (await erl.run("get_supervisor_flags", {"name": SUP})).strategy == "one_for_all"
    await erl.run("change_supervisor_strategy", {"name": SUP, "strategy": "one_for_one"})
    assert (await erl.run("get_supervisor_flags", {"name": SUP})).strategy == "one_for_one"
    paused = await erl.run("pause_supervision", {"name": SUP, "auto_resume_seconds": 5})
    assert paused is not None
    await erl.run("resume_supervision", {"name": SUP})
    children = await erl.run("which_children", {"name": SUP})
    assert len(children.children) >= 6


async def test_genserver_state_read_written_and_checkpointed(ex: Arsenal) -> None:
    name = "Elixir.ArsenalDemo.Counter2"
    read = await ex.run("get_genserver_state", {"pid": name})
    assert "%{" in read.state and "counter:" in read.state, read.state
    made = await ex.run("create_checkpoint", {"pid": name, "name": "compat"})
    assert made.module == "Elixir.ArsenalDemo.StatefulWorker"
    await ex.run(
        "set_process_state",
        {"pid": name, "state": "%{counter: 4242}", "format": "elixir", "merge_strategy": "deep_merge"},
    )
    assert "counter: 4242" in (await ex.run("get_genserver_state", {"pid": name})).state
    await ex.run("rollback_to_checkpoint", {"pid": name, "name": "compat"})
    assert "counter: 4242" not in (await ex.run("get_genserver_state", {"pid": name})).state
    await ex.run("delete_checkpoint", {"pid": name, "name": "compat"})


async def test_elixir_demo_tree_and_rendering(ex: Arsenal) -> None:
    node = ex.pool.get()
    assert node.info.language == "elixir"
    tree = await ex.run("get_supervision_tree", {"name": "Elixir.ArsenalDemo.Supervisor"})
    text = tree.model_dump_json()
    for strategy in ("one_for_one", "one_for_all", "rest_for_one"):
        assert f'"{strategy}"' in text, strategy
    # The node's own inspect and Arsenal's rendering agree on a state with every kind of term.
    term = '{:ok, [1, 2], "bin", ~c"abc", 1.5, %{a: 1}, :"odd atom", self()}'
    code = (
        f"{{:ok, pid}} = Agent.start(fn -> {term} end, name: :compat_render); "
        "state = :sys.get_state(pid); inspect(state, limit: :infinity, charlists: :infer)"
    )
    own = await ex.run("evaluate_code", {"code": code, "language": "elixir"})
    try:
        shown = await ex.run("get_genserver_state", {"pid": "compat_render"})
        own_text = own.value.strip('"').replace('\\"', '"')
        assert _squash(shown.state) == _squash(own_text), (shown.state, own_text)
    finally:
        await ex.run("evaluate_code", {"code": "Agent.stop(:compat_render)", "language": "elixir"})


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


async def test_tracing_leaves_nothing_behind(erl: Arsenal, erl_node: BeamNode) -> None:
    await eval_erlang(erl, erl_node.name, "arsenal_test_support:busy_caller(5, 3)")
    started = await erl.run(
        "trace_calls",
        {
            "patterns": ["arsenal_test_support:traced/1 -> return"],
            "max_events": 10,
            "duration": 10,
            "wait": True,
        },
    )
    assert started.events == 10 and started.end_reason == "max_events", started
    assert {e["kind"] for e in started.results} == {"call", "return_from"}, started.results
    await _assert_clean(erl, erl_node.name)


async def _assert_clean(service: Arsenal, node: str) -> None:
    state: dict[str, Any] = {}
    for _ in range(50):
        raw = await service.pool.get(node).call("arsenal_test_support", "trace_state", [])
        state = {str(k): v for k, v in raw.items()}
        if state["hub"] == Atom("undefined"):
            break
        await asyncio.sleep(0.1)
    assert state["hub"] == Atom("undefined"), state
    assert state["traced_processes"] == [] and state["patterns"] == [], state


def _only_build(tmp_path: Path, release: int) -> AgentLoader:
    """A loader that has just one of this installation's builds."""
    source = next(b for b in AgentLoader().builds if b.otp_release == release)
    shutil.copytree(source.directory, tmp_path / source.directory.name)
    return AgentLoader(tmp_path)


async def test_a_build_the_node_refuses_is_named_with_both_releases(
    space: Workspace, erl_node: BeamNode, cookie: str, tmp_path: Path
) -> None:
    builds = [b.otp_release for b in AgentLoader().builds]
    release = int(space.target.release)
    if release < 29 or 25 not in builds:
        pytest.skip("needs an OTP 29 node and the OTP 25 build (OTP 29 refuses what OTP 25 compiled)")
    async with Node(erl_node.name, cookie=cookie, reconnect=False) as good:
        before = await _agent_md5s(good)
    assert before, "the node runs the agent of its own build first"
    node = Node(erl_node.name, cookie=cookie, reconnect=False, loader=_only_build(tmp_path, 25))
    with pytest.raises(AgentError) as refused:
        await node.connect()
    await node.close()
    message = str(refused.value)
    assert f"runs OTP {release}" in message and "for OTP 25" in message, message
    assert "make agent" in message and "badfile" in message, message
    async with Node(erl_node.name, cookie=cookie, reconnect=False, agent=False) as bare:
        assert await _agent_md5s(bare) == before, "the agent it had is kept whole"


async def _agent_md5s(node: Node) -> dict[str, bytes]:
    """The agent modules loaded on the node, with their md5."""
    loaded = await node.call("code", "all_loaded", [])
    names = sorted(str(m) for m, _ in loaded if str(m).startswith("arsenal_agent"))
    return {n: await node.call("erlang", "get_module_info", [Atom(n), Atom("md5")]) for n in names}


async def test_a_node_older_than_every_build_is_told_so(
    space: Workspace, erl_node: BeamNode, cookie: str, tmp_path: Path
) -> None:
    newer = [b.otp_release for b in AgentLoader().builds if b.otp_release > int(space.target.release)]
    if not newer:
        pytest.skip("no build newer than this node's OTP")
    node = Node(erl_node.name, cookie=cookie, reconnect=False, loader=_only_build(tmp_path, newer[-1]))
    with pytest.raises(AgentError) as refused:
        await node.connect()
    await node.close()
    message = str(refused.value)
    assert f"runs OTP {space.target.release}, older than every build" in message, message
    assert f"built for OTP {newer[-1]}" in message, message


async def test_sandboxes_on_this_otp(space: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A template sandbox (Elixir), injected code, an Erlang module hot-swapped, all on this OTP."""
    if space.target.root is not None:
        monkeypatch.setenv("ARSENAL_OTP_ROOT", str(space.target.root))
    home = space.path / "home"
    async with Arsenal(home=home) as arsenal:
        manager = arsenal.services.get(SandboxManager)
        try:
            created = await arsenal.run(
                "create_sandbox",
                {"sandbox_id": "compat", "template": "worker_pool", "limits": {"lifetime_s": 120}},
            )
            assert created.status == "running"
            release = await arsenal.run(
                "inject_code", {"sandbox_id": "compat", "code": "System.otp_release()"}
            )
            assert release.value == f'"{space.target.release}"', release
            ran = await arsenal.run(
                "inject_code", {"sandbox_id": "compat", "code": "WorkerPool.Dispatcher.run(fn -> 6 * 7 end)"}
            )
            assert ran.ok and ran.value == "{:ok, 42, 1}", ran
            broken = await arsenal.run(
                "inject_code", {"sandbox_id": "compat", "code": "1 +", "language": "elixir"}
            )
            assert not broken.ok and broken.error, broken
            source = "-module(compat_mod).\n-export([v/0]).\nv() -> 1.\n"
            await arsenal.run(
                "hot_swap_module",
                {"sandbox_id": "compat", "module": "compat_mod", "source": source, "language": "erlang"},
            )
            swapped = await arsenal.run(
                "hot_swap_module",
                {
                    "sandbox_id": "compat",
                    "module": "compat_mod",
                    "source": source.replace("1.", "2."),
                    "language": "erlang",
                },
            )
            assert swapped.version == 2
            two = await arsenal.run(
                "inject_code", {"sandbox_id": "compat", "code": "compat_mod:v().", "language": "erlang"}
            )
            assert two.value == "2", two
        finally:
            for record in manager.records.list():
                await manager.destroy(record.id)


async def test_tracing_beside_dbg(space: Workspace, erl: Arsenal, erl_node: BeamNode) -> None:
    """OTP 27+: Arsenal traces in a session of its own, so dbg keeps tracing the same function and
    neither undoes the other. Before 27 a process has one tracer: Arsenal refuses, naming dbg."""
    node = erl_node.name
    await eval_erlang(erl, node, "arsenal_test_support:busy_caller(5, 4)")
    dbg_setup = (
        "Self = self(), "
        "Count = spawn(fun Loop() -> receive {count, From} -> From ! get(n), Loop(); _ -> "
        "put(n, case get(n) of undefined -> 1; N -> N + 1 end), Loop() end end), "
        "register(compat_dbg_count, Count), "
        "{ok, _} = dbg:tracer(process, {fun(Msg, _) -> Count ! Msg, ok end, ok}), "
        "{ok, _} = dbg:p(all, [call]), {ok, _} = dbg:tpl(arsenal_test_support, traced, 1, []), Self"
    )
    await eval_erlang(erl, node, dbg_setup)
    try:
        patterns = {"patterns": ["arsenal_test_support:traced/1"], "max_events": 5, "duration": 10}
        if int(space.target.release) < 27:
            err = await fails(ErrorCode.conflict, erl.run("trace_calls", patterns))
            assert "dbg" in err.message or "tracer" in err.message, err.message
            return
        ended = await erl.run("trace_calls", {**patterns, "wait": True})
        assert ended.events == 5 and ended.end_reason == "max_events", ended
        count = "compat_dbg_count ! {count, self()}, receive N -> N after 1000 -> none end"
        before = await eval_erlang(erl, node, count)
        await asyncio.sleep(0.3)
        after = await eval_erlang(erl, node, count)
        assert isinstance(before, int) and after > before, (before, after)  # dbg still traces
        assert not await _hub_alive(erl, node)
        names = "[N || {N, _} <- trace:session_info(all)]"
        sessions = await eval_erlang(erl, node, names)
        assert Atom("arsenal") not in sessions, sessions  # its session went with its last trace
    finally:
        await eval_erlang(erl, node, "dbg:stop(), exit(whereis(compat_dbg_count), kill), ok")


async def _hub_alive(service: Arsenal, node: str) -> bool:
    for _ in range(50):
        if await eval_erlang(service, node, "whereis(arsenal_agent_trace)") == Atom("undefined"):
            return False
        await asyncio.sleep(0.1)
    return True
