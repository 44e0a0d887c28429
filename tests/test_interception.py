"""Message interception against real nodes: rules that block, delay, modify and log what is sent to
a registered name, every way an interception ends, and the name given back with nothing lost.

On the plain Erlang nodes each test registers its own recorder process (it keeps every message
it receives, in order, and answers gen_server calls with ``{echo, Request}``); on the Elixir demo
the EventWorker (``:arsenal_demo_events``) and the StatefulWorker ``ArsenalDemo.Counter1``.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from httpx_ws import aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport

from arsenal.api import create_app
from arsenal.client import Arsenal
from arsenal.dist import Atom, Pid
from arsenal.ops.base import Principal
from arsenal.ops.errors import ErrorCode
from arsenal.ops.interception import InterceptionManager
from arsenal.ops.plain import pid_text
from arsenal.ops.trace_patterns import TracePatternError, parse_message_pattern

from .helpers import eval_erlang, fails
from .nodes import ROOT

pytestmark = pytest.mark.timeout(120)

# The recorder: keeps what it receives, answers calls, hands its list to {get, From} sent to its pid.
RECORDER = """
    Loop = fun L(Acc) ->
        receive
            {'$arsenal_test_get', From} -> From ! {'$arsenal_test_got', lists:reverse(Acc)}, L(Acc);
            {'$gen_call', From, Req} -> gen:reply(From, {echo, Req}), L([{call, Req} | Acc]);
            M -> L([M | Acc])
        end
    end,
    P = spawn(fun() -> Loop([]) end),
    register({name}, P),
    P
"""
# Atoms the tests' patterns name: they must exist on the node before a pattern may name them.
ATOMS = "[drop, slow, swap, swapped, logme, seq, ping, echo, call, stop_here]"


async def _service(node: str, cookie: str, role: str = "admin") -> Arsenal:
    service = Arsenal(cookie=cookie, principal=Principal(name="test", role=role))
    await service.attach(node, reconnect=False)
    return service


@pytest_asyncio.fixture
async def service(erl, cookie) -> AsyncIterator[Arsenal]:
    arsenal = await _service(erl.name, cookie)
    await eval_erlang(arsenal, erl.name, ATOMS)
    yield arsenal
    await arsenal.close()


async def _recorder(service: Arsenal, node: str) -> tuple[str, Pid]:
    name = f"arsenal_rec_{secrets.token_hex(4)}"
    pid = await eval_erlang(service, node, RECORDER.replace("{name}", name))
    return name, pid


async def _recorded(service: Arsenal, node: str, pid: Pid) -> list[Any]:
    """What the recorder received, asked through its pid (which the proxy never sits in front of)."""
    return await eval_erlang(
        service,
        node,
        f"""P = list_to_pid("{pid_text(pid)}"), P ! {{'$arsenal_test_get', self()}},
            receive {{'$arsenal_test_got', L}} -> L after 5000 -> timeout end""",
    )


async def _until(service: Arsenal, node: str, pid: Pid, count: int) -> list[Any]:
    got: list[Any] = []
    for _ in range(100):
        got = await _recorded(service, node, pid)
        if len(got) >= count:
            return got
        await asyncio.sleep(0.05)
    return got


async def _send(service: Arsenal, node: str, name: str, messages: str) -> None:
    """Send messages (Erlang terms) to the name, in order, from one process."""
    await eval_erlang(service, node, f"[{name} ! M || M <- {messages}], ok")


async def _whereis(service: Arsenal, node: str, name: str) -> Any:
    return await eval_erlang(service, node, f"whereis({name})")


async def _alive(service: Arsenal, node: str, pid: Pid) -> bool:
    return await eval_erlang(service, node, f'is_process_alive(list_to_pid("{pid_text(pid)}"))')


async def _ended(service: Arsenal, interception_id: str) -> dict[str, Any]:
    manager = service.services.get(InterceptionManager)
    await manager.wait(manager.get(interception_id), 15)
    return (await service.run("get_interception", {"id": interception_id})).model_dump()


async def _assert_restored(service: Arsenal, node: str, name: str, real: Pid, proxy: str) -> None:
    """The name is the real process's again and the proxy is gone."""
    assert await _whereis(service, node, name) == real
    assert not await eval_erlang(service, node, f'is_process_alive(list_to_pid("{proxy}"))')


# ---------------------------------------------------------------------- patterns


