"""The distribution client against real OTP nodes: rpc, processes, monitors, links, failures."""

from __future__ import annotations

import asyncio
import socket

import pytest

from arsenal.dist import (
    Atom,
    CookieRejected,
    DistTimeout,
    EpmdUnreachable,
    HandshakeError,
    LocalNode,
    NodeDown,
    NodeNotFound,
    Pid,
    Ref,
    RpcError,
    charlist,
)

pytestmark = pytest.mark.timeout(60)

A = Atom


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_rpc_both_ways_return_the_same(local: LocalNode, erl) -> None:
    conn = await local.connect(erl.name)
    assert await conn.rpc("erlang", "node", via="erpc") == A(erl.name)
    assert await conn.rpc("erlang", "node", via="rex") == A(erl.name)
    assert await conn.rpc("lists", "seq", [1, 5]) == [1, 2, 3, 4, 5]
    assert await conn.rpc("erlang", "nodes", [A("hidden")]) == [local.name]


async def test_rpc_error_kinds_are_told_apart(local: LocalNode, erl) -> None:
    conn = await local.connect(erl.name)
    with pytest.raises(RpcError) as err:
        await conn.rpc("erlang", "error", [A("boom")])
    assert (err.value.kind, err.value.reason) == ("error", A("boom"))
    assert isinstance(err.value.stacktrace, list)
    with pytest.raises(RpcError) as thrown:
        await conn.rpc("erlang", "throw", [42])
    assert (thrown.value.kind, thrown.value.reason) == ("throw", 42)
    with pytest.raises(RpcError) as exited:
        await conn.rpc("erlang", "exit", [A("bye")])
    assert (exited.value.kind, exited.value.reason) == ("exit", A("bye"))
    with pytest.raises(RpcError) as undef:
        await conn.rpc("no_such_module_xyz", "f", [])
    assert undef.value.reason == A("undef")
    with pytest.raises(RpcError) as badrpc:
        await conn.rpc("erlang", "error", [A("boom")], via="rex")
    assert badrpc.value.kind == "badrpc" and badrpc.value.reason == A("boom")


async def test_many_concurrent_calls_on_one_connection(local: LocalNode, erl) -> None:
    conn = await local.connect(erl.name)
    results = await asyncio.gather(
        *(conn.rpc("erlang", "abs", [-i], via="erpc" if i % 2 else "rex") for i in range(2000))
    )
    assert results == list(range(2000))


async def test_a_timed_out_erpc_call_is_stopped_on_the_node(local: LocalNode, erl) -> None:
    conn = await local.connect(erl.name)
    marker = A("arsenal_test_sleeper")
    # The remote call registers itself, then sleeps far past our timeout.
    with pytest.raises(DistTimeout):
        await conn.rpc("arsenal_test_support", "register_and_sleep", [marker, 60_000], timeout=0.5)
    for _ in range(100):
        if await conn.rpc("erlang", "whereis", [marker]) == A("undefined"):
            break
        await asyncio.sleep(0.05)
    assert await conn.rpc("erlang", "whereis", [marker]) == A("undefined")


async def test_output_of_a_call_comes_back_and_is_answered(local: LocalNode, erl) -> None:
    conn = await local.connect(erl.name)
    assert await conn.rpc("io", "put_chars", [b"hello from the node\n"]) == A("ok")
    assert "hello from the node\n" in conn.stats.remote_output
    assert await conn.rpc("io", "format", [charlist("~p~n"), [42]]) == A("ok")


async def test_connection_is_shared_and_concurrent_connects_coalesce(local: LocalNode, erl) -> None:
    first, second = await asyncio.gather(local.connect(erl.name), local.connect(erl.name))
    assert first is second
    assert await local.connect(erl.name) is first


async def test_the_node_dying_fails_every_pending_call_at_once(local: LocalNode, make_node) -> None:
    node = make_node("doomed")
    conn = await local.connect(node.name)
    calls = [asyncio.create_task(conn.rpc("timer", "sleep", [60_000], timeout=50)) for _ in range(10)]
    calls.append(asyncio.create_task(conn.rpc("timer", "sleep", [60_000], timeout=50, via="rex")))
    await asyncio.sleep(0.3)
    node.kill()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, NodeDown) for r in results), results
    assert conn.closed
    with pytest.raises(NodeDown):
        await conn.rpc("erlang", "node")


