"""Process control operations against real nodes: safe term transfer, kill, suspend/resume, gc,
mailbox peek, gen_server state, send, find, start, restart, monitor."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

import arsenal
from arsenal.client import Arsenal
from arsenal.dist import Atom, Pid
from arsenal.dist.terms import Export, ImproperList
from arsenal.ops.base import Principal
from arsenal.ops.errors import ErrorCode
from arsenal.ops.safeterm import parse_term, to_wire

from .helpers import fails

pytestmark = pytest.mark.timeout(60)


async def _atoms(node) -> int:
    return await node.node.call("erlang", "system_info", [Atom("atom_count")])


async def _settled_atoms(node) -> int:
    last = -1
    for _ in range(100):
        count = await _atoms(node)
        if count == last:
            return count
        last = count
        await asyncio.sleep(0.2)
    return last


async def _started_at(node, name: str) -> int:
    pairs = (await node.get_genserver_state(pid=name)).state_json["$map"]
    return next(value for key, value in pairs if key == {"$atom": "started_at"})


async def test_send_creates_no_atoms(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        await node.send_message(pid="demo_worker_1", message={"$atom": "ping"}, mode="call")
        before = await _settled_atoms(node)
        for i in range(10):
            error = await fails(
                ErrorCode.validation_error,
                node.send_message(
                    pid="demo_worker_2",
                    message={"$tuple": [{"$atom": "ok"}, [1, {"$atom": f"arsenal_never_an_atom_{i}"}]]},
                ),
            )
            assert f"the atom 'arsenal_never_an_atom_{i}' does not exist on the node" in error.message
            # Atoms hidden in a pid's node name, an export and a map key are refused too.
            pid = {"$pid": {"node": f"nowhere_{i}@nohost", "id": 1, "serial": 0, "creation": 1}}
            await fails(ErrorCode.validation_error, node.send_message(pid="demo_worker_2", message=pid))
            export = {"$export": {"module": f"no_mod_{i}", "function": "f", "arity": 1}}
            await fails(ErrorCode.validation_error, node.send_message(pid="demo_worker_2", message=export))
            key = {"$map": [[{"$atom": f"no_key_{i}"}, 1]]}
            await fails(ErrorCode.validation_error, node.send_message(pid="demo_worker_2", message=key))
            await fails(
                ErrorCode.validation_error,
                node.kill_process(pid="demo_worker_2", reason=f"no_reason_{i}"),
            )
            await fails(ErrorCode.not_found, node.start_process(module=f"no_mod_{i}", function="f"))
            await fails(
                ErrorCode.validation_error,
                node.start_process(module="timer", function="sleep", args=[1], register_as=f"new_name_{i}"),
            )
            await fails(ErrorCode.not_found, node.get_genserver_state(pid=f"no_name_{i}"))
        assert await _atoms(node) == before


async def test_send_cast_and_call(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        reply = await node.send_message(pid="demo_worker_1", message={"$atom": "ping"}, mode="call")
        assert reply.reply == "pong" and reply.reply_json == {"$atom": "pong"}
        unknown = await node.send_message(
            pid="demo_worker_1", message={"$tuple": [{"$atom": "ok"}, True, "text", 1.5, [1, 2]]}, mode="call"
        )
        assert unknown.reply == "{error,unknown_call}"
        sent = await node.send_message(pid="demo_worker_1", message={"any": ["thing"]})
        assert sent.mode == "send" and sent.reply is None
        await node.send_message(pid="demo_worker_1", message={"$atom": "ok"}, mode="cast")
        # A plain process never replies to a call: a timeout.
        await fails(
            ErrorCode.timeout,
            node.send_message(pid="demo_busy_mailbox", message=1, mode="call", timeout=0.3),
        )
        await fails(ErrorCode.not_found, node.send_message(pid="no_such_registered_name_x", message=1))
        await fails(ErrorCode.validation_error, node.send_message(pid="<0.99999.0>x", message=1))
        await fails(ErrorCode.validation_error, node.send_message(pid="demo_worker_1", message={"$nope": 1}))
        deep: object = 1
        for _ in range(150):
            deep = [deep]
        await fails(ErrorCode.limit_exceeded, node.send_message(pid="demo_worker_1", message=deep))
        await fails(
            ErrorCode.limit_exceeded, node.send_message(pid="demo_worker_1", message="x" * (1024 * 1024 + 10))
        )


async def test_state_messages_and_find(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        state = await node.get_genserver_state(pid="demo_worker_1")
        assert state.behaviour == "arsenal_demo_erl_worker" and state.whole
        assert "$map" in state.state_json
        assert "role => plain" in state.state
        big = await node.get_genserver_state(pid="demo_big_state")
        assert big.size > 2_000_000 and not big.whole and big.state_json is None
        assert "more bytes)" in big.state and "arsenal_truncated" not in big.state
        # A plain proc_lib loop does not speak sys: refused at once, nothing sent to it.
        plain = await fails(ErrorCode.validation_error, node.get_genserver_state(pid="demo_busy_mailbox"))
        assert "is not a sys process" in plain.message
        # A gen_server that does not get to its messages (suspended): the read times out.
        await node.suspend_process(pid="demo_worker_3")
        try:
            await fails(ErrorCode.timeout, node.get_genserver_state(pid="demo_worker_3", timeout=0.3))
        finally:
            await node.resume_process(pid="demo_worker_3")
        started = await node.start_process(module="timer", function="sleep", args=[30_000])
        await fails(ErrorCode.validation_error, node.get_genserver_state(pid=started.pid))
        await fails(ErrorCode.not_found, node.get_genserver_state(pid="no_such_registered_name_x"))

        for _ in range(100):
            peek = await node.get_process_messages(pid="demo_busy_mailbox", limit=5)
            if peek.message_queue_len >= 5:
                break
            await asyncio.sleep(0.1)
        assert len(peek.messages) == 5 and peek.messages[0].source
        await fails(ErrorCode.limit_exceeded, node.get_process_messages(pid="demo_busy_mailbox", max_queue=1))
        await fails(ErrorCode.validation_error, node.get_process_messages(pid="x", max_queue=200_000))
        empty = await node.get_process_messages(pid="demo_worker_3")
        assert empty.messages == [] or empty.message_queue_len < 10

        found = await node.find_processes_by_module(module="arsenal_demo_erl_worker")
        assert {"demo_worker_1", "demo_worker_2", "demo_big_state"} <= {
            p.registered_name for p in found.processes
        }
        none = await node.find_processes_by_module(module="no_such_module_anywhere_q")
        assert none.processes == []

        waited = await node.monitor_process(pid="demo_worker_1", timeout=0.2)
        assert not waited.exited
        await node.kill_process(pid=started.pid)
        gone = await node.monitor_process(pid=started.pid, timeout=1)
        assert gone.exited and gone.reason == "noproc"
        await fails(ErrorCode.not_found, node.get_process_messages(pid=started.pid))


async def test_kill_suspend_resume_gc_restart(make_node, cookie) -> None:
    demo = make_node("proc", demo=True)
    async with arsenal.attach(demo.name, cookie=cookie, reconnect=False) as node:
        gc = await node.garbage_collect_process(pid="demo_worker_1")
        assert gc.collected and gc.memory_after > 0

        suspended = await node.suspend_process(pid="demo_worker_2")
        assert suspended.status == "suspended"
        again = await node.suspend_process(pid="demo_worker_2")
        assert again.status == "already_suspended"
        info = await node.get_process_info(pid="demo_worker_2", fields=["status"])
        assert info.info["status"] == "suspended"
        await fails(ErrorCode.timeout, node.get_genserver_state(pid="demo_worker_2", timeout=0.3))
        resumed = await node.resume_process(pid="demo_worker_2")
        assert resumed.status == "resumed"
        await node.get_genserver_state(pid="demo_worker_2")
        await fails(ErrorCode.conflict, node.resume_process(pid="demo_worker_2"))
        # The process holding suspensions goes once it holds none: nothing is left behind.
        suspender = Atom("arsenal_agent_proc_suspender")
        assert await node.node.call("erlang", "whereis", [suspender]) == Atom("undefined")
        sleeper = await node.start_process(module="timer", function="sleep", args=[30_000])
        await node.suspend_process(pid=sleeper.pid)
        holder = await node.node.call("erlang", "whereis", [suspender])
        assert holder != Atom("undefined")
        await node.kill_process(pid=sleeper.pid)
        assert (await node.monitor_process(pid=f"<0.{holder.id}.{holder.serial}>", timeout=5)).exited
        assert await node.node.call("erlang", "whereis", [suspender]) == Atom("undefined")
        await fails(ErrorCode.not_found, node.suspend_process(pid=sleeper.pid))
        await fails(ErrorCode.not_found, node.monitor_process(pid="no_such_registered_name_x"))

        # A node that lost the agent gets it back on the next call.
        await node.node.unload_agent()
        assert (await node.garbage_collect_process(pid="demo_worker_1")).collected

        old = (await node.get_process_info(pid="demo_worker_3", fields=["memory"])).pid
        restarted = await node.restart_process(pid="demo_worker_3")
        assert restarted.old_pid == old and restarted.new_pid not in (None, old)
        assert restarted.child_id == "demo_worker_3" and not restarted.state_kept
        # keep_state carries a gen_server's state over: started_at (set by init/1) stays as it was.
        before = await _started_at(node, "demo_worker_3")
        kept = await node.restart_process(pid="demo_worker_3", keep_state=True)
        assert kept.state_kept and kept.new_pid != restarted.new_pid
        assert await _started_at(node, "demo_worker_3") == before
        await asyncio.sleep(0.01)
        await node.restart_process(pid="demo_worker_3")
        assert await _started_at(node, "demo_worker_3") != before
        # A plain proc_lib process never answers sys:get_state: refused at once, and no restart.
        await fails(
            ErrorCode.conflict, node.restart_process(pid="demo_busy_mailbox", keep_state=True, timeout=0.3)
        )
        spawned = await node.start_process(module="timer", function="sleep", args=[30_000])
        await fails(ErrorCode.conflict, node.restart_process(pid=spawned.pid))

        victim = await node.get_process_info(pid="demo_worker_1", fields=["memory"])
        killed = await node.kill_process(pid="demo_worker_1")
        assert killed.died and killed.exit_reason == "killed"
        await fails(ErrorCode.not_found, node.kill_process(pid=victim.pid))
        normal = await node.kill_process(pid="demo_worker_2", reason="normal", wait_ms=100)
        assert not normal.died

        # Registered names must exist as atoms, and be free.
        await fails(
            ErrorCode.validation_error,
            node.start_process(module="timer", function="sleep", args=[1], register_as="brand_new_name_q"),
        )
        await fails(
            ErrorCode.conflict,
            node.start_process(module="timer", function="sleep", args=[1], register_as="code_server"),
        )
        # `lists` exists as an atom (a loaded module) and names no process: it may be registered.
        named = await node.start_process(module="timer", function="sleep", args=[30_000], register_as="lists")
        assert named.registered_name == "lists" and named.initial_call == "timer:sleep/1"
        assert (await node.get_process_info(pid="lists", fields=["memory"])).pid == named.pid
        await node.kill_process(pid="lists")
        await fails(ErrorCode.not_found, node.start_process(module="timer", function="nope", args=[1]))

        # Under a supervisor: a temporary child with an {arsenal, N} id.
        args = [{"$atom": "arsenal_demo_erl_worker"}, {"$tuple": [{"$atom": "demo_worker_1"}, {}]}, []]
        child = await node.start_process(
            module="gen_server", function="start_link", args=args, supervisor="arsenal_demo_erl_sup"
        )
        assert child.supervisor == "arsenal_demo_erl_sup" and child.child_id.startswith("{arsenal,")
        children = await node.node.call("supervisor", "which_children", [Atom("arsenal_demo_erl_sup")])
        assert child.pid in {f"<0.{c[1].id}.{c[1].serial}>" for c in children if isinstance(c[1], Pid)}
        assert (await node.get_genserver_state(pid=child.pid)).behaviour == "arsenal_demo_erl_worker"
        await fails(
            ErrorCode.validation_error,
            node.start_process(
                module="gen_server", function="start_link", args=args, supervisor="demo_worker_2"
            ),
        )
        await fails(
            ErrorCode.protected_process,
            node.start_process(
                module="gen_server", function="start_link", args=args, supervisor="kernel_sup"
            ),
        )
        failed = await fails(
            ErrorCode.remote_error,
            node.start_process(
                module="gen_server", function="start_link", args=[1, 2, 3], supervisor="arsenal_demo_erl_sup"
            ),
        )
        assert "could not start" in failed.message
        await fails(
            ErrorCode.validation_error,
            node.start_process(
                module="timer",
                function="sleep",
                args=[1],
                supervisor="arsenal_demo_erl_sup",
                register_as="lists",
            ),
        )


async def test_protected_processes_and_roles(make_node, cookie) -> None:
    demo = make_node("guard", demo=True)
    async with arsenal.attach(demo.name, cookie=cookie, reconnect=False) as node:
        for call in (
            node.kill_process(pid="code_server"),
            node.kill_process(pid="init"),
            node.suspend_process(pid="application_controller"),
            node.restart_process(pid="logger"),
        ):
            await fails(ErrorCode.protected_process, call)
        # An admin may force it (suspend and resume a kernel process briefly).
        forced = await node.suspend_process(pid="erl_signal_server", force=True)
        assert forced.status == "suspended"
        await node.resume_process(pid="erl_signal_server")
    async with Arsenal(cookie=cookie, principal=Principal(role="operator")) as service:
        operator = await service.attach(demo.name, reconnect=False)
        # kill_process is destructive: an operator is refused before the protection is even asked.
        error = await fails(ErrorCode.forbidden, operator.kill_process(pid="code_server", force=True))
        assert "needs an admin key" in error.message
        error = await fails(ErrorCode.forbidden, operator.suspend_process(pid="code_server", force=True))
        assert "force=true needs an admin" in error.message


async def test_read_only_refuses_writes(erl, cookie) -> None:
    async with Arsenal(cookie=cookie) as service:
        node = await service.attach(erl.name, read_only=True, reconnect=False)
        for call in (
            node.kill_process(pid="demo_worker_1"),
            node.suspend_process(pid="demo_worker_1"),
            node.resume_process(pid="demo_worker_1"),
            node.garbage_collect_process(pid="demo_worker_1"),
            node.send_message(pid="demo_worker_1", message=1),
            node.start_process(module="timer", function="sleep", args=[1]),
            node.restart_process(pid="demo_worker_1"),
        ):
            await fails(ErrorCode.read_only, call)
        assert (await node.get_genserver_state(pid="demo_worker_1")).whole


async def test_safe_terms_round_trip_through_the_agent(erl, cookie) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        await node.get_genserver_state(pid="demo_worker_1")  # the agent module is loaded
        me = await node.node.call("erlang", "whereis", [Atom("demo_worker_1")])
        ref = await node.node.call("erlang", "make_ref", [])
        term = {
            Atom("key"): (Atom("ok"), True, False, b"bin", 1.5, -(2**70)),
            b"list": [1, [2, [3]], ImproperList([Atom("error")], Atom("undefined"))],
            (Atom("$arsenal_atom"), b"not a marker"): [me, ref, Export(Atom("lists"), Atom("reverse"), 1)],
            7: {},
        }
        wire = to_wire(term)
        assert Atom("key") not in wire
        decoded = await node.node.call("arsenal_agent_proc", "decode", [wire])
        assert decoded == (Atom("ok"), term)
        # From tagged JSON: list and map keys, keys Python would merge (1 and 1.0).
        tagged = {"$map": [[[{"$atom": "ok"}], 1], [{"k": 1}, 2], [1, "int"], [{"$float": "1.0"}, "float"]]}
        term = parse_term(tagged)
        decoded = await node.node.call("arsenal_agent_proc", "decode", [to_wire(term)])
        assert decoded == (Atom("ok"), term)
        assert len(decoded[1]) == 4
        before = await _settled_atoms(node)
        missing = await node.node.call("arsenal_agent_proc", "decode", [to_wire([Atom("zz_not_an_atom_q")])])
        assert missing == (Atom("error"), (Atom("unknown_atom"), b"zz_not_an_atom_q"))
        assert await _atoms(node) == before


async def test_cli_commands(erl, cookie) -> None:
    env = {**os.environ, "ARSENAL_NODE": erl.name}
    base = [sys.executable, "-m", "arsenal"]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, *args, "--cookie", cookie], capture_output=True, text=True, env=env, timeout=30
        )

    shown = cli("state", "demo_worker_1", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["behaviour"] == "arsenal_demo_erl_worker"
    reply = cli("send", "demo_worker_1", '{"$atom": "ping"}', "--mode", "call", "--json")
    assert reply.returncode == 0 and json.loads(reply.stdout)["reply"] == "pong"
    refused = cli("kill", "code_server")
    assert refused.returncode == 5 and "VM's own processes" in refused.stderr
    peek = cli("messages", "demo_busy_mailbox", "--limit", "2", "--json")
    assert peek.returncode == 0 and len(json.loads(peek.stdout)["messages"]) <= 2
    bad = cli("send", "demo_worker_1", "{not json")
    assert bad.returncode == 2


async def test_elixir_state_and_aliases(elixir, cookie) -> None:
    async with arsenal.attach(elixir.name, cookie=cookie, reconnect=False) as node:
        state = await node.get_genserver_state(pid="ArsenalDemo.Counter1")
        assert state.behaviour == "ArsenalDemo.StatefulWorker"
        assert state.state.startswith("%")
        found = await node.find_processes_by_module(module="ArsenalDemo.StatefulWorker")
        assert "ArsenalDemo.Counter2" in {p.registered_name for p in found.processes}


async def test_restart_refuses_dynamic_children_and_orphans(elixir, cookie) -> None:
    async with arsenal.attach(elixir.name, cookie=cookie, reconnect=False) as node:
        error = await fails(ErrorCode.conflict, node.restart_process(pid="ArsenalDemo.Dynamic1"))
        assert "dynamic supervisor" in error.message
        error = await fails(
            ErrorCode.conflict,
            node.start_process(
                module="timer", function="sleep", args=[1], supervisor="ArsenalDemo.DynamicWorkers"
            ),
        )
        assert "template" in error.message
        # A proc_lib process whose parent is gone has no supervisor to restart it.
        await node.start_process(
            module="proc_lib", function="spawn", args=[{"$atom": "timer"}, {"$atom": "sleep"}, [30_000]]
        )
        found = await node.find_processes_by_module(module="timer", limit=1000)
        orphans = [row.pid for row in found.processes if row.initial_call == ":timer.sleep/1"]
        assert len(orphans) == 1
        error = await fails(ErrorCode.conflict, node.restart_process(pid=orphans[0]))
        assert "no supervisor" in error.message
        await node.kill_process(pid=orphans[0])
