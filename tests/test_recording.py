"""Recording and replay against real nodes: the Elixir demo's StatefulWorker (ArsenalDemo.Counter1)
and EventWorker (:arsenal_demo_events), and throwaway Erlang nodes for what destroys state.

After every kind of ending the recorded process must hold no debug function of ours
(`_assert_no_hooks` asks the node through sys:get_status).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from arsenal.api import create_app
from arsenal.client import Arsenal
from arsenal.dist import Atom
from arsenal.ops.base import Principal
from arsenal.ops.errors import ErrorCode
from arsenal.ops.recording import RecordingManager

from .helpers import eval_erlang, fails

pytestmark = pytest.mark.timeout(180)

COUNTER = "ArsenalDemo.Counter1"
WORKER = Atom("Elixir.ArsenalDemo.StatefulWorker")
COUNTER_ATOM = Atom("Elixir.ArsenalDemo.Counter1")
EVENTS = Atom("arsenal_demo_events")

# A gen_server in plain Erlang for throwaway nodes: its state is a counter; cast {add, N},
# call get, info {set, N}; cast crash exits.
COUNTER_SRC = """
-module(rec_counter).
-behaviour(gen_server).
-export([start/1, init/1, handle_call/3, handle_cast/2, handle_info/2]).
start(Name) -> gen_server:start({local, Name}, ?MODULE, 0, []).
init(N) -> {ok, N}.
handle_call(get, _From, N) -> {reply, N, N}.
handle_cast({add, K}, N) -> {noreply, N + K};
handle_cast(crash, _N) -> exit(crashed_on_purpose).
handle_info({set, K}, _N) -> {noreply, K};
handle_info(_, N) -> {noreply, N}.
"""


async def _service(node: str, cookie: str, role: str = "admin") -> Arsenal:
    service = Arsenal(cookie=cookie, principal=Principal(name="test", role=role))
    await service.attach(node, reconnect=False)
    return service


@pytest_asyncio.fixture
async def ex(elixir, cookie) -> AsyncIterator[Arsenal]:
    service = await _service(elixir.name, cookie)
    yield service
    await service.close()


async def _hooks(service: Arsenal, node: str, target: bytes) -> list[Any]:
    reply = await service.pool.get(node).call("arsenal_agent_record", "debug_funs", [target])
    assert reply[0] == Atom("ok"), reply
    return list(reply[1])


async def _assert_no_hooks(service: Arsenal, node: str, target: bytes) -> None:
    hooks: list[Any] = []
    for _ in range(50):
        hooks = await _hooks(service, node, target)
        if not hooks:
            return
        await asyncio.sleep(0.1)
    assert hooks == []


async def _increment(service: Arsenal, node: str, by: int) -> int:
    return await service.pool.get(node).call(str(WORKER), "increment", [COUNTER_ATOM, by])  # type: ignore[no-any-return]


async def _counter(service: Arsenal, node: str) -> int:
    state = await service.pool.get(node).call("sys", "get_state", [COUNTER_ATOM])
    return state[Atom("counter")]  # type: ignore[no-any-return]


async def _erl_counters(service: Arsenal, node: str, directory: Any, *names: str) -> None:
    """Compile rec_counter from a file (a sandbox replay needs its object code) and start one
    registered under each name."""
    source = directory / "rec_counter.erl"
    source.write_text(COUNTER_SRC)
    starts = ", ".join(f"{{ok, _}} = rec_counter:start({n})" for n in names)
    await eval_erlang(
        service,
        node,
        f'{{ok, rec_counter}} = compile:file("{source}", [{{outdir, "{directory}"}}]), '
        f'true = code:add_patha("{directory}"), {{module, rec_counter}} = code:load_file(rec_counter), '
        f"{starts}, ok",
    )


async def _erl(service: Arsenal, node: str, source: str) -> Any:
    return await eval_erlang(service, node, source)


# ---------------------------------------------------------------------- recording


async def test_records_calls_casts_and_infos_with_states(ex, elixir):
    node = elixir.name
    start = await _counter(ex, node)
    started = await ex.run(
        "start_recording", {"pids": [COUNTER, "arsenal_demo_events"], "duration": 30}, node=node
    )
    assert started.status == "running" and len(started.targets) == 2
    assert len(await _hooks(ex, node, b"Elixir.ArsenalDemo.Counter1")) == 1
    conn = ex.pool.get(node)
    await _increment(ex, node, 5)
    await conn.call("erlang", "send", [COUNTER_ATOM, Atom("hello")])
    await asyncio.sleep(0.05)
    await conn.call("Elixir.ArsenalDemo.EventWorker", "publish", [EVENTS, b"nobody", 1])
    await _increment(ex, node, 2)
    await asyncio.sleep(0.3)  # the hub drains its buffer 5 ms after a publish (an info to itself)
    done = await ex.run("stop_recording", {"id": started.id})
    assert done.status == "finished" and done.end_reason == "stopped"
    assert done.stored_bytes and done.stored_bytes > 0
    await _assert_no_hooks(ex, node, b"Elixir.ArsenalDemo.Counter1")
    await _assert_no_hooks(ex, node, b"arsenal_demo_events")

    page = await ex.run("get_recording", {"id": started.id, "pid": COUNTER, "limit": 500}, node=node)
    target = next(t for t in page.targets if t.name == COUNTER)
    assert f"counter: {start}" in target.initial_state or page.steps[0].message == "{:increment, 1}"
    # The demo's load generator increments the counters too: find this test's three messages.
    mine = [s for s in page.steps if s.message in ("{:increment, 5}", ":hello", "{:increment, 2}")]
    assert [s.kind for s in mine] == ["call", "info", "call"], [s.message for s in page.steps]
    first, info, last = mine
    assert f"counter: {first.reply}," in first.state
    assert info.reply is None and info.from_ is None
    assert f"counter: {last.reply}," in last.state
    # Every increment's reply is the counter in the state after it, and the counters follow each
    # other. (Not every call: the load generator also has the cascade worker :ping the counter.)
    counters = [int(s.reply) for s in page.steps if s.kind == "call" and s.message.startswith("{:increment")]
    assert counters == sorted(counters) and counters[-1] - counters[0] >= 2

    events = await ex.run("get_recording", {"id": started.id, "pid": "arsenal_demo_events"}, node=node)
    cast = next(s for s in events.steps if s.message == '{:publish, "nobody", 1, :normal}')
    assert cast.kind == "cast" and "drain_scheduled: true" in cast.state
    drain = next(s for s in events.steps if s.step > cast.step and s.message == ":drain")
    assert drain.kind == "info" and "drain_scheduled: false" in drain.state
    everything = await ex.run("get_recording", {"id": started.id, "limit": 500}, node=node)
    assert [s.step for s in everything.steps] == list(range(1, everything.total + 1))
    listing = await ex.run("list_recordings", {"limit": 5})
    assert started.id in [r.id for r in listing.recordings]


async def test_max_steps_ends_it_and_removes_the_hooks(ex, elixir):
    node = elixir.name
    started = await ex.run("start_recording", {"pids": [COUNTER], "max_steps": 3, "duration": 30}, node=node)
    for _ in range(5):
        await _increment(ex, node, 1)
    manager = ex.services.get(RecordingManager)
    if started.id in manager.live:
        await manager.wait(manager.live[started.id], 20)
    info = await ex.run("get_recording", {"id": started.id}, node=node)
    assert info.recording.end_reason == "max_steps" and info.recording.steps == 3 and info.total == 3
    await _assert_no_hooks(ex, node, b"Elixir.ArsenalDemo.Counter1")


async def test_a_process_dying_ends_its_steps_with_exit(make_node, cookie, tmp_path):
    target = make_node("rec")
    service = await _service(target.name, cookie)
    try:
        await _erl_counters(service, target.name, tmp_path, "rc_a", "rc_b")
        started = await service.run("start_recording", {"pids": ["rc_a", "rc_b"], "duration": 30})
        await _erl(service, target.name, "gen_server:cast(rc_a, {add, 2}), gen_server:cast(rc_a, crash)")
        await _erl(
            service, target.name, "gen_server:cast(rc_b, {add, 5}), rec_counter = element(1, {rec_counter})"
        )
        await asyncio.sleep(0.2)
        await _erl(service, target.name, "5 = gen_server:call(rc_b, get)")
        done = await service.run("stop_recording", {"id": started.id})
        assert done.end_reason == "stopped"
        page = await service.run("get_recording", {"id": started.id, "pid": "rc_a"})
        assert [(s.kind, s.message) for s in page.steps] == [
            ("cast", "{add,2}"),
            ("exit", "crashed_on_purpose"),
        ]
        assert page.steps[0].state == "2"
        others = await service.run("get_recording", {"id": started.id, "pid": "rc_b"})
        assert [(s.kind, s.state, s.reply) for s in others.steps] == [("cast", "5", None), ("call", "5", "5")]
        await _assert_no_hooks(service, target.name, b"rc_b")
        # All recorded processes dead: the recording ends by itself.
        again = await service.run("start_recording", {"pids": ["rc_b"], "duration": 30})
        await _erl(service, target.name, "gen_server:cast(rc_b, crash)")
        manager = service.services.get(RecordingManager)
        if again.id in manager.live:
            await manager.wait(manager.live[again.id], 20)
        ended = await service.run("get_recording", {"id": again.id})
        assert ended.recording.end_reason == "processes_exited"
        assert [s.kind for s in ended.steps] == ["exit"]
    finally:
        await service.close()


async def test_owner_gone_removes_the_hooks(ex, elixir, cookie):
    node = elixir.name
    other = await _service(node, cookie)
    started = await other.run("start_recording", {"pids": [COUNTER], "duration": 60}, node=node)
    assert len(await _hooks(ex, node, b"Elixir.ArsenalDemo.Counter1")) == 1
    live = other.services.get(RecordingManager).live[started.id]
    await live.process.close()  # the recorder's owner goes away, as when Arsenal is killed
    await _assert_no_hooks(ex, node, b"Elixir.ArsenalDemo.Counter1")
    assert await ex.pool.get(node).call("erlang", "is_process_alive", [live.recorder]) is False
    await other.close()
    # Closing an Arsenal stops (and stores) its recordings.
    third = await _service(node, cookie)
    started = await third.run("start_recording", {"pids": [COUNTER], "duration": 60}, node=node)
    await third.close()
    await _assert_no_hooks(ex, node, b"Elixir.ArsenalDemo.Counter1")
    info = await ex.run("get_recording", {"id": started.id})
    assert info.recording.end_reason == "stopped"


async def test_refusals(ex, elixir, make_node, cookie):
    node = elixir.name
    await fails(ErrorCode.protected_process, ex.run("start_recording", {"pids": ["code_server"]}, node=node))
    err = await fails(
        ErrorCode.not_found, ex.run("start_recording", {"pids": ["no_such_process_x"]}, node=node)
    )
    assert "no_such_process_x" in err.message
    target = make_node("recx")
    service = await _service(target.name, cookie)
    try:
        await _erl(
            service, target.name, "register(rec_plain, spawn(fun() -> receive stop -> ok end end)), ok"
        )
        err = await fails(ErrorCode.validation_error, service.run("start_recording", {"pids": ["rec_plain"]}))
        assert "gen_server" in err.message
        assert (
            await _erl(
                service, target.name, "element(2, process_info(whereis(rec_plain), message_queue_len))"
            )
            == 0
        )
        await fails(ErrorCode.not_found, service.run("get_recording", {"id": "abcdef012345"}))
    finally:
        await service.close()


# ---------------------------------------------------------------------- replay


async def _recorded_erl(service: Arsenal, node: str, tmp_path: Any) -> str:
    """rec_counter `rc` recorded over: cast {add,1}, info {set,10}, cast {add,5}, call get."""
    await _erl_counters(service, node, tmp_path, "rc")
    started = await service.run("start_recording", {"pids": ["rc"], "duration": 30})
    await _erl(
        service,
        node,
        "gen_server:cast(rc, {add, 1}), rc ! {set, 10}, gen_server:cast(rc, {add, 5}), "
        "15 = gen_server:call(rc, get)",
    )
    await service.run("stop_recording", {"id": started.id})
    return started.id


async def test_replay_into_a_sandbox(make_node, cookie, tmp_path):
    target = make_node("recs")
    service = await _service(target.name, cookie)
    try:
        id = await _recorded_erl(service, target.name, tmp_path)
        same = await service.run("replay_recording", {"id": id, "pid": "rc", "target": "sandbox"})
        assert same.divergence is None and same.different_steps == 0 and same.ended == "completed"
        assert [s.outcome for s in same.steps] == ["same"] * 4 and same.sandbox is None
        modified = await service.run(
            "replay_recording",
            {
                "id": id,
                "pid": "rc",
                "target": "sandbox",
                "changes": [{"step": 3, "action": "modify", "message": {"$tuple": [{"$atom": "add"}, 7]}}],
            },
        )
        assert modified.first_change == 3
        divergence = modified.divergence
        assert divergence is not None and divergence.step == 3 and divergence.state_differs
        assert [(d.path, d.recorded, d.replayed) for d in divergence.diff] == [("(whole state)", "15", "17")]
        last = modified.steps[-1]
        assert (
            last.step == 4
            and last.reply_differs
            and (last.recorded_reply, last.replayed_reply) == ("15", "17")
        )
        dropped = await service.run(
            "replay_recording",
            {"id": id, "pid": "rc", "changes": [{"step": 1, "action": "drop"}], "to_step": 2},
        )
        # Dropping the first cast changes nothing after {set, 10}: no divergence, the drop is reported.
        assert dropped.first_change == 1 and dropped.divergence is None
        assert [(s.step, s.outcome) for s in dropped.steps] == [(1, "dropped"), (2, "same")]
        inserted = await service.run(
            "replay_recording",
            {
                "id": id,
                "pid": "rc",
                "from_step": 2,
                "changes": [
                    {
                        "step": 3,
                        "action": "insert",
                        "kind": "info",
                        "message": {"$tuple": [{"$atom": "set"}, 0]},
                    }
                ],
            },
        )
        assert [(s.step, s.change, s.outcome) for s in inserted.steps] == [
            (None, "inserted", "not_compared"),
            (3, None, "different"),
            (4, None, "different"),
        ]
        assert inserted.first_change == 3 and inserted.divergence is not None
        assert [(d.recorded, d.replayed) for d in inserted.divergence.diff] == [("15", "5")]
        # The live process was never touched by sandbox replays.
        assert await _erl(service, target.name, "gen_server:call(rc, get)") == 15
    finally:
        await service.close()


async def test_replay_into_the_live_process(make_node, cookie, tmp_path):
    target = make_node("recl")
    service = await _service(target.name, cookie)
    try:
        id = await _recorded_erl(service, target.name, tmp_path)
        await _erl(service, target.name, "rc ! {set, 1000}, ok")
        replayed = await service.run(
            "replay_recording", {"id": id, "pid": "rc", "target": "live", "to_step": 3}
        )
        assert replayed.divergence is None and [s.outcome for s in replayed.steps] == ["same"] * 3
        assert await _erl(service, target.name, "gen_server:call(rc, get)") == 15
        changed = await service.run(
            "replay_recording",
            {
                "id": id,
                "pid": "rc",
                "target": "live",
                "from_step": 1,
                "to_step": 3,
                "changes": [{"step": 2, "action": "modify", "message": {"$tuple": [{"$atom": "set"}, 20]}}],
            },
        )
        assert changed.divergence is not None and changed.divergence.step == 2
        assert await _erl(service, target.name, "gen_server:call(rc, get)") == 25
        await _assert_no_hooks(service, target.name, b"rc")
        # An atom the node does not know, in a modified message: refused, the process untouched.
        err = await fails(
            ErrorCode.validation_error,
            service.run(
                "replay_recording",
                {
                    "id": id,
                    "pid": "rc",
                    "target": "live",
                    "changes": [{"step": 1, "action": "modify", "message": {"$atom": "never_seen_atom_q7"}}],
                },
            ),
        )
        assert "atoms" in err.message
        assert await _erl(service, target.name, "gen_server:call(rc, get)") == 25
    finally:
        await service.close()


async def test_replay_the_demo_counter_in_a_sandbox(ex, elixir):
    node = elixir.name
    started = await ex.run("start_recording", {"pids": [COUNTER], "duration": 30}, node=node)
    await _increment(ex, node, 3)
    await _increment(ex, node, 4)
    await ex.run("stop_recording", {"id": started.id})
    page = await ex.run("get_recording", {"id": started.id, "limit": 500})
    mine = next(s for s in page.steps if s.message == "{:increment, 4}")
    same = await ex.run(
        "replay_recording",
        {"id": started.id, "pid": COUNTER, "ignore": ["history[*].at"], "to_step": mine.step},
        node=node,
    )
    assert same.divergence is None and same.ended == "completed", same.divergence
    modified = await ex.run(
        "replay_recording",
        {
            "id": started.id,
            "pid": COUNTER,
            "ignore": ["history[*].at"],
            "to_step": mine.step,
            "changes": [
                {"step": mine.step, "action": "modify", "message": {"$tuple": [{"$atom": "increment"}, 40]}}
            ],
        },
        node=node,
    )
    divergence = modified.divergence
    assert divergence is not None and divergence.step == mine.step and divergence.reply_differs
    paths = {d.path for d in divergence.diff}
    assert "counter" in paths, paths
    counter = next(d for d in divergence.diff if d.path == "counter")
    assert int(counter.replayed) - int(counter.recorded) == 36


# ---------------------------------------------------------------------- REST and CLI


async def test_rest(ex, elixir):
    app = create_app(ex, auth=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://arsenal.test") as client:
        started = await client.post(
            "/api/v1/recordings", json={"pids": ["arsenal_demo_events"], "duration": 0.5, "wait": True}
        )
        assert started.status_code == 200, started.text
        data = started.json()["data"]
        assert data["status"] == "finished" and data["end_reason"] == "duration"
        got = await client.get(f"/api/v1/recordings/{data['id']}", params={"limit": 5})
        assert got.status_code == 200 and got.json()["data"]["recording"]["id"] == data["id"]
        listed = await client.get("/api/v1/recordings")
        assert data["id"] in [r["id"] for r in listed.json()["data"]["recordings"]]
        stopped = await client.delete(f"/api/v1/recordings/{data['id']}")
        assert stopped.status_code == 200 and stopped.json()["data"]["end_reason"] == "duration"
        missing = await client.post("/api/v1/recordings/abcdef012345/replay", json={"pid": "x"})
        assert missing.status_code == 404
        bad = await client.post("/api/v1/recordings", json={"pids": []})
        assert bad.status_code in (400, 422)


def test_cli(make_node, cookie, tmp_path):
    target = make_node("reccli")
    env = {**os.environ, "ARSENAL_HOME": str(tmp_path / "home"), "ARSENAL_COOKIE": cookie}

    async def setup() -> None:
        service = await _service(target.name, cookie)
        try:
            await _erl_counters(service, target.name, tmp_path, "rc")
            await _erl(
                service,
                target.name,
                # Once the CLI's recording is installed (a debug function in rc), three messages.
                "Wait = fun W(0) -> timeout; W(N) -> {status, _, _, [_, _, _, D | _]} = sys:get_status(rc), "
                "case D of [] -> timer:sleep(20), W(N - 1); _ -> ok end end, "
                "spawn(fun() -> ok = Wait(1000), gen_server:cast(rc, {add, 2}), rc ! {set, 4}, "
                "gen_server:cast(rc, {add, 1}) end), ok",
            )
        finally:
            await service.close()

    asyncio.run(setup())
    command = [sys.executable, "-m", "arsenal"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*command, *args], capture_output=True, text=True, env=env, timeout=120)

    recorded = run("record", "rc", "--for", "3s", "-n", target.name, "--json")
    assert recorded.returncode == 0, recorded.stderr
    info = json.loads(recorded.stdout)
    assert info["steps"] == 3 and info["end_reason"] == "duration"
    listed = run("recordings")
    assert info["id"] in listed.stdout
    shown = run("recording", info["id"])
    assert shown.returncode == 0, shown.stderr
    assert "{add,2}" in shown.stdout and "state: 4" in shown.stdout and "state: 5" in shown.stdout
    replayed = run(
        "replay", info["id"], "--pid", "rc", "--live", "--modify", '3={"$tuple": [{"$atom": "add"}, 9]}'
    )
    assert replayed.returncode == 0, replayed.stderr
    assert "diverged at step 3" in replayed.stdout and "5 -> 13" in replayed.stdout
    missing = run("replay", "abcdef012345", "--pid", "rc")
    assert missing.returncode != 0 and "abcdef012345" in missing.stderr
