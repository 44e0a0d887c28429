"""RPC latency and throughput: Arsenal (Python, hidden node) vs Erlang-to-Erlang, same target node.

Two real nodes are started and killed at the end:

* T, the target: a plain ``erl`` node. Every call in this benchmark is
  ``erlang:node/0`` on T, whoever makes it.
* R, the reference: an ``erl`` node with a small compiled module
  (``arsenal_bench_rpc``, source below) that times loops of calls from R to T with
  ``erlang:monotonic_time/1`` around the loop only. Arsenal starts each loop with
  one rpc into R and gets back the nanoseconds the loop took inside R, so the
  rpc into R is not part of the Erlang figure.

Measured, interleaved in every round (the order rotates from round to round):

* sequential latency, N calls one at a time: Arsenal ``conn.rpc(via="erpc")`` and
  ``via="rex"`` vs Erlang ``erpc:call/4``, ``rpc:call/4`` and a direct
  ``gen_server:call({rex, T}, ...)`` (what Arsenal's rex path sends). On OTP >= 23
  ``rpc:call/4`` is built on erpc (spawn requests) and never touches ``rex``, so
  "rex vs rpc:call" compares two different mechanisms; "rex vs rex" is the
  like-for-like figure.
* throughput, 64 calls in flight: Arsenal 64 worker coroutines under
  ``asyncio.gather``, each making N/64 sequential calls, vs R spawning 64
  processes that each make N/64 calls. Total calls per second.

Ratios are Arsenal cost / Erlang cost (time per call, or Erlang calls/s over
Arsenal calls/s): above 1 means Arsenal is slower. The issue's target is
sequential rpc latency within 1.2x of Erlang-to-Erlang. There is no pass/fail
threshold here; the numbers are printed, and one ``RATIO <name> <value>`` line
per figure.

The default event loop is asyncio's. ``--loop uvloop`` runs Arsenal under uvloop
if it happens to be importable (it is not a dependency of the project).

    uv run python benchmarks/rpc_latency.py [--quick] [--json PATH] [--rounds 7] [--calls 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
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
    start_node,
    write_json,
)
from arsenal.dist import Atom, Connection, LocalNode

TARGET_SEQ_RATIO = 1.2
CONCURRENCY = 64
CALL_TIMEOUT = 30.0

ERL_MODULE = "arsenal_bench_rpc"
ERL_SOURCE = r"""
-module(arsenal_bench_rpc).
-export([seq/3, par/4]).

%% N sequential calls of erlang:node/0 on node T from this process.
%% Returns the nanoseconds the loop took; nothing else is inside the timed section.
seq(T, Kind, N) ->
    T = call(T, Kind),
    Start = erlang:monotonic_time(nanosecond),
    ok = loop(T, Kind, N),
    erlang:monotonic_time(nanosecond) - Start.

%% Procs processes, each making PerProc sequential calls; nanoseconds from the
%% first spawn to the last process done.
par(T, Kind, Procs, PerProc) ->
    T = call(T, Kind),
    Self = self(),
    Start = erlang:monotonic_time(nanosecond),
    Pids = [spawn_link(fun() -> ok = loop(T, Kind, PerProc), Self ! {done, self()} end)
            || _ <- lists:seq(1, Procs)],
    [receive {done, P} -> ok end || P <- Pids],
    erlang:monotonic_time(nanosecond) - Start.

loop(_T, _Kind, 0) -> ok;
loop(T, Kind, N) ->
    T = call(T, Kind),
    loop(T, Kind, N - 1).

