"""Profiling against real nodes: stack sampling of one process, call counts and call time of
functions, and the node left clean (no counters, no sampler, no tracer) after every ending.
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
from arsenal.dist import Atom
from arsenal.ops.base import Principal
from arsenal.ops.errors import ErrorCode

from .helpers import eval_erlang, fails
from .nodes import ROOT

pytestmark = pytest.mark.timeout(120)

SUPPORT = "arsenal_test_support"
TRACED = "arsenal_test_support:traced/1"
# The frames of arsenal_test_support:stack_worker/1's process, root first, as the sampler sees them.
STACK = ";".join(
    f"arsenal_test_support:{f}" for f in ("stack_outer/1", "stack_middle/1", "stack_inner/1", "spin/2")
)


async def _service(node: str, cookie: str, role: str = "admin") -> Arsenal:
    service = Arsenal(cookie=cookie, principal=Principal(name="test", role=role))
    await service.attach(node, reconnect=False)
    return service


async def _call(service: Arsenal, node: str, function: str, *args: Any) -> Any:
    return await service.pool.get(node).call(SUPPORT, function, list(args))


async def _quiet(service: Arsenal, node: str) -> None:
    """Stop the helpers' processes, if they still run."""
    await eval_erlang(
        service,
        node,
        "[exit(P, kill) || N <- [arsenal_test_busy, arsenal_test_stack], P <- [whereis(N)], is_pid(P)], ok",
    )


async def _assert_clean(service: Arsenal, node: str) -> None:
    """No counter on the test module, no sampler, no tracer hub, no trace flag left on the node."""
    state: dict[str, Any] = {}
    profile: dict[str, Any] = {}
    for _ in range(50):  # the hub and the sampler exit just after they report
        state = {str(k): v for k, v in (await _call(service, node, "trace_state")).items()}
        profile = {str(k): v for k, v in (await _call(service, node, "profile_state")).items()}
        if state["hub"] == Atom("undefined") and not profile["samplers"]:
            break
        await asyncio.sleep(0.1)
    assert state["hub"] == Atom("undefined"), state
    if state["traced_processes"]:  # say which process kept flags, and whose tracer it names
        pid = state["traced_processes"][0][0]
        fields = [Atom("registered_name"), Atom("current_stacktrace"), Atom("initial_call")]
        state["leftover"] = await service.pool.get(node).call("erlang", "process_info", [pid, fields])
        state["tracer"] = await service.pool.get(node).call("erlang", "trace_info", [pid, Atom("tracer")])
    assert state["traced_processes"] == [] and state["new_processes_flags"] == [], state
    assert state["patterns"] == [], state
    assert profile["counted"] == [], profile
    assert profile["samplers"] == [], profile


async def _hub_sessions(service: Arsenal, node: str) -> list[Any]:
    return await service.pool.get(node).call("arsenal_agent_trace", "sessions", [])


async def _when_counting(service: Arsenal, node: str, count: int = 1) -> None:
    """Wait until the node's hub runs ``count`` sessions (their counters are set by then)."""
    for _ in range(100):
        if len(await _hub_sessions(service, node)) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the profile session did not start")


