"""The demo nodes (demo/erlang, demo/elixir) boot as real BEAM nodes.

This checks the demo applications themselves, through a probe `erl` node that prints what
it sees, not through Arsenal's operations (the nodes start through Arsenal's one launcher).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from arsenal.sandbox.launcher import BeamProcess, LaunchSpec, kill_group

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo"
ERL_EBIN = DEMO / "erlang" / "ebin"
EX_DIR = DEMO / "elixir"
EX_EBIN = EX_DIR / "_build" / "dev" / "lib" / "arsenal_demo" / "ebin"

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("erl", "erlc", "elixir", "mix")),
        reason="needs Erlang/OTP (erl, erlc) and Elixir (elixir, mix)",
    ),
]

# How long the probe waits for a node to come up (ms).
WAIT_MS = 60_000


def _token() -> str:
    return secrets.token_hex(4)


@dataclass
class Node:
    """A BEAM node started by a test, with its short name and log file."""

    sname: str
    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


@dataclass
class ProbeResult:
    registered: set[str] = field(default_factory=set)
    # (parent path, child id, type, status, registered name or "-")
    children: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    kv: dict[str, list[str]] = field(default_factory=dict)
    output: str = ""

    def child(self, child_id: str) -> tuple[str, str, str, str, str]:
        for row in self.children:
            if row[1] == child_id:
                return row
        raise AssertionError(f"no supervisor child {child_id!r} in:\n{self.output}")


@pytest.fixture(scope="module")
def built() -> None:
    result = subprocess.run(
        ["bash", str(DEMO / "build.sh")],
        cwd=ROOT,
        env={**os.environ, "DEMO_STRICT": "1"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, f"demo/build.sh failed:\n{result.stdout}\n{result.stderr}"
    assert (ERL_EBIN / "arsenal_demo_erl.beam").is_file()
    assert (EX_EBIN / "arsenal_demo.app").is_file()


@pytest.fixture(scope="module")
def cookie() -> str:
    return "arsenal_test_" + secrets.token_hex(12)


def _start_node(spec: LaunchSpec) -> Node:
    """Through Arsenal's one launcher: its own process group, so teardown ends the node and its helpers."""
    process = BeamProcess.start(spec)
    return Node(sname=spec.alive, proc=process.proc, log_path=process.log_path)


def _stop_node(node: Node) -> None:
    if node.proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(node.proc.pid, signal.SIGTERM)
    try:
        node.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        kill_group(node.proc.pid)
        node.proc.wait(timeout=10)


@pytest.fixture
def erlang_node(built, cookie, tmp_path) -> Iterator[Node]:
    sname = f"arsenal_demo_erl_{_token()}"
    node = _start_node(
        LaunchSpec(
            alive=sname,
            cookie=cookie,
            code_paths=[ERL_EBIN],
            args=["-s", "arsenal_demo_erl", "start"],
            log_path=tmp_path / "erlang_node.log",
            cwd=ROOT,
        )
    )
    try:
        yield node
    finally:
        _stop_node(node)


@pytest.fixture
def elixir_node(built, cookie, tmp_path) -> Iterator[Node]:
    sname = f"arsenal_demo_{_token()}"
    node = _start_node(
        LaunchSpec(
            alive=sname,
            cookie=cookie,
            program="elixir",
            code_paths=[EX_EBIN],
            args=["-e", "{:ok, _} = Application.ensure_all_started(:arsenal_demo)", "--no-halt"],
            log_path=tmp_path / "elixir_node.log",
            cwd=EX_DIR,
        )
    )
    try:
        yield node
    finally:
        _stop_node(node)


# The probe: waits until the target is up (its top supervisor registered),
# then prints `reg NAME`, `child PATH ID TYPE STATUS REGNAME` for the whole
# supervision tree, and whatever `kv KEY VALUE` lines EXTRA prints.
PROBE = r"""
try
    [_, Host] = string:split(atom_to_list(node()), "@"),
    Target = list_to_atom("@TARGET@" ++ "@" ++ Host),
    Top = '@TOP@',
    Deadline = erlang:monotonic_time(millisecond) + @WAIT_MS@,
    WaitF = fun WaitLoop() ->
        Up = net_kernel:connect_node(Target)
             andalso is_pid(rpc:call(Target, erlang, whereis, [Top])),
        case Up of
            true -> ok;
            false ->
                case erlang:monotonic_time(millisecond) > Deadline of
                    true -> io:format("probe-error target-not-up~n"), halt(3);
                    false -> timer:sleep(200), WaitLoop()
                end
        end
    end,
    ok = WaitF(),
    timer:sleep(@SETTLE_MS@),
    Str = fun(T) when is_atom(T) -> atom_to_list(T);
             (T) -> lists:flatten(io_lib:format("~0p", [T]))
          end,
    Kv = fun(K, V) -> io:format("kv ~s ~s~n", [K, Str(V)]) end,
    Rpc = fun(M, F, A) -> rpc:call(Target, M, F, A, 10000) end,
    lists:foreach(fun(R) -> io:format("reg ~s~n", [R]) end, Rpc(erlang, registered, [])),
    WalkF = fun Walk(Path, Sup) ->
        lists:foreach(
            fun({Id, Pid, Type, _Mods}) ->
                {Status, Name} =
                    case is_pid(Pid) of
                        true ->
                            case Rpc(erlang, process_info, [Pid, registered_name]) of
                                {registered_name, N} -> {alive, N};
                                [] -> {alive, '-'};
                                _ -> {dead, '-'}
                            end;
                        false -> {Pid, '-'}
                    end,
                io:format("child ~s ~s ~s ~s ~s~n", [Path, Str(Id), Type, Str(Status), Name]),
                case {Type, Status} of
                    {supervisor, alive} -> Walk(Path ++ "/" ++ Str(Id), Pid);
                    _ -> ok
                end
            end,
            Rpc(supervisor, which_children, [Sup]))
    end,
    WalkF(Str(Top), Top),
    @EXTRA@
    ok
catch
    Class:Reason:Stack ->
        io:format("probe-error ~p:~p ~p~n", [Class, Reason, Stack]),
        halt(2)
end,
halt(0).
"""