call(T, erpc) -> erpc:call(T, erlang, node, []);
call(T, rpc) -> rpc:call(T, erlang, node, []);
%% What rpc:call did before OTP 23, and what Arsenal's rex path sends
%% (group leader 'user', as from a hidden node).
call(T, rex) -> gen_server:call({rex, T}, {call, erlang, node, [], user}, infinity).
"""


class Bench:
    def __init__(self, target: Connection, reference: Connection) -> None:
        self.target = target
        self.reference = reference
        self.expected = target.peer

    # ------------------------------------------------------------ Arsenal side, timed in Python

    async def arsenal_seq(self, via: str, n: int) -> int:
        rpc = self.target.rpc
        expected = self.expected
        start = time.perf_counter_ns()
        for _ in range(n):
            if await rpc("erlang", "node", (), CALL_TIMEOUT, via=via) != expected:
                raise RuntimeError("erlang:node/0 answered something else")
        return time.perf_counter_ns() - start

    async def arsenal_par(self, via: str, procs: int, per_proc: int) -> int:
        rpc = self.target.rpc
        expected = self.expected

        async def worker() -> None:
            for _ in range(per_proc):
                if await rpc("erlang", "node", (), CALL_TIMEOUT, via=via) != expected:
                    raise RuntimeError("erlang:node/0 answered something else")

        start = time.perf_counter_ns()
        await asyncio.gather(*(worker() for _ in range(procs)))
        return time.perf_counter_ns() - start

    # ------------------------------------------------------------ Erlang side, timed inside R

    async def erlang_seq(self, kind: str, n: int) -> int:
        args = [self.expected, Atom(kind), n]
        return await self._in_reference("seq", args)

    async def erlang_par(self, kind: str, procs: int, per_proc: int) -> int:
        args = [self.expected, Atom(kind), procs, per_proc]
        return await self._in_reference("par", args)

    async def _in_reference(self, function: str, args: list[Any]) -> int:
        elapsed = await self.reference.rpc(ERL_MODULE, function, args, 600.0, via="erpc")
        if type(elapsed) is not int:
            raise RuntimeError(f"{ERL_MODULE}:{function} returned {elapsed!r}")
        return elapsed


Measure = Callable[[], Awaitable[int]]


async def run_rounds(measures: dict[str, Measure], rounds: int) -> dict[str, list[int]]:
    """Each round runs every measure once; the order rotates so none always goes first."""
    names = list(measures)
    results: dict[str, list[int]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(await measures[name]())
    return results


async def main_async(args: argparse.Namespace, target_name: str, reference_name: str, cookie: str) -> dict:
    n, rounds = args.calls, args.rounds
    per_proc = max(1, args.par_calls // CONCURRENCY)
    par_total = per_proc * CONCURRENCY
    async with LocalNode(cookie=cookie) as local:
        bench = Bench(await local.connect(target_name), await local.connect(reference_name))

        seq: dict[str, Measure] = {
            "arsenal_erpc": lambda: bench.arsenal_seq("erpc", n),
            "arsenal_rex": lambda: bench.arsenal_seq("rex", n),
            "erlang_erpc": lambda: bench.erlang_seq("erpc", n),
            "erlang_rpc": lambda: bench.erlang_seq("rpc", n),
            "erlang_rex": lambda: bench.erlang_seq("rex", n),
        }
        par: dict[str, Measure] = {
            "arsenal_erpc": lambda: bench.arsenal_par("erpc", CONCURRENCY, per_proc),
            "arsenal_rex": lambda: bench.arsenal_par("rex", CONCURRENCY, per_proc),
            "erlang_erpc": lambda: bench.erlang_par("erpc", CONCURRENCY, per_proc),
            "erlang_rex": lambda: bench.erlang_par("rex", CONCURRENCY, per_proc),
        }
        # Warm up: connections (R to T too), code loading, caches, the loop's first allocations.
        await run_rounds(seq, 1)
        await run_rounds(par, 1)

        seq_ns = await run_rounds(seq, rounds)
        par_ns = await run_rounds(par, rounds)

    seq_samples = {k: Sample(k, "us/call", [ns / n / 1000 for ns in v]) for k, v in seq_ns.items()}
    par_samples = {k: Sample(k, "calls/s", [par_total / (ns / 1e9) for ns in v]) for k, v in par_ns.items()}
    return {"seq": seq_samples, "par": par_samples, "n": n, "par_total": par_total, "per_proc": per_proc}


def report(res: dict, args: argparse.Namespace, loop_name: str, otp: str) -> dict:
    seq: dict[str, Sample] = res["seq"]
    par: dict[str, Sample] = res["par"]
    labels = {
        "arsenal_erpc": 'Arsenal  conn.rpc(via="erpc")',
        "arsenal_rex": 'Arsenal  conn.rpc(via="rex")',
        "erlang_erpc": "Erlang   erpc:call/4            R->T",
        "erlang_rpc": "Erlang   rpc:call/4 (uses erpc) R->T",
        "erlang_rex": "Erlang   gen_server:call rex    R->T",
    }
    print()
    print(
        f"Sequential latency: erlang:node/0 on T, one call at a time, {res['n']} calls per round, "
        f"{args.rounds} rounds (Arsenal on the {loop_name} loop)"
    )
    print_table(
        ["caller", "median us/call", "min us/call", "max us/call"],
        [[labels[k], s.median, s.best, s.worst] for k, s in seq.items()],
    )

    ratios: dict[str, float] = {}
    rows = []

    def seq_ratio(name: str, ours: str, theirs: str, label: str, target: str) -> None:
        value = seq[ours].median / seq[theirs].median
        ratios[name] = value
        extra = f"{seq[ours].median - seq[theirs].median:+.1f} us/call"
        rows.append([label, value, seq[ours].best / seq[theirs].best, extra, target])

    met = "met" if seq["arsenal_erpc"].median / seq["erlang_erpc"].median <= TARGET_SEQ_RATIO else "missed"
    target = f"<= {TARGET_SEQ_RATIO} ({met})"
    seq_ratio("seq_erpc", "arsenal_erpc", "erlang_erpc", "erpc vs erpc:call/4", target)
    seq_ratio("seq_rex_vs_rpc_call", "arsenal_rex", "erlang_rpc", "rex  vs rpc:call/4", "-")
    seq_ratio("seq_rex", "arsenal_rex", "erlang_rex", "rex  vs gen_server:call rex", "-")

    print()
    print(
        f"Throughput: {CONCURRENCY} calls in flight, {res['par_total']} calls per round "
        f"({CONCURRENCY} x {res['per_proc']}), {args.rounds} rounds"
    )
    par_labels = {
        "arsenal_erpc": f'Arsenal  {CONCURRENCY} coroutines, via="erpc"',
        "arsenal_rex": f'Arsenal  {CONCURRENCY} coroutines, via="rex"',
        "erlang_erpc": f"Erlang   {CONCURRENCY} processes, erpc:call/4",
        "erlang_rex": f"Erlang   {CONCURRENCY} processes, gen_server:call rex",
    }
    print_table(
        ["caller", "median calls/s", "max calls/s", "min calls/s"],
        [[par_labels[k], s.median, s.worst, s.best] for k, s in par.items()],
    )
    for name, ours, theirs, label in (
        ("par64_erpc", "arsenal_erpc", "erlang_erpc", f"{CONCURRENCY} in flight, erpc"),
        ("par64_rex", "arsenal_rex", "erlang_rex", f"{CONCURRENCY} in flight, rex"),
    ):
        # Throughput samples are "higher is better": the cost ratio is theirs / ours.
        value = par[theirs].median / par[ours].median
        ratios[name] = value
        rows.append([label, value, par[theirs].worst / par[ours].worst, "-", "-"])

    print()
    print("Ratios: Arsenal cost / Erlang cost (> 1 means Arsenal is slower)")
    print_table(["comparison", "median", "best vs best", "Arsenal extra (median)", "target"], rows)
    print()
    for name, value in ratios.items():
        print_ratio(name, value)
    return {
        "benchmark": "rpc_latency",
        "otp_release": otp,
        "event_loop": loop_name,
        "machine": machine(),
        "params": {
            "rounds": args.rounds,
            "sequential_calls_per_round": res["n"],
            "concurrency": CONCURRENCY,
            "parallel_calls_per_round": res["par_total"],
            "quick": args.quick,
        },
        "sequential": {k: s.as_dict() for k, s in seq.items()},
        "throughput": {k: s.as_dict() for k, s in par.items()},
        "ratios": ratios,
        "ratio_meaning": "Arsenal cost / Erlang cost; > 1 means Arsenal is slower",
        "targets": {"seq_erpc": TARGET_SEQ_RATIO},
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = BenchArgs(__doc__, quick="tiny iteration counts: proves the script runs", rounds=7)
    parser.add_argument("--calls", type=int, help="sequential calls per round (default 5000, quick 100)")
    parser.add_argument(
        "--par-calls", type=int, help=f"calls per throughput round, split over {CONCURRENCY} (default 12800)"
    )
    parser.add_argument(
        "--loop", choices=["asyncio", "uvloop"], default="asyncio", help="Arsenal's event loop"
    )
    args = parser.parse_args(argv)
    args.calls = args.calls or (100 if args.quick else 5000)
    args.par_calls = args.par_calls or (CONCURRENCY * 4 if args.quick else CONCURRENCY * 200)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runner: Callable[[Any], Any] = asyncio.run
    if args.loop == "uvloop":
        try:
            import uvloop  # type: ignore[import-not-found]
        except ImportError:
            print("uvloop is not installed (it is not a dependency of the project)", file=sys.stderr)
            return 2
        runner = uvloop.run
    cookie = new_cookie()
    otp = announce(f"Arsenal on {args.loop}")
    with compiled(ERL_MODULE, ERL_SOURCE) as ebin, nodes() as started:
        target = start_node("bench_t", cookie)
        started.append(target)
        reference = start_node("bench_r", cookie, code_path=ebin)
        started.append(reference)
        res = runner(main_async(args, target.name, reference.name, cookie))
    payload = report(res, args, args.loop, otp)
    write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
