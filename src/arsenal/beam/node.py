"""An attached node: one connection, the agent inside it, and its upkeep.

``Node`` reconnects with exponential back-off when the connection drops (calls
made meanwhile fail at once with :class:`NodeDown` rather than hang), reloads
the agent when the node restarted, and refuses writes when attached read-only.
``NodePool`` holds many attached nodes sharing one local hidden node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_module
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..dist import Atom, Connection, LocalNode, NodeDown, Process, RpcError, Term, split_node_name
from ..terms.render import Dialect
from .agent import AGENT_MODULE, AgentLoader
from .errors import AgentError, ReadOnlyNode, UnknownNode

__all__ = ["Node", "NodeInfo", "NodePool"]

log = logging.getLogger("arsenal.beam")

DEFAULT_TIMEOUT = 5.0
_UNDEF = Atom("undef")


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What the agent reports about the node on attach."""

    name: str
    otp_release: str
    erts_version: str
    language: str
    process_count: int
    process_limit: int
    agent_version: str
    elixir_version: str | None = None
    """The node's Elixir release (``"1.18.3"``); None on a node without Elixir."""


class Node:
    """A BEAM node Arsenal is attached to."""

    def __init__(
        self,
        name: str,
        *,
        local: LocalNode | None = None,
        cookie: str | None = None,
        read_only: bool = False,
        agent: bool = True,
        ssl: ssl_module.SSLContext | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        reconnect: bool = True,
        loader: AgentLoader | None = None,
    ) -> None:
        self.name = name if "@" in name else "@".join(split_node_name(name))
        self.read_only = read_only
        self.timeout = timeout
        self.use_agent = agent
        self.reconnect = reconnect
        self._owns_local = local is None
        self._local = local or LocalNode(cookie=cookie)
        self._cookie = cookie
        self._ssl = ssl
        self._loader = loader or AgentLoader()
        self._conn: Connection | None = None
        self._info: NodeInfo | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._closed = False
        self.reconnects = 0

    def __repr__(self) -> str:
        state = "connected" if self.connected else "closed" if self._closed else "disconnected"
        return f"<Node {self.name} {state}{' read-only' if self.read_only else ''}>"

    # ------------------------------------------------------------------ lifetime

    async def connect(self) -> Node:
        """Connect, load the agent (unless ``agent=False``) and read the node's facts."""
        await self._attach()
        return self

    async def _attach(self) -> None:
        conn = await self._local.connect(
            self.name, cookie=self._cookie, ssl=self._ssl, timeout=self.timeout * 2
        )
        # Published only once the agent is in: a call made meanwhile (a live view polling through
        # a reconnect) fails with NodeDown and retries, instead of reaching a node without it.
        if self.use_agent:
            loaded = await self._loader.ensure_loaded(conn, self.timeout * 2)
            if loaded:
                log.info("loaded agent modules %s into %s", loaded, self.name)
            self._info = _node_info(await conn.rpc(AGENT_MODULE, "info", [], self.timeout))
        self._conn = conn
        if self.reconnect:
            asyncio.get_running_loop().create_task(self._watch(conn))

    async def _watch(self, conn: Connection) -> None:
        await conn.wait_closed()
        if self._closed or not self.reconnect:
            return
        log.warning("lost %s: %s; reconnecting", self.name, conn.close_reason)
        self._reconnect_task = asyncio.create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        delay = 0.2
        while not self._closed:
            await asyncio.sleep(delay)
            try:
                await self._attach()
            except Exception as exc:  # every failure here means "try again later"
                log.info("reconnecting to %s failed: %s (next try in %.1fs)", self.name, exc, delay)
                delay = min(delay * 2, 10.0)
                continue
            self.reconnects += 1
            log.info("reconnected to %s", self.name)
            return

    async def close(self) -> None:
        """Detach: stop reconnecting and close the connection (the agent stays loaded)."""
        self._closed = True
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnect_task
        if self._owns_local:
            await self._local.close()
        elif self._conn is not None:
            await self._conn.close()

    async def __aenter__(self) -> Node:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ state

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed

    @property
    def connection(self) -> Connection:
        if self._conn is None or self._conn.closed:
            reason = self._conn.close_reason if self._conn is not None else None
            retry = " (reconnecting)" if self._reconnect_task and not self._reconnect_task.done() else ""
            raise NodeDown(f"{self.name} is not connected{retry}" + (f": {reason}" if reason else ""))
        return self._conn

    @property
    def info(self) -> NodeInfo:
        if self._info is None:
            raise AgentError(f"{self.name} was attached without the agent")
        return self._info

    @property
    def language(self) -> Dialect:
        """``erlang`` or ``elixir``, knowing the node's Elixir release: terms render as it prints them."""
        if self._info is None:
            return Dialect("erlang")
        return Dialect(self._info.language, self._info.elixir_version)

    def ensure_writable(self, what: str) -> None:
        """Raise :class:`ReadOnlyNode` if this node was attached read-only."""
        if self.read_only:
            raise ReadOnlyNode(
                f"{self.name} is attached read-only; {what} is refused. It stays read-only until "
                "an admin lifts it (attach it with read_only=false)"
            )

    # ------------------------------------------------------------------ calls

    async def call(
        self, module: str, function: str, args: Sequence[Term] = (), timeout: float | None = None
    ) -> Term:
        """``module:function(args)`` on the node, with the node's default timeout."""
        return await self.connection.rpc(module, function, args, timeout or self.timeout)

    async def agent_call(
        self,
        function: str,
        args: Sequence[Term] = (),
        timeout: float | None = None,
        *,
        module: str = AGENT_MODULE,
    ) -> Term:
        """Call a function of an agent module; reload the agent once if the node lost it (restart, purge)."""
        if not self.use_agent:
            raise AgentError(f"{self.name} was attached without the agent; this needs it")
        try:
            return await self.call(module, function, args, timeout)
        except RpcError as exc:
            if not _is_agent_undef(exc):
                raise
        await self._loader.ensure_loaded(self.connection, self.timeout * 2)
        return await self.call(module, function, args, timeout)

    def spawn_process(self, *, mailbox_size: int | None = None) -> Process:
        """A Python process on this node's connection, for things the node sends to (trace events,
        monitors): it receives like an Erlang process, with a bounded mailbox."""
        return self._local.spawn(mailbox_size=mailbox_size)

    async def unload_agent(self) -> list[str]:
        """Take the agent's modules out of the node."""
        return await self._loader.unload(self.connection, self.timeout * 2)