def test_message_patterns_in_both_syntaxes() -> None:
    erlang = parse_message_pattern("{inc, N} when N > 5", "erlang").match_spec
    elixir = parse_message_pattern("{:inc, n} when n > 5", "elixir").match_spec
    assert erlang == elixir == [(((Atom("inc"), Atom("$1")),), [(Atom(">"), Atom("$1"), 5)], [True])]
    call = parse_message_pattern("call {:increment, _}", "elixir").match_spec
    assert call[0][0] == ((Atom("$gen_call"), Atom("_"), (Atom("increment"), Atom("_"))),)
    cast = parse_message_pattern('cast {publish, <<"t">>, _, _}', "erlang")
    assert cast.match_spec[0][0][0][0] == Atom("$gen_cast") and "publish" in cast.atoms()
    assert parse_message_pattern("call", "erlang").match_spec[0][0] == (Atom("call"),)  # the atom itself
    assert parse_message_pattern(':"$gen_call"', "elixir").match_spec[0][0] == (Atom("$gen_call"),)
    for bad, flavour in (
        ("{a, ", "erlang"),
        ('{:a, :"$1"}', "elixir"),
        ("x when Y > 1", "erlang"),
        ("", "erlang"),
    ):
        with pytest.raises(TracePatternError):
            parse_message_pattern(bad, flavour)


# ---------------------------------------------------------------------- the rules


async def test_block_modify_log_and_calls_through_the_name(service, erl) -> None:
    name, real = await _recorder(service, erl.name)
    started = await service.run(
        "intercept_messages",
        {
            "pid": name,
            "rules": [
                {"pattern": "{drop, _}", "action": "block"},
                {"pattern": "swap", "action": "modify", "replacement": {"$tuple": [{"$atom": "swapped"}, 1]}},
                {"pattern": "{logme, N} when is_integer(N), N > 1", "action": "log"},
                {"pattern": "call {ping, _}", "action": "log"},
            ],
        },
    )
    assert started.name == name and started.pid == pid_text(real) and started.status == "running"
    assert await _whereis(service, erl.name, name) != real  # the proxy holds the name meanwhile

    await _send(service, erl.name, name, "[a, {drop, 1}, swap, {logme, 1}, {logme, 2}, {drop, 2}, b]")
    # A call through the name: the proxy forwards it unchanged, the real process replies directly.
    reply = await eval_erlang(service, erl.name, f"gen_server:call({name}, {{ping, 7}}, 5000)")
    assert reply == (Atom("echo"), (Atom("ping"), 7))

    got = await _until(service, erl.name, real, 6)
    assert got == [
        Atom("a"),
        (Atom("swapped"), 1),
        (Atom("logme"), 1),
        (Atom("logme"), 2),
        Atom("b"),
        (Atom("call"), (Atom("ping"), 7)),
    ]
    await asyncio.sleep(0.3)  # reports come in batches every 100 ms
    detail = (await service.run("get_interception", {"id": started.id})).model_dump()
    assert [(e["action"], e["rule"]) for e in detail["events"]] == [
        ("block", 1),
        ("modify", 2),
        ("log", 3),
        ("block", 1),
        ("log", 4),
    ]
    assert [e["seq"] for e in detail["events"]] == [1, 2, 3, 4, 5]
    assert detail["events"][0]["message"] == "{drop,1}"
    assert detail["events"][1]["replacement"] == "{swapped,1}"
    counters = detail["counters"]
    assert (counters["blocked"], counters["modified"], counters["logged"]) == (2, 1, 2)
    assert counters["passed"] == 3  # a, {logme, 1} (its guard failed), b

    stopped = await service.run("stop_interception", {"id": started.id})
    assert stopped.status == "finished" and stopped.end_reason == "stopped" and stopped.restored
    await _assert_restored(service, erl.name, name, real, started.proxy)
    listed = await service.run("list_interceptions", {})
    assert started.id in [i.id for i in listed.interceptions]


