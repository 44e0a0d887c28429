"""Tracing against real nodes: sessions, their limits, every way they end, and the node left clean.

After every kind of ending the target must hold no trace flag, no trace pattern of ours and no
tracer process: `_assert_clean` checks all three on the node itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from httpx_ws import aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport

from arsenal.api import create_app
from arsenal.client import Arsenal
from arsenal.dist import Atom
from arsenal.ops.base import Principal
from arsenal.ops.errors import ErrorCode

from .helpers import eval_erlang, fails, has_trace_sessions
from .nodes import ROOT

pytestmark = pytest.mark.timeout(120)

# A process that calls arsenal_test_support:traced/1 in a loop (every Ms), for Seconds.
BUSY = "arsenal_test_support:busy_caller({ms}, {seconds})."


async def _quiet(service: Arsenal, node: str) -> None:
    """Stop the test's busy caller, if one still runs."""
    await eval_erlang(
        service, node, "case whereis(arsenal_test_busy) of undefined -> ok; P -> exit(P, kill) end"
    )


async def _trace_state(service: Arsenal, node: str) -> dict[str, Any]:
    state = await service.pool.get(node).call("arsenal_test_support", "trace_state", [])
    return {str(k): v for k, v in state.items()}


async def _assert_clean(service: Arsenal, node: str) -> None:
    """No tracer, no process with trace flags, no flags for new processes, no pattern of ours."""
    state: dict[str, Any] = {}
    for _ in range(50):  # the hub exits just after the session's end message
        state = await _trace_state(service, node)
        if state["hub"] == Atom("undefined"):
            break
        await asyncio.sleep(0.1)
    assert state["hub"] == Atom("undefined"), state
    assert state["traced_processes"] == [], state
    assert state["new_processes_flags"] == [], state
    assert state["patterns"] == [], state


async def _service(node: str, cookie: str, role: str = "admin") -> Arsenal:
    service = Arsenal(cookie=cookie, principal=Principal(name="test", role=role))
    await service.attach(node, reconnect=False)
    return service


@pytest_asyncio.fixture
async def service(erl, cookie) -> AsyncIterator[Arsenal]:
    """An admin Arsenal attached to the session's erl node; the test's busy caller stopped after."""
    arsenal = await _service(erl.name, cookie)
    yield arsenal
    await _quiet(arsenal, erl.name)
    await arsenal.close()


# ---------------------------------------------------------------------- calls, results, limits


async def test_trace_calls_with_conditions_results_and_callers(erl, service: Arsenal) -> None:
    await eval_erlang(service, erl.name, BUSY.format(ms=5, seconds=3))
    started = await service.run(
        "trace_calls",
        {
            "patterns": ["arsenal_test_support:traced(N) when N rem 2 =:= 0 -> return, caller"],
            "max_events": 8,
            "duration": 10,
            "wait": True,
        },
    )
    assert started.status == "finished" and started.end_reason == "max_events"
    assert started.events == 8 and started.patterns[0].functions == 1
    assert started.patterns[0].actions == ["caller", "return"]
    calls = [e for e in started.results if e["kind"] == "call"]
    returns = [e for e in started.results if e["kind"] == "return_from"]
    assert calls and returns
    assert all(int(e["args"][0]) % 2 == 0 for e in calls), calls  # the condition ran in the node
    assert all(e["mfa"] == "arsenal_test_support:traced/1" for e in calls + returns)
    assert all(e["caller"] == "arsenal_test_support:busy_loop/2" for e in calls), calls
    assert all(e["result"].startswith("{traced,") for e in returns), returns
    assert [e["seq"] for e in started.results] == list(range(1, 9))

    page = await service.run("get_trace_results", {"id": started.id, "after": 3, "limit": 2})
    assert [e["seq"] for e in page.events] == [4, 5] and page.next_after == 5
    assert page.trace.status == "finished" and page.trace.events == 8
    listed = await service.run("list_traces", {"limit": 5})
    assert started.id in [t.id for t in listed.traces]
    await _assert_clean(service, erl.name)