def _line_counts(collapsed: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in collapsed:
        stack, _, count = line.rpartition(" ")
        counts[stack] = counts.get(stack, 0) + int(count)
    return counts


# ---------------------------------------------------------------------- profile_process


async def test_profile_process_samples_a_known_stack(erl, cookie) -> None:
    service = await _service(erl.name, cookie)
    try:
        worker = await _call(service, erl.name, "stack_worker", 20)
        profile = await service.run(
            "profile_process", {"pid": "arsenal_test_stack", "duration": 1.0, "interval_ms": 2}
        )
        assert profile.pid == f"<0.{worker.id}.{worker.serial}>"
        assert profile.stopped == "window" and not profile.process_exited
        assert profile.samples > 10
        counts = _line_counts(profile.collapsed)
        # Every sample is in exactly one line: the counts add up to the samples.
        assert sum(counts.values()) == profile.samples
        assert profile.other_stacks == 0 and profile.distinct_stacks == len(profile.collapsed)
        assert sum(profile.statuses.values()) == profile.samples
        assert set(profile.statuses) <= {
            "running",
            "runnable",
            "waiting",
            "garbage_collecting",
            "exiting",
            "suspended",
        }
        # The worker spends its time in spin/2, under stack_outer -> stack_middle -> stack_inner.
        deep = sum(n for stack, n in counts.items() if STACK in stack)
        assert deep > profile.samples / 2, profile.collapsed
        assert all(
            stack.index("stack_loop/1") < stack.index("stack_outer/1") for stack in counts if STACK in stack
        )
        by_name = {f.function: f for f in profile.top_functions}
        spin = by_name["arsenal_test_support:spin/2"]
        outer = by_name["arsenal_test_support:stack_outer/1"]
        assert spin.self == spin.total == deep  # a leaf, only ever called under stack_inner/1
        assert outer.total >= deep and outer.self < outer.total
        assert profile.top_functions[0].self >= profile.top_functions[-1].self
        assert 0 < spin.self_share <= 1 and outer.total_share >= spin.self_share
        assert profile.functions is None

        capped = await service.run(
            "profile_process",
            {"pid": "arsenal_test_stack", "duration": 30, "max_samples": 7, "interval_ms": 1},
        )
        assert capped.stopped == "max_samples" and capped.samples == 7
        assert sum(_line_counts(capped.collapsed).values()) == 7
        await _assert_clean(service, erl.name)
    finally:
        await _quiet(service, erl.name)
        await service.close()


async def test_profile_process_ends_when_the_process_exits(erl, cookie) -> None:
    service = await _service(erl.name, cookie)
    try:
        await _call(service, erl.name, "stack_worker", 1)
        profile = await service.run(
            "profile_process",
            {"pid": "arsenal_test_stack", "duration": 30, "functions": ["arsenal_test_support:spin/2"]},
        )
        assert profile.process_exited and profile.stopped == "process_exited"
        assert profile.samples > 0 and sum(_line_counts(profile.collapsed).values()) == profile.samples
        assert profile.functions is not None and profile.functions.end_reason in (
            "processes_exited",
            "stopped",
        )
        await _assert_clean(service, erl.name)
    finally:
        await _quiet(service, erl.name)
        await service.close()


async def test_profile_process_with_function_call_time(erl, cookie) -> None:
    service = await _service(erl.name, cookie)
    try:
        busy = await eval_erlang(service, erl.name, "arsenal_test_support:busy_caller(1, 10)")
        busy_text = f"<0.{busy.id}.{busy.serial}>"
        task = asyncio.create_task(
            service.run(
                "profile_process",
                {
                    "pid": busy_text,
                    "duration": 1.5,
                    "interval_ms": 5,
                    "functions": [TRACED, "arsenal_test_support:never_called/0"],
                },
            )
        )
        await _when_counting(service, erl.name)
        # Another process calls traced/1 in the window too: only the profiled one is counted.
        assert await _call(service, erl.name, "call_traced", 10) == 10
        profile = await task
        assert profile.samples > 0
        assert any("arsenal_test_support:busy_loop/2" in line for line in profile.collapsed)
        measured = profile.functions
        assert measured is not None and measured.measure == "time"
        assert [(p.pattern, p.functions) for p in measured.patterns] == [
            (TRACED, 1),
            ("arsenal_test_support:never_called/0", 1),
        ]
        [traced] = measured.functions  # a function nobody called has no row
        assert traced.function == TRACED and traced.share == 1.0
        assert traced.calls > 0 and traced.time_us > 0
        assert [p.pid for p in traced.processes] == [busy_text]
        assert traced.us_per_call == pytest.approx(traced.time_us / traced.calls, rel=1e-3)
        assert measured.total_time_us == sum(r.time_us for r in measured.functions)
        await _assert_clean(service, erl.name)
    finally:
        await _quiet(service, erl.name)
        await service.close()


# ---------------------------------------------------------------------- profile_function


async def test_profile_function_counts_every_call(erl, cookie) -> None:
    service = await _service(erl.name, cookie)
    try:
        await _quiet(service, erl.name)
        for measure, calls in (("count", 137), ("time", 50)):
            task = asyncio.create_task(
                service.run("profile_function", {"patterns": [TRACED], "measure": measure, "duration": 3})
            )
            await _when_counting(service, erl.name)
            assert await _call(service, erl.name, "call_traced", calls) == calls
            profile = await task
            assert profile.end_reason == "max_ms" and profile.measure == measure
            assert [(p.pattern, p.functions) for p in profile.patterns] == [(TRACED, 1)]
            [row] = profile.functions
            assert row.function == TRACED and row.calls == calls and profile.total_calls == calls
            assert row.share == 1.0
            if measure == "count":
                assert row.time_us == 0 and row.us_per_call is None and row.processes == []
            else:
                assert row.time_us > 0 and profile.total_time_us == row.time_us
                assert [p.calls for p in row.processes] == [calls]
            listed = await service.run("list_traces", {"limit": 5})
            assert profile.trace in {t.id for t in listed.traces if t.kind == "profile"}
            await _assert_clean(service, erl.name)
    finally:
        await service.close()


async def test_profile_function_refusals_and_conflicts(erl, cookie) -> None:
    service = await _service(erl.name, cookie)
    operator = await _service(erl.name, cookie, role="operator")
    try:
        run = service.run
        await fails(ErrorCode.forbidden, run("profile_function", {"patterns": ["lists"]}))
        await fails(ErrorCode.forbidden, run("profile_function", {"patterns": ["lists:_"]}))
        await fails(
            ErrorCode.forbidden, run("profile_function", {"patterns": ["arsenal_agent_prof:sample/5"]})
        )
        await fails(
            ErrorCode.forbidden,
            operator.run("profile_function", {"patterns": ["lists"], "force": True, "duration": 0.1}),
        )
        for bad in (
            "arsenal_test_support:traced(1)",
            "arsenal_test_support:traced/1 -> return",
            "x:y(A) when A > 1",
        ):
            await fails(ErrorCode.validation_error, run("profile_function", {"patterns": [bad]}))
        for duration in (0, 0.05, 61, -1):
            await fails(
                ErrorCode.validation_error,
                run("profile_function", {"patterns": [TRACED], "duration": duration}),
            )
        await fails(ErrorCode.validation_error, run("profile_function", {"patterns": []}))
        await fails(
            ErrorCode.validation_error,
            run("profile_function", {"patterns": [TRACED], "measure": "count", "pids": ["init"]}),
        )
        await fails(
            ErrorCode.not_found, run("profile_function", {"patterns": ["zz_no_such_module_profiled:f/1"]})
        )
        await fails(
            ErrorCode.not_found, run("profile_function", {"patterns": ["arsenal_test_support:nope/9"]})
        )
        # An admin may force a hot module.
        forced = await run(
            "profile_function", {"patterns": ["lists"], "measure": "count", "duration": 0.2, "force": True}
        )
        assert forced.end_reason == "max_ms" and forced.patterns[0].functions > 10

        # One function has one counter: a second session on it is a conflict.
        first = asyncio.create_task(
            run("profile_function", {"patterns": [TRACED], "measure": "count", "duration": 2})
        )
        await _when_counting(service, erl.name)
        error = await fails(
            ErrorCode.conflict, run("profile_function", {"patterns": ["arsenal_test_support:_"]})
        )
        assert (await first).trace in error.message  # the session that holds the counter is named
        await _assert_clean(service, erl.name)
    finally:
        await operator.close()
        await service.close()


async def test_profile_process_errors(erl, cookie) -> None:
    service = await _service(erl.name, cookie)
    try:
        run = service.run
        await fails(ErrorCode.not_found, run("profile_process", {"pid": "zz_no_such_process_name"}))
        dead = await eval_erlang(service, erl.name, "P = spawn(fun() -> ok end), timer:sleep(50), P")
        dead_text = f"<0.{dead.id}.{dead.serial}>"
        await fails(ErrorCode.not_found, run("profile_process", {"pid": dead_text, "duration": 0.2}))
        await fails(
            ErrorCode.not_found,
            run("profile_process", {"pid": dead_text, "duration": 0.2, "functions": [TRACED]}),
        )
        await fails(
            ErrorCode.not_found,
            run("profile_function", {"patterns": [TRACED], "pids": [dead_text], "duration": 0.2}),
        )
        for bad in (
            {"duration": 0},
            {"duration": 60.5},
            {"interval_ms": 0},
            {"interval_ms": 1001},
            {"max_samples": 0},
            {"max_samples": 20001},
        ):
            await fails(ErrorCode.validation_error, run("profile_process", {"pid": "init", **bad}))
        await fails(ErrorCode.validation_error, run("profile_process", {"pid": "1.2.3"}))
        await fails(ErrorCode.forbidden, run("profile_process", {"pid": "init", "functions": ["ets"]}))
        await _assert_clean(service, erl.name)
    finally:
        await service.close()


async def test_the_sampler_stops_when_arsenal_goes_away(erl, cookie) -> None:
    service = await _service(erl.name, cookie)
    other = await _service(erl.name, cookie)
    try:
        await _call(service, erl.name, "stack_worker", 20)
        task = asyncio.create_task(
            other.run("profile_process", {"pid": "arsenal_test_stack", "duration": 30, "functions": [TRACED]})
        )
        for _ in range(100):
            state = await _call(service, erl.name, "profile_state")
            if state[Atom("samplers")] and await _hub_sessions(service, erl.name):
                break
            await asyncio.sleep(0.05)
        assert state[Atom("samplers")], state
        await other.pool.close()  # the connection drops: the sampler and the session end on the node
        with pytest.raises(Exception):  # noqa: B017 - whatever the dropped connection raises
            await task
        await _assert_clean(service, erl.name)
    finally:
        await _quiet(service, erl.name)
        await other.close()
        await service.close()


# ---------------------------------------------------------------------- REST, CLI, Elixir


async def test_rest(erl, cookie) -> None:
    service = await _service(erl.name, cookie)
    app = create_app(service, auth=False)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://arsenal.test") as client:
            await _call(service, erl.name, "stack_worker", 20)
            sampled = await client.post(
                "/api/v1/processes/arsenal_test_stack/profile", json={"duration": 0.5, "interval_ms": 5}
            )
            assert sampled.status_code == 200, sampled.text
            data = sampled.json()["data"]
            assert data["samples"] > 0 and any(STACK in line for line in data["collapsed"])
            counted = await client.post(
                "/api/v1/profile/functions",
                json={"patterns": ["arsenal_test_support:spin/2"], "measure": "count", "duration": 0.5},
            )
            assert counted.status_code == 200, counted.text
            [row] = counted.json()["data"]["functions"]
            assert row["function"] == "arsenal_test_support:spin/2" and row["calls"] > 0
            bad = await client.post("/api/v1/processes/arsenal_test_stack/profile", json={"duration": 100})
            assert bad.status_code == 422 and bad.json()["errors"][0]["code"] == "validation_error"
            refused = await client.post("/api/v1/profile/functions", json={"patterns": ["lists:_"]})
            assert refused.status_code == 403
        await _assert_clean(service, erl.name)
    finally:
        await _quiet(service, erl.name)
        await service.close()


def test_cli_profile(erl, cookie, tmp_path) -> None:
    env = {**os.environ, "ARSENAL_COOKIE": cookie, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "arsenal", "profile", "--node", erl.name]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*command, *args], capture_output=True, text=True, env=env, timeout=60)

    async def start_worker() -> None:
        service = await _service(erl.name, cookie)
        try:
            await _call(service, erl.name, "stack_worker", 30)
        finally:
            await service.close()

    asyncio.run(start_worker())
    flame = tmp_path / "stacks.folded"
    human = cli("arsenal_test_stack", "--for", "1s", "--interval", "5ms", "--collapsed", str(flame))
    assert human.returncode == 0, human.stderr
    assert "spin/2" in human.stdout and "samples" in human.stdout, human.stdout
    lines = flame.read_text().splitlines()
    assert lines and any(STACK in line for line in lines)
    assert all(line.rpartition(" ")[2].isdigit() for line in lines)

    as_json = cli("arsenal_test_stack", "--for", "500ms", "--json")
    assert as_json.returncode == 0, as_json.stderr
    profile = json.loads(as_json.stdout)
    assert sum(_line_counts(profile["collapsed"]).values()) == profile["samples"]

    counted = cli(
        "--function", "arsenal_test_support:spin/2", "--for", "500ms", "--measure", "count", "--json"
    )
    assert counted.returncode == 0, counted.stderr
    assert json.loads(counted.stdout)["functions"][0]["calls"] > 0
    timed = cli("--function", "arsenal_test_support:spin/2", "--for", "500ms")
    assert timed.returncode == 0 and "arsenal_test_support:spin/2" in timed.stdout, (
        timed.stdout + timed.stderr
    )

    assert cli("--for", "1s").returncode == 2  # neither a process nor a function
    assert cli("arsenal_test_stack", "-f", TRACED, "--measure", "count").returncode == 2
    assert cli("arsenal_test_stack", "--for", "soon").returncode == 2
    refused = cli("--function", "lists:_", "--for", "1s")
    assert refused.returncode == 5 and "lists" in refused.stderr
    missing = cli("zz_no_such_process_name", "--for", "1s")
    assert missing.returncode == 3


async def test_elixir_frames_are_written_in_elixir(elixir, cookie) -> None:
    service = await _service(elixir.name, cookie)
    try:
        profile = await service.run("profile_process", {"pid": "code_server", "duration": 0.3})
        assert profile.samples > 0
        assert all(
            frame.startswith(":") for line in profile.collapsed for frame in line.rsplit(" ", 1)[0].split(";")
        )
        assert any(":code_server.loop/1" in line for line in profile.collapsed), profile.collapsed
    finally:
        await service.close()
