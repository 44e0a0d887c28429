"""Term decoding (and encoding) throughput: Arsenal's ``etf`` vs erlang_py, on a corpus made by a real node.

The corpus is three external-format binaries that a real Erlang node produces
with ``term_to_binary(T, [{minor_version, 2}])`` (module ``arsenal_bench_corpus``,
source below, run with ``erl -eval``; the node writes the files and halts):

* ``process_list``: ``[{P, erlang:process_info(P)} || P <- processes()]`` on a
  node where 5000 idle ``proc_lib`` processes (with a few dictionary entries,
  linked to one pool process, as under a supervisor) were started first;
* ``state_map``: a nested map: 2000 sessions keyed by binary, each a map of
  integers, big integers, floats, binaries, atoms, tuples, lists and a small map;
  plus counters and config;
* ``trace_tuples``: 10 000 ``{trace_ts, Pid, call, {M, F, Args}, Timestamp}``
  tuples with real pids, real exported functions and mixed arguments
  (integers, binaries, atoms, pids, refs, floats, strings, tuples).

The corpus is cached in ``benchmarks/.corpus/otp-<release>/`` (git-ignored) so
that reruns decode the same bytes; ``--regenerate`` makes a new one. ``--quick``
always generates a small corpus in a temporary directory.

Both decoders are first checked on every item: each must decode it, and what
erlang_py decodes is re-encoded by erlang_py and decoded again by Arsenal to
check it means the same term. An item a decoder cannot handle is reported and
left out of that comparison, never hidden.

Figures are per item, with rounds interleaved (the order rotates every round):
MB/s (10^6 bytes of external format per second) and terms/s, where the terms
of an item are counted once, on Arsenal's decoded value (every value counts one:
each element of a tuple, list or string, each map key and value, each
binary, number, atom, pid...). Ratios are Arsenal speed / erlang_py speed:
above 1 means Arsenal is faster. The issue's target is decoding at least 3x
faster than erlang_py. There is no pass/fail threshold here.

Encoding is measured the same way: each library encodes its own decoded value
of the item (the two libraries model terms differently, so that is the only
like-for-like input), and each output is checked to decode back to the item.

    uv run python benchmarks/decode_throughput.py [--quick] [--json PATH] [--rounds 5] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import math
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import erlang as erlang_py  # erlang-py, the reference pure-Python codec (benchmark-only dependency)
from _common import (
    ROOT,
    BenchArgs,
    Sample,
    announce,
    compiled,
    machine,
    new_cookie,
    print_ratio,
    print_table,
    run_erl_eval,
    write_json,
)
from arsenal.dist import etf
from arsenal.dist.terms import BitString, Export, Fun, ImproperList, StrictKey

TARGET_DECODE_RATIO = 3.0
ITEMS = ("process_list", "state_map", "trace_tuples")
CORPUS_CACHE = ROOT / "benchmarks" / ".corpus"

ERL_MODULE = "arsenal_bench_corpus"
ERL_SOURCE = r"""
-module(arsenal_bench_corpus).
-export([main/0]).

%% Writes <Dir>/<item>.etf for each corpus item, with Dir and Scale from the
%% environment, prints the sizes and halts the node.
main() ->
    Dir = os:getenv("ARSENAL_BENCH_CORPUS_DIR"),
    Scale = list_to_float(os:getenv("ARSENAL_BENCH_CORPUS_SCALE")),
    rand:seed(exsss, {17, 42, 2024}),
    Self = self(),
    Pool = proc_lib:spawn(fun() -> pool(Self, round(5000 * Scale)) end),
    Workers = receive {workers, Pool, Ws} -> Ws end,
    ProcessList = [{P, erlang:process_info(P)} || P <- processes()],
    write(Dir, "process_list", ProcessList),
    write(Dir, "state_map", state_map(round(2000 * Scale))),
    write(Dir, "trace_tuples", traces(round(10000 * Scale), list_to_tuple(Workers ++ processes()))),
    exit(Pool, kill),
    io:format("corpus written to ~s~n", [Dir]),
    halt(0).