async def test_limits_trip_inside_the_node(erl, service: Arsenal) -> None:
    await eval_erlang(service, erl.name, BUSY.format(ms=0, seconds=3))
    tripped = await service.run(
        "trace_calls",
        {"patterns": ["arsenal_test_support:traced/1"], "max_events": 100000, "rate": 50, "wait": True},
    )
    assert tripped.end_reason == "rate_limit" and tripped.events == 50
    await _assert_clean(service, erl.name)

    timed = await service.run(
        "trace_calls",
        {"patterns": ["arsenal_test_support:never_called/0"], "duration": 0.3, "wait": True},
    )
    assert timed.end_reason == "max_ms" and timed.events == 0
    await _assert_clean(service, erl.name)

    cut = await service.run(
        "trace_calls",
        {
            "patterns": ["arsenal_test_support:traced/1 -> return"],
            "max_events": 4,
            "max_bytes": 64,
            "wait": True,
        },
    )
    results = [e for e in cut.results if e["kind"] == "return_from"]
    assert results and all(e["truncated"] and "bytes, truncated" in e["result"] for e in results)
    assert cut.truncated >= len(results)
    await _assert_clean(service, erl.name)


async def test_a_tracer_that_falls_behind_stops_all_tracing(erl, service: Arsenal) -> None:
    """The hub is suspended so its queue grows past max_queue: every session trips at once."""
    await _quiet(service, erl.name)  # loads the test module, whose functions are traced
    first = await service.run(
        "trace_calls",
        {
            "patterns": ["arsenal_test_support:traced/1"],
            "max_events": 1_000_000,
            "rate": 1_000_000,
            "max_queue": 200,
            "duration": 20,
        },
    )
    second = await service.run(
        "trace_messages", {"pids": ["demo_worker_1"], "max_events": 1000, "duration": 20}
    )
    # A suspension lasts as long as the process that made it: this one holds it for 1.5 s.
    await eval_erlang(
        service,
        erl.name,
        "H = arsenal_agent_trace:hub(), S = self(), "
        "spawn(fun() -> erlang:suspend_process(H), S ! held, timer:sleep(1500), "
        "erlang:resume_process(H) end), receive held -> ok end",
    )
    await eval_erlang(service, erl.name, BUSY.format(ms=0, seconds=1))
    for trace_id in (first.id, second.id):
        info = await _wait_finished(service, trace_id)
        assert info.end_reason == "queue_overflow", info
    await _assert_clean(service, erl.name)


