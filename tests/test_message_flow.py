"""Message flow (seq_trace) and message patterns against real nodes.

After every flow the node must hold no seq_trace system tracer and no process of the flow
(`_assert_flow_clean`); after every pattern analysis no tracer, trace flag or hub
(`_assert_trace_clean`, as tests/test_tracing.py checks).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from arsenal.api import create_app
from arsenal.client import Arsenal
from arsenal.dist import Atom, Pid, charlist
from arsenal.ops.base import Principal
from arsenal.ops.errors import ErrorCode, OperationError
from arsenal.ops.message_flow import message_shape

from .helpers import eval_erlang, fails, has_trace_sessions
from .nodes import ROOT, TEST_SUPPORT_EBIN

pytestmark = pytest.mark.timeout(120)

ORIGIN = {"$atom": "$arsenal_origin"}


async def _service(node: str, cookie: str) -> Arsenal:
    service = Arsenal(cookie=cookie, principal=Principal(name="test", role="admin"))
    await service.attach(node, reconnect=False)
    # The Elixir demo node is started without the test support module's directory.
    await service.pool.get(node).call("code", "add_patha", [charlist(str(TEST_SUPPORT_EBIN))])
    return service


async def _support(service: Arsenal, node: str, function: str, *args: Any) -> Any:
    return await service.pool.get(node).call("arsenal_test_support", function, list(args))


def _text(pid: Pid) -> str:
    return f"<0.{pid.id}.{pid.serial}>"


async def _flow_state(service: Arsenal, node: str) -> dict[str, Any]:
    state = await _support(service, node, "flow_state")
    return {str(k): v for k, v in state.items()}


async def _assert_flow_clean(service: Arsenal, node: str) -> None:
    """No seq_trace system tracer and no process of arsenal_agent_flow on the node."""
    state: dict[str, Any] = {}
    for _ in range(50):  # an abandoned flow ends when its owner's or caller's DOWN arrives
        state = await _flow_state(service, node)
        if state["system_tracer"] is False and state["processes"] == []:
            return
        await asyncio.sleep(0.1)
    assert state["system_tracer"] is False, state
    assert state["processes"] == [], state


async def _assert_trace_clean(service: Arsenal, node: str) -> None:
    state: dict[str, Any] = {}
    for _ in range(50):  # the hub exits just after the session's end message
        state = {str(k): v for k, v in (await _support(service, node, "trace_state")).items()}
        if state["hub"] == Atom("undefined"):
            break
        await asyncio.sleep(0.1)
    assert state["hub"] == Atom("undefined"), state
    assert state["traced_processes"] == [], state
    assert state["new_processes_flags"] == [], state


async def _chain(service: Arsenal, node: str) -> tuple[Pid, Pid, Pid]:
    """A -> B -> C, C answering the origin: forwarder processes of the test support module."""
    c = await _support(service, node, "forwarder", Atom("reply"))
    b = await _support(service, node, "forwarder", c)
    a = await _support(service, node, "forwarder", b)
    return a, b, c


# ====================================================================== trace_message_flow


async def test_a_message_through_a_chain_and_back(erl, cookie) -> None:
    service = await _service(erl.name, cookie)
    try:
        a, b, c = await _chain(service, erl.name)
        flow = await service.run(
            "trace_message_flow",
            {
                "pid": _text(a),
                "message": {"$tuple": [{"$atom": "hop"}, ORIGIN, "hello"]},
                "window": 10,
                "idle": 0.5,
            },
        )
        assert flow.end_reason == "idle", flow
        origin, hops = flow.origin, [_text(a), _text(b), _text(c)]
        path = [(e.source, e.target) for e in flow.edges]
        assert path == [(origin, hops[0]), (hops[0], hops[1]), (hops[1], hops[2]), (hops[2], origin)], path
        assert [e.depth for e in flow.edges] == [1, 2, 3, 4]
        assert [e.parent for e in flow.edges] == [None, 0, 1, 2]
        assert flow.max_depth == 4 and flow.target == hops[0]
        assert flow.edges[0].message == f'{{hop,{origin},<<"hello">>}}'
        assert flow.edges[-1].message == '{done,<<"hello">>}'
        # Each message is sent and received, the serials grow along the path, times follow it.
        assert all(e.sent_us and e.received_us and e.sent_us <= e.received_us for e in flow.edges)
        assert [e.serial[1] for e in flow.edges] == sorted(e.serial[1] for e in flow.edges)
        for parent, child in zip(flow.edges, flow.edges[1:], strict=False):
            assert child.serial[0] == parent.serial[1]
        assert flow.events == 8 and flow.truncated == 0
        roles = {n.id: n.role for n in flow.nodes}
        assert roles == {origin: "origin", hops[0]: "target", hops[1]: "process", hops[2]: "process"}
        assert not next(n for n in flow.nodes if n.role == "origin").alive
        assert all(n.alive for n in flow.nodes if n.role != "origin")
        await _assert_flow_clean(service, erl.name)
    finally:
        await service.close()


async def test_a_call_to_a_gen_server_by_name(erl, cookie) -> None:
    service = await _service(erl.name, cookie)
    try:
        attached = await service.attach(erl.name)  # the Python API: one method per operation
        flow = await attached.trace_message_flow(
            pid="demo_worker_1", message={"$atom": "ping"}, mode="call", idle=0.5
        )
        worker = next(n for n in flow.nodes if n.role == "target")
        assert worker.name == "demo_worker_1" and flow.target == worker.id
        first, reply = flow.edges[0], flow.edges[1]
        assert (first.source, first.target) == (flow.origin, worker.id)
        assert first.message.startswith(f"{{'$gen_call',{{{flow.origin},#Ref<") and first.message.endswith(
            "ping}"
        )
        assert (reply.source, reply.target) == (worker.id, flow.origin)
        assert reply.message.endswith(",pong}") and reply.depth == 2 and reply.parent == 0
        await _assert_flow_clean(service, erl.name)

        cast = await service.run(
            "trace_message_flow",
            {"pid": "demo_worker_2", "message": {"$atom": "ok"}, "mode": "cast", "window": 0.3},
        )
        assert cast.end_reason == "max_ms"
        assert [e.message for e in cast.edges] == ["{'$gen_cast',ok}"]
        await _assert_flow_clean(service, erl.name)
    finally:
        await service.close()


async def test_limits_end_the_flow_inside_the_node(erl, cookie) -> None:
    service = await _service(erl.name, cookie)
    try:
        a, _, _ = await _chain(service, erl.name)
        capped = await service.run(
            "trace_message_flow",
            {"pid": _text(a), "message": {"$tuple": [{"$atom": "hop"}, ORIGIN, 1]}, "max_events": 3},
        )
        assert capped.end_reason == "max_events" and capped.events == 3
        assert len(capped.edges) == 2  # origin -> A (sent, received), A -> B (sent)
        assert capped.edges[1].received_us is None
        await _assert_flow_clean(service, erl.name)

        a, _, _ = await _chain(service, erl.name)
        tripped = await service.run(
            "trace_message_flow",
            {
                "pid": _text(a),
                "message": {"$tuple": [{"$atom": "hop"}, ORIGIN, 1]},
                "rate": 2,
                "rate_interval": 30,
            },
        )
        assert tripped.end_reason == "rate_limit" and tripped.events == 2
        assert len(tripped.edges) == 1 and tripped.edges[0].received_us is not None
        await _assert_flow_clean(service, erl.name)

        a, _, _ = await _chain(service, erl.name)
        cut = await service.run(
            "trace_message_flow",
            {
                "pid": _text(a),
                "message": {"$tuple": [{"$atom": "hop"}, ORIGIN, "x" * 5000]},
                "max_bytes": 64,
                "idle": 0.5,
            },
        )
        assert len(cut.edges) == 4 and all(e.truncated for e in cut.edges)
        assert "bytes, truncated" in cut.edges[0].message and cut.truncated == 8
        await _assert_flow_clean(service, erl.name)

        # Nothing happens after the first message: the window ends it.
        quiet = await service.run(
            "trace_message_flow", {"pid": "demo_busy_mailbox", "message": 1, "window": 0.2}
        )
        assert quiet.end_reason == "max_ms" and len(quiet.edges) == 1
        assert quiet.edges[0].received_us is None  # it never reads its mailbox
        await _assert_flow_clean(service, erl.name)
    finally:
        await service.close()


async def test_another_system_tracer_is_not_robbed(erl, cookie) -> None:
    service = await _service(erl.name, cookie)
    try:
        holder = await eval_erlang(
            service,
            erl.name,
            "S = self(), P = spawn(fun() -> seq_trace:set_system_tracer(self()), S ! set, "
            "receive stop -> ok after 20000 -> ok end end), receive set -> P end",
        )
        err = await fails(
            ErrorCode.conflict,
            service.run("trace_message_flow", {"pid": "demo_worker_1", "message": 1, "window": 0.2}),
        )
        assert "seq_trace" in err.message and _text(holder) in err.message
        assert (await _flow_state(service, erl.name))["system_tracer"] == holder
        # Its holder dies without giving it back: a dead tracer robs no one, so the next flow takes it.
        await eval_erlang(service, erl.name, f'exit(list_to_pid("{_text(holder)}"), kill)')
        taken = await service.run("trace_message_flow", {"pid": "demo_worker_1", "message": 1, "window": 0.2})
        assert len(taken.edges) == 1
        await _assert_flow_clean(service, erl.name)
    finally:
        await eval_erlang(service, erl.name, "seq_trace:set_system_tracer(false), ok")
        await service.close()


async def test_an_abandoned_call_or_a_lost_owner_ends_the_flow(erl, cookie) -> None:
    service = await _service(erl.name, cookie)
    other = await _service(erl.name, cookie)
    try:
        # A call given up on (its timeout): the node stops its erpc process, the collector sees it go.
        await fails(
            ErrorCode.timeout,
            service.run(
                "trace_message_flow", {"pid": "demo_worker_1", "message": 1, "window": 20}, timeout=0.5
            ),
        )
        await _assert_flow_clean(service, erl.name)

        running = asyncio.create_task(
            other.run("trace_message_flow", {"pid": "demo_worker_1", "message": 1, "window": 30})
        )
        for _ in range(100):
            if (await _flow_state(service, erl.name))["system_tracer"] is not False:
                break
            await asyncio.sleep(0.05)
        state = await _flow_state(service, erl.name)
        assert state["system_tracer"] is not False and len(state["processes"]) >= 2, state
        await other.pool.close()  # the connection drops: the collector sees its owner go
        with pytest.raises(OperationError):
            await running
        await _assert_flow_clean(service, erl.name)
    finally:
        await other.close()
        await service.close()


async def test_flow_errors(erl, cookie, make_node) -> None:
    service = await _service(erl.name, cookie)
    try:
        node = service.pool.get(erl.name)
        before = await node.call("erlang", "system_info", [Atom("atom_count")])
        unknown = await fails(
            ErrorCode.not_found,
            service.run(
                "trace_message_flow",
                {"pid": "demo_worker_1", "message": {"$tuple": [{"$atom": "zz_never_an_atom_qq"}, 1]}},
            ),
        )
        assert "zz_never_an_atom_qq" in unknown.message
        flow = "trace_message_flow"
        await fails(ErrorCode.not_found, service.run(flow, {"pid": "zz_nobody_here_qq", "message": 1}))
        await fails(ErrorCode.not_found, service.run(flow, {"pid": "<0.32000.900>", "message": 1}))
        await fails(ErrorCode.validation_error, service.run(flow, {"pid": "<1.2.3>", "message": 1}))
        await fails(ErrorCode.validation_error, service.run(flow, {"pid": "not a pid!", "message": 1}))
        await fails(ErrorCode.validation_error, service.run(flow, {"pid": "init", "message": None}))
        for bad in ({"window": 0}, {"window": 31}, {"max_events": 0}, {"max_bytes": 10}, {"mode": "shout"}):
            await fails(
                ErrorCode.validation_error, service.run(flow, {"pid": "demo_worker_1", "message": 1, **bad})
            )
        after = await node.call("erlang", "system_info", [Atom("atom_count")])
        assert after == before
        await _assert_flow_clean(service, erl.name)
    finally:
        await service.close()

    target = make_node("flowdown", demo=True)
    gone = await _service(target.name, cookie)
    try:
        target.kill()
        await fails(ErrorCode.node_down, gone.run(flow, {"pid": "demo_worker_1", "message": 1}))
        await fails(ErrorCode.node_down, gone.run("analyze_message_patterns", {"pids": ["all"]}))
    finally:
        await gone.close()


async def test_a_flow_in_elixir(elixir, cookie) -> None:
    service = await _service(elixir.name, cookie)
    try:
        flow = await service.run(
            "trace_message_flow",
            {"pid": "ArsenalDemo.LoadGenerator", "message": {"$atom": "stats"}, "mode": "call", "idle": 0.5},
        )
        target = next(n for n in flow.nodes if n.role == "target")
        assert target.name == "ArsenalDemo.LoadGenerator"
        assert flow.edges[0].message.startswith('{:"$gen_call", {#PID<0.'), flow.edges[0].message
        assert flow.edges[0].message.endswith(":stats}") and flow.origin in flow.edges[0].message
        reply = next(e for e in flow.edges if e.source == target.id and e.target == flow.origin)
        assert "%{" in reply.message and "tick:" in reply.message and reply.depth == 2
        await _assert_flow_clean(service, elixir.name)
    finally:
        await service.close()


# ====================================================================== analyze_message_patterns


async def test_patterns_of_a_controlled_sender(erl, cookie) -> None:
    service = await _service(erl.name, cookie)
    try:
        chatter, sink_a, sink_b = await _support(service, erl.name, "chatter", 20)
        attached = await service.attach(erl.name)
        result = await attached.analyze_message_patterns(pids=[_text(chatter)], max_events=60, duration=15)
        assert result.end_reason == "max_events" and result.messages == 60
        assert result.undelivered == 0 and result.truncated == 0
        shapes = {s.shape: s for s in result.shapes}
        assert set(shapes) == {"{order, _, _}", "ping", "binary(5)", "#{id, kind}"}, shapes
        # Six messages a round: three orders, one of each other shape.
        assert 27 <= shapes["{order, _, _}"].count <= 33
        assert all(9 <= shapes[s].count <= 11 for s in ("ping", "binary(5)", "#{id, kind}"))
        assert sum(s.count for s in result.shapes) == 60
        assert shapes["binary(5)"].example == '<<"hello">>' and shapes["ping"].senders == 1
        assert result.shapes[0].shape == "{order, _, _}"

        # Sent by name to sink A: counted as sent to the process the name stands for.
        first, second = result.pairs
        assert (first.source, first.target, first.target_name) == (
            _text(chatter),
            _text(sink_a),
            "arsenal_test_sink_a",
        )
        assert (second.source, second.target, second.target_name) == (_text(chatter), _text(sink_b), None)
        assert first.count + second.count == 60 and first.count > second.count
        assert [s.shape for s in first.shapes] == ["{order, _, _}", "ping"]
        assert {s.shape for s in second.shapes} == {"binary(5)", "#{id, kind}"}
        assert [(t.pid, t.count, t.peers) for t in result.senders] == [(_text(chatter), 60, 2)]
        assert [t.pid for t in result.receivers] == [_text(sink_a), _text(sink_b)]
        assert result.receivers[0].name == "arsenal_test_sink_a" and result.distinct_pairs == 2
        await _assert_trace_clean(service, erl.name)

        # Another tracer (dbg) traces the sender: refused, not robbed. From OTP 27 on dbg traces in a
        # trace session of its own: both trace, and dbg still does afterwards.
        sender = f'list_to_pid("{_text(chatter)}")'
        await eval_erlang(service, erl.name, f"{{ok, _}} = dbg:tracer(), dbg:p({sender}, [s])")
        if not await has_trace_sessions(service.pool.get(erl.name)):
            err = await fails(
                ErrorCode.conflict, attached.analyze_message_patterns(pids=[_text(chatter)], duration=1)
            )
            assert "dbg" in err.message
        else:
            beside = await attached.analyze_message_patterns(pids=[_text(chatter)], max_events=6, duration=15)
            assert beside.messages == 6
            dbg_still = f"lists:keymember(dbg, 1, trace:session_info({sender}))"
            assert await eval_erlang(service, erl.name, dbg_still)
    finally:
        await eval_erlang(service, erl.name, "dbg:stop(), ok")
        await service.close()


async def test_patterns_of_the_demo_nodes_traffic(erl, cookie) -> None:
    service = await _service(erl.name, cookie)
    try:

        async def calls() -> None:
            for _ in range(20):
                await service.run(
                    "send_message", {"pid": "demo_worker_1", "message": {"$atom": "ping"}, "mode": "call"}
                )
                await asyncio.sleep(0.05)

        caller = asyncio.create_task(calls())
        result = await service.run(
            "analyze_message_patterns", {"pids": ["all"], "duration": 1.5, "limit": 50}
        )
        await caller
        assert result.end_reason == "max_ms" and result.messages > 0
        shapes = {s.shape for s in result.shapes}
        assert "{'$gen_call', _, ping}" in shapes, shapes
        assert "{[alias | reference()], _}" in shapes, shapes
        to_worker = [p for p in result.pairs if p.target_name == "demo_worker_1"]
        assert to_worker and to_worker[0].shapes[0].shape == "{'$gen_call', _, ping}"
        from_worker = [p for p in result.pairs if p.source_name == "demo_worker_1"]
        assert from_worker and from_worker[0].shapes[0].shape == "{[alias | reference()], _}"
        await _assert_trace_clean(service, erl.name)
    finally:
        await service.close()


async def test_patterns_in_elixir_and_their_errors(elixir, cookie) -> None:
    service = await _service(elixir.name, cookie)
    try:
        result = await service.run(
            "analyze_message_patterns",
            {"pids": ["ArsenalDemo.LoadGenerator"], "duration": 1.5, "max_events": 200},
        )
        assert result.messages > 0
        assert result.senders[0].name == "ArsenalDemo.LoadGenerator"
        shapes = {s.shape for s in result.shapes}
        assert '{:"$gen_call", _, {:increment, ...}}' in shapes, shapes
        counters = {p.target_name for p in result.pairs}
        assert "ArsenalDemo.Counter1" in counters, counters
        await _assert_trace_clean(service, elixir.name)

        patterns = "analyze_message_patterns"
        await fails(ErrorCode.not_found, service.run(patterns, {"pids": ["zz_nobody_here_qq"]}))
        await fails(ErrorCode.validation_error, service.run(patterns, {"pids": []}))
        await fails(ErrorCode.validation_error, service.run(patterns, {"pids": ["all"], "duration": 0}))
        await fails(ErrorCode.validation_error, service.run(patterns, {"pids": ["all"], "limit": 51}))
    finally:
        await service.close()


def test_message_shapes() -> None:
    from arsenal.dist import ImproperList, Ref

    ref = Ref(Atom("n@h"), 1, (1, 2, 3))
    pid = Pid(Atom("n@h"), 80, 0, 1)
    cases = [
        (Atom("tick"), "erlang", "tick"),
        (Atom("tick"), "elixir", ":tick"),
        ((Atom("order"), 1, Atom("x")), "erlang", "{order, _, _}"),
        ((Atom("$gen_call"), (pid, ref), (Atom("get"), 1)), "erlang", "{'$gen_call', _, {get, ...}}"),
        ((Atom("$gen_cast"), Atom("stop")), "erlang", "{'$gen_cast', stop}"),
        ((ImproperList([Atom("alias")], ref), Atom("ok")), "erlang", "{[alias | reference()], _}"),
        ((ref, 1), "erlang", "{reference(), _}"),
        (b"hello", "erlang", "binary(5)"),
        ([], "erlang", "[]"),
        ([1, 2], "erlang", "list()"),
        ({Atom("id"): 1, Atom("kind"): 2}, "erlang", "#{id, kind}"),
        ({b"id": 1, 7: 2}, "elixir", '%{"id", integer()}'),
        ({Atom("__struct__"): Atom("Elixir.URI"), Atom("host"): b""}, "elixir", "%URI{}"),
        (3, "erlang", "integer()"),
        (pid, "erlang", "pid()"),
        ((Atom("$arsenal_truncated"), 9000, b"{big"), "erlang", "(cut)"),
    ]
    for term, language, expected in cases:
        assert message_shape(term, language) == expected, (term, language)


# ====================================================================== REST and CLI


async def test_rest(erl, cookie) -> None:
    service = await _service(erl.name, cookie)
    app = create_app(service, auth=False)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://arsenal.test"
        ) as client:
            flow = await client.post(
                "/api/v1/traces/message-flow",
                json={"pid": "demo_worker_1", "message": {"$atom": "ping"}, "mode": "call", "idle": 0.5},
            )
            assert flow.status_code == 200, flow.text
            data = flow.json()["data"]
            assert [e["depth"] for e in data["edges"]] == [1, 2] and data["edges"][1]["parent"] == 0
            missing = await client.post(
                "/api/v1/traces/message-flow", json={"pid": "zz_nobody_here_qq", "message": 1}
            )
            assert missing.status_code == 404 and missing.json()["errors"][0]["code"] == "not_found"
            bad = await client.post("/api/v1/traces/message-flow", json={"pid": "demo_worker_1"})
            assert bad.status_code == 422

            patterns = await client.post(
                "/api/v1/traces/message-patterns", json={"pids": ["demo_worker_1"], "duration": 0.3}
            )
            assert patterns.status_code == 200, patterns.text
            assert patterns.json()["data"]["end_reason"] == "max_ms"
        await _assert_flow_clean(service, erl.name)
        await _assert_trace_clean(service, erl.name)
    finally:
        await service.close()


def test_cli(erl, cookie) -> None:
    env = {**os.environ, "ARSENAL_COOKIE": cookie, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "arsenal"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *args, "--node", erl.name], capture_output=True, text=True, env=env, timeout=60
        )

    as_json = run("flow", "demo_worker_1", '{"$atom": "ping"}', "--mode", "call", "--idle", "0.5", "--json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert [e["depth"] for e in data["edges"]] == [1, 2]
    human = run("flow", "demo_worker_1", '{"$atom": "ping"}', "--mode", "call", "--idle", "0.5")
    assert human.returncode == 0 and "demo_worker_1" in human.stdout and "pong" in human.stdout, human.stdout
    unknown = run("flow", "demo_worker_1", '{"$atom": "zz_never_an_atom_qq"}')
    assert unknown.returncode == 3 and "zz_never_an_atom_qq" in unknown.stderr
    bad_json = run("flow", "demo_worker_1", "{not json")
    assert bad_json.returncode == 2

    patterns = run("message-patterns", "demo_worker_1", "--for", "300ms", "--json")
    assert patterns.returncode == 0, patterns.stderr
    assert json.loads(patterns.stdout)["end_reason"] == "max_ms"
    table = run("message-patterns", "all", "--for", "500ms")
    assert table.returncode == 0 and "shape" in table.stdout, table.stdout + table.stderr