write(Dir, Name, Term) ->
    Bin = term_to_binary(Term, [{minor_version, 2}]),
    ok = file:write_file(filename:join(Dir, Name ++ ".etf"), Bin),
    io:format("~s ~b bytes~n", [Name, byte_size(Bin)]).

%% A supervisor-like process linked to N idle workers.
pool(Parent, N) ->
    process_flag(trap_exit, true),
    Workers = [proc_lib:spawn_link(fun() -> worker(I) end) || I <- lists:seq(1, N)],
    Parent ! {workers, self(), Workers},
    receive never -> ok end.

worker(I) ->
    put(slot, I),
    put(started_at, erlang:timestamp()),
    put(kind, element(1 + I rem 3, {reader, writer, {batch, I rem 7}})),
    receive stop -> ok end.

state_map(N) ->
    Sessions = maps:from_list([{iolist_to_binary(io_lib:format("session-~6..0b", [I])), session(I)}
                               || I <- lists:seq(1, N)]),
    Counters = maps:from_list([{list_to_atom("counter_" ++ integer_to_list(I)), rand:uniform(1000000)}
                               || I <- lists:seq(1, 50)]),
    #{sessions => Sessions,
      counters => Counters,
      config => #{pool_size => 32, timeout_ms => 5000, ratio => 0.75,
                  hosts => [<<"a.example">>, <<"b.example">>],
                  retry => {exponential, 100, 30000}, enabled => true},
      version => {3, 1, 4},
      node => node(),
      started => erlang:timestamp()}.

session(I) ->
    #{id => I,
      user => <<"user-", (integer_to_binary(I))/binary>>,
      email => iolist_to_binary([<<"user">>, integer_to_binary(I), <<"@example.com">>]),
      score => rand:uniform() * 100,
      balance => rand:uniform(1 bsl 40) - (1 bsl 39),
      tags => lists:sublist([admin, beta, trial, eu, us, mobile, web], rand:uniform(4)),
      last_seen => {1700000000 + I, rand:uniform(999999)},
      history => [rand:uniform(255) || _ <- lists:seq(1, 8)],
      recent => [{rand:uniform(1000), rand:uniform()} || _ <- lists:seq(1, 3)],
      token => rand:bytes(16),
      prefs => #{theme => dark, lang => <<"en">>, notify => (I rem 2 =:= 0)}}.

traces(N, Pids) ->
    Mods = [lists, maps, gen_server, ets, io_lib, proplists, binary, string, erlang, timer],
    MFAs = list_to_tuple([{M, F, A} || M <- Mods, {F, A} <- M:module_info(exports),
                                       A =< 4, F =/= module_info]),
    {Mega, Sec, Micro} = erlang:timestamp(),
    Base = (Mega * 1000000 + Sec) * 1000000 + Micro,
    [trace(I, Base, Pids, MFAs) || I <- lists:seq(1, N)].

trace(I, Base, Pids, MFAs) ->
    {M, F, A} = element(rand:uniform(tuple_size(MFAs)), MFAs),
    Pid = element(rand:uniform(tuple_size(Pids)), Pids),
    T = Base + I * 7,
    Timestamp = {T div 1000000000000, (T div 1000000) rem 1000000, T rem 1000000},
    {trace_ts, Pid, call, {M, F, [arg(Pids) || _ <- lists:seq(1, A)]}, Timestamp}.

arg(Pids) ->
    case rand:uniform(10) of
        1 -> rand:uniform(200);
        2 -> rand:uniform(1 bsl 34);
        3 -> rand:bytes(rand:uniform(40));
        4 -> element(rand:uniform(4), {ok, undefined, infinity, normal});
        5 -> element(rand:uniform(tuple_size(Pids)), Pids);
        6 -> make_ref();
        7 -> [{key, rand:uniform(100)}, {value, <<"v">>}];
        8 -> rand:uniform() * 1000;
        9 -> "a string";
        10 -> {rand:uniform(10), self(), <<>>}
    end.
