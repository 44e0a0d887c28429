"""Trace throughput: events per second an Arsenal trace delivers to its Python client, against
the same trace done with ``dbg`` inside the VM.

One target node T is started with a small compiled module (``arsenal_bench_trace``, source
below). In T one busy process calls ``arsenal_bench_trace:hot/1`` as fast as it can (a remote
call in a tight loop). Every round, with the caller running:

* **Arsenal**: ``trace_calls(patterns=["arsenal_bench_trace:hot/1"])`` through
  ``arsenal.client.Arsenal`` with the limits lifted (``rate`` 1 000 000 per second,
  ``max_queue`` 1 000 000, ``max_events`` N, ``duration`` 600 s). Timed here from just before
  the operation is called until the session's end has reached Python: the agent's hub took
  every call event, batched it, sent it over the distribution connection, and Arsenal decoded,
  rendered and stored it (what ``get_trace_results`` and the WebSocket serve). Figure: events
  stored / that time. The hub's own rate (its events / its ``duration_ms``) is shown too.
* **dbg**: ``dbg:tracer(process, {Fun, 0})`` with a fun that only counts, ``dbg:p(all, [c,
  monotonic_timestamp])``, ``dbg:tpl(arsenal_bench_trace, hot, 1, [])``: the same trace
  (every process, local call pattern, timestamps, no match-spec actions) with the cheapest
  possible consumer, inside the VM. Timed inside T from just before ``dbg:tracer`` until the
  fun has counted N events; then ``dbg:stop()``.

Between the cases the node is checked to be clean (no tracer, no trace flag, no pattern, no
dbg, no Arsenal hub). The ratio is **dbg events/s / Arsenal events/s** (> 1 means dbg
delivers faster). No pass/fail threshold: numbers and ``RATIO`` lines only.

    uv run python benchmarks/trace_throughput.py [--quick] [--json PATH] [--rounds 5] [--events N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BenchArgs,
    Node,
    Sample,
    announce,
    compiled,
    machine,
    new_cookie,
    nodes,
    print_ratio,
    print_table,
    start_node,
    write_json,
)

ERL_MODULE = "arsenal_bench_trace"
HOT_PATTERN = f"{ERL_MODULE}:hot/1"
ERL_SOURCE = r"""
-module(arsenal_bench_trace).
-export([hot/1, start_callers/1, stop_callers/0, calls_per_second/1, arsenal_window/1,
         dbg_events/1, dbg_window/1, clean/0]).

-define(KEY, {?MODULE, callers}).
-define(BATCH, 1024).

%% The traced function: as small as a function gets, so the trace is all the cost.
hot(X) -> X + 1.

%% K processes calling ?MODULE:hot/1 in a tight loop; every ?BATCH calls they add
%% ?BATCH to a shared counter (the only other work they do).
start_callers(K) ->
    stop_callers(),
    Counter = counters:new(1, [write_concurrency]),
    Pids = [spawn(fun() -> loop(Counter, 0) end) || _ <- lists:seq(1, K)],
    persistent_term:put(?KEY, {Counter, Pids}),
    length(Pids).

loop(Counter, N) when N >= ?BATCH ->
    counters:add(Counter, 1, N),
    loop(Counter, 0);
loop(Counter, N) ->
    _ = ?MODULE:hot(N),
    loop(Counter, N + 1).

stop_callers() ->
    case persistent_term:get(?KEY, undefined) of
        undefined -> ok;
        {_, Pids} ->
            [begin Ref = monitor(process, P), exit(P, kill), receive {'DOWN', Ref, _, _, _} -> ok end end
             || P <- Pids],
            persistent_term:erase(?KEY),
            ok
    end.

%% Calls per second of all callers over Ms milliseconds.
calls_per_second(Ms) ->
    {Counter, _} = persistent_term:get(?KEY),
    C0 = counters:get(Counter, 1),
    T0 = erlang:monotonic_time(microsecond),
    timer:sleep(Ms),
    C1 = counters:get(Counter, 1),
    T1 = erlang:monotonic_time(microsecond),
    (C1 - C0) * 1000000 / (T1 - T0).

%% The same, while an Arsenal session runs: also whether its hub still runs at the
%% end of the window, and the hub's mailbox then (a tracer falling behind shows there).
arsenal_window(Ms) ->
    Rate = calls_per_second(Ms),
    Hub = whereis(arsenal_agent_trace),
    #{calls_per_second => Rate, tracer_alive => Hub =/= undefined, tracer_queue => queue_len(Hub)}.

queue_len(undefined) -> 0;
queue_len(Pid) ->
    case process_info(Pid, message_queue_len) of
        {message_queue_len, N} -> N;
        undefined -> 0
    end.

