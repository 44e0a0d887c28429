"""What people read is in the node's syntax, never Python's or Arsenal's internals: child ids,
stacktraces, pids, cuts of large terms, and commands that take their target as an argument."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

import arsenal
from arsenal.api import create_app
from arsenal.client import Arsenal
from arsenal.dist import Atom, LocalNode, RpcError
from arsenal.ops.errors import ErrorCode, as_operation_error
from arsenal.ops.plain import plain
from arsenal.terms.render import render

from .nodes import BeamNode, erl_node

pytestmark = pytest.mark.timeout(120)

A = Atom
CUT = A("$arsenal_truncated")
TWICE = re.compile(r"(<\d+\.\d+\.\d+>) \1")


@pytest.fixture(scope="module")
def demo(cookie: str) -> Iterator[BeamNode]:
    """A demo node of this module's own: its tree gets a child with a tuple id."""
    node = erl_node("shown", cookie=cookie, demo=True).start()
    yield node
    node.kill()


@pytest.fixture(scope="module")
async def tuple_child(demo: BeamNode, cookie: str) -> AsyncIterator[str]:
    """An unnamed worker under arsenal_demo_erl_sup with the child id {tuple_worker, 1}; its pid."""
    spec = {
        A("id"): (A("tuple_worker"), 1),
        A("start"): (A("gen_server"), A("start_link"), [A("arsenal_demo_erl_worker"), (A("tw"), {}), []]),
    }
    async with LocalNode(cookie=cookie) as local:
        conn = await local.connect(demo.name)
        ok, pid = await conn.rpc("supervisor", "start_child", [A("arsenal_demo_erl_sup"), spec])
    assert ok == A("ok")
    yield f"<0.{pid.id}.{pid.serial}>"


def _cli(*args: str, cookie: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ARSENAL_COOKIE": cookie, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "arsenal.cli.main", *args], capture_output=True, text=True, env=env, timeout=60
    )


# ---------------------------------------------------------------------- tuple child ids


async def test_tuple_child_ids_are_shown_in_the_nodes_syntax(
    demo: BeamNode, tuple_child: str, cookie: str
) -> None:
    async with arsenal.attach(demo.name, cookie=cookie, reconnect=False) as node:
        children = (await node.which_children(name="arsenal_demo_erl_sup")).children
        tree = await node.get_supervision_tree(name="arsenal_demo_erl_sup")
    assert "{tuple_worker,1}" in [c.id for c in children]
    assert "{tuple_worker,1}" in [c.id for c in tree.roots[0].children]
    for command in ("tree", "children"):
        shown = _cli(command, "arsenal_demo_erl_sup", "--node", demo.name, cookie=cookie)
        assert shown.returncode == 0, shown.stderr
        assert "{tuple_worker,1}" in shown.stdout and "['tuple_worker', 1]" not in shown.stdout


# ---------------------------------------------------------------------- stacktraces


async def test_stacktrace_files_are_names_not_character_codes(demo: BeamNode, cookie: str) -> None:
    async with arsenal.attach(demo.name, cookie=cookie, reconnect=False) as node:
        info = await node.get_process_info(pid="demo_worker_1", fields=["current_stacktrace"])
    frames = info.info["current_stacktrace"]
    files = [dict(frame[3]).get("file") for frame in frames]
    assert "gen_server.erl" in files and all(isinstance(f, str) for f in files if f is not None)
    shown = _cli("info", "demo_worker_1", "--node", demo.name, "--json", cookie=cookie)
    assert shown.returncode == 0 and '"gen_server.erl"' in shown.stdout


async def test_a_crash_on_the_node_reads_as_erlang_with_its_stacktrace(demo: BeamNode, cookie: str) -> None:
    async with LocalNode(cookie=cookie) as local:
        conn = await local.connect(demo.name)
        with pytest.raises(RpcError) as raised:
            await conn.rpc("lists", "nth", [5, []])
    error = as_operation_error(raised.value, "some_operation")
    assert error.code is ErrorCode.remote_error
    assert "function_clause" in error.message and "Atom(" not in error.message
    assert any(line.startswith("lists:nth/2 (lists.erl:") for line in error.details["stacktrace"])
    assert not re.search(r"\[\d+, \d+, \d+", str(error.details))


# ---------------------------------------------------------------------- pids


