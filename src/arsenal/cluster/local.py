"""A local cluster of real peer nodes, for tests, benchmarks and ``arsenal demo --cluster N``.

``LocalCluster`` starts N nodes with the one node launcher (:mod:`arsenal.sandbox.launcher`):
plain ``erl`` nodes running the plain-Erlang demo tree, or the Elixir demo application on the
first. It connects them into a full mesh and can cut and heal the link between two of them, to
simulate a partition without touching the network: on both sides the other node's cookie is
set to a wrong one (``erlang:set_cookie/2``) and the connection dropped
(``erlang:disconnect_node/1``), so neither they nor ``global``'s connect-all can reconnect;
healing puts the cookies back and reconnects (``net_kernel:connect_node/1``). Every change is
checked with ``nodes()`` on both sides.

The helper talks to the nodes over a hidden connection of its own (a ``LocalNode``), which the
nodes list in ``nodes(hidden)`` like any hidden peer.

    async with LocalCluster(3, cookie=cookie) as cluster:
        await cluster.cut(cluster.names[0], cluster.names[1])
        ...
        await cluster.heal_all()
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..dist import Atom, LocalNode
from ..sandbox.launcher import BeamProcess, LaunchError, LaunchSpec, owner_watchdog, unique_alive

__all__ = ["ClusterError", "LocalCluster", "demo_erlang_ebin"]

ERL_READY = "ARSENAL_CLUSTER_NODE_READY"
SETTLE_TIMEOUT = 10.0
RPC_TIMEOUT = 5.0


class ClusterError(RuntimeError):
    """The cluster could not be started, meshed, cut or healed as asked; the message says where."""


def demo_erlang_ebin() -> Path:
    """The plain-Erlang demo tree's ``ebin``: the checkout's ``demo/erlang/ebin`` when built,
    otherwise compiled with ``erlc`` from the installed sources into
    ``$ARSENAL_HOME/demo/erlang-ebin`` (again only when the sources or ``erlc`` change)."""
    from .. import demo

    try:
        source = demo.demo_source("erlang")
    except demo.DemoError as exc:
        raise ClusterError(str(exc)) from None
    built = source / "ebin"
    if built.is_dir() and any(built.glob("*.beam")):
        return built
    target = demo.arsenal_home() / "demo" / "erlang-ebin"
    stamp = target / "build.stamp"
    fingerprint = demo.source_fingerprint(source, ("erlc",))
    if demo.build_is_current(stamp, fingerprint):
        return target
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["erlc", "-o", str(target), *map(str, sorted(source.glob("*.erl")))],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ClusterError(f"compiling the Erlang demo failed:\n{done.stdout}{done.stderr}")
    demo.mark_build_current(stamp, fingerprint)
    return target


class LocalCluster:
    """N real nodes on this host, fully meshed, with links that can be cut and healed.

    ``cookie=None`` uses ``~/.erlang.cookie`` (as ``erl`` does). ``elixir_ebin``: the Elixir
    demo application's ``ebin``, to run it on the first node (the others run plain Erlang).
    ``extra_args`` go to every ``erl`` node. Nodes halt by themselves when this process dies
    (a watchdog per node), and :meth:`close` kills them all.
    """

    def __init__(
        self,
        size: int = 3,
        *,
        cookie: str | None = None,
        prefix: str = "cluster",
        elixir_ebin: Path | None = None,
        erl_ebin: Path | None = None,
        extra_args: Sequence[str] = (),
        log_dir: Path | None = None,
        code_paths: Sequence[Path] = (),
    ) -> None:
        if size < 1:
            raise ValueError("a cluster has at least one node")
        self.size = size
        self.cookie = cookie
        self.prefix = prefix
        self.elixir_ebin = elixir_ebin
        self.erl_ebin = erl_ebin
        self.extra_args = list(extra_args)
        self.code_paths = list(code_paths)
        self.log_dir = log_dir or Path(os.environ.get("ARSENAL_NODE_LOGS", "/tmp/arsenal-nodes"))
        self.processes: dict[str, BeamProcess] = {}
        self.cut_links: set[frozenset[str]] = set()
        self._bogus = f"arsenal_cut_{secrets.token_hex(6)}"
        self._local: LocalNode | None = None

    # ------------------------------------------------------------------ names

    @property
    def names(self) -> list[str]:
        """The nodes started, in order (the first is the one to attach to)."""
        return list(self.processes)

    @property
    def running(self) -> list[str]:
        return [name for name, process in self.processes.items() if process.running]

    # ------------------------------------------------------------------ starting

    def _erl_spec(self) -> LaunchSpec:
        ebin = self.erl_ebin or demo_erlang_ebin()
        alive = unique_alive(self.prefix)
        return LaunchSpec(
            alive=alive,
            cookie=self.cookie,
            code_paths=[*self.code_paths, ebin],
            args=[
                *self.extra_args,
                *owner_watchdog(),
                "-s",
                "arsenal_demo_erl",
                "start",
                "-eval",
                f'io:format("{ERL_READY}~n")',
            ],
            log_path=self.log_dir / f"{alive}.log",
            ready_marker=ERL_READY,
        )

    def _elixir_spec(self, ebin: Path) -> LaunchSpec:
        from ..demo import READY_EXPR, READY_MARKER

        alive = unique_alive(f"{self.prefix}_ex")
        return LaunchSpec(
            alive=alive,
            cookie=self.cookie,
            program="elixir",
            code_paths=[ebin],
            args=["-e", READY_EXPR, "--no-halt"],
            log_path=self.log_dir / f"{alive}.log",
            ready_marker=READY_MARKER,
        )

    def _launch(self, specs: list[LaunchSpec], timeout: float) -> list[str]:
        """Start every spec at once, then wait for each (a failure kills what was started)."""
        started: list[BeamProcess] = []
        try:
            for spec in specs:
                started.append(BeamProcess.start(spec))
            for process in started:
                process.wait_ready(timeout)
        except LaunchError as exc:
            for process in started:
                process.kill()
            raise ClusterError(f"a cluster node did not start: {exc}") from None
        for process in started:
            self.processes[process.name] = process
        return [process.name for process in started]

    def start_nodes(self, timeout: float = 60.0) -> list[str]:
        """Start the N nodes (blocking) without connecting them; their names."""
        specs = [self._erl_spec() for _ in range(self.size)]
        if self.elixir_ebin is not None:
            specs[0] = self._elixir_spec(self.elixir_ebin)
        return self._launch(specs, timeout)

    async def start(self, timeout: float = 60.0) -> LocalCluster:
        """Start the nodes and mesh them."""
        await asyncio.to_thread(self.start_nodes, timeout)
        try:
            await self.mesh()
        except BaseException:
            await self.close()
            raise
        return self

    async def add_node(self, *, connect_to: str | None = None, timeout: float = 60.0) -> str:
        """Start one more node and connect it to ``connect_to`` (default: the first node); the rest
        of the mesh follows through ``global`` (connect-all), as when a node joins a real cluster."""
        (name,) = await asyncio.to_thread(self._launch, [self._erl_spec()], timeout)
        peer = connect_to or self.names[0]
        if await self.rpc(name, "net_kernel", "connect_node", [Atom(peer)]) is not True:
            raise ClusterError(f"{name} could not connect to {peer}")
        await self._settle(lambda view: peer in view.get(name, ()), [name, peer])
        return name

    # ------------------------------------------------------------------ calls into the nodes

    async def _node(self) -> LocalNode:
        if self._local is None:
            self._local = LocalNode(cookie=self.cookie)
        return self._local

    async def rpc(self, node: str, module: str, function: str, args: Sequence[Any] = ()) -> Any:
        """``module:function(args)`` on ``node``, over the helper's own hidden connection."""
        local = await self._node()
        conn = await local.connect(node, timeout=RPC_TIMEOUT)
        return await conn.rpc(module, function, list(args), RPC_TIMEOUT)

    async def connected(self, node: str) -> list[str]:
        """``nodes()`` on ``node``: the visible nodes it is connected to, sorted."""
        return sorted(str(peer) for peer in await self.rpc(node, "erlang", "nodes", []))

    async def views(self, names: Sequence[str] | None = None) -> dict[str, set[str]]:
        """``nodes()`` of each running node (or of ``names``)."""
        names = list(names or self.running)
        answers = await asyncio.gather(*(self.connected(name) for name in names))
        return {name: set(view) for name, view in zip(names, answers, strict=True)}

    async def _settle(self, done: Any, names: Sequence[str], timeout: float = SETTLE_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        view: dict[str, set[str]] = {}
        while time.monotonic() < deadline:
            view = await self.views(names)
            if done(view):
                return
            await asyncio.sleep(0.05)
        raise ClusterError(f"the cluster did not settle within {timeout:g}s; nodes() are now {view}")

    # ------------------------------------------------------------------ mesh, cut, heal

    async def mesh(self) -> None:
        """Connect every pair of running nodes whose link is not cut; wait until ``nodes()`` agree."""
        names = self.running
        for index, name in enumerate(names):
            for peer in names[index + 1 :]:
                if frozenset((name, peer)) not in self.cut_links:
                    await self.rpc(name, "net_kernel", "connect_node", [Atom(peer)])

        def meshed(view: dict[str, set[str]]) -> bool:
            return all(
                peer in view[name]
                for name in names
                for peer in names
                if peer != name and frozenset((name, peer)) not in self.cut_links
            )

        await self._settle(meshed, names)

    async def cut(self, a: str, b: str) -> None:
        """Cut the link between ``a`` and ``b`` (each gets a wrong cookie for the other, and the
        connection is dropped); return once neither lists the other in ``nodes()``.

        On OTP 25+ ``global`` may then disconnect other nodes too, to avoid overlapping
        partitions (``prevent_overlapping_partitions``): the cluster ends up in two fully
        connected parts, as a real partition would leave it."""
        if a == b:
            raise ValueError("a link joins two different nodes")
        await self.rpc(a, "erlang", "set_cookie", [Atom(b), Atom(self._bogus)])
        await self.rpc(b, "erlang", "set_cookie", [Atom(a), Atom(self._bogus + "_")])
        await self.rpc(a, "erlang", "disconnect_node", [Atom(b)])
        self.cut_links.add(frozenset((a, b)))
        await self._settle(lambda view: b not in view[a] and a not in view[b], [a, b])

    async def partition(self, side: Sequence[str]) -> None:
        """Cut every link between ``side`` and the other running nodes."""
        others = [name for name in self.running if name not in side]
        for a in side:
            for b in others:
                await self.cut(a, b)

    async def heal(self, a: str, b: str) -> None:
        """Put the right cookies back on both sides and reconnect ``a`` and ``b``."""
        for node, peer in ((a, b), (b, a)):
            own = await self.rpc(node, "erlang", "get_cookie", [])
            await self.rpc(node, "erlang", "set_cookie", [Atom(peer), own])
        self.cut_links.discard(frozenset((a, b)))
        await self.rpc(a, "net_kernel", "connect_node", [Atom(b)])
        await self._settle(lambda view: b in view[a] and a in view[b], [a, b])

    async def heal_all(self) -> None:
        """Heal every cut link, then mesh the whole cluster again (``global`` may have dropped
        other links meanwhile)."""
        for link in list(self.cut_links):
            a, b = sorted(link)
            await self.heal(a, b)
        await self.mesh()

    # ------------------------------------------------------------------ stopping

    def kill(self, name: str) -> None:
        """SIGKILL one node (its peers see it go down as after a crash)."""
        process = self.processes[name]
        process.kill()
        process.wait_unregistered()

    async def stop_node(self, name: str) -> None:
        """Stop one node cleanly (``init:stop/0``), as when a node leaves on purpose."""
        with contextlib.suppress(Exception):  # it may go before it answers
            await self.rpc(name, "init", "stop", [])
        status = await self.processes[name].wait_exit(timeout=20.0)
        if status is None:
            self.kill(name)

    async def disconnect(self) -> None:
        """Close the helper's own connections (the nodes keep running)."""
        if self._local is not None:
            with contextlib.suppress(Exception):
                await self._local.close()
            self._local = None

    def kill_all(self) -> None:
        """SIGKILL every node."""
        for process in self.processes.values():
            process.kill()

    async def close(self) -> None:
        """Kill every node and close the helper's connections."""
        self.kill_all()
        await self.disconnect()

    async def __aenter__(self) -> LocalCluster:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
