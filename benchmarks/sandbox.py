"""Sandboxes: start-to-ready and hot swap with Arsenal, against doing the same by hand.

Three comparisons, each case interleaved with its reference in every round (the order flips from
round to round), after one warm-up of each:

* **Start-to-ready, empty node** (``sandbox_start_empty``): Arsenal's ``create_sandbox`` of an
  empty Erlang sandbox through the Python API (``Arsenal().run(...)``), timed from the call to its
  return: the node started under its limits, ready, Arsenal attached and its agent checked. The
  sandbox is destroyed afterwards, outside the timing. By hand: ``erl -sname X -setcookie C
  -noshell -eval 'io:format("ready~n")'`` started with ``subprocess`` in a session of its own, its
  output piped, timed until it has printed the marker and ``epmd -names`` lists it (what a script
  that starts a node and waits for it does); then it is killed.
* **Start-to-ready, an application** (``sandbox_start_app``): ``create_sandbox`` with ``template:
  "worker_pool"`` (the source is compiled inside the node, the application started). By hand: the
  same mix project (``arsenal.sandbox.generator.render_project``) in a temporary directory,
  ``mix compile`` offline as ``demo/build.sh`` runs it (``MIX_ENV=dev``, ``HEX_OFFLINE=1``, a
  ``MIX_HOME`` of its own) with a fresh ``_build`` every round, then ``elixir --sname X --cookie C
  -pa <ebin> -e '{:ok, _} = Application.ensure_all_started(:worker_pool); IO.puts("ready")'
  --no-halt`` until the marker and EPMD. The compile and the start are printed apart too.
* **Hot swap of a module with N processes** (``sandbox_hot_swap``, ``--processes``, default 100):
  an Erlang gen_server module (``arsenal_bench_swap``, source below) runs N times, unregistered.
  v1 keeps an integer as its state, v2 a map, and each version's ``code_change/3`` converts the
  other's state, so every round swaps v1 -> v2 and back (both sides, both directions; a round's
  figure is the mean of its two swaps). Arsenal: ``hot_swap_module`` over the Python API into a
  sandbox where injected code started the N processes (its policy scan, compile, soft purge,
  suspend N, load, ``sys:change_code`` N, resume N, the version stored), timed from the call to
  its return. By hand, the best reference: the same steps an operator types in a remote shell
  (``compile:file`` to a binary, ``sys:suspend`` each, ``code:soft_purge`` + ``code:load_binary``,
  ``sys:change_code`` each, ``sys:resume`` each), run by a compiled module in a plain ``erl`` node
  holding the same module and N processes, and timed inside that VM with
  ``erlang:monotonic_time``. Both nodes run with the sandbox's default VM limits (one scheduler).
  After every swap, outside the timing, both sides check that all N processes have the new state
  shape and kept their values.

Ratios are **Arsenal time / by-hand time** (> 1 means Arsenal is slower). No threshold: the
numbers and one ``RATIO <name> <value>`` line per ratio. Every node (sandboxes, by-hand and
reference nodes) is killed at the end, whatever way the script ends; sandboxes get a lifetime of
15 minutes, so even a benchmark killed with SIGKILL leaves nothing running for long.

    uv run python benchmarks/sandbox.py [--quick] [--json PATH] [--rounds 7] [--processes 100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    LOG_DIR,
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
from arsenal.client import Arsenal
from arsenal.dist import Atom, LocalNode, charlist
from arsenal.sandbox.generator import render_project
from arsenal.sandbox.launcher import kill_group, registered_with_epmd, unique_alive
from arsenal.sandbox.limits import SandboxLimits
from arsenal.sandbox.manager import SandboxManager
from arsenal.sandbox.templates import template

READY = b"ready"
START_TIMEOUT = 60.0
CALL_TIMEOUT = 120.0
# A sandbox left behind by a benchmark killed with SIGKILL stops by itself after this.
LIFETIME_S = 900
APP = "worker_pool"

SWAP_MODULE = "arsenal_bench_swap"
SWAP_V1 = """
-module(arsenal_bench_swap).
-behaviour(gen_server).
-vsn(1).
-export([start/1, init/1, handle_call/3, handle_cast/2, code_change/3]).

%% v1: the state is an integer.
start(N) -> gen_server:start(?MODULE, N, []).
init(N) -> {ok, N}.
handle_call(get, _From, N) -> {reply, N, N}.
handle_cast(bump, N) -> {noreply, N + 1}.