async def _wait_finished(service: Arsenal, trace_id: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        page = await service.run("get_trace_results", {"id": trace_id, "limit": 1})
        if page.trace.status == "finished" or time.monotonic() > deadline:
            return page.trace
        await asyncio.sleep(0.1)


# ---------------------------------------------------------------------- messages, processes, sessions


async def test_messages_process_lifecycle_and_history(erl, service: Arsenal) -> None:
    echo = await service.pool.get(erl.name).call("arsenal_test_support", "start_echo", [])
    pid = f"<0.{echo.id}.{echo.serial}>"
    session = await service.run("trace_process", {"pid": pid, "max_events": 50, "duration": 10})
    echoed = await eval_erlang(
        service,
        erl.name,
        f'list_to_pid("{pid}") ! {{echo, self(), hello}}, receive hello -> ok after 2000 -> late end',
    )
    assert echoed == Atom("ok")
    await eval_erlang(service, erl.name, f'exit(list_to_pid("{pid}"), kill).')
    info = await _wait_finished(service, session.id)
    assert info.end_reason == "processes_exited", info
    events = (await service.run("get_trace_results", {"id": session.id})).events
    kinds = [e["kind"] for e in events]
    assert "receive" in kinds and "send" in kinds and "exit" in kinds, kinds
    sent = next(e for e in events if e["kind"] == "send")
    assert sent["message"] == "hello" and sent["pid"] == pid
    exit_event = next(e for e in events if e["kind"] == "exit")
    assert exit_event["reason"] == "killed"

    history = await service.run("get_process_history", {"pid": pid})
    assert history.pid == pid and {e["kind"] for e in history.events} >= {"receive", "send", "exit"}
    assert all(e["trace"] == session.id for e in history.events)
    times = [e["time_us"] for e in history.events]
    assert times == sorted(times, reverse=True)
    await _assert_clean(service, erl.name)


async def test_sessions_run_side_by_side_without_stealing_events(erl, service: Arsenal) -> None:
    await eval_erlang(service, erl.name, BUSY.format(ms=2, seconds=4))
    calls = await service.run(
        "trace_calls", {"patterns": ["arsenal_test_support:traced/1"], "max_events": 20, "duration": 10}
    )
    others = await service.run(
        "trace_calls",
        {"patterns": ["arsenal_test_support:busy_loop/2"], "max_events": 20, "duration": 10},
    )
    messages = await service.run(
        "trace_messages", {"pids": ["demo_worker_1"], "max_events": 2, "duration": 10}
    )
    overlap = await fails(
        ErrorCode.conflict,
        service.run("trace_calls", {"patterns": ["arsenal_test_support:traced/_"], "duration": 5}),
    )
    assert calls.id in overlap.message
    for trace_id in (calls.id, others.id, messages.id):
        assert (await _wait_finished(service, trace_id)).end_reason == "max_events"
    first = (await service.run("get_trace_results", {"id": calls.id})).events
    second = (await service.run("get_trace_results", {"id": others.id})).events
    third = (await service.run("get_trace_results", {"id": messages.id})).events
    assert {e["mfa"] for e in first} == {"arsenal_test_support:traced/1"}
    assert {e["mfa"] for e in second} == {"arsenal_test_support:busy_loop/2"}
    assert {e["kind"] for e in third} <= {"send", "receive"} and len(third) == 2
    await _assert_clean(service, erl.name)


async def test_stop_and_the_owner_going_away_end_sessions(erl, cookie, service: Arsenal) -> None:
    session = await service.run(
        "trace_messages", {"pids": ["demo_worker_1"], "max_events": 1000, "duration": 60}
    )
    stopped = await service.run("stop_trace", {"id": session.id})
    assert stopped.status == "finished" and stopped.end_reason == "stopped"
    await _assert_clean(service, erl.name)
    # A second stop is harmless; an unknown id is not found.
    assert (await service.run("stop_trace", {"id": session.id})).end_reason == "stopped"
    await fails(ErrorCode.not_found, service.run("stop_trace", {"id": "abcdef123456"}))

    # Another Arsenal starts a session and goes away without stopping it.
    other = await _service(erl.name, cookie)
    await other.run("trace_messages", {"pids": ["demo_worker_1"], "max_events": 1000, "duration": 60})
    assert (await _trace_state(service, erl.name))["hub"] != Atom("undefined")
    await other.pool.close()  # the connection drops: the node ends the session by itself
    await _assert_clean(service, erl.name)


def test_a_killed_cli_leaves_nothing_behind(erl, cookie) -> None:
    env = {**os.environ, "ARSENAL_COOKIE": cookie, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "arsenal",
            "trace",
            "--messages",
            "demo_worker_1",
            "--node",
            erl.name,
            "-l",
            "100000",
            "--for",
            "60s",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        line = proc.stdout.readline()  # the first event: the session is running
        assert json.loads(line)["kind"] in ("send", "receive"), line
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    async def check() -> None:
        service = await _service(erl.name, cookie)
        try:
            await _assert_clean(service, erl.name)
        finally:
            await service.close()

    asyncio.run(check())


async def test_a_node_that_dies_mid_trace(make_node, cookie) -> None:
    target = make_node("tracedie", demo=True)
    service = await _service(target.name, cookie)
    try:
        session = await service.run(
            "trace_messages", {"pids": ["demo_worker_1"], "max_events": 1000, "duration": 60}
        )
        target.kill()
        info = await _wait_finished(service, session.id)
        assert info.end_reason == "node_down", info
        await fails(ErrorCode.node_down, service.run("trace_messages", {"pids": ["demo_worker_1"]}))
        assert (await service.run("list_traces", {})).running == 0
    finally:
        await service.close()


# ---------------------------------------------------------------------- bad input


async def test_bad_patterns_and_refusals(erl, cookie) -> None:
    service = await _service(erl.name, cookie)
    operator = await _service(erl.name, cookie, role="operator")
    try:
        node = service.pool.get(erl.name)
        before = await node.call("erlang", "system_info", [Atom("atom_count")])
        cases = [
            (ErrorCode.not_found, ["zz_no_such_module_qq:f/1"], "not an atom"),
            (ErrorCode.not_found, ["lists:zz_no_such_function_qq/1"], "not an atom"),
            (ErrorCode.not_found, ["ok:error/1"], "not loaded"),
            (ErrorCode.not_found, ["lists:ok/1"], "no function matches"),
            (ErrorCode.forbidden, ["lists:_"], "lists"),
            (ErrorCode.forbidden, ["lists"], "lists"),
            (ErrorCode.forbidden, ["arsenal_agent:info/0"], "agent"),
            (ErrorCode.validation_error, ["lists:seq(1, X/2"], "column"),
            (ErrorCode.validation_error, ["lists:seq(A) when B > 1"], "column"),
            (ErrorCode.not_found, ["Enum.map(x, %{zz_never_key_qq: 1})"], "not an atom"),
            (ErrorCode.validation_error, ["lists:seq/2 -> stack"], "stack"),
        ]
        for code, patterns, text in cases:
            err = await fails(code, service.run("trace_calls", {"patterns": patterns, "duration": 1}))
            assert text in err.message, (patterns, err.message)
        await fails(ErrorCode.validation_error, service.run("trace_calls", {"patterns": []}))
        await fails(
            ErrorCode.validation_error, service.run("trace_calls", {"patterns": ["x:y/1"], "rate": 0})
        )
        await fails(
            ErrorCode.validation_error, service.run("trace_calls", {"patterns": ["x:y/1"], "duration": 0})
        )
        await fails(ErrorCode.not_found, service.run("trace_messages", {"pids": ["zz_nobody_here_qq"]}))
        await fails(ErrorCode.not_found, service.run("trace_process", {"pid": "<0.32000.900>"}))
        await fails(ErrorCode.validation_error, service.run("trace_process", {"pid": "<1.2.3>"}))
        await fails(
            ErrorCode.forbidden, operator.run("trace_calls", {"patterns": ["lists:_"], "force": True})
        )
        forced = await service.run(
            "trace_calls", {"patterns": ["lists:_"], "force": True, "max_events": 3, "wait": True}
        )
        assert forced.end_reason in ("max_events", "max_ms") and forced.patterns[0].functions > 50
        after = await node.call("erlang", "system_info", [Atom("atom_count")])
        assert after == before
        await _assert_clean(service, erl.name)
    finally:
        await operator.close()
        await service.close()


async def test_another_tracer_is_not_robbed(erl, cookie) -> None:
    """dbg traces the calls of new processes. Before OTP 27 a process has one tracer: Arsenal refuses,
    naming dbg, rather than take it over. From OTP 27 on dbg traces in a trace session of its own, so
    both trace, and dbg still does when Arsenal is done."""
    service = await _service(erl.name, cookie)
    try:
        await eval_erlang(service, erl.name, "{ok, _} = dbg:tracer(), {ok, _} = dbg:p(new, [call]), ok.")
        traced = ["arsenal_test_support:traced/1"]
        if not await has_trace_sessions(service.pool.get(erl.name)):
            err = await fails(ErrorCode.conflict, service.run("trace_calls", {"patterns": traced}))
            assert "dbg" in err.message
        else:
            await eval_erlang(service, erl.name, BUSY.format(ms=20, seconds=5))
            calls = await service.run("trace_calls", {"patterns": traced, "max_events": 5, "wait": True})
            assert calls.end_reason == "max_events" and calls.events == 5
            assert await eval_erlang(service, erl.name, "lists:keymember(dbg, 1, trace:session_info(new))")
    finally:
        await _quiet(service, erl.name)
        await eval_erlang(service, erl.name, "dbg:stop(), ok.")
        await service.close()


# ---------------------------------------------------------------------- REST, WebSocket, export, CLI


async def test_rest_websocket_and_export(erl, cookie) -> None:
    service = await _service(erl.name, cookie)
    app = create_app(service, auth=False)
    transport = ASGIWebSocketTransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://arsenal.test") as client:
            await eval_erlang(service, erl.name, BUSY.format(ms=20, seconds=5))
            started = await client.post(
                "/api/v1/traces/calls",
                json={
                    "patterns": ["arsenal_test_support:traced/1 -> return"],
                    "max_events": 6,
                    "duration": 10,
                },
            )
            assert started.status_code == 200, started.text
            trace_id = started.json()["data"]["id"]
            got: list[dict[str, Any]] = []
            async with aconnect_ws("http://arsenal.test/api/v1/ws", client) as ws:
                await ws.send_text(json.dumps({"subscribe": f"trace:{trace_id}"}))
                while True:
                    message = json.loads(await asyncio.wait_for(ws.receive_text(), 10))
                    if message["type"] == "trace":
                        got.extend(message["data"]["events"])
                    if message["type"] == "trace_end":
                        assert message["data"]["reason"] == "max_events"
                        break
                # A finished session is no channel any more.
                await ws.send_text(json.dumps({"subscribe": f"trace:{trace_id}"}))
                message = json.loads(await asyncio.wait_for(ws.receive_text(), 10))
                assert message["type"] == "error" and message["errors"][0]["code"] == "not_found"
            assert [e["seq"] for e in got] == list(range(1, len(got) + 1)) and got

            results = await client.get(f"/api/v1/traces/{trace_id}", params={"limit": 100})
            assert results.status_code == 200 and len(results.json()["data"]["events"]) == 6
            exported = await client.get(f"/api/v1/traces/{trace_id}/export")
            assert exported.headers["content-type"].startswith("application/x-ndjson")
            lines = [json.loads(line) for line in exported.text.splitlines()]
            assert lines == results.json()["data"]["events"]
            missing = await client.get("/api/v1/traces/abcdef123456/export")
            assert missing.status_code == 404
            stopped = await client.delete(f"/api/v1/traces/{trace_id}")
            assert stopped.json()["data"]["end_reason"] == "max_events"
            messages = await client.post(
                "/api/v1/processes/demo_worker_1/trace", json={"max_events": 1, "wait": True}
            )
            assert messages.json()["data"]["results"][0]["kind"] in ("send", "receive", "spawn", "exit")
            bad = await client.post("/api/v1/traces/calls", json={"patterns": ["lists:_"]})
            assert bad.status_code == 403 and bad.json()["errors"][0]["code"] == "forbidden"
        await _assert_clean(service, erl.name)
    finally:
        await _quiet(service, erl.name)
        await service.close()


def test_cli_trace_streams_json_lines(erl, cookie, tmp_path) -> None:
    env = {**os.environ, "ARSENAL_COOKIE": cookie, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "arsenal"]
    done = subprocess.run(
        [
            *command,
            "trace",
            "--process",
            "demo_worker_1",
            "--node",
            erl.name,
            "-l",
            "2",
            "--for",
            "10s",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(events) == 2 and all(e["kind"] == "receive" for e in events)
    summary = json.loads(done.stderr.strip().splitlines()[-1])["summary"]
    assert summary["events"] == 2 and summary["end"] == "max_events"

    human = subprocess.run(
        [*command, "trace", "--messages", "demo_worker_1", "--node", erl.name, "-l", "1", "--for", "10s"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert human.returncode == 0 and "<< tick" in human.stdout, human.stdout + human.stderr
    refused = subprocess.run(
        [*command, "trace", "lists:_", "--node", erl.name],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert refused.returncode == 5 and "lists" in refused.stderr
    bad_duration = subprocess.run(
        [*command, "trace", "lists:seq/2", "--for", "soon", "--node", erl.name],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad_duration.returncode == 2 and "duration" in bad_duration.stderr

    exported = subprocess.run(
        [*command, "trace-export", summary["id"]], capture_output=True, text=True, env=env, timeout=60
    )
    assert [json.loads(line) for line in exported.stdout.splitlines()] == events
    listed = subprocess.run(
        [*command, "traces", "--json"], capture_output=True, text=True, env=env, timeout=60
    )
    assert summary["id"] in {t["id"] for t in json.loads(listed.stdout)["traces"]}


def test_cli_live_view_in_a_terminal(erl, cookie) -> None:
    """In a terminal, events scroll above a status line that counts them against the limits."""
    import pty
    import select

    # A terminal that can redraw a line (under TERM=dumb, as some CI runners set it, there is no live line).
    env = {**os.environ, "ARSENAL_COOKIE": cookie, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200"}
    env["TERM"] = "xterm"
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "arsenal",
            "trace",
            "--messages",
            "demo_worker_1",
            "--node",
            erl.name,
            "-l",
            "2",
            "--for",
            "20s",
        ],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
        close_fds=True,
    )
    os.close(secondary)
    output = b""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(primary, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
            elif proc.poll() is not None:
                break
        assert proc.wait(10) == 0, output.decode(errors="replace")
    finally:
        os.close(primary)
        if proc.poll() is None:
            proc.kill()
    text = output.decode(errors="replace")
    assert "/2 events" in text and "trips above 1000/s" in text, text  # the live status line
    assert text.count("<< tick") == 2 and "2 events; ended: max_events" in text, text


async def test_unloading_the_agent_ends_sessions_and_undoes_them(make_node, cookie) -> None:
    """The hub is stopped through its own code before its module goes, so nothing stays set."""
    target = make_node("traceunload", demo=True)
    service = await _service(target.name, cookie)
    try:
        await service.pool.get(target.name).call("arsenal_test_support", "busy_caller", [5, 5])
        calls = await service.run(
            "trace_calls",
            {"patterns": ["arsenal_test_support:traced/1"], "max_events": 100000, "duration": 30},
        )
        await service.pool.get(target.name).unload_agent()
        info = await _wait_finished(service, calls.id)
        assert info.end_reason == "hub_stopped", info
        assert info.events > 0
        await _assert_clean(service, target.name)
    finally:
        await service.close()


async def test_a_killed_tracer_leaves_nothing_behind(erl, service: Arsenal) -> None:
    """A tracer's death leaves trace flags on its processes and patterns in the code: the hub's
    janitor undoes them when the hub dies without doing it itself."""
    await eval_erlang(service, erl.name, BUSY.format(ms=5, seconds=5))
    calls = await service.run(
        "trace_calls", {"patterns": ["arsenal_test_support:traced/1"], "max_events": 100000, "duration": 30}
    )
    messages = await service.run(
        "trace_messages", {"pids": ["demo_worker_1"], "max_events": 100000, "duration": 30}
    )
    await eval_erlang(service, erl.name, "exit(arsenal_agent_trace:hub(), kill)")
    for trace_id in (calls.id, messages.id):
        assert (await _wait_finished(service, trace_id)).end_reason == "hub_down"
    await _assert_clean(service, erl.name)


async def test_tracing_the_elixir_demo(elixir, cookie) -> None:
    """Elixir patterns on the Elixir demo: conditions on a GenServer's messages, results in Elixir."""
    service = await _service(elixir.name, cookie)
    try:
        traced = await service.run(
            "trace_calls",
            {
                "patterns": [
                    "ArsenalDemo.StatefulWorker.handle_call({:increment, n}, _from, _) when n > 0 -> return"
                ],
                "max_events": 4,
                "duration": 20,
                "wait": True,
            },
        )
        assert traced.end_reason == "max_events", traced
        calls = [e for e in traced.results if e["kind"] == "call"]
        returns = [e for e in traced.results if e["kind"] == "return_from"]
        assert calls and returns
        assert calls[0]["mfa"] == "ArsenalDemo.StatefulWorker.handle_call/3"
        assert calls[0]["args"][0].startswith("{:increment, ") and "#PID<0." in calls[0]["args"][1]
        assert returns[0]["result"].startswith("{:reply, ")
        messages = await service.run(
            "trace_messages",
            {"pids": ["ArsenalDemo.Counter1"], "max_events": 2, "wait": True, "duration": 20},
        )
        assert any(":increment" in e.get("message", "") for e in messages.results), messages.results
        await _assert_clean_elixir(service, elixir.name)
    finally:
        await service.close()


async def _assert_clean_elixir(service: Arsenal, node: str) -> None:
    """The Elixir demo has no test-support module: ask the node directly."""
    conn = service.pool.get(node)
    for _ in range(50):
        if await conn.call("erlang", "whereis", [Atom("arsenal_agent_trace")]) == Atom("undefined"):
            break
        await asyncio.sleep(0.1)
    assert await conn.call("erlang", "whereis", [Atom("arsenal_agent_trace")]) == Atom("undefined")
    assert await conn.call("erlang", "trace_info", [Atom("new_processes"), Atom("flags")]) == (
        Atom("flags"),
        [],
    )
    mfa = (Atom("Elixir.ArsenalDemo.StatefulWorker"), Atom("handle_call"), 3)
    assert await conn.call("erlang", "trace_info", [mfa, Atom("traced")]) == (Atom("traced"), False)
    for name in ("Elixir.ArsenalDemo.Counter1", "Elixir.ArsenalDemo.Counter2"):
        pid = await conn.call("erlang", "whereis", [Atom(name)])
        assert await conn.call("erlang", "trace_info", [pid, Atom("flags")]) == (Atom("flags"), [])
