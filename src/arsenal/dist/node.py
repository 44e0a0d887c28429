"""The local hidden node: our name and creation, our pids and refs, and the connections.

``LocalNode`` is what a program holds: it connects to nodes (one connection per
peer, shared by every caller), creates Python processes, and routes what the
connections receive to them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import socket
import ssl as ssl_module
from collections.abc import Callable
from typing import Any

from .connection import Connection
from .cookie import resolve_cookie
from .epmd import port_please
from .errors import ConnectFailed, DistTimeout, HandshakeError, NodeDown
from .flags import ARSENAL_FLAGS
from .handshake import handshake
from .naming import NameLease, claim_name
from .process import DEFAULT_MAILBOX_SIZE, Process, Target
from .terms import Atom, Pid, Ref, Term
from .transport import DistProtocol

MAX_FRAME = 64 * 1024 * 1024
"""Default largest frame accepted from a peer; a bigger length prefix is treated as hostile.

Decoded terms take several times their wire size in Python (a list of ``[]``
about 64x), so this bounds memory as well as the read."""

__all__ = ["LocalNode", "split_node_name"]


def split_node_name(name: str) -> tuple[str, str]:
    """``"app@host"`` → ``("app", "host")``; a name without ``@`` is on this host, as in ``erl``."""
    alive, sep, host = name.partition("@")
    if not alive:
        raise ValueError(f"node name {name!r} has no name part before '@'")
    if not sep:
        host = socket.gethostname().split(".")[0]
    if not host:
        raise ValueError(f"node name {name!r} has no host after '@'")
    return alive, host


class LocalNode:
    """A hidden Erlang node implemented in Python.

    ``name`` defaults to one of a small pool, ``arsenal-N@<host>``, held while this node is open
    (see :mod:`arsenal.dist.naming`: a name is an atom on every peer, so it is reused, not made
    up anew each run). Like any Erlang node it has
    one name, so short or long names are chosen once: by ``name`` or
    ``long_names`` if given, otherwise at the first connect, to match that peer (a
    short-name node only talks to short names and the other way round). The
    cookie is resolved from the argument, ``ARSENAL_COOKIE`` or
    ``~/.erlang.cookie``, and can be overridden per connect.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        cookie: str | None = None,
        long_names: bool | None = None,
        mailbox_size: int = DEFAULT_MAILBOX_SIZE,
        max_frame: int = MAX_FRAME,
    ) -> None:
        self._given_alive = name.partition("@")[0] if name else None
        self._lease: NameLease | None = None
        self._long_names = long_names
        self._cookie = cookie
        self.creation = secrets.randbelow(0xFFFFFFF0) + 4  # never 0..3: those mean "old creation"
        self.mailbox_size = mailbox_size
        self.max_frame = max_frame
        self._name: Atom | None = Atom(name) if name and "@" in name else None
        self._pid_ids = itertools.count(1)
        self._ref_ids = itertools.count(1)
        self._ref_salt = secrets.randbits(32)
        self._processes: dict[Pid, Process] = {}
        self._handlers: dict[Pid, Callable[[Term], None]] = {}
        self._registered: dict[Atom, Process] = {}
        self._aliases: dict[Ref, Process] = {}
        self._connections: dict[Atom, Connection] = {}
        self._connecting: dict[Atom, asyncio.Task[Connection]] = {}

    def __repr__(self) -> str:
        shown = self._name or self._given_alive or (self._lease.alive if self._lease else "(unnamed)")
        return f"<LocalNode {shown} connections={list(self._connections)}>"

    @property
    def name(self) -> Atom:
        """Our node name; asking for it before any connect settles on short (or ``long_names``) names."""
        if self._name is None:
            self._name = self._settle(bool(self._long_names))
        return self._name

    def _settle(self, long: bool) -> Atom:
        """Our name with a long or short host; an unnamed node takes a name of the pool now."""
        if self._given_alive is not None:
            alive = self._given_alive
        else:
            if self._lease is None:
                self._lease = claim_name()
            alive = self._lease.alive
        return Atom(f"{alive}@{_long_host() if long else _short_host()}")

    def _name_for(self, peer_host: str) -> Atom:
        """Our name for a peer on ``peer_host``, settling long or short names at the first peer."""
        peer_long = "." in peer_host
        if self._name is None:
            self._name = self._settle(peer_long if self._long_names is None else self._long_names)
        if ("." in self._name.partition("@")[2]) != peer_long:
            kind = "long" if peer_long else "short"
            raise HandshakeError(
                f"{peer_host} uses {kind} names but this node is {self._name}; a node cannot mix short and "
                "long names (use another LocalNode for it)"
            )
        return self._name

    # ------------------------------------------------------------------ identities

    def new_pid(self) -> Pid:
        serial, pid_id = divmod(next(self._pid_ids), 1 << 15)
        return Pid(self.name, pid_id, serial & 0x1FFF, self.creation)

    def make_ref(self) -> Ref:
        n = next(self._ref_ids)
        return Ref(self.name, self.creation, (n & 0x3FFFF, self._ref_salt, n >> 18))

    # ------------------------------------------------------------------ connections

    async def connect(
        self,
        node: str,
        *,
        cookie: str | None = None,
        timeout: float = 10.0,
        ssl: ssl_module.SSLContext | None = None,
        epmd_port: int | None = None,
        port: int | None = None,
    ) -> Connection:
        """Connect to ``node`` (``name@host``), or return the live connection to it.

        ``ssl`` connects over TLS distribution (``-proto_dist inet_tls``).
        ``port`` skips EPMD when the node's distribution port is known.
        """
        key = Atom(node if "@" in node else "@".join(split_node_name(node)))
        existing = self._connections.get(key)
        if existing is not None and not existing.closed:
            return existing
        pending = self._connecting.get(key)
        if pending is None:
            pending = asyncio.create_task(
                self._connect(key, cookie=cookie, timeout=timeout, ssl=ssl, epmd_port=epmd_port, port=port)
            )
            self._connecting[key] = pending
            pending.add_done_callback(lambda _t: self._connecting.pop(key, None))
        return await asyncio.shield(pending)

    async def _connect(
        self,
        key: Atom,
        *,
        cookie: str | None,
        timeout: float,
        ssl: ssl_module.SSLContext | None,
        epmd_port: int | None,
        port: int | None,
    ) -> Connection:
        alive, host = split_node_name(key)
        secret = resolve_cookie(cookie or self._cookie)
        try:
            async with asyncio.timeout(timeout):
                if port is None:
                    port = (await port_please(host, alive, port=epmd_port, timeout=timeout)).port
                stream = await _open_stream(host, port, ssl, key, self.max_frame)
                try:
                    our_name = self._name_for(host)
                    info = await handshake(
                        stream,
                        our_name=our_name,
                        our_flags=int(ARSENAL_FLAGS),
                        our_creation=self.creation,
                        cookie=secret,
                        peer_name=key,
                        length_bytes=4 if ssl is not None else 2,
                    )
                except BaseException:
                    stream.close()
                    raise
        except TimeoutError:
            raise DistTimeout(f"connecting to {key} did not finish within {timeout:g}s") from None
        conn = Connection(self, Atom(info.name), info.flags, info.creation, stream)
        self._connections[key] = conn
        return conn

    def connection_or_none(self, node: Atom | str) -> Connection | None:
        conn = self._connections.get(node)  # type: ignore[call-overload]
        return conn if conn is not None and not conn.closed else None

    def connection_for(self, node: Atom | str) -> Connection:
        conn = self.connection_or_none(node)
        if conn is None:
            raise NodeDown(f"not connected to {node}; connect to it first")
        return conn

    @property
    def connections(self) -> dict[Atom, Connection]:
        return {name: conn for name, conn in self._connections.items() if not conn.closed}

    def connection_lost(self, conn: Connection) -> None:
        """Called by a connection as it closes: tell every process, forget the connection."""
        if self._connections.get(conn.peer) is conn:
            del self._connections[conn.peer]
        self._handlers.pop(conn._rpc_pid, None)
        for proc in list(self._processes.values()):
            proc.on_node_down(conn.peer)

    async def close(self) -> None:
        """Close every process and connection, and give back a name taken from the pool."""
        for proc in list(self._processes.values()):
            await proc.close()
        for conn in list(self._connections.values()):
            await conn.close()
        if self._lease is not None:
            self._lease.release()
            self._lease = None
            self._name = None  # used again, this node takes a free name anew

    async def __aenter__(self) -> LocalNode:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ processes

    def spawn(self, name: str | None = None, *, mailbox_size: int | None = None) -> Process:
        """A new Python process; ``name`` registers it so nodes can send to ``{Name, OurNode}``."""
        atom = Atom(name) if name else None
        if atom is not None and atom in self._registered:
            raise ValueError(f"the name {name!r} is already registered")
        proc = Process(self, self.new_pid(), name=atom, maxsize=mailbox_size or self.mailbox_size)
        self._processes[proc.pid] = proc
        if atom is not None:
            self._registered[atom] = proc
        return proc

    def forget(self, proc: Process) -> None:
        self._processes.pop(proc.pid, None)
        if proc.name is not None and self._registered.get(proc.name) is proc:
            del self._registered[proc.name]

    def register_handler(self, pid: Pid, handler: Callable[[Term], None]) -> None:
        """Route messages for ``pid`` to a callback instead of a mailbox (used for rpc replies)."""
        self._handlers[pid] = handler

    def register_alias(self, ref: Ref, proc: Process) -> None:
        self._aliases[ref] = proc

    def unregister_alias(self, ref: Ref) -> None:
        self._aliases.pop(ref, None)

    def process(self, pid: Any) -> Process | None:
        return self._processes.get(pid)

    def registered(self, name: Any) -> Process | None:
        return self._registered.get(name)

    def deliver(self, pid: Any, message: Term) -> None:
        handler = self._handlers.get(pid)
        if handler is not None:
            handler(message)
            return
        proc = self._processes.get(pid)
        if proc is not None:
            proc.deliver(message)

    def deliver_registered(self, name: Any, message: Term) -> None:
        proc = self._registered.get(name)
        if proc is not None:
            proc.deliver(message)

    def deliver_alias(self, alias: Any, message: Term) -> None:
        proc = self._aliases.get(alias)
        if proc is not None:
            proc.deliver(message)

    async def send(self, to: Target | Ref, message: Term, *, sender: Pid | None = None) -> None:
        """Send to a remote pid, ``(name, node)`` or alias on a connected node."""
        if isinstance(to, Pid):
            await self.connection_for(to.node).send(to, message, sender)
        elif isinstance(to, Ref):
            await self.connection_for(to.node).send_alias(sender or self.new_pid(), to, message)
        else:
            name, node = to
            await self.connection_for(node).send_registered(sender or self.new_pid(), name, message)


def _set_nodelay(protocol: DistProtocol) -> None:
    sock = protocol.transport.get_extra_info("socket") if protocol.transport else None
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _short_host() -> str:
    return socket.gethostname().split(".")[0]


def _long_host() -> str:
    fqdn = socket.getfqdn()
    return fqdn if "." in fqdn else os.environ.get("ARSENAL_HOST", "127.0.0.1")


async def _open_stream(
    host: str, port: int, ssl: ssl_module.SSLContext | None, node: str, max_frame: int
) -> DistProtocol:
    loop = asyncio.get_running_loop()
    try:
        if ssl is None:
            _, protocol = await loop.create_connection(lambda: DistProtocol(max_frame), host, port)
        else:
            _, protocol = await loop.create_connection(
                lambda: DistProtocol(max_frame),
                host,
                port,
                ssl=ssl,
                server_hostname=host if ssl.check_hostname else None,
            )
        _set_nodelay(protocol)
        return protocol
    except ssl_module.SSLError as exc:
        raise ConnectFailed(f"TLS with {node} failed: {exc.reason or exc}; check certificates") from None
    except OSError as exc:
        raise ConnectFailed(
            f"could not connect to {node} at {host}:{port} ({exc.strerror or exc}); is it running?"
        ) from None