async def test_delay_holds_what_follows_and_stop_forwards_in_order(service, erl) -> None:
    name, real = await _recorder(service, erl.name)
    started = await service.run(
        "intercept_messages",
        {"pid": name, "rules": [{"pattern": "{slow, N} when N > 0", "action": "delay", "delay_ms": 10000}]},
    )
    await _send(service, erl.name, name, "[a, {slow, 0}, {slow, 1}, b, c]")
    manager = service.services.get(InterceptionManager)
    live = manager.get(started.id)
    for _ in range(100):  # the delay is reported as it starts
        if live.events:
            break
        await asyncio.sleep(0.05)
    assert [e["action"] for e in live.events] == ["delay"] and live.events[0]["delay_ms"] == 10000
    # Held: {slow, 1} and everything after it wait; what came before went through.
    assert await _recorded(service, erl.name, real) == [Atom("a"), (Atom("slow"), 0)]
    # Ending forwards the held message first, then the rest, in order.
    await service.run("stop_interception", {"id": started.id})
    got = await _until(service, erl.name, real, 5)
    assert got == [Atom("a"), (Atom("slow"), 0), (Atom("slow"), 1), Atom("b"), Atom("c")]
    await _assert_restored(service, erl.name, name, real, started.proxy)


async def test_delay_then_deliver_in_order(service, erl) -> None:
    name, real = await _recorder(service, erl.name)
    started = await service.run(
        "intercept_messages",
        {"pid": name, "rules": [{"pattern": "{slow, _}", "action": "delay", "delay_ms": 200}]},
    )
    await _send(service, erl.name, name, "[{seq, 1}, {slow, 2}, {seq, 3}, {slow, 4}, {seq, 5}]")
    got = await _until(service, erl.name, real, 5)
    assert got == [(Atom("seq"), 1), (Atom("slow"), 2), (Atom("seq"), 3), (Atom("slow"), 4), (Atom("seq"), 5)]
    await service.run("stop_interception", {"id": started.id})
    await _assert_restored(service, erl.name, name, real, started.proxy)


# ---------------------------------------------------------------------- endings


SENDER = """
    %% Sends {seq, 1..N} to the name, pausing 1 ms every 20, retrying a send that finds the
    %% name unregistered for an instant (the name moving between proxy and process).
    Send = fun S(M, Tries) ->
        try {name} ! M, ok
        catch error:badarg when Tries > 0 -> timer:sleep(1), S(M, Tries - 1)
        end
    end,
    spawn(fun() ->
        [begin Send({seq, I}, 1000), case I rem 20 of 0 -> timer:sleep(1); _ -> ok end end
         || I <- lists:seq(1, {count})]
    end),
    ok
"""


async def test_ending_by_duration_loses_and_reorders_nothing(service, erl) -> None:
    name, real = await _recorder(service, erl.name)
    started = await service.run(
        "intercept_messages",
        {
            "pid": name,
            "duration": 0.3,
            "rules": [{"pattern": "{seq, N} when N rem 7 =:= 0", "action": "log"}],
        },
    )
    count = 3000  # about 150 ms of sending at the least: it spans the end
    await eval_erlang(service, erl.name, SENDER.replace("{name}", name).replace("{count}", str(count)))
    ended = await _ended(service, started.id)
    assert ended["end_reason"] == "max_ms" and ended["restored"] is True
    got = await _until(service, erl.name, real, count)
    assert got == [(Atom("seq"), i) for i in range(1, count + 1)]
    await _assert_restored(service, erl.name, name, real, started.proxy)


async def test_ending_when_the_owner_goes_away(erl, cookie) -> None:
    keeper = await _service(erl.name, cookie)
    try:
        await eval_erlang(keeper, erl.name, ATOMS)
        name, real = await _recorder(keeper, erl.name)
        other = await _service(erl.name, cookie)
        started = await other.run(
            "intercept_messages", {"pid": name, "rules": [{"pattern": "{drop, _}", "action": "block"}]}
        )
        await _send(keeper, erl.name, name, "[{drop, 1}, a]")
        assert await _until(keeper, erl.name, real, 1) == [Atom("a")]
        await other.pool.close()  # the connection drops: the node ends the interception by itself
        for _ in range(100):
            if await _whereis(keeper, erl.name, name) == real:
                break
            await asyncio.sleep(0.05)
        await _assert_restored(keeper, erl.name, name, real, started.proxy)
        await _send(keeper, erl.name, name, "[{drop, 2}]")  # no rule any more
        assert await _until(keeper, erl.name, real, 2) == [Atom("a"), (Atom("drop"), 2)]
        await other.close()
    finally:
        await keeper.close()


