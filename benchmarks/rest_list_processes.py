"""list_processes end to end over REST vs the same scan written in Erlang and run in the VM.

One target node T is started (``erl +P 2000000``) with a small compiled module
(``arsenal_bench_scan``, source below). Inside T a helper call spawns N idle
processes (default 1 000 000) that wait in ``receive`` for the rest of the run.
Then ``arsenal serve --node T --port P`` is started as a subprocess (its own
session, killed at the end with T), and in every round:

* **Arsenal**: wall time of ``GET /api/v1/processes?sort_by=memory&limit=20``
  measured here with an ``httpx`` client: HTTP, FastAPI, the operation, the rpc
  into T, the agent's scan, the reply decoded and rendered as JSON, and the
  client parsing it.
* **Erlang**: ``arsenal_bench_scan:top(20)`` timed inside T with ``timer:tc``:
  walk ``erlang:processes()``, ``process_info(P, memory)`` each, keep the top 20
  in a bounded ``gb_sets``, then fetch registered_name, current_function,
  initial_call (translated for proc_lib processes, as the agent does), memory,
  reductions, message_queue_len and status for the 20. The same work the agent
  does, minus everything around it.

The two alternate (the order flips every round) after one warm-up of each. The
ratio is Arsenal time / Erlang time (> 1 means Arsenal is slower); the issue's
target is at most 1.25. No pass/fail threshold: numbers and ``RATIO`` lines only.

    uv run python benchmarks/rest_list_processes.py [--quick] [--json PATH] [--rounds 5] [--processes N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    LOG_DIR,
    ROOT,
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

TARGET_RATIO = 1.25
LIMIT = 20

ERL_MODULE = "arsenal_bench_scan"
ERL_SOURCE = r"""
-module(arsenal_bench_scan).
-export([spawn_idle/1, top/1, timed_top/1]).

%% Spawn N processes that wait forever (nobody sends 'stop'); they outlive this call.
spawn_idle(N) ->
    spawn_n(N),
    erlang:system_info(process_count).

spawn_n(0) -> ok;
spawn_n(N) -> spawn(fun idle/0), spawn_n(N - 1).

idle() -> receive stop -> ok end.

%% The top Limit processes by memory, largest first, with the agent's row fields.
top(Limit) ->
    Top = scan(erlang:processes(), Limit, gb_sets:empty(), 0, undefined),
    [Row || {_Memory, Pid} <- lists:reverse(gb_sets:to_list(Top)), Row <- [row(Pid)], Row =/= gone].

scan([], _Limit, Set, _Size, _Min) ->
    Set;
scan([Pid | Rest], Limit, Set, Size, Min) ->
    case erlang:process_info(Pid, memory) of
        undefined ->
            scan(Rest, Limit, Set, Size, Min);
        {memory, Memory} when Size < Limit ->
            Set1 = gb_sets:add({Memory, Pid}, Set),
            scan(Rest, Limit, Set1, Size + 1, gb_sets:smallest(Set1));
        {memory, Memory} when {Memory, Pid} > Min ->
            {_, Set1} = gb_sets:take_smallest(Set),
            Set2 = gb_sets:add({Memory, Pid}, Set1),
            scan(Rest, Limit, Set2, Size, gb_sets:smallest(Set2));
        _ ->
            scan(Rest, Limit, Set, Size, Min)
    end.

row(Pid) ->
    case erlang:process_info(Pid, [registered_name, current_function, initial_call, memory,
                                   reductions, message_queue_len, status]) of
        undefined ->
            gone;
        Items ->
            Map = maps:from_list(Items),
            Call = case maps:get(initial_call, Map) of
                       {proc_lib, init_p, 5} -> proc_lib:translate_initial_call(Pid);
                       Other -> Other
                   end,
            Map#{pid => Pid, initial_call => Call}
    end.

%% Microseconds top(Limit) took inside this VM, and how many rows it made.
timed_top(Limit) ->
    {Micros, Rows} = timer:tc(fun() -> top(Limit) end),
    {Micros, length(Rows)}.