async def test_unnamed_pids_are_printed_once(demo: BeamNode, tuple_child: str, cookie: str) -> None:
    impact = _cli("impact", tuple_child, "--node", demo.name, cookie=cookie)
    assert impact.returncode == 0, impact.stderr
    assert f"If {tuple_child} exits" in impact.stdout and not TWICE.search(impact.stdout)
    graph = _cli("graph", tuple_child, "--node", demo.name, cookie=cookie)
    assert graph.returncode == 0, graph.stderr
    assert tuple_child in graph.stdout and not TWICE.search(graph.stdout), graph.stdout
    named = _cli("impact", "demo_worker_2", "--node", demo.name, cookie=cookie)
    assert re.search(r"If demo_worker_2 <0\.\d+\.\d+> exits", named.stdout), named.stdout


# ---------------------------------------------------------------------- cuts of large terms


def _big_state() -> dict[Any, Any]:
    return {
        A("blob"): (CUT, {A("binary_bytes"): 5000, A("head"): b"abcdefgh" * 4}),
        A("items"): [1, 2, 3, (CUT, A("more_items"))],
        A("wide"): (CUT, {A("tuple_size"): 300, A("head"): [1, 2]}),
        A("deep"): (CUT, A("too_deep")),
        A("many"): {A("k"): 1, CUT: {A("map_size"): 500}},
    }


def test_cuts_render_as_what_is_missing() -> None:
    erlang = render(_big_state())
    assert erlang == (
        '#{blob => <<"abcdefghabcdefghabcdefghabcdefgh">>…(4968 more bytes),items => [1,2,3,…(more)],'
        "wide => {1,2,…(298 more)},deep => …(nested too deep),many => #{k => 1,…(499 more)}}"
    )
    elixir = render(_big_state(), "elixir", max_items=2, max_binary=8)
    assert elixir == ('%{blob: "abcdefgh"…(4992 more bytes), items: [1, 2, …(more)], ...}')
    assert render(CUT) == "…" and render((CUT, A("badarith"))) == "{badarith,…}"
    data = plain(_big_state(), "erlang")
    assert data["items"] == [1, 2, 3, "…(more)"] and data["wide"] == [1, 2, "…(298 more)"]
    assert data["many"] == {"k": 1, "…": "…(499 more)"} and data["blob"].endswith("…(4968 more bytes)")
    assert "arsenal_truncated" not in repr(data)


async def test_a_cut_state_says_how_much_is_missing_in_cli_and_rest(demo: BeamNode, cookie: str) -> None:
    async with Arsenal(cookie=cookie) as service:
        await service.attach(demo.name, reconnect=False)
        app = create_app(service, auth=False)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as client:
            answer = await client.get("/api/v1/processes/demo_big_state/state")
    assert answer.status_code == 200, answer.text
    state = answer.json()["data"]
    assert not state["whole"] and "arsenal_truncated" not in answer.text
    assert re.search(r"…\(\d+ more bytes\)", state["state"]), state["state"][:300]
    shown = _cli("state", "demo_big_state", "--node", demo.name, cookie=cookie)
    assert shown.returncode == 0, shown.stderr
    assert "arsenal_truncated" not in shown.stdout and "more bytes)" in shown.stdout


# ---------------------------------------------------------------------- a target given alone


def test_a_generic_command_takes_its_target_as_an_argument(demo: BeamNode, cookie: str) -> None:
    alone = _cli("sup-analytics", "arsenal_demo_erl_sup", "--node", demo.name, "--json", cookie=cookie)
    assert alone.returncode == 0, alone.stderr
    assert '"name": "arsenal_demo_erl_sup"' in alone.stdout
    mixed = _cli("sup-analytics", "arsenal_demo_erl_sup", "window=600", "--node", demo.name, cookie=cookie)
    assert mixed.returncode == 0, mixed.stderr
    by_run = _cli(
        "run", "get_supervisor_analytics", "arsenal_demo_erl_sup", "--node", demo.name, cookie=cookie
    )
    assert by_run.returncode == 0, by_run.stderr
    extra = _cli("sup-analytics", "arsenal_demo_erl_sup", "oops", "--node", demo.name, cookie=cookie)
    assert extra.returncode == 2 and "'oops' is not key=value" in extra.stderr


def test_a_supervisor_forks_restart_type_reads_as_source() -> None:
    """Forks of supervisor (RabbitMQ's supervisor2) have restart types such as {transient, 1}."""
    from arsenal.ops.supervisors import _atom

    assert _atom((A("transient"), 1), "erlang") == "{transient,1}"
    assert _atom((A("transient"), 1), "elixir") == "{:transient, 1}"
    assert _atom(A("permanent"), "elixir") == "permanent"