async def test_ending_when_the_arsenal_closes(erl, cookie) -> None:
    keeper = await _service(erl.name, cookie)
    try:
        name, real = await _recorder(keeper, erl.name)
        other = await _service(erl.name, cookie)
        started = await other.run(
            "intercept_messages", {"pid": name, "rules": [{"pattern": "{drop, _}", "action": "block"}]}
        )
        await other.close()  # closing stops its interceptions
        await _assert_restored(keeper, erl.name, name, real, started.proxy)
    finally:
        await keeper.close()


async def test_ending_when_the_process_is_killed(service, erl) -> None:
    name, real = await _recorder(service, erl.name)
    started = await service.run(
        "intercept_messages", {"pid": name, "rules": [{"pattern": "{drop, _}", "action": "block"}]}
    )
    await eval_erlang(service, erl.name, f'exit(list_to_pid("{pid_text(real)}"), kill)')
    ended = await _ended(service, started.id)
    assert ended["end_reason"] == "process_exited" and ended["restored"] is False
    assert await _whereis(service, erl.name, name) == Atom("undefined")  # the name went with the process
    assert not await eval_erlang(service, erl.name, f'is_process_alive(list_to_pid("{started.proxy}"))')


async def test_a_killed_proxy_gives_the_name_back(service, erl) -> None:
    name, real = await _recorder(service, erl.name)
    started = await service.run(
        "intercept_messages", {"pid": name, "rules": [{"pattern": "{drop, _}", "action": "block"}]}
    )
    await eval_erlang(service, erl.name, f'exit(list_to_pid("{started.proxy}"), kill)')
    ended = await _ended(service, started.id)
    assert ended["end_reason"] == "proxy_down"
    for _ in range(100):  # the janitor re-registers the name
        if await _whereis(service, erl.name, name) == real:
            break
        await asyncio.sleep(0.05)
    assert await _whereis(service, erl.name, name) == real


async def test_mailbox_guard_stops_intercepting(make_node, cookie) -> None:
    node = make_node("icpt")
    service = await _service(node.name, cookie)
    try:
        await eval_erlang(service, node.name, ATOMS)
        name, real = await _recorder(service, node.name)
        started = await service.run(
            "intercept_messages",
            {"pid": name, "rules": [{"pattern": "{slow, _}", "action": "delay", "delay_ms": 10000}]},
        )
        # One held message, then more than 10 000 behind it: the proxy gives up rather than grow.
        await eval_erlang(
            service, node.name, f"{name} ! {{slow, 0}}, [{name} ! {{seq, I}} || I <- lists:seq(1, 12000)], ok"
        )
        ended = await _ended(service, started.id)
        assert ended["end_reason"] == "queue_overflow" and ended["restored"] is True
        got = await _until(service, node.name, real, 12001)
        assert got == [(Atom("slow"), 0)] + [(Atom("seq"), i) for i in range(1, 12001)]
        await _assert_restored(service, node.name, name, real, started.proxy)
    finally:
        await service.close()


# ---------------------------------------------------------------------- refusals


async def test_refusals(service, erl) -> None:
    unnamed = await eval_erlang(service, erl.name, "spawn(fun() -> receive stop -> ok end end)")
    error = await fails(
        ErrorCode.validation_error,
        service.run(
            "intercept_messages", {"pid": pid_text(unnamed), "rules": [{"pattern": "x", "action": "log"}]}
        ),
    )
    assert "registered name" in error.message and "pid" in error.message

    name, real = await _recorder(service, erl.name)
    atom = "arsenal_no_such_atom_" + secrets.token_hex(4)
    error = await fails(
        ErrorCode.validation_error,
        service.run(
            "intercept_messages", {"pid": name, "rules": [{"pattern": f"{{{atom}, _}}", "action": "block"}]}
        ),
    )
    assert atom in error.message
    exists = await eval_erlang(
        service,
        erl.name,
        f'try binary_to_existing_atom(<<"{atom}">>, utf8) of _ -> yes catch error:badarg -> no end',
    )
    assert exists == Atom("no")
    assert await _whereis(service, erl.name, name) == real  # untouched

    bad = await fails(
        ErrorCode.validation_error,
        service.run("intercept_messages", {"pid": name, "rules": [{"pattern": "{a, ", "action": "log"}]}),
    )
    assert "rule 1" in bad.message
    await fails(
        ErrorCode.validation_error,
        service.run("intercept_messages", {"pid": name, "rules": [{"pattern": "a", "action": "delay"}]}),
    )
    await fails(
        ErrorCode.protected_process,
        service.run(
            "intercept_messages", {"pid": "code_server", "rules": [{"pattern": "x", "action": "log"}]}
        ),
    )
    await fails(
        ErrorCode.not_found,
        service.run(
            "intercept_messages", {"pid": "arsenal_nobody_here", "rules": [{"pattern": "x", "action": "log"}]}
        ),
    )
    started = await service.run(
        "intercept_messages", {"pid": name, "rules": [{"pattern": "x", "action": "log"}]}
    )
    again = await fails(
        ErrorCode.conflict,
        service.run("intercept_messages", {"pid": name, "rules": [{"pattern": "x", "action": "log"}]}),
    )
    assert pid_text(real) in again.message
    await service.run("stop_interception", {"id": started.id})
    await _assert_restored(service, erl.name, name, real, started.proxy)
    await fails(ErrorCode.not_found, service.run("get_interception", {"id": "abcdef123456"}))


