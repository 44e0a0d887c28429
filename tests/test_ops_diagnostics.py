"""Diagnostics against real nodes: deadlocks of real gen_server calls, chains of waits on a
suspended process, memory that keeps growing, refc binaries a garbage collection frees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

import arsenal
from arsenal.api import create_app
from arsenal.client import Arsenal
from arsenal.dist import Atom, Pid
from arsenal.ops.diagnostics import DeadlockReport
from arsenal.ops.errors import ErrorCode
from arsenal.ops.plain import pid_text

from .helpers import fails
from .nodes import TEST_SUPPORT_EBIN

pytestmark = pytest.mark.timeout(120)

SUPPORT = "arsenal_test_support"
# Long enough that nothing times out while a test looks; every test kills what it started.
HOLD_MS = 60_000


async def _support(node: arsenal.NodeClient, function: str, *args: Any) -> Any:
    return await node.node.call(SUPPORT, function, list(args))


async def _kill(node: arsenal.NodeClient, pids: list[Pid]) -> None:
    for pid in pids:
        await node.node.call("erlang", "exit", [pid, Atom("kill")])


@asynccontextmanager
async def _started(node: arsenal.NodeClient, function: str, *args: Any) -> AsyncIterator[Any]:
    """Run a test-support starter and kill every pid it returned afterwards."""
    started = await _support(node, function, *args)
    values = list(started.values()) if hasattr(started, "values") else list(started)
    try:
        yield started
    finally:
        await _kill(node, [p for p in values if isinstance(p, Pid)])


def _cycles_with(report: DeadlockReport, pids: set[str]) -> list[Any]:
    return [c for c in report.cycles if {p.pid for p in c.processes} == pids]


# ---------------------------------------------------------------------------- analyze_deadlocks


async def test_deadlock_of_two_gen_servers_and_a_chain_to_a_suspended_one(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        async with (
            _started(node, "deadlock_pair", HOLD_MS) as (a, b, caller),
            _started(node, "stuck_chain", HOLD_MS) as chain,
        ):
            report = await node.analyze_deadlocks(interval_ms=300)
        a_text, b_text, caller_text = pid_text(a), pid_text(b), pid_text(caller)
        (cycle,) = _cycles_with(report, {a_text, b_text})
        assert cycle.certain and cycle.length == 2 and cycle.waiting_count == 1  # the caller waits on it
        on = {p.pid: p for p in cycle.processes}
        assert on[a_text].waiting_on == b_text and on[b_text].waiting_on == a_text
        for p in cycle.processes:
            assert p.current_function == "gen:do_call/4" and p.call == "gen_server:call/3"
            assert p.location == f"{SUPPORT}:handle_call/3" and p.certain and p.status == "waiting"
        assert caller_text not in on
        assert any(a_text in f and b_text in f and f.startswith("Deadlock of 2") for f in report.findings)

        middle, blocker = pid_text(chain[Atom("middle")]), pid_text(chain[Atom("blocker")])
        (stuck,) = [c for c in report.chains if c.blocker.pid == blocker]
        assert [p.pid for p in stuck.processes] == [pid_text(chain[Atom("caller")]), middle]
        assert stuck.length == 3 and stuck.waiting_count == 2
        assert stuck.blocker.status == "suspended" and stuck.blocker.message_queue_len == 1
        assert (
            stuck.processes[1].waiting_on == blocker
            and stuck.processes[1].location == f"{SUPPORT}:handle_call/3"
        )
        assert "is suspended" in stuck.finding and report.blocked_count >= 5
        # No cycle or chain is made up: every process listed is one of those started.
        assert report.cycle_count == 1 and report.chain_count == 1

        # Killed, they are gone from the next analysis.
        after = await node.analyze_deadlocks(interval_ms=100)
        listed = {p.pid for c in after.cycles for p in c.processes} | {
            p.pid for c in after.chains for p in c.processes
        }
        assert not listed & {a_text, b_text, caller_text, middle}


async def test_a_ring_of_three_gen_servers_is_one_cycle(erl, cookie) -> None:
    # A calls B, B calls C, C calls A: the fun servers of arsenal_test_support, wired by eval.
    source = """
        begin
            Start = fun() ->
                        {ok, P} = gen_server:start(arsenal_test_support, {diag_server, 60000}, []),
                        P
                    end,
            [A, B, C] = [Start(), Start(), Start()],
            Call = fun(To, Fun) -> gen_server:call(To, {apply, Fun}, 60000) end,
            Ring = fun() -> Call(B, fun() -> Call(C, fun() -> gen_server:call(A, ping, 60000) end) end) end,
            Caller = spawn(fun() -> catch Call(A, Ring) end),
            [A, B, C, Caller]
        end"""
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        async with _started(node, "eval", source.encode()) as (a, b, c, _caller):
            report = await node.analyze_deadlocks(interval_ms=200)
        ring = [pid_text(a), pid_text(b), pid_text(c)]
        (cycle,) = _cycles_with(report, set(ring))
        assert cycle.length == 3 and cycle.certain and cycle.waiting_count == 1
        on = {p.pid: p.waiting_on for p in cycle.processes}
        assert on == {ring[0]: ring[1], ring[1]: ring[2], ring[2]: ring[0]}
        assert cycle.finding.startswith("Deadlock of 3 processes")


async def test_a_client_calling_a_slow_server_again_and_again_is_not_blocked(erl, cookie) -> None:
    # The client is in a call at both samples, but never the same call: it must not count.
    source = """
        begin
            S = spawn(fun Srv() ->
                          receive {'$gen_call', From, _} -> timer:sleep(40), gen:reply(From, ok), Srv()
                          after 30000 -> ok end
                      end),
            Loop = fun L(0) -> ok;
                       L(N) -> catch gen:call(S, '$gen_call', x, 1000), L(N - 1) end,
            C = spawn(fun() -> Loop(600) end),
            {S, C}
        end"""
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        server, client = await _support(node, "eval", source.encode())
        async with _started(node, "stuck_chain", HOLD_MS) as chain:
            try:
                report = await node.analyze_deadlocks(interval_ms=300, min_chain=2)
            finally:
                await _kill(node, [server, client])
        waiting = {p.pid for c in report.chains for p in c.processes}
        assert pid_text(client) not in waiting
        assert pid_text(server) not in {c.blocker.pid for c in report.chains}
        # The same two-step threshold does report a wait that lasts.
        assert pid_text(chain[Atom("middle")]) in waiting


async def test_min_chain_hides_short_chains_to_a_running_process(erl, cookie) -> None:
    # caller -> middle -> blocker where the blocker is busy (not suspended): 3 processes long.
    source = """
        begin
            B = spawn(fun() -> receive after 30000 -> ok end end),
            M = spawn(fun() -> catch gen:call(B, '$gen_call', x, 30000) end),
            C = spawn(fun() -> catch gen:call(M, '$gen_call', x, 30000) end),
            {C, M, B}
        end"""
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        caller, middle, blocker = await _support(node, "eval", source.encode())
        try:
            three = await node.analyze_deadlocks(interval_ms=200, min_chain=3)
            four = await node.analyze_deadlocks(interval_ms=200, min_chain=4)
        finally:
            await _kill(node, [caller, middle, blocker])
        (chain,) = [c for c in three.chains if c.blocker.pid == pid_text(blocker)]
        assert [p.pid for p in chain.processes] == [pid_text(caller), pid_text(middle)]
        assert chain.blocker.status == "waiting" and "without answering" in chain.finding
        assert [p.current_function for p in chain.processes] == ["gen:do_call/4"] * 2
        assert chain.processes[0].waiting_on == pid_text(middle) and chain.waiting_count == 2
        assert pid_text(blocker) not in {c.blocker.pid for c in four.chains}


async def test_deadlock_on_an_elixir_node_is_written_in_elixir(elixir, cookie) -> None:
    async with arsenal.attach(elixir.name, cookie=cookie, reconnect=False) as node:
        beam = (TEST_SUPPORT_EBIN / f"{SUPPORT}.beam").read_bytes()
        filename = [ord(c) for c in f"{SUPPORT}.beam"]
        loaded = await node.node.call("code", "load_binary", [Atom(SUPPORT), filename, beam])
        assert loaded == (Atom("module"), Atom(SUPPORT))
        try:
            async with _started(node, "deadlock_pair", HOLD_MS) as (a, b, _caller):
                report = await node.analyze_deadlocks(interval_ms=200)
        finally:
            # Leave the shared Elixir node as it was.
            for step in ("delete", "purge"):
                await node.node.call("code", step, [Atom(SUPPORT)])
        (cycle,) = _cycles_with(report, {pid_text(a), pid_text(b)})
        assert {p.call for p in cycle.processes} == {":gen_server.call/3"}
        assert {p.location for p in cycle.processes} == {f":{SUPPORT}.handle_call/3"}


async def test_deadlock_parameters_are_checked(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        for bad in (
            {"interval_ms": 50},
            {"interval_ms": 20_000},
            {"limit": 0},
            {"limit": 101},
            {"min_chain": 1},
        ):
            await fails(ErrorCode.validation_error, node.analyze_deadlocks(**bad))
        quiet = await node.analyze_deadlocks(interval_ms=100, limit=1)
        assert quiet.interval_ms == 100 and len(quiet.cycles) <= 1 and len(quiet.chains) <= 1


# ---------------------------------------------------------------------------- memory_leak_detection


async def test_a_growing_process_is_found_and_a_steady_one_is_not(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        steady: Pid = await node.node.call("erlang", "spawn", [Atom("timer"), Atom("sleep"), [HOLD_MS]])
        leaker: Pid = await _support(node, "leaker", 10_000, 30)
        try:
            report = await node.memory_leak_detection(samples=4, interval_ms=400, limit=100)
        finally:
            await _kill(node, [steady, leaker])
        rows = {row.pid: row for row in report.growing}
        assert pid_text(steady) not in rows
        leak = rows[pid_text(leaker)]
        assert len(leak.memory) == len(leak.binary) == 4 and leak.intervals == 3
        # Ten 10 000-byte binaries more in every 400 ms (give or take one tick).
        steps = [later - earlier for earlier, later in zip(leak.binary, leak.binary[1:], strict=False)]
        assert all(30_000 <= step <= 50_000 for step in steps), leak.binary
        assert leak.every_interval and leak.rises == 3
        assert leak.growth == leak.memory[-1] + leak.binary[-1] - leak.memory[0] - leak.binary[0]
        assert leak.growth_per_s == pytest.approx(leak.growth / 1.2)
        assert leak.current_function == f"{SUPPORT}:leak_loop/4" and leak.initial_call == "erlang:apply/2"
        assert report.growing_count >= 1 and report.process_count > 10 and report.samples == 4
        assert any(f.startswith(pid_text(leaker)) and "in every interval" in f for f in report.findings)
        growth = [row.growth for row in report.growing]
        assert growth == sorted(growth, reverse=True)


async def test_a_process_that_grew_once_is_listed_only_with_every_sample_off(erl, cookie) -> None:
    # It allocates (and keeps) 100 000 integers 500 ms after it starts, then sleeps: with samples
    # 1 s apart it rose in the first interval only.
    source = """
        spawn(fun() ->
                  receive after 500 -> ok end,
                  Kept = lists:seq(1, 100000),
                  receive after 60000 -> length(Kept) end
              end)"""
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        once: Pid = await _support(node, "eval", source.encode())
        leaker: Pid = await _support(node, "leaker", 10_000, 30)
        try:
            report = await node.memory_leak_detection(
                samples=3, interval_ms=1000, limit=100, every_sample=False
            )
            strict = await node.memory_leak_detection(samples=2, interval_ms=300, limit=100)
        finally:
            await _kill(node, [once, leaker])
        rows = {row.pid: row for row in report.growing}
        grew = rows[pid_text(once)]
        assert (grew.rises, grew.intervals, grew.every_interval) == (1, 2, False)
        assert grew.memory[1] == grew.memory[2] > grew.memory[0] and grew.growth >= 800_000
        assert any("in 1 of 2 intervals" in f for f in report.findings)
        assert rows[pid_text(leaker)].every_interval
        # every_sample (the default) keeps only processes that rose at every sample.
        assert pid_text(leaker) in {row.pid for row in strict.growing}
        assert all(row.every_interval for row in strict.growing) and pid_text(once) not in {
            row.pid for row in strict.growing
        }


async def test_binaries_dropped_but_not_collected_are_freed_by_gc_top(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        # 30 binaries of 100 000 bytes: 3 MB, more than any demo process holds.
        dropper: Pid = await _support(node, "bin_dropper", 30, 100_000, HOLD_MS)
        try:
            looked = await node.memory_leak_detection(samples=2, interval_ms=100, limit=5)
            collected = await node.memory_leak_detection(samples=2, interval_ms=100, limit=5, gc_top=1)
            alive = await node.node.call("erlang", "is_process_alive", [dropper])
        finally:
            await _kill(node, [dropper])
        top = looked.binary_holders[0]
        assert (top.pid, top.binary_memory, top.binary_count) == (pid_text(dropper), 3_000_000, 30)
        assert looked.gc == [] and looked.binary_total >= 3_000_000
        holders = [h.binary_memory for h in looked.binary_holders]
        assert holders == sorted(holders, reverse=True) and len(holders) <= 5
        (gc,) = collected.gc
        assert (gc.pid, gc.outcome, gc.binary_before, gc.binary_after) == (
            pid_text(dropper),
            "done",
            3_000_000,
            0,
        )
        assert gc.binary_freed == 3_000_000 and alive is True
        assert any(f.startswith(pid_text(dropper)) and "freed" in f for f in collected.findings)


async def test_leak_parameters_are_checked_and_gc_is_refused_read_only(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        for bad in (
            {"samples": 1},
            {"samples": 11},
            {"interval_ms": 50},
            {"interval_ms": 10_001},
            {"gc_top": 51},
            {"gc_top": -1},
            {"limit": 101},
            {"sample": 3},
        ):
            await fails(ErrorCode.validation_error, node.memory_leak_detection(**bad))
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False, read_only=True) as node:
        await fails(ErrorCode.read_only, node.memory_leak_detection(samples=2, interval_ms=100, gc_top=1))
        looked = await node.memory_leak_detection(samples=2, interval_ms=100, limit=2)
        assert looked.gc == [] and len(looked.binary_holders) <= 2


# ---------------------------------------------------------------------------- node down, REST, CLI


async def test_node_down(make_node, cookie) -> None:
    target = make_node("diagdown")
    async with arsenal.attach(target.name, cookie=cookie, reconnect=False) as node:
        target.kill()
        await fails(ErrorCode.node_down, node.analyze_deadlocks(interval_ms=100))
        await fails(ErrorCode.node_down, node.memory_leak_detection(samples=2, interval_ms=100))


async def test_rest_routes(erl, cookie) -> None:
    async with Arsenal(cookie=cookie) as service:
        client_node = await service.attach(erl.name, reconnect=False)
        transport = httpx.ASGITransport(app=create_app(service, auth=False), raise_app_exceptions=False)
        async with (
            _started(client_node, "deadlock_pair", HOLD_MS) as (a, b, _caller),
            httpx.AsyncClient(transport=transport, base_url="http://arsenal.test") as client,
        ):
            found = await client.get("/api/v1/system/deadlocks", params={"interval_ms": 200})
            assert found.status_code == 200, found.text
            cycles = found.json()["data"]["cycles"]
            assert {pid_text(a), pid_text(b)} in [{p["pid"] for p in c["processes"]} for c in cycles]
            leaks = await client.get(
                "/api/v1/system/memory-leaks", params={"samples": 2, "interval_ms": 100, "limit": 3}
            )
            assert leaks.status_code == 200, leaks.text
            data = leaks.json()["data"]
            assert data["samples"] == 2 and len(data["binary_holders"]) <= 3 and data["gc"] == []
            bad = await client.get("/api/v1/system/memory-leaks", params={"samples": 20})
            assert bad.status_code == 422 and bad.json()["errors"][0]["code"] == "validation_error"
            bad = await client.get("/api/v1/system/deadlocks", params={"interval_ms": 5})
            assert bad.status_code == 422 and bad.json()["errors"][0]["code"] == "validation_error"


def _arsenal(*args: str, cookie: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ARSENAL_COOKIE": cookie}
    return subprocess.run(
        [sys.executable, "-m", "arsenal.cli.main", *args], capture_output=True, text=True, env=env, timeout=90
    )


async def test_cli(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        async with _started(node, "deadlock_pair", HOLD_MS) as (a, b, _caller):
            found = _arsenal("deadlocks", "--node", erl.name, "--interval", "200", "--json", cookie=cookie)
            text = _arsenal("deadlocks", "--node", erl.name, "--interval", "200", cookie=cookie)
        dropper: Pid = await _support(node, "bin_dropper", 30, 100_000, HOLD_MS)
        try:
            leaks = _arsenal(
                "leaks",
                "--node",
                erl.name,
                "--samples",
                "2",
                "--interval",
                "100",
                "--gc-top",
                "1",
                cookie=cookie,
            )
        finally:
            await _kill(node, [dropper])
    assert found.returncode == 0, found.stderr
    cycles = json.loads(found.stdout)["cycles"]
    assert {pid_text(a), pid_text(b)} in [{p["pid"] for p in c["processes"]} for c in cycles]
    assert text.returncode == 0, text.stderr
    assert "Deadlock of 2 processes" in text.stdout and pid_text(a) in text.stdout
    assert leaks.returncode == 0, leaks.stderr
    assert "refc binary holders" in leaks.stdout and "garbage-collected" in leaks.stdout
    assert pid_text(dropper) in leaks.stdout and "2.9 MiB" in leaks.stdout
    bad = _arsenal("leaks", "--node", erl.name, "--samples", "1", cookie=cookie)
    assert bad.returncode == 2