def probe(target: Node, cookie: str, top: str, extra: str = "", settle_ms: int = 1500) -> ProbeResult:
    code = (
        PROBE.replace("@TARGET@", target.sname)
        .replace("@TOP@", top)
        .replace("@WAIT_MS@", str(WAIT_MS))
        .replace("@SETTLE_MS@", str(settle_ms))
        .replace("@EXTRA@", extra)
    )
    cmd = [
        "erl",
        "-sname",
        f"probe_{_token()}",
        "-setcookie",
        cookie,
        "-hidden",
        "-noshell",
        "-noinput",
        "-eval",
        code,
    ]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=WAIT_MS / 1000 + 60)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"probe timed out; node log:\n{target.log()}") from exc
    out = result.stdout + result.stderr
    assert result.returncode == 0 and "probe-error" not in out, (
        f"probe failed (rc={result.returncode}):\n{out}\nnode log:\n{target.log()}"
    )
    res = ProbeResult(output=out)
    for line in result.stdout.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "reg" and len(parts) == 2:
            res.registered.add(parts[1])
        elif parts[0] == "child" and len(parts) == 6:
            res.children.append((parts[1], parts[2], parts[3], parts[4], parts[5]))
        elif parts[0] == "kv" and len(parts) >= 3:
            res.kv.setdefault(parts[1], []).append(" ".join(parts[2:]))
    return res


ERLANG_EXTRA = r"""
    Infos = [Rpc(erlang, process_info, [P, [registered_name, memory, reductions]])
             || P <- Rpc(erlang, processes, [])],
    Named = [{N, M, R} || [{registered_name, N}, {memory, M}, {reductions, R}] <- Infos, N =/= []],
    {_, TopMem} = lists:max([{M, N} || {N, M, _} <- Named]),
    {_, TopRed} = lists:max([{R, N} || {N, _, R} <- Named]),
    Kv("top_memory", TopMem),
    Kv("top_reductions", TopRed),
    Mailbox = Rpc(erlang, whereis, [demo_busy_mailbox]),
    {message_queue_len, QLen} = Rpc(erlang, process_info, [Mailbox, message_queue_len]),
    Kv("mailbox_len", QLen),
    State = Rpc(arsenal_demo_erl, worker_state, [demo_worker_1]),
    Kv("worker_state_is_map", is_map(State)),
    Kv("worker_state_name", maps:get(name, State)),
    BigState = Rpc(arsenal_demo_erl, worker_state, [demo_big_state]),
    Kv("big_ballast", maps:get(ballast_heap, BigState)),
    {ok, Old} = Rpc(arsenal_demo_erl, crash, [demo_worker_2]),
    timer:sleep(500),
    New = Rpc(erlang, whereis, [demo_worker_2]),
    Kv("crash_restarted", is_pid(New) andalso New =/= Old),
    Kv("crash_unknown", Rpc(arsenal_demo_erl, crash, [no_such_process])),
"""


def test_erlang_demo_node(erlang_node: Node, cookie: str) -> None:
    res = probe(erlang_node, cookie, "arsenal_demo_erl_sup", ERLANG_EXTRA)
    expected = {
        "arsenal_demo_erl_sup",
        "demo_worker_1",
        "demo_worker_2",
        "demo_worker_3",
        "demo_big_state",
        "demo_busy_mailbox",
        "demo_spinner",
    }
    assert expected <= res.registered, res.output

    ids = {row[1] for row in res.children}
    assert ids == expected - {"arsenal_demo_erl_sup"}, res.output
    for path, child_id, ctype, status, name in res.children:
        assert path == "arsenal_demo_erl_sup"
        assert (ctype, status, name) == ("worker", "alive", child_id), res.output

    assert res.kv["top_memory"] == ["demo_big_state"], res.output
    assert res.kv["top_reductions"] == ["demo_spinner"], res.output
    assert 0 < int(res.kv["mailbox_len"][0]) <= 500, res.output
    assert res.kv["worker_state_is_map"] == ["true"]
    assert res.kv["worker_state_name"] == ["demo_worker_1"]
    assert res.kv["big_ballast"] == ["{ballast,2097152}"]
    assert res.kv["crash_restarted"] == ["true"], res.output
    assert res.kv["crash_unknown"] == ["{error,not_found}"]