%% Back from v2: its map becomes the integer again.
code_change(_OldVsn, #{n := N}, _Extra) -> {ok, N};
code_change(_OldVsn, N, _Extra) -> {ok, N}.
"""
SWAP_V2 = """
-module(arsenal_bench_swap).
-behaviour(gen_server).
-vsn(2).
-export([start/1, init/1, handle_call/3, handle_cast/2, code_change/3]).

%% v2: the state is a map.
start(N) -> gen_server:start(?MODULE, #{n => N}, []).
init(State) -> {ok, State}.
handle_call(get, _From, #{n := N} = State) -> {reply, N, State}.
handle_cast(bump, #{n := N} = State) -> {noreply, State#{n := N + 1}}.

%% Up from v1: its integer goes into the map.
code_change(_OldVsn, N, _Extra) when is_integer(N) -> {ok, #{n => N}};
code_change(_OldVsn, State, _Extra) -> {ok, State}.
"""
SWAP_SOURCES = {1: SWAP_V1, 2: SWAP_V2}
SHAPES = {1: "integer", 2: "map"}

# Injected into the sandbox (Erlang expressions): start the N processes, and check their states.
START_CODE = "length([begin {ok, P} = arsenal_bench_swap:start(I), P end || I <- lists:seq(1, N)])"
CHECK_CODE = """
Shape = fun(S) when is_map(S) -> {map, maps:get(n, S)};
           (S) when is_integer(S) -> {integer, S};
           (_) -> {other, 0} end,
Ours = [P || P <- erlang:processes(),
             case erlang:process_info(P, dictionary) of
                 {dictionary, D} -> lists:member({'$initial_call', {arsenal_bench_swap, init, 1}}, D);
                 _ -> false
             end],
States = [Shape(sys:get_state(P)) || P <- Ours],
{length(Ours), lists:usort([K || {K, _} <- States]), lists:sum([V || {_, V} <- States])}
"""

REF_MODULE = "arsenal_bench_sandbox_ref"
REF_SOURCE = r"""
-module(arsenal_bench_sandbox_ref).
-export([setup/2, swap/2, check/1]).

%% The by-hand reference: a hot swap as an operator runs it from a remote shell.

%% Compile and load the module at Path; start N unregistered gen_servers of it.
-spec setup(file:filename(), pos_integer()) -> [pid()].
setup(Path, N) ->
    {ok, Mod, Bin} = compile:file(Path, [binary, return_errors, debug_info]),
    {module, Mod} = code:load_binary(Mod, Path, Bin),
    [begin {ok, P} = Mod:start(I), P end || I <- lists:seq(1, N)].

%% The steps, timed around themselves only: compile to a binary, suspend every
%% process, purge the old code and load, change_code every process, resume.
-spec swap(file:filename(), [pid()]) -> map().
swap(Path, Pids) ->
    T0 = erlang:monotonic_time(nanosecond),
    {ok, Mod, Bin} = compile:file(Path, [binary, return_errors, debug_info]),
    T1 = erlang:monotonic_time(nanosecond),
    lists:foreach(fun(P) -> ok = sys:suspend(P) end, Pids),
    true = code:soft_purge(Mod),
    {module, Mod} = code:load_binary(Mod, Path, Bin),
    lists:foreach(fun(P) -> ok = sys:change_code(P, Mod, undefined, []) end, Pids),
    lists:foreach(fun(P) -> ok = sys:resume(P) end, Pids),
    T2 = erlang:monotonic_time(nanosecond),
    #{total_ns => T2 - T0, compile_ns => T1 - T0}.

%% {processes alive, the state shapes seen, the sum of their values}.
-spec check([pid()]) -> {non_neg_integer(), [atom()], integer()}.
check(Pids) ->
    States = [shape(sys:get_state(P)) || P <- Pids, is_process_alive(P)],
    {length(States), lists:usort([K || {K, _} <- States]), lists:sum([V || {_, V} <- States])}.

shape(S) when is_map(S) -> {map, maps:get(n, S)};
shape(S) when is_integer(S) -> {integer, S};
shape(_) -> {other, 0}.
"""

Measure = Callable[[], Awaitable[dict[str, float]]]

# ---------------------------------------------------------------------- nodes started by hand


class HandNode:
    """A node started the way a script does it: ``subprocess``, a session of its own, its output
    piped and read until a marker, then ``epmd -names`` until it lists the name."""

    def __init__(self, alive: str, command: list[str], *, env: dict[str, str] | None = None) -> None:
        self.alive = alive
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
        self.output = b""
        self.killed = False

    def wait_ready(self, marker: bytes, timeout: float = START_TIMEOUT) -> None:
        """Block until ``marker`` is printed and EPMD lists the node (the pipe wakes us at once)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while marker not in self.output:
                if not selector.select(max(0.0, deadline - time.monotonic())):
                    raise RuntimeError(
                        f"{self.alive} printed no {marker!r} in {timeout:g}s: {self.output[-2000:]!r}"
                    )
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise RuntimeError(f"{self.alive} exited at start: {self.output[-2000:]!r}")
                self.output += chunk
        while not registered_with_epmd(self.alive):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"EPMD never listed {self.alive}: {self.output[-2000:]!r}")
            time.sleep(0.001)

    def kill(self) -> None:
        """SIGKILL its process group, once (a reaped pid may be reused: never signal it again)."""
        if self.killed:
            return
        self.killed = True
        kill_group(self.proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def erl_by_hand(cookie: str, started: list[Any]) -> float:
    """``erl -sname X -setcookie C -noshell -eval 'io:format("ready~n")'`` until ready; seconds."""
    alive = unique_alive("arsenal_bench_hand")
    command = ["erl", "-sname", alive, "-setcookie", cookie, "-noshell", "-eval", 'io:format("ready~n")']
    start = time.perf_counter()
    node = HandNode(alive, command)
    started.append(node)
    node.wait_ready(READY)
    elapsed = time.perf_counter() - start
    node.kill()
    return elapsed


def mix_env(home: Path) -> dict[str, str]:
    """The offline build environment of ``demo/build.sh``, with a MIX_HOME of its own."""
    return {**os.environ, "MIX_ENV": "dev", "HEX_OFFLINE": "1", "MIX_HOME": str(home)}


def write_project(directory: Path) -> Path:
    """The worker_pool template as the mix project Arsenal would write (``render_project``)."""
    project = directory / APP
    for relative, text in render_project(template(APP)).items():
        path = project / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return project


def app_by_hand(project: Path, env: dict[str, str], cookie: str, started: list[Any]) -> dict[str, float]:
    """``mix compile`` from a fresh ``_build``, then ``elixir ... --no-halt`` until ready; seconds."""
    shutil.rmtree(project / "_build", ignore_errors=True)
    start = time.perf_counter()
    built = subprocess.run(
        ["mix", "compile"], cwd=project, env=env, capture_output=True, text=True, check=False
    )
    compiled_at = time.perf_counter()
    if built.returncode != 0:
        raise RuntimeError(f"mix compile failed ({built.returncode}):\n{built.stdout}\n{built.stderr}")
    alive = unique_alive("arsenal_bench_app")
    ebin = project / "_build" / "dev" / "lib" / APP / "ebin"
    expr = f'{{:ok, _}} = Application.ensure_all_started(:{APP}); IO.puts("ready")'
    command = ["elixir", "--sname", alive, "--cookie", cookie, "-pa", str(ebin), "-e", expr, "--no-halt"]
    node = HandNode(alive, command, env=env)
    started.append(node)
    node.wait_ready(READY)
    end = time.perf_counter()
    node.kill()
    return {"total_s": end - start, "compile_s": compiled_at - start, "start_s": end - compiled_at}


# ---------------------------------------------------------------------- Arsenal's side


class Sandboxes:
    """Arsenal's sandboxes for the benchmark: created through the Python API, destroyed after (the
    process groups of any left are killed by :meth:`kill_left`, whatever way the benchmark ends)."""

    def __init__(self, arsenal: Arsenal) -> None:
        self.arsenal = arsenal
        self.manager = arsenal.services.get(SandboxManager)
        self.groups: dict[str, int] = {}
        self.count = 0

    def new_id(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    async def create(self, sandbox_id: str, **params: Any) -> float:
        """``create_sandbox``, timed from the call to its return; seconds."""
        request = {"sandbox_id": sandbox_id, "limits": {"lifetime_s": LIFETIME_S}, **params}
        start = time.perf_counter()
        try:
            created = await self.arsenal.run("create_sandbox", request)
        finally:
            elapsed = time.perf_counter() - start
            record = self.manager.records.get(sandbox_id)
            if record is not None and record.os_pid is not None:
                self.groups[sandbox_id] = record.os_pid
        if created.status != "running":
            raise RuntimeError(f"sandbox {sandbox_id} is {created.status}: {created.stop_reason}")
        return elapsed

    async def destroy(self, sandbox_id: str) -> float:
        start = time.perf_counter()
        await self.arsenal.run("destroy_sandbox", {"sandbox_id": sandbox_id})
        self.groups.pop(sandbox_id, None)
        return time.perf_counter() - start

    async def destroy_all(self) -> None:
        for record in self.manager.records.list():
            await self.destroy(record.id)

    def kill_left(self) -> None:
        for pid in self.groups.values():
            kill_group(pid)
        self.groups.clear()


async def arsenal_start(sandboxes: Sandboxes, prefix: str, **params: Any) -> dict[str, float]:
    sandbox_id = sandboxes.new_id(prefix)
    elapsed = await sandboxes.create(sandbox_id, **params)
    destroyed = await sandboxes.destroy(sandbox_id)
    return {"total_s": elapsed, "destroy_s": destroyed}


# ---------------------------------------------------------------------- rounds


async def run_rounds(cases: dict[str, Measure], rounds: int) -> dict[str, list[dict[str, float]]]:
    """One warm-up of each case, then ``rounds`` rounds, the order rotating every round."""
    for case in cases.values():
        await case()
    results: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(await cases[name]())
    return results


async def start_empty(sandboxes: Sandboxes, args: argparse.Namespace, started: list[Any]) -> dict[str, Any]:
    cookie = new_cookie()

    async def by_hand() -> dict[str, float]:
        return {"total_s": erl_by_hand(cookie, started)}

    cases: dict[str, Measure] = {
        "arsenal": lambda: arsenal_start(sandboxes, "empty", language="erlang"),
        "by_hand": by_hand,
    }
    return await run_rounds(cases, args.rounds)


async def start_app(
    sandboxes: Sandboxes, args: argparse.Namespace, started: list[Any], work: Path
) -> dict[str, Any]:
    cookie = new_cookie()
    project = write_project(work / "project")
    env = mix_env(work / "mix_home")

    async def by_hand() -> dict[str, float]:
        return app_by_hand(project, env, cookie, started)

    cases: dict[str, Measure] = {
        "arsenal": lambda: arsenal_start(sandboxes, "app", template=APP),
        "by_hand": by_hand,
    }
    return await run_rounds(cases, args.rounds)


# ---------------------------------------------------------------------- hot swap


def process_limit(n: int) -> int:
    """The VM's process limit for N processes and the rest of a node: the sandbox's default, or more."""
    return min(1_048_576, max(SandboxLimits().max_processes, 2 * n + 4096))


def swap_limits(n: int) -> SandboxLimits:
    """The limits of the swap sandbox; the reference node gets the same VM flags (one scheduler)."""
    return SandboxLimits(max_processes=process_limit(n), lifetime_s=LIFETIME_S)


def expected_state(n: int, version: int) -> tuple[int, str, int]:
    """N processes, all in the version's state shape, their values still 1..N."""
    return n, SHAPES[version], n * (n + 1) // 2


class ArsenalSwap:
    """Arsenal's side: a sandbox holding v1 and N processes started by injected code."""

    sandbox_id = "swap"

    def __init__(self, sandboxes: Sandboxes, n: int) -> None:
        self.sandboxes = sandboxes
        self.n = n

    async def setup(self) -> None:
        source = {"language": "erlang", "files": {f"src/{SWAP_MODULE}.erl": SWAP_V1}}
        limits = swap_limits(self.n).model_dump()
        await self.sandboxes.create(self.sandbox_id, language="erlang", source=source, limits=limits)
        ran = await self.inject(START_CODE, binding={"N": self.n})
        if ran.value != str(self.n):
            raise RuntimeError(f"the sandbox started {ran.value} processes, not {self.n}")
        await self.check(1)

    async def inject(self, code: str, **params: Any) -> Any:
        request = {"sandbox_id": self.sandbox_id, "code": code, "language": "erlang", "timeout_ms": 60_000}
        ran = await self.sandboxes.arsenal.run("inject_code", {**request, **params})
        if not ran.ok:
            raise RuntimeError(f"code injected into the sandbox failed: {ran.error}")
        return ran

    async def swap(self, version: int) -> dict[str, float]:
        """``hot_swap_module`` to ``version``, timed from the call to its return."""
        request = {
            "sandbox_id": self.sandbox_id,
            "module": SWAP_MODULE,
            "source": SWAP_SOURCES[version],
            "language": "erlang",
        }
        start = time.perf_counter()
        report = await self.sandboxes.arsenal.run("hot_swap_module", request)
        elapsed = time.perf_counter() - start
        changed = [p for p in report.processes if p["code_change"] == "ok" and p["state_changed"]]
        if len(changed) != self.n:
            raise RuntimeError(f"hot_swap_module converted {len(changed)} of {self.n} processes")
        return {"total_s": elapsed}

    async def check(self, version: int) -> None:
        n, shape, total = expected_state(self.n, version)
        seen = (await self.inject(CHECK_CODE)).value
        if seen != f"{{{n},[{shape}],{total}}}":
            raise RuntimeError(f"the sandbox's processes at v{version}: {seen}; wanted {(n, shape, total)}")


class ByHandSwap:
    """The reference: a plain ``erl`` node R holding v1 and N processes, swapped by a compiled module
    (``arsenal_bench_sandbox_ref``) that times the steps inside R."""

    def __init__(self, conn: Any, sources: dict[int, Path], n: int) -> None:
        self.conn = conn
        self.sources = {version: charlist(str(path)) for version, path in sources.items()}
        self.n = n
        self.pids: list[Any] = []

    async def call(self, function: str, args: list[Any]) -> Any:
        return await self.conn.rpc(REF_MODULE, function, args, CALL_TIMEOUT, via="erpc")

    async def setup(self) -> None:
        self.pids = await self.call("setup", [self.sources[1], self.n])
        await self.check(1)

    async def swap(self, version: int) -> dict[str, float]:
        times = await self.call("swap", [self.sources[version], self.pids])
        return {"total_s": times[Atom("total_ns")] / 1e9, "compile_s": times[Atom("compile_ns")] / 1e9}

    async def check(self, version: int) -> None:
        count, shapes, total = await self.call("check", [self.pids])
        seen = (count, *(str(s) for s in shapes), total)
        if seen != expected_state(self.n, version):
            raise RuntimeError(f"the reference's processes at v{version}: {seen}")


async def swap_round(side: ArsenalSwap | ByHandSwap) -> dict[str, float]:
    """v1 -> v2, then back; each swap checked on its side afterwards, outside the timing. The
    round's figures are the mean of the two swaps and each direction."""
    up = await side.swap(2)
    await side.check(2)
    down = await side.swap(1)
    await side.check(1)
    figures = {f"{key}_up": value for key, value in up.items()}
    figures |= {f"{key}_down": value for key, value in down.items()}
    figures |= {key: (up[key] + down[key]) / 2 for key in up}
    return figures


def write_swap_sources(directory: Path) -> dict[int, Path]:
    """v1 and v2 as files (the reference compiles them with ``compile:file``, as an operator would)."""
    paths = {}
    for version, source in SWAP_SOURCES.items():
        path = directory / f"v{version}" / f"{SWAP_MODULE}.erl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
        paths[version] = path
    return paths


async def hot_swap(
    sandboxes: Sandboxes, args: argparse.Namespace, work: Path, ebin: Path, started: list[Any]
) -> dict[str, Any]:
    cookie = new_cookie()
    extra = swap_limits(args.processes).erl_args()  # the sandbox's VM flags: +P, one scheduler, +hmax
    reference = start_node("arsenal_bench_swapref", cookie, code_path=ebin, extra=extra)
    started.append(reference)
    arsenal_side = ArsenalSwap(sandboxes, args.processes)
    await arsenal_side.setup()
    async with LocalNode(cookie=cookie) as local:
        hand_side = ByHandSwap(await local.connect(reference.name), write_swap_sources(work), args.processes)
        await hand_side.setup()
        cases: dict[str, Measure] = {
            "arsenal": lambda: swap_round(arsenal_side),
            "by_hand": lambda: swap_round(hand_side),
        }
        return await run_rounds(cases, args.rounds)


# ---------------------------------------------------------------------- the whole run


async def bench(args: argparse.Namespace, work: Path, ebin: Path, started: list[Any]) -> dict[str, Any]:
    async with Arsenal(home=work / "home") as arsenal:
        sandboxes = Sandboxes(arsenal)
        try:
            return {
                "start_empty": await start_empty(sandboxes, args, started),
                "start_app": await start_app(sandboxes, args, started, work / "app"),
                "hot_swap": await hot_swap(sandboxes, args, work / "swap", ebin, started),
            }
        finally:
            try:
                await sandboxes.destroy_all()
            finally:
                sandboxes.kill_left()


# ---------------------------------------------------------------------- report


def ms(rounds: list[dict[str, float]], key: str, name: str) -> Sample:
    return Sample(name, "ms", [r[key] * 1000 for r in rounds])


PARTS = {
    "start_empty": "Start-to-ready, empty node",
    "start_app": f"Start-to-ready, the {APP} application",
    "hot_swap": "Hot swap",
}
ROWS: dict[str, list[tuple[str, str, str]]] = {
    "start_empty": [
        ("arsenal", "total_s", "Arsenal create_sandbox (empty, erlang)"),
        ("by_hand", "total_s", "by hand: erl -sname ... until ready + EPMD"),
    ],
    "start_app": [
        ("arsenal", "total_s", f"Arsenal create_sandbox (template {APP})"),
        ("by_hand", "total_s", "by hand: mix compile + elixir start"),
        ("by_hand", "compile_s", "  of which mix compile (fresh _build)"),
        ("by_hand", "start_s", "  of which elixir --sname ... until ready + EPMD"),
    ],
    "hot_swap": [
        ("arsenal", "total_s", "Arsenal hot_swap_module, per swap"),
        ("arsenal", "total_s_up", "  v1 -> v2 (integer -> map)"),
        ("arsenal", "total_s_down", "  v2 -> v1 (map -> integer)"),
        ("by_hand", "total_s", "by hand in the VM, per swap"),
        ("by_hand", "total_s_up", "  v1 -> v2 (integer -> map)"),
        ("by_hand", "total_s_down", "  v2 -> v1 (map -> integer)"),
        ("by_hand", "compile_s", "  of which compile:file"),
    ],
}
RATIOS = {
    "start_empty": "sandbox_start_empty",
    "start_app": "sandbox_start_app",
    "hot_swap": "sandbox_hot_swap",
}


def report(res: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, dict[str, Any]] = {}
    ratios: dict[str, float] = {}
    for part, title in PARTS.items():
        rounds = res[part]
        suffix = f" of a module with {args.processes} processes" if part == "hot_swap" else ""
        print()
        print(f"{title}{suffix}: ms, {args.rounds} rounds after a warm-up")
        rows = []
        for side, key, label in ROWS[part]:
            sample = ms(rounds[side], key, f"{side}.{key}")
            figures.setdefault(part, {})[f"{side}.{key}"] = sample.as_dict()
            rows.append([label, sample.median, sample.best, sample.worst])
        print_table(["what", "median", "best", "worst"], rows)
        medians = {side: ms(rounds[side], "total_s", side).median for side in ("arsenal", "by_hand")}
        ratios[RATIOS[part]] = medians["arsenal"] / medians["by_hand"]
    destroys = [r["destroy_s"] * 1000 for part in ("start_empty", "start_app") for r in res[part]["arsenal"]]
    print(f"\n(destroy_sandbox, not timed above: median {statistics.median(destroys):.1f} ms)")
    print()
    print("Ratios: Arsenal time / by-hand time, medians (> 1 means Arsenal is slower)")
    print_table(
        ["comparison", "ratio"],
        [
            ["empty node: create_sandbox / erl until ready", ratios["sandbox_start_empty"]],
            [f"{APP}: create_sandbox / mix compile + elixir start", ratios["sandbox_start_app"]],
            [
                f"hot swap, {args.processes} processes: hot_swap_module / in-VM steps",
                ratios["sandbox_hot_swap"],
            ],
        ],
    )
    print()
    for name, value in ratios.items():
        print_ratio(name, value)
    return {"figures": figures, "ratios": ratios}


# ---------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = BenchArgs(__doc__, quick="2 rounds: proves the script runs", rounds=7)
    parser.add_argument(
        "--processes", type=int, default=100, help="processes running the swapped module (default 100)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.processes <= 100_000:
        parser.error("--processes is 1 to 100000 (the agent scans at most 100000 processes for a swap)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [tool for tool in ("erl", "erlc", "epmd", "elixir", "mix") if shutil.which(tool) is None]
    if missing:
        print(f"needs Erlang/OTP and Elixir: {', '.join(missing)} not found", file=sys.stderr)
        return 2
    otp = announce()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="arsenal-bench-sandbox-") as tmp,
        compiled(REF_MODULE, REF_SOURCE) as ebin,
        nodes() as started,
    ):
        res = asyncio.run(bench(args, Path(tmp), ebin, started))
    summary = report(res, args)
    payload = {
        "benchmark": "sandbox",
        "otp_release": otp,
        "machine": machine(),
        "params": {"rounds": args.rounds, "processes": args.processes, "quick": args.quick},
        **summary,
        "rounds": res,
        "ratio_meaning": "Arsenal time / by-hand time (medians); > 1 means Arsenal is slower",
    }
    write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
