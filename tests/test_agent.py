"""The agent and attached nodes against real nodes: load, verify, reload, unload, reconnect."""

from __future__ import annotations

import asyncio

import pytest

from arsenal.beam import AGENT_MODULE, AgentLoader, Node, NodePool, ReadOnlyNode, UnknownNode
from arsenal.dist import Atom, NodeDown

pytestmark = pytest.mark.timeout(90)

A = Atom


async def _loaded_md5(node: Node) -> object:
    return await node.call("erlang", "get_module_info", [A(AGENT_MODULE), A("md5")])


async def test_attach_loads_the_agent_once(make_node, cookie) -> None:
    target = make_node("agent")
    loader = AgentLoader()
    async with Node(target.name, cookie=cookie, reconnect=False) as node:
        build = loader.build_for(node.info.otp_release)
        agent = next(module for module in build.modules if module.name == AGENT_MODULE)
        assert await _loaded_md5(node) == agent.md5
        assert node.info.otp_release.isdigit() and int(node.info.otp_release) >= build.otp_release
        assert node.info.language == "erlang"
        # Same md5 on the node: nothing is loaded again.
        assert await loader.ensure_loaded(node.connection) == []


async def test_a_different_agent_version_is_replaced(make_node, cookie) -> None:
    target = make_node("agentv")
    async with Node(target.name, cookie=cookie, agent=False, reconnect=False) as node:
        # Put an older, different arsenal_agent on the node, compiled there from forms.
        forms = [
            (A("attribute"), 1, A("module"), A(AGENT_MODULE)),
            (A("attribute"), 2, A("export"), [(A("version"), 0)]),
            (A("function"), 3, A("version"), 0, [(A("clause"), 3, [], [], [(A("bin"), 3, [])])]),
        ]
        compiled = await node.call("compile", "forms", [forms, [A("binary")]])
        assert compiled[0] == A("ok")
        await node.call("code", "load_binary", [A(AGENT_MODULE), [ord(c) for c in "old.beam"], compiled[2]])
        assert await node.call(AGENT_MODULE, "version") == b""
        loaded = await AgentLoader().ensure_loaded(node.connection)
        assert AGENT_MODULE in loaded
        assert await node.call(AGENT_MODULE, "version") == b"0.1.0"


async def test_unload_removes_it_and_the_next_call_reloads(make_node, cookie) -> None:
    target = make_node("agentu")
    async with Node(target.name, cookie=cookie, reconnect=False) as node:
        assert await node.unload_agent() == [module.name for module in AgentLoader().modules]
        assert await node.call("erlang", "module_loaded", [A(AGENT_MODULE)]) is False
        # An agent call finds the module gone, loads it again and succeeds.
        top = await node.agent_call("list_processes", [{A("limit"): 3}])
        assert len(top[A("rows")]) == 3
        assert await node.call("erlang", "module_loaded", [A(AGENT_MODULE)]) is True


async def test_loads_on_a_node_without_the_compiler(make_node, cookie) -> None:
    # Releases often leave the compiler out: the agent ships as .beam files.
    target = make_node(
        "nocompiler",
        extra=["-eval", 'code:del_path(compiler), io:format("NO_COMPILER~n")'],
        ready_marker="NO_COMPILER",
    )
    async with Node(target.name, cookie=cookie, reconnect=False) as node:
        assert await node.call("code", "which", [A("compile")]) == A("non_existing")
        top = await node.agent_call("list_processes", [{A("sort"): b"reductions", A("limit"): 5}])
        assert len(top[A("rows")]) == 5


async def test_a_bad_sort_key_creates_no_atom(erl, cookie) -> None:
    async with Node(erl.name, cookie=cookie, reconnect=False) as node:
        await node.agent_call("list_processes", [{A("limit"): 1}])
        before = await _settled_atom_count(node)
        for i in range(20):
            result = await node.agent_call("list_processes", [{A("sort"): f"no_such_key_{i}".encode()}])
            assert result[0] == A("error")
            await node.agent_call("target", [f"no_such_name_{i}".encode()])
            await node.agent_call("list_processes", [{A("module"): f"no_such_module_{i}".encode()}])
        after = await node.call("erlang", "system_info", [A("atom_count")])
        assert after == before


async def _settled_atom_count(node: Node) -> int:
    """The atom count once a freshly booted node has stopped loading modules."""
    last = -1
    for _ in range(100):
        count = await node.call("erlang", "system_info", [A("atom_count")])
        if count == last:
            return count
        last = count
        await asyncio.sleep(0.2)
    return last


async def test_reconnects_after_the_node_restarts(make_node, cookie) -> None:
    first = make_node("phoenix")
    node = Node(first.name, cookie=cookie, reconnect=True)
    await node.connect()
    try:
        first.kill()
        first.wait_unregistered()
        with pytest.raises(NodeDown):
            for _ in range(50):
                await node.call("erlang", "node")
                await asyncio.sleep(0.1)
        make_node("phoenix", alive=first.alive)  # same name, a new VM without the agent
        for _ in range(200):
            if node.connected:
                break
            await asyncio.sleep(0.1)
        assert node.connected and node.reconnects == 1
        top = await node.agent_call("list_processes", [{A("limit"): 2}])
        assert len(top[A("rows")]) == 2
    finally:
        await node.close()


async def test_read_only_refuses_writes(erl, cookie) -> None:
    async with Node(erl.name, cookie=cookie, read_only=True, reconnect=False) as node:
        with pytest.raises(ReadOnlyNode, match="read-only"):
            node.ensure_writable("killing a process")
        assert len((await node.agent_call("list_processes", [{A("limit"): 1}]))[A("rows")]) == 1


async def test_a_pool_holds_many_nodes(erl, make_node, cookie) -> None:
    other = make_node("pooled")
    async with NodePool(cookie=cookie) as pool:
        first = await pool.attach(erl.name)
        second = await pool.attach(other.alive)
        assert pool.get() is first and pool.get(other.name) is second
        assert await pool.attach(erl.name) is first
        names = await asyncio.gather(*(n.call("erlang", "node") for n in pool.nodes))
        assert names == [A(erl.name), A(other.name)]
        with pytest.raises(UnknownNode, match="not attached"):
            pool.get("stranger@nowhere")