%% dbg with a counting fun, every process, a local pattern on hot/1 (no actions);
%% Notify gets {dbg_count, N, Time} when the fun has counted N events.
dbg_start(Counter, N, Notify) ->
    Fun = fun(_Msg, C) ->
                  counters:add(Counter, 1, 1),
                  C1 = C + 1,
                  C1 =:= N andalso (Notify ! {dbg_count, N, erlang:monotonic_time(microsecond)}),
                  C1
          end,
    {ok, _} = dbg:tracer(process, {Fun, 0}),
    {ok, _} = dbg:p(all, [c, monotonic_timestamp]),
    {ok, _} = dbg:tpl(?MODULE, hot, 1, []),
    ok.

%% Microseconds from just before dbg:tracer until the fun has counted N events.
dbg_events(N) ->
    Counter = counters:new(1, []),
    T0 = erlang:monotonic_time(microsecond),
    ok = dbg_start(Counter, N, self()),
    Result = receive
                 {dbg_count, N, T1} -> {ok, T1 - T0, N}
             after 300000 -> {timeout, counters:get(Counter, 1)}
             end,
    dbg:stop(),
    Result.

%% Calls per second over Ms with dbg tracing hot/1 into a counting fun.
dbg_window(Ms) ->
    Counter = counters:new(1, []),
    ok = dbg_start(Counter, -1, self()),
    Rate = calls_per_second(Ms),
    Tracer = case dbg:get_tracer() of {ok, T} -> T; _ -> undefined end,
    Queue = queue_len(Tracer),
    Events = counters:get(Counter, 1),
    dbg:stop(),
    #{calls_per_second => Rate, tracer_queue => Queue, events => Events}.

%% What tracing is left on the node: all empty when clean.
clean() ->
    {flags, New} = erlang:trace_info(new_processes, flags),
    Traced = [P || P <- erlang:processes(), {flags, F} <- [erlang:trace_info(P, flags)], F =/= []],
    #{dbg => whereis(dbg), hub => whereis(arsenal_agent_trace),
      new_processes_flags => New, traced_processes => length(Traced),
      pattern => erlang:trace_info({?MODULE, hot, 1}, traced)}.
"""

CLEAN = {
    "dbg": "undefined",
    "hub": "undefined",
    "new_processes_flags": [],
    "traced_processes": 0,
    "pattern": ("traced", False),
}


# ---------------------------------------------------------------------- shared with trace_overhead.py


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, int | float):  # also True and False (atoms decode as bool)
        return value
    return str(value)


async def call(client: Any, function: str, args: list[Any], timeout: float = 600.0) -> Any:
    """``arsenal_bench_trace:function(args)`` on the node, through the attached node's connection."""
    return _plain(await client.node.call(ERL_MODULE, function, args, timeout))


async def assert_clean(client: Any, when: str) -> None:
    """The node holds no trace state at all (the hub exits just after a session's end message)."""
    state: dict[str, Any] = {}
    for _ in range(300):
        state = await call(client, "clean", [])
        if state == CLEAN:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the node is not clean {when}: {state}")


@asynccontextmanager
async def attached(node_name: str, cookie: str) -> AsyncIterator[Any]:
    """An Arsenal (its trace store in a temporary directory) attached to the node."""
    from arsenal.client import Arsenal

    with tempfile.TemporaryDirectory(prefix="arsenal-bench-home-") as home:
        async with Arsenal(cookie=cookie, home=Path(home)) as arsenal:
            yield await arsenal.attach(node_name)


def manager_of(client: Any) -> Any:
    from arsenal.ops.trace_sessions import TraceManager

    return client.arsenal.services.get(TraceManager)


async def start_trace(client: Any, **limits: Any) -> tuple[str, Any]:
    """Start ``trace_calls`` on hot/1; the session id and its live record (None if already over)."""
    started = await client.trace_calls(patterns=[HOT_PATTERN], **limits)
    return started.id, manager_of(client).live.get(started.id)


async def finish_trace(client: Any, trace_id: str, live: Any, timeout: float) -> dict[str, Any]:
    """Wait for the session's end to reach Python; its stored record and the hub's own figures."""
    if live is not None:
        await asyncio.wait_for(live.finished.wait(), timeout)
    record = manager_of(client).store.get(trace_id)
    if record is None:
        raise RuntimeError(f"trace {trace_id} is not in the store")
    end = live.session.end if live is not None else None
    return {
        "events": record.events,
        "end_reason": record.end_reason,
        "dropped": record.dropped,
        "hub_events": end.events if end is not None else None,
        "hub_ms": end.duration_ms if end is not None else None,
    }


def start_target(cookie: str, ebin: Path) -> Node:
    return start_node("bench_trace", cookie, code_path=ebin)


# ---------------------------------------------------------------------- the benchmark

LIFTED = {"rate": 1_000_000, "max_queue": 1_000_000, "duration": 600.0}


async def arsenal_round(client: Any, events: int) -> dict[str, Any]:
    await assert_clean(client, "before the Arsenal trace")
    start = time.perf_counter()
    trace_id, live = await start_trace(client, max_events=events, **LIFTED)
    result = await finish_trace(client, trace_id, live, 600.0)
    elapsed = time.perf_counter() - start
    if result["end_reason"] != "max_events" or result["events"] <= 0:
        raise RuntimeError(f"the Arsenal trace ended with {result}, not after {events} events")
    await assert_clean(client, "after the Arsenal trace")
    hub_rate = result["hub_events"] * 1000 / result["hub_ms"] if result["hub_ms"] else None
    return {
        **result,
        "seconds": elapsed,
        "per_second": result["events"] / elapsed,
        "hub_per_second": hub_rate,
    }


