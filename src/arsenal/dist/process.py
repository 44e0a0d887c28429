"""Python-side processes: a pid that Erlang processes can send to, with a mailbox.

A :class:`Process` behaves like an Erlang process that traps exits: exit signals
from links arrive as ``('EXIT', From, Reason)`` messages and monitor notices as
``('DOWN', Ref, 'process', Who, Reason)``. Its mailbox is bounded: the reader of a
connection must never block on one slow consumer, so when a mailbox is full new
messages are dropped and counted in :attr:`Process.dropped`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from .errors import DistTimeout, NodeDown
from .terms import Atom, Pid, Ref, Term

if TYPE_CHECKING:
    from .node import LocalNode

__all__ = ["Process", "DEFAULT_MAILBOX_SIZE"]

DEFAULT_MAILBOX_SIZE = 100_000

EXIT = Atom("EXIT")
DOWN = Atom("DOWN")
PROCESS = Atom("process")
NORMAL = Atom("normal")
NOCONNECTION = Atom("noconnection")

Target = Pid | tuple[Atom, Atom]
"""A process to monitor or send to: a pid, or ``(registered_name, node)``."""


class Process:
    """A pid owned by Python. Create one with :meth:`LocalNode.spawn`."""

    def __init__(self, node: LocalNode, pid: Pid, *, name: Atom | None, maxsize: int) -> None:
        self.node = node
        self.pid = pid
        self.name = name
        self.maxsize = maxsize
        self.dropped = 0
        self.closed = False
        self._mailbox: deque[Term] = deque()
        self._arrived = asyncio.Event()
        self.links: set[Pid] = set()
        self.monitors: dict[Ref, Target] = {}
        self.monitored_by: dict[Ref, Pid] = {}
        self._aliases: set[Ref] = set()

    def __repr__(self) -> str:
        return f"<Process {self.pid!r}{' ' + self.name if self.name else ''}>"

    # ------------------------------------------------------------------ mailbox

    def deliver(self, message: Term) -> None:
        """Put a message in the mailbox (called by the connection's reader, never blocks)."""
        if self.closed:
            return
        if len(self._mailbox) >= self.maxsize:
            self.dropped += 1
            return
        self._mailbox.append(message)
        self._arrived.set()

    def __len__(self) -> int:
        return len(self._mailbox)

    async def receive(
        self, timeout: float | None = None, match: Callable[[Term], bool] | None = None
    ) -> Term:
        """The first message (or the first one ``match`` accepts), waiting up to ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    found = self._take(match)
                    if found is not _NOTHING:
                        return found
                    if self.closed:
                        raise NodeDown(f"{self.pid!r} is closed")
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise DistTimeout(f"no message for {self.pid!r} within {timeout:g}s") from None

    def _take(self, match: Callable[[Term], bool] | None) -> Any:
        box = self._mailbox
        if not box:
            return _NOTHING
        if match is None:
            return box.popleft()
        for index, message in enumerate(box):
            if match(message):
                del box[index]
                return message
        return _NOTHING

    def __aiter__(self) -> AsyncIterator[Term]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Term]:
        while not self.closed or self._mailbox:
            yield await self.receive()

    # ------------------------------------------------------------------ signals

    async def send(self, to: Target, message: Term) -> None:
        """Send ``message`` to a remote pid or ``(name, node)``."""
        await self.node.send(to, message, sender=self.pid)

    async def link(self, pid: Pid) -> None:
        """Link to a remote process; its exit arrives as ``('EXIT', pid, reason)``."""
        conn = self.node.connection_for(pid.node)
        self.links.add(pid)
        await conn.send_link(self.pid, pid)

    async def unlink(self, pid: Pid) -> None:
        conn = self.node.connection_for(pid.node)
        self.links.discard(pid)
        await conn.send_unlink(self.pid, pid)

    async def monitor(self, target: Target) -> Ref:
        """Monitor a pid or ``(name, node)``; returns the ref carried by the ``DOWN`` message."""
        node = target.node if isinstance(target, Pid) else target[1]
        conn = self.node.connection_for(node)
        ref = self.node.make_ref()
        self.monitors[ref] = target
        await conn.send_monitor(self.pid, target, ref)
        return ref

    async def demonitor(self, ref: Ref) -> None:
        target = self.monitors.pop(ref, None)
        if target is None:
            return
        node = target.node if isinstance(target, Pid) else target[1]
        conn = self.node.connection_or_none(node)
        if conn is not None:
            await conn.send_demonitor(self.pid, target, ref)

    async def exit(self, pid: Pid, reason: Term) -> None:
        """Send an exit signal (``exit(Pid, Reason)``) to a remote process."""
        await self.node.connection_for(pid.node).send_exit2(self.pid, pid, reason)

    def alias(self) -> Ref:
        """A reference other processes can send to (``ALIAS_SEND``) in place of the pid."""
        ref = self.node.make_ref()
        self._aliases.add(ref)
        self.node.register_alias(ref, self)
        return ref

    def unalias(self, ref: Ref) -> None:
        self._aliases.discard(ref)
        self.node.unregister_alias(ref)

    # ------------------------------------------------------------------ signals from the wire

    def on_link(self, pid: Pid) -> None:
        self.links.add(pid)

    def on_unlink(self, pid: Pid) -> None:
        self.links.discard(pid)

    def on_exit(self, sender: Pid, reason: Term, *, linked: bool) -> None:
        if linked:
            if sender not in self.links:
                return
            self.links.discard(sender)
        self.deliver((EXIT, sender, reason))

    def on_down(self, ref: Ref, who: Term, reason: Term) -> None:
        if self.monitors.pop(ref, None) is not None:
            self.deliver((DOWN, ref, PROCESS, who, reason))

    def on_node_down(self, node: Atom) -> None:
        """The connection to ``node`` is gone: links break and monitors fire with ``noconnection``."""
        for pid in [p for p in self.links if p.node == node]:
            self.links.discard(pid)
            self.deliver((EXIT, pid, NOCONNECTION))
        for ref, target in list(self.monitors.items()):
            target_node = target.node if isinstance(target, Pid) else target[1]
            if target_node == node:
                del self.monitors[ref]
                self.deliver((DOWN, ref, PROCESS, target, NOCONNECTION))
        for ref, watcher in list(self.monitored_by.items()):
            if watcher.node == node:
                del self.monitored_by[ref]

    # ------------------------------------------------------------------ lifetime

    async def close(self, reason: Term = NORMAL) -> None:
        """Exit: linked processes get an exit signal, monitoring ones a ``DOWN``."""
        if self.closed:
            return
        self.closed = True
        self._arrived.set()
        self.node.forget(self)
        for ref in list(self._aliases):
            self.unalias(ref)
        for pid in list(self.links):
            conn = self.node.connection_or_none(pid.node)
            if conn is not None:
                await conn.send_exit(self.pid, pid, reason)
        for ref, watcher in list(self.monitored_by.items()):
            conn = self.node.connection_or_none(watcher.node)
            if conn is not None:
                await conn.send_monitor_exit(self.pid, watcher, ref, reason)
        for ref in list(self.monitors):
            await self.demonitor(ref)
        self.links.clear()
        self.monitored_by.clear()

    async def __aenter__(self) -> Process:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


_NOTHING = object()