"""


# ---------------------------------------------------------------------- corpus


def generate_corpus(directory: Path, scale: float) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with compiled(ERL_MODULE, ERL_SOURCE) as ebin:
        out = run_erl_eval(
            "bench_corpus",
            new_cookie(),
            ebin,
            f"{ERL_MODULE}:main().",
            env={"ARSENAL_BENCH_CORPUS_DIR": str(directory), "ARSENAL_BENCH_CORPUS_SCALE": f"{scale:.3f}"},
            timeout=300,
        )
    (directory / "meta.json").write_text(
        json.dumps({"scale": scale, "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "log": out}, indent=2)
    )


def load_corpus(args: argparse.Namespace, otp: str) -> tuple[dict[str, bytes], str]:
    if args.quick:
        tmp = Path(tempfile.mkdtemp(prefix="arsenal-bench-corpus-"))
        generate_corpus(tmp, 0.1)
        source = f"generated for this run (small, --quick) in {tmp}"
        directory = tmp
    else:
        directory = CORPUS_CACHE / f"otp-{otp}"
        cached = all((directory / f"{name}.etf").exists() for name in ITEMS)
        if args.regenerate or not cached:
            generate_corpus(directory, 1.0)
            source = f"generated now by a real OTP {otp} node, cached in {directory.relative_to(ROOT)}"
        else:
            source = f"cached in {directory.relative_to(ROOT)} (made by a real OTP {otp} node; --regenerate)"
    corpus = {name: (directory / f"{name}.etf").read_bytes() for name in ITEMS}
    if args.quick:
        for name in ITEMS:
            (directory / f"{name}.etf").unlink()
        (directory / "meta.json").unlink()
        directory.rmdir()
    return corpus, source


def count_terms(term: Any) -> int:
    """How many values the term is made of (each counts one; containers add their contents)."""
    kind = type(term)
    if kind is tuple or kind is list:
        return 1 + sum(count_terms(item) for item in term)
    if kind is dict:
        return 1 + sum(count_terms(k) + count_terms(v) for k, v in term.items())
    if kind is ImproperList:
        return 1 + sum(count_terms(item) for item in term.items) + count_terms(term.tail)
    if kind is Fun:
        return 1 + sum(count_terms(item) for item in term.free_vars)
    if kind is StrictKey:
        return count_terms(term.value)
    if kind in (BitString, Export):
        return 1
    return 1


# ---------------------------------------------------------------------- measuring


@dataclass
class Item:
    name: str
    data: bytes
    terms: int = 0
    erlang_py_decode_error: str | None = None
    erlang_py_encode_error: str | None = None
    arsenal_encode_identical: bool = False
    erlang_py_encode_identical: bool = False
    timings: dict[str, Sample] = field(default_factory=dict)


def check(name: str, data: bytes) -> Item:
    """Both decoders on one item: does each decode it, faithfully? (No decoded value is kept.)"""
    item = Item(name, data)
    value = etf.binary_to_term(data)  # Arsenal must decode every item: a failure here is a bug.
    item.terms = count_terms(value)
    item.arsenal_encode_identical = etf.term_to_binary(value) == data
    if etf.binary_to_term(etf.term_to_binary(value)) != value:
        raise RuntimeError(f"{name}: Arsenal's encoding does not decode back to the same term")
    try:
        py_value = erlang_py.binary_to_term(data)
    except Exception as exc:
        item.erlang_py_decode_error = f"{type(exc).__name__}: {exc}"
        return item
    try:
        again = erlang_py.term_to_binary(py_value)
    except Exception as exc:
        item.erlang_py_encode_error = f"{type(exc).__name__}: {exc}"
        return item
    item.erlang_py_encode_identical = again == data
    try:
        same = etf.binary_to_term(again) == value
    except etf.DecodeError as exc:
        same, why = False, str(exc)
    else:
        why = "its re-encoding decodes to a different term"
    if not same:
        # erlang_py decoded without an error but not to the same term: do not time a wrong answer.
        item.erlang_py_decode_error = f"decoded, but not faithfully ({why})"
    return item


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def calibrate(fn: Callable[[], Any], min_seconds: float, clock: Callable[[], float]) -> int:
    """Repetitions of ``fn`` that take about ``min_seconds`` (after one warm-up call)."""
    fn()
    start = clock()
    fn()
    once = max(clock() - start, 1e-7)
    return max(1, math.ceil(min_seconds / once))


def measure(
    cases: dict[str, Callable[[], Any]], rounds: int, min_seconds: float, use_gc: bool, clock_name: str
) -> dict[str, list[float]]:
    """Seconds per call of each case, one value per round; cases interleave, order rotating."""
    clock = CLOCKS[clock_name]
    reps = {name: calibrate(fn, min_seconds, clock) for name, fn in cases.items()}
    names = list(cases)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            fn, n = cases[name], reps[name]
            gc.collect()
            if not use_gc:
                gc.disable()
            try:
                start = clock()
                for _ in range(n):
                    fn()
                elapsed = clock() - start
            finally:
                gc.enable()
            out[name].append(elapsed / n)
    return out


def bench_item(item: Item, args: argparse.Namespace) -> None:
    """Decoding first, with no decoded value alive; then encoding each library's own decoded value."""
    data = item.data
    erlang_py_ok = item.erlang_py_decode_error is None
    cases: dict[str, Callable[[], Any]] = {"decode/arsenal": lambda: etf.binary_to_term(data)}
    if erlang_py_ok:
        cases["decode/erlang_py"] = lambda: erlang_py.binary_to_term(data)
    timings = measure(cases, args.rounds, args.min_seconds, not args.no_gc, args.clock)

    arsenal_value = etf.binary_to_term(data)
    py_value = erlang_py.binary_to_term(data) if erlang_py_ok else None
    cases = {"encode/arsenal": lambda: etf.term_to_binary(arsenal_value)}
    if erlang_py_ok and item.erlang_py_encode_error is None:
        cases["encode/erlang_py"] = lambda: erlang_py.term_to_binary(py_value)
    timings.update(measure(cases, args.rounds, args.min_seconds, not args.no_gc, args.clock))
    for name, seconds in timings.items():
        item.timings[name] = Sample(name, "s/call", seconds)