"""


# ---------------------------------------------------------------------- nodes and the server


def start_big_node(
    prefix: str, cookie: str, code_path: Path, max_processes: int, timeout: float = 60.0
) -> Node:
    """A node with ``+P max_processes`` (the default limit is 1 048 576)."""
    return start_node(prefix, cookie, code_path=code_path, extra=["+P", str(max_processes)], timeout=timeout)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


AUTH: dict[str, str] = {}
"""The Authorization header for the server :func:`arsenal_serve` started (a viewer key of its own home)."""


@contextmanager
def arsenal_serve(node_name: str, cookie: str, *, timeout: float = 60.0) -> Iterator[str]:
    """``arsenal serve --node node_name --port P`` as a subprocess; yield its base URL, kill it after.

    The cookie goes through ``ARSENAL_COOKIE``, not the command line. The server
    runs in its own session and is killed as a group (SIGKILL) whatever way the
    block ends. It has an ``ARSENAL_HOME`` of its own with one viewer key (in :data:`AUTH`), and
    no rate limit worth the name: authentication is measured, throttling is not.
    """
    import tempfile

    import httpx

    from arsenal.security.keys import KeyStore
    from arsenal.store import Store

    home = Path(tempfile.mkdtemp(prefix="arsenal-bench-home-"))
    store = Store(home / "arsenal.db")
    try:
        AUTH["Authorization"] = f"Bearer {KeyStore(store).create('viewer', name='bench')[1]}"
    finally:
        store.close()
    port = free_port()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"arsenal-serve-{port}.log"
    env = {**os.environ, "ARSENAL_COOKIE": cookie, "ARSENAL_HOME": str(home)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    command = [
        *(sys.executable, "-m", "arsenal", "serve", "--node", node_name, "--port", str(port)),
        *("--rate-limit", "1000000"),
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"arsenal serve exited at start:\n{log_path.read_text()[-3000:]}")
            with suppress(httpx.HTTPError):
                if httpx.get(f"{base}/api/v1/operations", headers=AUTH, timeout=5.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"arsenal serve did not answer within {timeout:g}s:\n{log_path.read_text()}"
                )
            time.sleep(0.2)
        yield base
    finally:
        if proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


# ---------------------------------------------------------------------- the benchmark


async def _rpc(
    node_name: str, cookie: str, module: str, function: str, args: list[Any], timeout: float
) -> Any:
    from arsenal.dist import LocalNode

    async with LocalNode(cookie=cookie) as local:
        conn = await local.connect(node_name)
        return await conn.rpc(module, function, args, timeout, via="erpc")


def run(args: argparse.Namespace, node_name: str, cookie: str, base: str) -> dict[str, Any]:
    import httpx

    from arsenal.dist import LocalNode

    url = f"{base}/api/v1/processes"
    query = {"sort_by": "memory", "limit": str(LIMIT)}

    async def bench() -> dict[str, Any]:
        async with LocalNode(cookie=cookie) as local:
            conn = await local.connect(node_name)

            def arsenal_once(client: httpx.Client) -> tuple[float, dict[str, Any]]:
                start = time.perf_counter()
                response = client.get(url, params=query)
                body = response.json()
                elapsed = time.perf_counter() - start
                if response.status_code != 200:
                    raise RuntimeError(f"GET {url} answered {response.status_code}: {response.text[:2000]}")
                return elapsed, body["data"]

            async def erlang_once() -> float:
                micros, count = await conn.rpc(ERL_MODULE, "timed_top", [LIMIT], 600.0, via="erpc")
                if count != LIMIT:
                    raise RuntimeError(f"the Erlang scan made {count} rows, not {LIMIT}")
                return micros / 1e6

            arsenal_s: list[float] = []
            erlang_s: list[float] = []
            with httpx.Client(timeout=600.0, headers=AUTH) as client:
                # Warm-up: code loading, the connection, caches, first allocations.
                _, data = arsenal_once(client)
                await erlang_once()
                if len(data["processes"]) != LIMIT:
                    raise RuntimeError(f"Arsenal listed {len(data['processes'])} rows, not {LIMIT}")
                process_count = data["process_count"]
                for r in range(args.rounds):
                    if r % 2 == 0:
                        arsenal_s.append(arsenal_once(client)[0])
                        erlang_s.append(await erlang_once())
                    else:
                        erlang_s.append(await erlang_once())
                        arsenal_s.append(arsenal_once(client)[0])
        return {"arsenal": arsenal_s, "erlang": erlang_s, "process_count": process_count}

    return asyncio.run(bench())


def report(res: dict[str, Any], args: argparse.Namespace, otp: str, spawn_s: float) -> dict[str, Any]:
    arsenal = Sample("arsenal_rest", "s", res["arsenal"])
    erlang = Sample("erlang_in_vm", "s", res["erlang"])
    print()
    print(
        f"list_processes top {LIMIT} by memory, {res['process_count']:,} processes on the node "
        f"({args.processes:,} idle ones spawned in {spawn_s:.1f} s), {args.rounds} rounds"
    )
    print_table(
        ["what", "median ms", "min ms", "max ms"],
        [
            ["Arsenal  GET /api/v1/processes?sort_by=memory&limit=20 (httpx)", *_ms(arsenal)],
            ["Erlang   the same scan in T, timer:tc", *_ms(erlang)],
        ],
    )
    ratio = arsenal.median / erlang.median
    best = arsenal.best / erlang.best
    met = "met" if ratio <= TARGET_RATIO else "missed"
    print()
    print("Ratio: Arsenal time / Erlang time (> 1 means Arsenal is slower)")
    print_table(
        ["comparison", "median", "best vs best", "Arsenal extra (median)", "target"],
        [
            [
                "REST list_processes vs in-VM scan",
                ratio,
                best,
                f"{(arsenal.median - erlang.median) * 1000:+.1f} ms",
                f"<= {TARGET_RATIO} ({met})",
            ]
        ],
    )
    print()
    print_ratio("rest_list_processes", ratio)
    return {
        "benchmark": "rest_list_processes",
        "otp_release": otp,
        "machine": machine(),
        "params": {
            "rounds": args.rounds,
            "spawned_processes": args.processes,
            "process_count": res["process_count"],
            "limit": LIMIT,
            "quick": args.quick,
        },
        "spawn_seconds": spawn_s,
        "times": {"arsenal_rest": arsenal.as_dict(), "erlang_in_vm": erlang.as_dict()},
        "ratios": {"rest_list_processes": ratio},
        "ratio_meaning": "Arsenal time / Erlang time; > 1 means Arsenal is slower",
        "targets": {"rest_list_processes": TARGET_RATIO},
    }


def _ms(sample: Sample) -> list[float]:
    return [sample.median * 1000, sample.best * 1000, sample.worst * 1000]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = BenchArgs(__doc__, quick="20 000 processes, 2 rounds: proves the script runs", rounds=5)
    parser.add_argument(
        "--processes", type=int, help="idle processes to spawn (default 1000000, quick 20000)"
    )
    args = parser.parse_args(argv)
    args.processes = args.processes if args.processes is not None else (20_000 if args.quick else 1_000_000)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cookie = new_cookie()
    otp = announce()
    max_processes = max(2_000_000, args.processes + 100_000)
    with compiled(ERL_MODULE, ERL_SOURCE) as ebin, nodes() as started:
        target = start_big_node("bench_t", cookie, ebin, max_processes)
        started.append(target)
        start = time.perf_counter()
        asyncio.run(_rpc(target.name, cookie, ERL_MODULE, "spawn_idle", [args.processes], 1800.0))
        spawn_s = time.perf_counter() - start
        with arsenal_serve(target.name, cookie) as base:
            res = run(args, target.name, cookie, base)
    payload = report(res, args, otp, spawn_s)
    write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
