"""get_process_info over REST under 100 concurrent clients vs a bare distribution rpc of the same data.

A target node T runs the plain-Erlang demo tree (``demo/erlang``: ``demo_worker_1``
and friends), and ``arsenal serve --node T --port P`` runs as a subprocess (its
own session, killed at the end with T). Every request asks for the memory,
message queue length and current function of ``demo_worker_1``:

* **Arsenal**: ``GET /api/v1/processes/demo_worker_1?fields=memory,message_queue_len,current_function``
  from one ``httpx.AsyncClient`` (a pool of 100 connections) with 100 concurrent
  tasks, each making M requests one after the other (100 x M = the total, default
  5000). This is the whole REST path: HTTP, FastAPI, the operation, the agent's
  ``process_info`` call through erpc into T, JSON rendering, and the client.
* **Reference**: an ``arsenal.dist`` ``LocalNode`` connection to T, 100 concurrent
  coroutines each making M ``conn.rpc("erlang", "process_info", [Pid, [memory,
  message_queue_len, current_function]])`` calls (erpc): the bare distribution
  round trip for the same data, no HTTP, no agent, no JSON.

Both are measured from this Python process: per-request latency (p50, p99) and
throughput (requests done / wall time of the round). One warm-up round each, then
rounds alternating (the order flips every round); the medians over rounds are
reported. Ratios (> 1 means the REST path costs more): ``p50`` and ``p99`` latency
Arsenal / reference, and throughput reference / Arsenal. No pass/fail threshold.

    uv run python benchmarks/rest_process_info.py [--quick] [--json PATH] [--rounds 3] [--requests 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    HOST,
    ROOT,
    BenchArgs,
    Node,
    Sample,
    announce,
    machine,
    new_cookie,
    nodes,
    print_ratio,
    print_table,
    start_node,
    write_json,
)
from rest_list_processes import AUTH, arsenal_serve

CONCURRENCY = 100
TARGET = "demo_worker_1"
FIELDS = ["memory", "message_queue_len", "current_function"]
DEMO_EBIN = ROOT / "demo" / "erlang" / "ebin"
READY = "ERL_DEMO_READY"


def start_demo_node(cookie: str, timeout: float = 60.0) -> Node:
    """An ``erl`` node running the demo tree (as ``tests/nodes.py`` ``erl_node(demo=True)`` does)."""
    start = ["-pa", str(DEMO_EBIN), "-s", "arsenal_demo_erl", "start", "-eval", f'io:format("{READY}~n")']
    return start_node("bench_demo", cookie, extra=start, ready_marker=READY, timeout=timeout)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil(n * q / 100), at least 1
    return sorted_values[int(rank) - 1]


async def concurrent_round(call: Any, per_task: int) -> dict[str, float]:
    """CONCURRENCY tasks, task i awaiting ``call(i)`` per_task times; latencies in seconds."""
    latencies: list[float] = []

    async def worker(i: int) -> None:
        for _ in range(per_task):
            start = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(CONCURRENCY)))
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "throughput": len(latencies) / wall,
    }


class RawHttpClient:
    """One keep-alive HTTP/1.1 connection driven by hand over asyncio streams (``--client raw``).

    The cheapest client this process can be: a request is one write, a response
    is its header block and a Content-Length body. It exists to show how much of
    the REST figure is the client's own CPU (``httpx`` costs about as much CPU per
    request as the server on this path).
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path_and_query: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        auth = "".join(f"{name}: {value}\r\n" for name, value in AUTH.items())
        request = f"GET {path_and_query} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{auth}\r\n"
        self.writer.write(request.encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
            elif name.strip().lower() == "transfer-encoding":
                raise RuntimeError(f"unexpected Transfer-Encoding: {value.strip()}")
        if length is None:
            raise RuntimeError("response without Content-Length")
        return status, await self.reader.readexactly(length)

    async def aclose(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()


async def bench(args: argparse.Namespace, node_name: str, cookie: str, base: str) -> dict[str, Any]:
    import httpx

    from arsenal.dist import Atom, LocalNode

    per_task = max(1, args.requests // CONCURRENCY)
    path = f"/api/v1/processes/{TARGET}"
    url = f"{base}{path}"
    query = {"fields": ",".join(FIELDS)}
    path_and_query = f"{path}?{urlencode(query, safe=',')}"
    host, port = base.removeprefix("http://").rsplit(":", 1)
    # One client (one connection) per concurrent caller: 100 clients, as 100 users would be.
    # (One AsyncClient with a pool of 100 spends most of its CPU managing the pool.)
    httpx_clients = [httpx.AsyncClient(timeout=60.0, headers=AUTH) for _ in range(CONCURRENCY)]
    raw_clients = [RawHttpClient(host, int(port)) for _ in range(CONCURRENCY)]
    try:
        async with LocalNode(cookie=cookie) as local:
            conn = await local.connect(node_name)
            pid = await conn.rpc("erlang", "whereis", [Atom(TARGET)], 30.0)
            if not hasattr(pid, "node"):
                raise RuntimeError(f"{TARGET} is not registered on {node_name}: {pid!r}")
            field_atoms = [Atom(f) for f in FIELDS]

            def check(status: int, body: bytes) -> None:
                if status != 200:
                    raise RuntimeError(f"GET {url} answered {status}: {body[:2000]!r}")
                info = json.loads(body)["data"]["info"]
                if "memory" not in info:
                    raise RuntimeError(f"no memory in {info!r}")

            async def arsenal_call(i: int) -> None:
                if args.client == "raw":
                    check(*await raw_clients[i].get(path_and_query))
                else:
                    response = await httpx_clients[i].get(url, params=query)
                    check(response.status_code, response.content)

            async def reference_call(_i: int) -> None:
                items = await conn.rpc("erlang", "process_info", [pid, field_atoms], 60.0, via="erpc")
                if not isinstance(items, list) or len(items) != len(FIELDS):
                    raise RuntimeError(f"process_info answered {items!r}")

            cases = {"arsenal_rest": arsenal_call, "dist_rpc": reference_call}
            # Warm-up: opens the 100 HTTP connections, loads code, fills caches.
            for call in cases.values():
                await concurrent_round(call, per_task)
            results: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
            names = list(cases)
            for r in range(args.rounds):
                for name in names if r % 2 == 0 else names[::-1]:
                    results[name].append(await concurrent_round(cases[name], per_task))
    finally:
        for client in httpx_clients:
            await client.aclose()
        for raw in raw_clients:
            await raw.aclose()
    return {"results": results, "per_task": per_task, "total": per_task * CONCURRENCY}


def report(res: dict[str, Any], args: argparse.Namespace, otp: str) -> dict[str, Any]:
    samples: dict[str, dict[str, Sample]] = {}
    for name, rounds in res["results"].items():
        samples[name] = {
            "p50": Sample(f"{name}_p50", "ms", [r["p50"] * 1000 for r in rounds]),
            "p99": Sample(f"{name}_p99", "ms", [r["p99"] * 1000 for r in rounds]),
            "throughput": Sample(f"{name}_throughput", "req/s", [r["throughput"] for r in rounds]),
        }
    labels = {
        "arsenal_rest": f"Arsenal  GET /api/v1/processes/demo_worker_1 ({args.client})",
        "dist_rpc": "Ref      conn.rpc erlang:process_info/2 (erpc)",
    }
    print()
    print(
        f"get_process_info of {TARGET} ({', '.join(FIELDS)}), {CONCURRENCY} concurrent clients x "
        f"{res['per_task']} requests = {res['total']} per round, {args.rounds} rounds (medians over rounds)"
    )
    print_table(
        ["caller", "p50 ms", "p99 ms", "req/s", "best req/s"],
        [
            [labels[n], s["p50"].median, s["p99"].median, s["throughput"].median, s["throughput"].worst]
            for n, s in samples.items()
        ],
    )
    ours, ref = samples["arsenal_rest"], samples["dist_rpc"]
    ratios = {
        "rest_info_p50": ours["p50"].median / ref["p50"].median,
        "rest_info_p99": ours["p99"].median / ref["p99"].median,
        "rest_info_throughput": ref["throughput"].median / ours["throughput"].median,
    }
    print()
    print("Ratios: REST cost / bare rpc cost (> 1 means the REST path is slower)")
    print_table(
        ["comparison", "median"],
        [
            ["p50 latency, Arsenal / ref", ratios["rest_info_p50"]],
            ["p99 latency, Arsenal / ref", ratios["rest_info_p99"]],
            ["throughput, ref / Arsenal", ratios["rest_info_throughput"]],
        ],
    )
    print()
    for name, value in ratios.items():
        print_ratio(name, value)
    return {
        "benchmark": "rest_process_info",
        "otp_release": otp,
        "machine": machine(),
        "params": {
            "rounds": args.rounds,
            "concurrency": CONCURRENCY,
            "requests_per_client": res["per_task"],
            "requests_per_round": res["total"],
            "target": TARGET,
            "fields": FIELDS,
            "http_client": args.client,
            "quick": args.quick,
        },
        "figures": {n: {k: s.as_dict() for k, s in v.items()} for n, v in samples.items()},
        "rounds": res["results"],
        "ratios": ratios,
        "ratio_meaning": "REST cost / bare rpc cost (latency ours/ref, throughput ref/ours); > 1: slower",
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = BenchArgs(__doc__, quick="300 requests per round, 2 rounds", rounds=3)
    parser.add_argument(
        "--requests", type=int, help=f"requests per round, split over {CONCURRENCY} clients (default 5000)"
    )
    parser.add_argument(
        "--client",
        choices=["httpx", "raw"],
        default="httpx",
        help="HTTP client for the REST side: httpx (default) or a minimal asyncio HTTP/1.1 client",
    )
    args = parser.parse_args(argv)
    args.requests = args.requests or (300 if args.quick else 5000)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cookie = new_cookie()
    otp = announce(f"host {HOST}")
    with nodes() as started:
        target = start_demo_node(cookie)
        started.append(target)
        with arsenal_serve(target.name, cookie) as base:
            res = asyncio.run(bench(args, target.name, cookie, base))
    payload = report(res, args, otp)
    write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