async def test_ticks_keep_an_idle_connection_alive(local: LocalNode, make_node) -> None:
    # With net_ticktime 2 the node drops a peer that stays silent for about 2 s.
    node = make_node("ticky", extra=["-kernel", "net_ticktime", "2"])
    conn = await local.connect(node.name)
    await asyncio.sleep(5)
    assert not conn.closed
    assert await conn.rpc("erlang", "node") == A(node.name)
    assert conn.stats.ticks_in > 0


async def test_wrong_cookie_is_named_plainly(erl) -> None:
    async with LocalNode(cookie="not-the-cookie") as local:
        with pytest.raises(CookieRejected, match="cookie"):
            await local.connect(erl.name)


async def test_unknown_node_and_missing_epmd(local: LocalNode) -> None:
    with pytest.raises(NodeNotFound, match="no node named"):
        await local.connect("nobody_here_xyz")
    with pytest.raises(EpmdUnreachable, match="EPMD"):
        await local.connect("anyone", epmd_port=_free_port())


async def test_monitor_a_pid_and_a_registered_name(local: LocalNode, erl) -> None:
    conn = await local.connect(erl.name)
    proc = local.spawn()
    pid = await conn.rpc("erlang", "spawn", [A("timer"), A("sleep"), [100]])
    ref = await proc.monitor(pid)
    assert await proc.receive(timeout=5) == (A("DOWN"), ref, A("process"), pid, A("normal"))

    name = A("arsenal_test_named")
    named = await conn.rpc("arsenal_test_support", "register_and_sleep_async", [name, 60_000])
    assert isinstance(named, Pid)
    ref2 = await proc.monitor((name, conn.peer))
    await conn.rpc("erlang", "exit", [named, A("kill")])
    down = await proc.receive(timeout=5)
    assert down[:3] == (A("DOWN"), ref2, A("process")) and down[3] == (name, conn.peer)
    assert down[4] == A("killed")

    ref3 = await proc.monitor((A("no_such_name_here"), conn.peer))
    assert (await proc.receive(timeout=5))[1:] == (
        ref3,
        A("process"),
        (A("no_such_name_here"), conn.peer),
        A("noproc"),
    )
    await proc.close()


async def test_demonitor_means_no_down(local: LocalNode, erl) -> None:
    conn = await local.connect(erl.name)
    proc = local.spawn()
    pid = await conn.rpc("erlang", "spawn", [A("timer"), A("sleep"), [200]])
    ref = await proc.monitor(pid)
    await proc.demonitor(ref)
    with pytest.raises(DistTimeout):
        await proc.receive(timeout=0.6)
    await proc.close()


async def test_links_both_ways(local: LocalNode, erl) -> None:
    conn = await local.connect(erl.name)
    proc = local.spawn()
    # We link to a remote process; its abnormal exit reaches us as an EXIT message.
    pid = await conn.rpc("erlang", "spawn", [A("timer"), A("sleep"), [60_000]])
    await proc.link(pid)
    await conn.rpc("erlang", "exit", [pid, A("shutdown_for_test")])
    assert await proc.receive(timeout=5) == (A("EXIT"), pid, A("shutdown_for_test"))
    assert pid not in proc.links

    # A remote process that traps exits links to us; our close reaches it as an EXIT.
    watcher = await conn.rpc("arsenal_test_support", "link_watcher", [proc.pid])
    await asyncio.sleep(0.2)
    assert watcher in proc.links
    await proc.close(A("python_went_away"))
    report = await _wait_for(conn, "arsenal_test_support", "last_exit_seen", [watcher])
    assert report == (A("EXIT"), proc.pid, A("python_went_away"))


async def test_unlink_stops_exit_propagation(local: LocalNode, erl) -> None:
    conn = await local.connect(erl.name)
    proc = local.spawn()
    pid = await conn.rpc("erlang", "spawn", [A("timer"), A("sleep"), [60_000]])
    await proc.link(pid)
    await proc.unlink(pid)
    await conn.rpc("erlang", "exit", [pid, A("kill")])
    with pytest.raises(DistTimeout):
        await proc.receive(timeout=0.6)
    await proc.close()