ELIXIR_EXTRA = r"""
    Stats = fun() -> Rpc('Elixir.ArsenalDemo.LoadGenerator', stats, ['Elixir.ArsenalDemo.LoadGenerator']) end,
    #{tick := T0} = Stats(),
    timer:sleep(700),
    #{tick := T1, errors := Errors} = Stats(),
    Kv("load_ticks_moved", T1 > T0),
    Kv("load_errors", Errors),
    Kv("dynamic_children", Rpc(supervisor, count_children, ['Elixir.ArsenalDemo.DynamicWorkers'])),
    Strategy = fun(Sup) -> element(3, Rpc(sys, get_state, [Sup])) end,
    Kv("strategy_top", Strategy('Elixir.ArsenalDemo.Supervisor')),
    Kv("strategy_pair", Strategy('Elixir.ArsenalDemo.PairSupervisor')),
    Kv("strategy_service", Strategy('Elixir.ArsenalDemo.ServiceSupervisor')),
    Kv("counter", maps:get(counter, Rpc('Elixir.ArsenalDemo.StatefulWorker', get_state,
                                         ['Elixir.ArsenalDemo.Counter1']))),
    #{size := PoolSize} = Rpc('Elixir.ArsenalDemo.ResourceWorker', stats, [arsenal_demo_pool]),
    Kv("pool_size", PoolSize),
    #{state := Breaker} = Rpc('Elixir.ArsenalDemo.CascadeWorker', breaker_state, [arsenal_demo_cascade]),
    Kv("breaker", Breaker),
    #{subscribers := Subs} = Rpc('Elixir.ArsenalDemo.EventWorker', stats, [arsenal_demo_events]),
    Kv("event_subscribers", Subs),
"""


def test_elixir_demo_node(elixir_node: Node, cookie: str) -> None:
    res = probe(elixir_node, cookie, "Elixir.ArsenalDemo.Supervisor", ELIXIR_EXTRA)
    expected = {
        "Elixir.ArsenalDemo.Supervisor",
        "Elixir.ArsenalDemo.PairSupervisor",
        "Elixir.ArsenalDemo.Counter1",
        "Elixir.ArsenalDemo.Counter2",
        "Elixir.ArsenalDemo.ServiceSupervisor",
        "arsenal_demo_pool",
        "arsenal_demo_events",
        "arsenal_demo_cascade",
        "Elixir.ArsenalDemo.DynamicWorkers",
        "Elixir.ArsenalDemo.Dynamic1",
        "Elixir.ArsenalDemo.Dynamic2",
        "Elixir.ArsenalDemo.LoadGenerator",
    }
    assert expected <= res.registered, res.output

    for path, child_id, _ctype, status, _name in res.children:
        assert status == "alive", f"{path}/{child_id} is {status}:\n{res.output}"

    top = "Elixir.ArsenalDemo.Supervisor"
    assert {(p, i, t) for p, i, t, _s, _n in res.children if p == top} == {
        (top, "Elixir.ArsenalDemo.PairSupervisor", "supervisor"),
        (top, "Elixir.ArsenalDemo.ServiceSupervisor", "supervisor"),
        (top, "Elixir.ArsenalDemo.DynamicWorkers", "supervisor"),
        (top, "Elixir.ArsenalDemo.LoadGenerator", "worker"),
    }, res.output
    pair = f"{top}/Elixir.ArsenalDemo.PairSupervisor"
    service = f"{top}/Elixir.ArsenalDemo.ServiceSupervisor"
    dynamic = f"{top}/Elixir.ArsenalDemo.DynamicWorkers"

    def by_path(parent: str) -> list[str]:
        return [name for path, _i, _t, _s, name in res.children if path == parent]

    assert sorted(by_path(pair)) == ["Elixir.ArsenalDemo.Counter1", "Elixir.ArsenalDemo.Counter2"]
    # rest_for_one: which_children lists the children last-started first.
    assert by_path(service) == ["arsenal_demo_cascade", "arsenal_demo_events", "arsenal_demo_pool"]
    assert sorted(by_path(dynamic)) == ["Elixir.ArsenalDemo.Dynamic1", "Elixir.ArsenalDemo.Dynamic2"]

    assert res.kv["strategy_top"] == ["one_for_one"]
    assert res.kv["strategy_pair"] == ["one_for_all"]
    assert res.kv["strategy_service"] == ["rest_for_one"]
    assert "{workers,2}" in res.kv["dynamic_children"][0]
    assert res.kv["load_ticks_moved"] == ["true"], res.output
    assert res.kv["load_errors"] == ["0"], res.output
    assert int(res.kv["counter"][0]) > 0
    assert res.kv["pool_size"] == ["5"]
    assert res.kv["breaker"] == ["closed"]
    assert int(res.kv["event_subscribers"][0]) >= 1