# ---------------------------------------------------------------------- the Elixir demo


async def _ex(service: Arsenal, node: str, module: str, function: str, args: list[Any]) -> Any:
    return await service.pool.get(node).call(f"Elixir.ArsenalDemo.{module}", function, args)


async def test_elixir_event_worker_block_and_modify(elixir, cookie) -> None:
    service = await _service(elixir.name, cookie)
    events = Atom("arsenal_demo_events")
    try:
        real = await service.pool.get(elixir.name).call("erlang", "whereis", [events])
        tag = secrets.token_hex(4)
        blocked, passed, changed = (
            f"arsenal.test.{k}.{tag}".encode() for k in ("blocked", "passed", "changed")
        )
        started = await service.run(
            "intercept_messages",
            {
                "pid": "arsenal_demo_events",
                "rules": [
                    {"pattern": f'cast {{:publish, "arsenal.test.blocked.{tag}", _, _}}', "action": "block"},
                    {
                        "pattern": f'cast {{:publish, "arsenal.test.modify.{tag}", _, _}}',
                        "action": "modify",
                        "replacement": {
                            "$tuple": [
                                {"$atom": "$gen_cast"},
                                {"$tuple": [{"$atom": "publish"}, changed.decode(), 42, {"$atom": "normal"}]},
                            ]
                        },
                    },
                ],
            },
        )
        assert started.name == ":arsenal_demo_events"
        for topic in (blocked, f"arsenal.test.modify.{tag}".encode(), passed):
            await _ex(service, elixir.name, "EventWorker", "publish", [events, topic, 1])
        # Topics nobody subscribes to are dead-lettered: the state shows what arrived.
        topics: list[bytes] = []
        for _ in range(100):
            letters = await _ex(service, elixir.name, "EventWorker", "dead_letters", [events])
            topics = [letter[Atom("topic")] for letter in letters]
            if passed in topics:
                break
            await asyncio.sleep(0.05)
        assert passed in topics and changed in topics
        assert blocked not in topics and f"arsenal.test.modify.{tag}".encode() not in topics
        letters = await _ex(service, elixir.name, "EventWorker", "dead_letters", [events])
        assert next(x for x in letters if x[Atom("topic")] == changed)[Atom("payload")] == 42
        await service.run("stop_interception", {"id": started.id})
        assert await service.pool.get(elixir.name).call("erlang", "whereis", [events]) == real
    finally:
        await service.close()


async def test_elixir_counter_calls_through_the_name(elixir, cookie) -> None:
    service = await _service(elixir.name, cookie)
    counter = Atom("Elixir.ArsenalDemo.Counter1")
    try:
        real = await service.pool.get(elixir.name).call("erlang", "whereis", [counter])
        started = await service.run(
            "intercept_messages",
            {
                "pid": "ArsenalDemo.Counter1",
                "rules": [{"pattern": "call {:increment, 1000}", "action": "log"}],
            },
        )
        assert started.name == "ArsenalDemo.Counter1" and started.pid == pid_text(real)
        before = await _ex(service, elixir.name, "StatefulWorker", "increment", [counter, 1000])
        assert isinstance(before, int)
        manager = service.services.get(InterceptionManager)
        live = manager.get(started.id)
        for _ in range(100):
            if live.events:
                break
            await asyncio.sleep(0.05)
        assert live.events[0]["action"] == "log" and "1000" in live.events[0]["message"]
        await service.run("stop_interception", {"id": started.id})
        assert await service.pool.get(elixir.name).call("erlang", "whereis", [counter]) == real
    finally:
        await service.close()


# ---------------------------------------------------------------------- REST, WebSocket, CLI