async def test_messages_in_and_out_keep_their_order(local: LocalNode, erl) -> None:
    conn = await local.connect(erl.name)
    proc = local.spawn()
    count = await conn.rpc("arsenal_test_support", "send_sequence", [proc.pid, 500])
    assert count == 500
    got = [await proc.receive(timeout=5) for _ in range(500)]
    assert got == [(A("seq"), i) for i in range(1, 501)]

    echo = await conn.rpc("arsenal_test_support", "start_echo", [])
    for i in range(50):
        await proc.send(echo, (A("echo"), proc.pid, i))
    assert [await proc.receive(timeout=5) for _ in range(50)] == list(range(50))
    await proc.close()


async def test_selective_receive_and_registered_send(local: LocalNode, erl) -> None:
    conn = await local.connect(erl.name)
    proc = local.spawn("arsenal_test_inbox")
    await conn.rpc(
        "arsenal_test_support", "send_to_name", [A("arsenal_test_inbox"), local.name, [A("a"), A("b"), 7]]
    )
    assert await proc.receive(timeout=5, match=lambda m: isinstance(m, int)) == 7
    assert await proc.receive(timeout=5) == A("a")
    assert await proc.receive(timeout=5) == A("b")
    await proc.close()


async def test_alias_send(local: LocalNode, erl) -> None:
    conn = await local.connect(erl.name)
    proc = local.spawn()
    alias = proc.alias()
    assert isinstance(alias, Ref)
    await conn.rpc("erlang", "send", [alias, A("via_alias")])
    assert await proc.receive(timeout=5) == A("via_alias")
    proc.unalias(alias)
    await conn.rpc("erlang", "send", [alias, A("dropped")])
    with pytest.raises(DistTimeout):
        await proc.receive(timeout=0.5)
    await proc.close()


async def test_remote_monitor_of_a_python_process_fires_on_close(local: LocalNode, erl) -> None:
    conn = await local.connect(erl.name)
    proc = local.spawn()
    watcher = await conn.rpc("arsenal_test_support", "monitor_watcher", [proc.pid])
    await asyncio.sleep(0.2)
    assert len(proc.monitored_by) == 1
    await proc.close(A("gone_for_good"))
    report = await _wait_for(conn, "arsenal_test_support", "last_exit_seen", [watcher])
    assert report[0] == A("DOWN") and report[3] == proc.pid and report[4] == A("gone_for_good")


async def test_a_full_mailbox_drops_and_counts(local: LocalNode, erl) -> None:
    conn = await local.connect(erl.name)
    proc = local.spawn(mailbox_size=10)
    await conn.rpc("arsenal_test_support", "send_sequence", [proc.pid, 25])
    await conn.rpc("erlang", "node")  # a round trip after the sends: they have all arrived
    assert len(proc) == 10 and proc.dropped == 15
    await proc.close()


async def test_closing_leaves_no_task_behind(erl) -> None:
    before = {t for t in asyncio.all_tasks() if t.get_name().startswith("dist-")}
    local = LocalNode(cookie=erl.cookie)
    conn = await local.connect(erl.name)
    await conn.rpc("erlang", "node")
    await local.close()
    await asyncio.sleep(0.05)
    after = {t for t in asyncio.all_tasks() if t.get_name().startswith("dist-") and not t.done()}
    assert after <= before
    assert conn.closed


async def _wait_for(conn, module: str, function: str, args: list) -> object:
    for _ in range(100):
        result = await conn.rpc(module, function, args)
        if result != A("none"):
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"{module}:{function} never reported")


async def test_long_names(local: LocalNode, cookie, erl) -> None:
    from .nodes import BeamNode, unique_name

    alive = unique_name("longname")
    node = BeamNode(alive, cookie, host="127.0.0.1").start()
    try:
        conn = await local.connect(f"{alive}@127.0.0.1")
        assert await conn.rpc("erlang", "node") == A(f"{alive}@127.0.0.1")
        # We introduced ourselves with a long name too, as a long-name node requires.
        ours = await conn.rpc("erlang", "nodes", [A("hidden")])
        assert len(ours) == 1 and "." in ours[0].partition("@")[2]
        # One node, one naming: a short-name peer needs another LocalNode, as in Erlang.
        with pytest.raises(HandshakeError, match="cannot mix short and long names"):
            await local.connect(erl.name)
    finally:
        node.kill()