def _is_agent_undef(exc: RpcError) -> bool:
    if exc.reason != _UNDEF or not isinstance(exc.stacktrace, list) or not exc.stacktrace:
        return False
    top = exc.stacktrace[0]
    return isinstance(top, tuple) and len(top) >= 1 and str(top[0]).startswith(AGENT_MODULE)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _node_info(raw: Any) -> NodeInfo:
    return NodeInfo(
        name=_text(raw[Atom("node")]),
        otp_release=_text(raw[Atom("otp_release")]),
        erts_version=_text(raw[Atom("erts_version")]),
        language=_text(raw[Atom("language")]),
        process_count=raw[Atom("process_count")],
        process_limit=raw[Atom("process_limit")],
        agent_version=_text(raw[Atom("agent_version")]),
        elixir_version=_optional_text(raw.get(Atom("elixir_version"))),
    )


def _optional_text(value: Any) -> str | None:
    return None if value is None or value == Atom("undefined") else _text(value)


class NodePool:
    """Many attached nodes sharing one local hidden node; the first attached is the default."""

    def __init__(self, *, cookie: str | None = None, local: LocalNode | None = None) -> None:
        self.local = local or LocalNode(cookie=cookie)
        self._nodes: dict[str, Node] = {}

    async def attach(self, name: str, **options: Any) -> Node:
        """Attach to ``name`` (or return it if attached already)."""
        node = Node(name, local=self.local, **options)
        if node.name in self._nodes:
            return self._nodes[node.name]
        await node.connect()
        self._nodes[node.name] = node
        return node

    async def detach(self, name: str) -> None:
        node = self.get(name)
        del self._nodes[node.name]
        await node.close()

    def get(self, name: str | None = None) -> Node:
        """The node called ``name`` (short names accepted), or the default node when None."""
        if not self._nodes:
            raise UnknownNode("no node is attached; attach one first")
        if name is None:
            return next(iter(self._nodes.values()))
        full = name if "@" in name else "@".join(split_node_name(name))
        node = self._nodes.get(full)
        if node is None:
            raise UnknownNode(f"{name} is not attached; attached: {', '.join(self._nodes)}")
        return node

    @property
    def nodes(self) -> list[Node]:
        return list(self._nodes.values())

    async def close(self) -> None:
        for node in list(self._nodes.values()):
            await node.close()
        self._nodes.clear()
        await self.local.close()

    async def __aenter__(self) -> NodePool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