async def test_rest_and_websocket(service, erl) -> None:
    name, real = await _recorder(service, erl.name)
    app = create_app(service, auth=False)
    transport = ASGIWebSocketTransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://arsenal.test") as client:
        started = await client.post(
            f"/api/v1/processes/{name}/intercept",
            json={"rules": [{"pattern": "{drop, _}", "action": "block"}], "duration": 30},
        )
        assert started.status_code == 200, started.text
        data = started.json()["data"]
        interception_id = data["id"]
        assert data["name"] == name and data["status"] == "running"
        async with aconnect_ws("http://arsenal.test/api/v1/ws", client) as ws:
            await ws.send_text(json.dumps({"subscribe": f"intercept:{interception_id}"}))
            assert json.loads(await asyncio.wait_for(ws.receive_text(), 10))["type"] == "subscribed"
            await _send(service, erl.name, name, "[{drop, 1}, a]")
            message = json.loads(await asyncio.wait_for(ws.receive_text(), 10))
            assert message["type"] == "intercept"
            assert message["data"]["events"][0]["action"] == "block"
            assert message["data"]["events"][0]["message"] == "{drop,1}"
            listed = await client.get("/api/v1/interceptions")
            assert interception_id in [i["id"] for i in listed.json()["data"]["interceptions"]]
            stopped = await client.delete(f"/api/v1/interceptions/{interception_id}")
            assert stopped.status_code == 200 and stopped.json()["data"]["restored"] is True
            while True:
                message = json.loads(await asyncio.wait_for(ws.receive_text(), 10))
                if message["type"] == "intercept_end":
                    assert message["data"]["reason"] == "stopped" and message["data"]["restored"] is True
                    break
            await ws.send_text(json.dumps({"subscribe": f"intercept:{interception_id}"}))
            gone = json.loads(await asyncio.wait_for(ws.receive_text(), 10))
            assert gone["type"] == "error" and gone["errors"][0]["code"] == "not_found"
        detail = await client.get(f"/api/v1/interceptions/{interception_id}")
        assert detail.json()["data"]["counters"]["blocked"] == 1
        unnamed = await eval_erlang(service, erl.name, "spawn(fun() -> receive stop -> ok end end)")
        refused = await client.post(
            f"/api/v1/processes/{pid_text(unnamed)}/intercept",
            json={"rules": [{"pattern": "x", "action": "log"}]},
        )
        assert refused.status_code == 422 and "registered name" in refused.json()["errors"][0]["detail"]
    assert await _recorded(service, erl.name, real) == [Atom("a")]
    await _assert_restored(service, erl.name, name, real, data["proxy"])


def test_cli_intercepts_until_its_end_and_restores(erl, cookie) -> None:
    async def setup() -> tuple[str, Pid]:
        service = await _service(erl.name, cookie)
        try:
            await eval_erlang(service, erl.name, ATOMS)
            return await _recorder(service, erl.name)
        finally:
            await service.close()

    name, real = asyncio.run(setup())
    env = {**os.environ, "ARSENAL_COOKIE": cookie, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "arsenal",
            "intercept",
            name,
            "--block",
            "{drop, _}",
            "--delay",
            "{slow, _}=50",
            "--for",
            "60s",
            "--json",
            "--node",
            erl.name,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )

    async def poke() -> None:
        service = await _service(erl.name, cookie)
        try:
            for _ in range(200):  # until the proxy holds the name
                if await _whereis(service, erl.name, name) != real:
                    break
                await asyncio.sleep(0.05)
            await _send(service, erl.name, name, "[{drop, 1}, {slow, 2}, a]")
        finally:
            await service.close()

    try:
        asyncio.run(poke())
        first = json.loads(proc.stdout.readline())
        second = json.loads(proc.stdout.readline())
        assert (first["action"], first["message"]) == ("block", "{drop,1}")
        assert (second["action"], second["delay_ms"]) == ("delay", 50)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    summary = json.loads(stderr.decode().strip().splitlines()[-1])["summary"]
    assert summary["restored"] is True and summary["blocked"] == 1 and summary["delayed"] == 1

    async def check() -> None:
        service = await _service(erl.name, cookie)
        try:
            assert await _whereis(service, erl.name, name) == real
            assert await _until(service, erl.name, real, 2) == [(Atom("slow"), 2), Atom("a")]
        finally:
            await service.close()

    asyncio.run(check())
