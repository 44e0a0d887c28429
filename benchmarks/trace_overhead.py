"""Trace overhead and safety: what an Arsenal trace costs a busy traced function, against
untraced and against the same trace done with ``dbg``; and a trace of a hot function on a busy
node tripping its limit while the node stays responsive.

One target node T runs the helper module of ``trace_throughput.py`` (``arsenal_bench_trace``):
busy processes calling ``arsenal_bench_trace:hot/1`` in a tight loop, counting their calls in a
shared counter. Calls per second are measured inside T over a window (``timer:sleep`` between
two reads of the counter, ``erlang:monotonic_time``).

**Overhead** (``--callers`` busy processes, default 1; every round runs each case once, the
order rotates):

* ``untraced``: no trace.
* ``arsenal``: a ``trace_calls`` session on hot/1 tracing every call, its rate limit lifted
  (``rate`` 1 000 000/s, ``max_queue`` 1 000 000, ``max_events`` 1 000 000): the same work as
  dbg below, with the events going on to Python. The window starts once the start call has
  returned; at its end the hub must still be running (checked: a session that ended in the
  window would measure untraced calls), then the session is stopped.
* ``arsenal_limited``: the same session with the default rate limit (1000 events/s; max_events
  1 000 000 so that the rate is what stops it). It trips within the first milliseconds; the
  window starts when the start call returns, so it shows what a tripped session leaves behind
  (nothing: the ratio should be about 1).
* ``dbg``: ``dbg:tracer(process, {Fun, 0})`` with a fun that only counts, ``dbg:p(all, [c,
  monotonic_timestamp])``, ``dbg:tpl(arsenal_bench_trace, hot, 1, [])``; then ``dbg:stop()``.

Ratios (calls/s): ``trace_overhead`` = untraced / arsenal (how many times slower every traced
call gets), ``trace_overhead_vs_dbg`` = dbg / arsenal (> 1 means the function runs faster under
dbg), ``trace_overhead_limited`` = untraced / arsenal_limited.

**Safety** (``--safety-callers`` busy processes, default 4, on the node's 2+ schedulers): a
``trace_calls`` session on hot/1 with the default limits except ``max_events`` 1 000 000, so a
protective limit ends it: the rate (1000 events/s) or, when the callers flood the tracer before
it handles its first event, ``max_queue`` (10 000). A separate distribution connection from
Python measures the round trip of an rpc of ``erlang:node/0`` (erpc): N sequential pings
before, pings in a loop while the session runs ("during": every round trip that overlapped the
time from the start call until the session's end reached Python), N after the node is clean
again. Reported: p50/p99 of each phase (all rounds pooled), the time from the start call to the
trip (the hub's ``duration_ms``; and start call to end seen in Python), the limit that ended it,
and the ratios ``trace_safety_p50`` and ``trace_safety_p99`` (during / before) and
``trace_safety_after_p99`` (after / before).

The node is checked to be clean (no tracer, flag, pattern, dbg or hub) before and after every
case. No pass/fail threshold: numbers and ``RATIO`` lines only.

    uv run python benchmarks/trace_overhead.py [--quick] [--json PATH] [--rounds 5] [--window-ms 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BenchArgs,
    Sample,
    announce,
    compiled,
    machine,
    new_cookie,
    nodes,
    print_ratio,
    print_table,
    write_json,
)
from trace_throughput import (
    ERL_MODULE,
    ERL_SOURCE,
    HOT_PATTERN,
    assert_clean,
    attached,
    call,
    finish_trace,
    start_target,
    start_trace,
)

LIFTED = {"max_events": 1_000_000, "rate": 1_000_000, "max_queue": 1_000_000, "duration": 600.0}
LIMITED = {"max_events": 1_000_000, "duration": 600.0}  # the default rate limit: 1000 events/s
CLEAN_TIMEOUT = 120.0

# ---------------------------------------------------------------------- overhead


async def untraced(client: Any, window_ms: int) -> dict[str, Any]:
    await assert_clean(client, "before the untraced window")
    return {"calls_per_second": await call(client, "calls_per_second", [window_ms])}


async def arsenal_case(
    client: Any, window_ms: int, limits: dict[str, Any], *, must_run: bool
) -> dict[str, Any]:
    await assert_clean(client, "before the Arsenal trace")
    trace_id, live = await start_trace(client, **limits)
    window = await call(client, "arsenal_window", [window_ms])
    stop = time.perf_counter()
    if live is not None and not live.finished.is_set():
        await client.stop_trace(id=trace_id)
    result = await finish_trace(client, trace_id, live, CLEAN_TIMEOUT)
    result["stop_s"] = time.perf_counter() - stop  # stop_trace called to the end seen in Python
    await _wait_clean(client, "after the Arsenal trace")
    if must_run and not window["tracer_alive"]:
        raise RuntimeError(
            f"the Arsenal session ended inside the window ({result['end_reason']}): shorten --window-ms"
        )
    return {**window, **result}


async def arsenal_lifted(client: Any, window_ms: int) -> dict[str, Any]:
    return await arsenal_case(client, window_ms, LIFTED, must_run=True)


async def arsenal_limited(client: Any, window_ms: int) -> dict[str, Any]:
    return await arsenal_case(client, window_ms, LIMITED, must_run=False)


async def dbg_case(client: Any, window_ms: int) -> dict[str, Any]:
    await assert_clean(client, "before the dbg trace")
    result = await call(client, "dbg_window", [window_ms])
    await _wait_clean(client, "after the dbg trace")
    return result


async def _wait_clean(client: Any, when: str) -> None:
    """A tracer that fell behind ends after its queue: give it time, then insist."""
    deadline = time.monotonic() + CLEAN_TIMEOUT
    while True:
        try:
            await assert_clean(client, when)
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                raise


CASES = {"untraced": untraced, "arsenal": arsenal_lifted, "arsenal_limited": arsenal_limited, "dbg": dbg_case}


async def overhead(client: Any, args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    await call(client, "start_callers", [args.callers])
    for case in CASES.values():  # warm-up: code loading, the hub, dbg, the store
        await case(client, min(args.window_ms, 100))
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in CASES}
    names = list(CASES)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            rounds[name].append(await CASES[name](client, args.window_ms))
    await call(client, "stop_callers", [])
    return rounds


# ---------------------------------------------------------------------- safety


async def pings(conn: Any, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        await conn.rpc("erlang", "node", [], 5.0, via="erpc")
        samples.append(time.perf_counter() - start)
    return samples


async def ping_loop(conn: Any, out: list[tuple[float, float]], stop: asyncio.Event) -> None:
    """Sequential pings until ``stop``: (start time, round trip) each."""
    while not stop.is_set():
        start = time.perf_counter()
        await conn.rpc("erlang", "node", [], 5.0, via="erpc")
        out.append((start, time.perf_counter() - start))


async def safety_round(client: Any, conn: Any, args: argparse.Namespace) -> dict[str, Any]:
    await assert_clean(client, "before the safety trace")
    before = await pings(conn, args.pings)
    stop = asyncio.Event()
    samples: list[tuple[float, float]] = []
    sampler = asyncio.create_task(ping_loop(conn, samples, stop))
    await asyncio.sleep(0)
    start = time.perf_counter()
    trace_id, live = await start_trace(client, **LIMITED)
    started = time.perf_counter()
    result = await finish_trace(client, trace_id, live, CLEAN_TIMEOUT)
    ended = time.perf_counter()
    stop.set()
    await sampler
    await _wait_clean(client, "after the safety trace")
    after = await pings(conn, args.pings)
    return {
        **result,
        "before": before,
        # Every round trip that overlapped the session (one is always in flight).
        "during": [rtt for t, rtt in samples if t <= ended and t + rtt >= start],
        "after": after,
        "start_call_s": started - start,
        "start_to_end_seen_s": ended - start,
    }


async def safety(client: Any, node_name: str, cookie: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    from arsenal.dist import LocalNode

    await call(client, "start_callers", [args.safety_callers])
    rounds = []
    async with LocalNode(cookie=cookie) as local:
        conn = await local.connect(node_name)
        await pings(conn, 50)  # warm-up
        for _ in range(args.rounds):
            rounds.append(await safety_round(client, conn, args))
    await call(client, "stop_callers", [])
    return rounds


async def bench(node_name: str, cookie: str, args: argparse.Namespace) -> dict[str, Any]:
    async with attached(node_name, cookie) as client:
        over = await overhead(client, args)
        safe = await safety(client, node_name, cookie, args)
    return {"overhead": over, "safety": safe}


# ---------------------------------------------------------------------- report


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def report_overhead(rounds: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> dict[str, Any]:
    samples = {
        name: Sample(name, "calls/s", [r["calls_per_second"] for r in rs]) for name, rs in rounds.items()
    }
    print()
    print(
        f"Overhead: calls/s of {HOT_PATTERN}, {args.callers} busy caller(s), "
        f"{args.window_ms} ms windows, {args.rounds} rounds"
    )
    labels = {
        "untraced": "untraced",
        "arsenal": "Arsenal trace_calls, every call (rate 1e6/s)",
        "arsenal_limited": "Arsenal trace_calls, default rate limit (tripped)",
        "dbg": "dbg, counting fun, every call",
    }
    rows = [[labels[n], s.median, s.worst, s.best] for n, s in samples.items()]
    print_table(["what", "median calls/s", "best", "worst"], rows)
    queues = [r["tracer_queue"] for r in rounds["arsenal"]]
    dbg_queues = [r["tracer_queue"] for r in rounds["dbg"]]
    print(f"tracer mailbox at the end of the window: Arsenal's hub {queues}, dbg's tracer {dbg_queues}")
    print(
        "Arsenal (every call) events stored / dropped by the node, per round: "
        f"{[(r['events'], r['dropped']) for r in rounds['arsenal']]}"
    )
    stops = [round(r["stop_s"], 2) for r in rounds["arsenal"]]
    print(f"Arsenal (every call) stop_trace to the end seen in Python, s per round: {stops}")
    every = sorted({r["end_reason"] for r in rounds["arsenal"]})
    limited = sorted({r["end_reason"] for r in rounds["arsenal_limited"]})
    print(f"Arsenal ended by: every call {every} (stopped after the window), rate limit {limited}")
    med = {n: s.median for n, s in samples.items()}
    ratios = {
        "trace_overhead": med["untraced"] / med["arsenal"],
        "trace_overhead_vs_dbg": med["dbg"] / med["arsenal"],
        "trace_overhead_limited": med["untraced"] / med["arsenal_limited"],
    }
    print()
    print("Ratios of calls/s (> 1 means the function runs slower under the Arsenal trace)")
    print_table(
        ["comparison", "median"],
        [
            ["untraced / Arsenal (every call)", ratios["trace_overhead"]],
            ["dbg / Arsenal (every call)", ratios["trace_overhead_vs_dbg"]],
            ["untraced / Arsenal (rate limit tripped)", ratios["trace_overhead_limited"]],
        ],
    )
    return {"figures": {n: s.as_dict() for n, s in samples.items()}, "ratios": ratios}


def report_safety(rounds: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    phases = {phase: [x for r in rounds for x in r[phase]] for phase in ("before", "during", "after")}
    hub_ms = [r["hub_ms"] for r in rounds if r["hub_ms"] is not None]
    seen_ms = [r["start_to_end_seen_s"] * 1000 for r in rounds]
    start_ms = [r["start_call_s"] * 1000 for r in rounds]
    print()
    print(
        f"Safety: trace_calls {HOT_PATTERN} (default rate limit 1000/s) with {args.safety_callers} busy "
        f"callers, {args.rounds} rounds; rpc erlang:node/0 round trips from Python"
    )
    print_table(
        ["phase", "samples", "p50 ms", "p99 ms", "max ms"],
        [
            [
                phase,
                len(v),
                percentile(v, 50) * 1000,
                percentile(v, 99) * 1000,
                max(v, default=math.nan) * 1000,
            ]
            for phase, v in phases.items()
        ],
    )
    reasons = sorted({r["end_reason"] for r in rounds})
    print(f"ended by: {reasons}; events before the trip: {[r['events'] for r in rounds]}")
    hub_median = statistics.median(hub_ms) if hub_ms else math.nan
    print(
        f"start to trip on the node (hub duration_ms): median {hub_median} ms "
        f"{hub_ms}; start call returned after median {statistics.median(start_ms):.1f} ms; "
        f"end seen in Python after median {statistics.median(seen_ms):.1f} ms"
    )
    before, during, after = phases["before"], phases["during"], phases["after"]
    ratios = {
        "trace_safety_p50": percentile(during, 50) / percentile(before, 50),
        "trace_safety_p99": percentile(during, 99) / percentile(before, 99),
        "trace_safety_after_p99": percentile(after, 99) / percentile(before, 99),
    }
    print()
    print("Latency ratios (> 1 means slower round trips than before the trace)")
    print_table(
        ["comparison", "ratio"],
        [
            ["during / before, p50", ratios["trace_safety_p50"]],
            ["during / before, p99", ratios["trace_safety_p99"]],
            ["after / before, p99", ratios["trace_safety_after_p99"]],
        ],
    )
    return {
        "latency_ms": {
            phase: {"samples": len(v), "p50": percentile(v, 50) * 1000, "p99": percentile(v, 99) * 1000}
            for phase, v in phases.items()
        },
        "end_reasons": reasons,
        "start_to_trip_ms_node": hub_ms,
        "start_to_end_seen_ms": seen_ms,
        "start_call_ms": start_ms,
        "events_before_trip": [r["events"] for r in rounds],
        "ratios": ratios,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = BenchArgs(__doc__, quick="short windows, 2 rounds: proves the script runs", rounds=5)
    parser.add_argument("--window-ms", type=int, help="calls/s window (default 1000, quick 200)")
    parser.add_argument("--callers", type=int, default=1, help="busy callers for the overhead (default 1)")
    parser.add_argument(
        "--safety-callers", type=int, default=4, help="busy callers for the safety part (default 4)"
    )
    parser.add_argument(
        "--pings", type=int, help="pings before and after each trace (default 1000, quick 100)"
    )
    args = parser.parse_args(argv)
    args.window_ms = args.window_ms or (200 if args.quick else 1000)
    args.pings = args.pings or (100 if args.quick else 1000)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cookie = new_cookie()
    otp = announce()
    with compiled(ERL_MODULE, ERL_SOURCE) as ebin, nodes() as started:
        target = start_target(cookie, ebin)
        started.append(target)
        res = asyncio.run(bench(target.name, cookie, args))
    over = report_overhead(res["overhead"], args)
    safe = report_safety(res["safety"], args)
    ratios = {**over["ratios"], **safe["ratios"]}
    print()
    for name, value in ratios.items():
        print_ratio(name, value)
    payload = {
        "benchmark": "trace_overhead",
        "otp_release": otp,
        "machine": machine(),
        "params": {
            "rounds": args.rounds,
            "window_ms": args.window_ms,
            "callers": args.callers,
            "safety_callers": args.safety_callers,
            "pings": args.pings,
            "quick": args.quick,
        },
        "overhead": {**over, "rounds": res["overhead"]},
        "safety": {**safe, "rounds": res["safety"]},
        "ratios": ratios,
        "ratio_meaning": "overhead: untraced (or dbg) calls/s / Arsenal calls/s; safety: latency / before",
    }
    write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