def profile_decoder(corpus: dict[str, bytes], repeat: int, top: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeat):
        for data in corpus.values():
            etf.binary_to_term(data)
    profiler.disable()
    buf = io.StringIO()
    stats = pstats.Stats(profiler, stream=buf)
    stats.sort_stats("tottime").print_stats(top)
    return buf.getvalue()


# ---------------------------------------------------------------------- report


def report(items: list[Item], args: argparse.Namespace, otp: str, source: str) -> dict:
    print(f"\nCorpus: {source}")
    print_table(
        ["item", "bytes", "terms", "erlang_py decodes", "re-encodes to same bytes (Arsenal / erlang_py)"],
        [
            [
                it.name,
                f"{len(it.data):,}",
                f"{it.terms:,}",
                "yes" if it.erlang_py_decode_error is None else f"NO: {it.erlang_py_decode_error}",
                f"{'yes' if it.arsenal_encode_identical else 'no'} / "
                + ("-" if it.erlang_py_decode_error else "yes" if it.erlang_py_encode_identical else "no"),
            ]
            for it in items
        ],
    )

    ratios: dict[str, float] = {}
    rows: list[list[Any]] = []
    for op in ("decode", "encode"):
        print(
            f"\n{op.capitalize()} throughput, {args.rounds} rounds, {args.clock} clock, "
            f"GC {'off' if args.no_gc else 'on'} (median; best round in brackets)"
        )
        table = []
        for it in items:
            for lib in ("arsenal", "erlang_py"):
                sample = it.timings.get(f"{op}/{lib}")
                if sample is None:
                    table.append([it.name, lib, "excluded", "-", "-"])
                    continue
                mb = len(it.data) / 1e6
                table.append(
                    [
                        it.name,
                        lib,
                        f"{mb / sample.median:.2f} ({mb / sample.best:.2f})",
                        f"{it.terms / sample.median / 1e6:.3f} ({it.terms / sample.best / 1e6:.3f})",
                        f"{sample.median * 1e3:.2f}",
                    ]
                )
        print_table(["item", "library", "MB/s", "Mterms/s", "ms/call"], table)

        compared = [it for it in items if f"{op}/erlang_py" in it.timings]
        target = f">= {TARGET_DECODE_RATIO:g}" if op == "decode" else "-"
        for it in compared:
            ours, theirs = it.timings[f"{op}/arsenal"], it.timings[f"{op}/erlang_py"]
            value = theirs.median / ours.median
            ratios[f"{op}_{it.name}"] = value
            met = "" if op != "decode" else " (met)" if value >= TARGET_DECODE_RATIO else " (missed)"
            rows.append([f"{op} {it.name}", value, theirs.best / ours.best, target + met])
        if compared:
            # The whole corpus: total time of the compared items, same bytes for both.
            ours_total = sum(it.timings[f"{op}/arsenal"].median for it in compared)
            theirs_total = sum(it.timings[f"{op}/erlang_py"].median for it in compared)
            value = theirs_total / ours_total
            ratios[f"{op}_corpus"] = value
            met = "" if op != "decode" else " (met)" if value >= TARGET_DECODE_RATIO else " (missed)"
            best = sum(it.timings[f"{op}/erlang_py"].best for it in compared) / sum(
                it.timings[f"{op}/arsenal"].best for it in compared
            )
            rows.append([f"{op} whole corpus", value, best, target + met])
        excluded = [it.name for it in items if it not in compared]
        if excluded:
            print(f"  excluded from the {op} comparison (erlang_py could not do it): {', '.join(excluded)}")

    print("\nRatios: Arsenal speed / erlang_py speed (> 1 means Arsenal is faster)")
    print_table(["comparison", "median", "best vs best", "target"], rows)
    print()
    for name, value in ratios.items():
        print_ratio(name, value)
    return {
        "benchmark": "decode_throughput",
        "otp_release": otp,
        "machine": machine(),
        "erlang_py_version": getattr(erlang_py, "__version__", None),
        "corpus_source": source,
        "params": {
            "rounds": args.rounds,
            "min_seconds_per_round": args.min_seconds,
            "gc_in_timed_loops": not args.no_gc,
            "clock": args.clock,
            "quick": args.quick,
        },
        "items": {
            it.name: {
                "bytes": len(it.data),
                "terms": it.terms,
                "erlang_py_decode_error": it.erlang_py_decode_error,
                "erlang_py_encode_error": it.erlang_py_encode_error,
                "arsenal_reencode_identical": it.arsenal_encode_identical,
                "erlang_py_reencode_identical": it.erlang_py_encode_identical,
                "seconds_per_call": {name: s.as_dict() for name, s in it.timings.items()},
            }
            for it in items
        },
        "ratios": ratios,
        "ratio_meaning": "Arsenal speed / erlang_py speed; > 1 means Arsenal is faster",
        "targets": {"decode": TARGET_DECODE_RATIO},
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = BenchArgs(__doc__, quick="small corpus, few rounds: proves it runs", rounds=5)
    parser.add_argument("--min-seconds", type=float, help="time per case and round (default 0.3, quick 0.01)")
    parser.add_argument("--regenerate", action="store_true", help="make a new corpus even if one is cached")
    parser.add_argument("--profile", action="store_true", help="also profile Arsenal's decoder (cProfile)")
    parser.add_argument(
        "--no-gc", action="store_true", help="turn the cyclic GC off inside timed loops (as timeit does)"
    )
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall: elapsed time (default); cpu: this process's CPU time, steadier on a busy machine",
    )
    args = parser.parse_args(argv)
    args.min_seconds = args.min_seconds or (0.01 if args.quick else 0.3)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    otp = announce()
    corpus, source = load_corpus(args, otp)
    items = [check(name, data) for name, data in corpus.items()]
    for it in items:
        bench_item(it, args)
    payload = report(items, args, otp, source)
    if args.profile:
        text = profile_decoder(corpus, 1 if args.quick else 5, 20)
        print("\ncProfile of Arsenal's binary_to_term over the corpus (sorted by own time):")
        print(text)
        payload["profile"] = text
    write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