async def dbg_round(client: Any, events: int) -> dict[str, Any]:
    await assert_clean(client, "before the dbg trace")
    reply = await call(client, "dbg_events", [events])
    if reply[0] != "ok":
        raise RuntimeError(f"dbg counted only {reply[1]} events of {events}")
    await assert_clean(client, "after the dbg trace")
    seconds = reply[1] / 1e6
    return {"events": reply[2], "seconds": seconds, "per_second": reply[2] / seconds}


async def bench(node_name: str, cookie: str, args: argparse.Namespace) -> dict[str, Any]:
    async with attached(node_name, cookie) as client:
        await call(client, "start_callers", [args.callers])
        untraced = await call(client, "calls_per_second", [200])
        # Warm-up: the agent's hub module, dbg, code paths, the store.
        await arsenal_round(client, min(args.events, 2000))
        await dbg_round(client, min(args.events, 2000))
        rounds: dict[str, list[dict[str, Any]]] = {"arsenal": [], "dbg": []}
        for r in range(args.rounds):
            order = ("arsenal", "dbg") if r % 2 == 0 else ("dbg", "arsenal")
            for case in order:
                run = arsenal_round if case == "arsenal" else dbg_round
                rounds[case].append(await run(client, args.events))
        await call(client, "stop_callers", [])
        return {"rounds": rounds, "untraced_calls_per_second": untraced}


def report(res: dict[str, Any], args: argparse.Namespace, otp: str) -> dict[str, Any]:
    arsenal = Sample("arsenal", "events/s", [r["per_second"] for r in res["rounds"]["arsenal"]])
    hub = Sample("arsenal_hub", "events/s", [r["hub_per_second"] or 0.0 for r in res["rounds"]["arsenal"]])
    dbg = Sample("dbg", "events/s", [r["per_second"] for r in res["rounds"]["dbg"]])
    dropped = [r["dropped"] for r in res["rounds"]["arsenal"]]
    print()
    print(
        f"{args.events:,} call events of {HOT_PATTERN}, {args.callers} busy caller(s) "
        f"({res['untraced_calls_per_second']:,.0f} calls/s untraced), {args.rounds} rounds"
    )
    print_table(
        ["what", "median events/s", "best", "worst"],
        [
            ["Arsenal  trace_calls, stored in Python (start to end seen)", *_row(arsenal, higher=True)],
            ["  of it: the agent's hub on the node (its duration_ms)", *_row(hub, higher=True)],
            ["dbg      counting fun in the VM (dbg:tracer to Nth event)", *_row(dbg, higher=True)],
        ],
    )
    print(f"Arsenal events dropped by the node (busy connection), per round: {dropped}")
    ratio = dbg.median / arsenal.median
    best = max(dbg.rounds) / max(arsenal.rounds)
    print()
    print("Ratio: dbg events/s / Arsenal events/s (> 1 means dbg delivers faster)")
    print_table(["comparison", "median", "best vs best"], [["trace throughput", ratio, best]])
    print()
    print_ratio("trace_throughput", ratio)
    return {
        "benchmark": "trace_throughput",
        "otp_release": otp,
        "machine": machine(),
        "params": {
            "rounds": args.rounds,
            "events": args.events,
            "callers": args.callers,
            "quick": args.quick,
        },
        "untraced_calls_per_second": res["untraced_calls_per_second"],
        "figures": {"arsenal": arsenal.as_dict(), "arsenal_hub": hub.as_dict(), "dbg": dbg.as_dict()},
        "rounds": res["rounds"],
        "ratios": {"trace_throughput": ratio},
        "ratio_meaning": "dbg events/s / Arsenal events/s; > 1 means dbg delivers faster",
    }


def _row(sample: Sample, *, higher: bool) -> list[float]:
    return [sample.median, sample.worst if higher else sample.best, sample.best if higher else sample.worst]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = BenchArgs(__doc__, quick="5 000 events, 2 rounds: proves the script runs", rounds=5)
    parser.add_argument("--events", type=int, help="events per trace (default 200000, quick 5000)")
    parser.add_argument("--callers", type=int, default=1, help="busy processes calling hot/1 (default 1)")
    args = parser.parse_args(argv)
    args.events = args.events or (5_000 if args.quick else 200_000)
    if not 1 <= args.events <= 1_000_000:
        parser.error("--events is 1 to 1000000 (trace_calls' max_events)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cookie = new_cookie()
    otp = announce()
    with compiled(ERL_MODULE, ERL_SOURCE) as ebin, nodes() as started:
        target = start_target(cookie, ebin)
        started.append(target)
        res = asyncio.run(bench(target.name, cookie, args))
    payload = report(res, args, otp)
    write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
