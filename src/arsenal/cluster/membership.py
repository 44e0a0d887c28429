"""Cluster membership: discovering a node's peers, and noticing nodes that join and leave.

Attaching to one node of a cluster can discover the others: the node's ``nodes()`` (visible
peers) are attached too when asked; its ``nodes(hidden)`` (other tools, Arsenal itself,
``erl_call``...) are reported separately and never attached.

With discovery on, every attached node is *followed*: a small watcher process of the agent
(``arsenal_agent_cluster:watch/1``, one per followed node) subscribes to
``net_kernel:monitor_nodes/2`` and forwards each nodeup/nodedown to a Python process of ours
(rate-limited in the VM, ended by the VM when our process or the connection goes). A visible
node that joins is attached and followed in turn; one that leaves is marked down once no
followed node sees it any more and Arsenal's own connection to it is gone. Every event goes
into a bounded ring (``GET /api/v1/cluster/events``) and to live watchers (the WebSocket's
``cluster`` channel).

One :class:`ClusterMembership` per Arsenal (a service in ``Services``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..dist import Atom, Pid
from ..ops.watchers import Watcher

if TYPE_CHECKING:
    from ..beam import Node, NodePool

__all__ = ["CLUSTER_MODULE", "ClusterMembership", "Discovery", "push_events"]

log = logging.getLogger("arsenal.cluster")

CLUSTER_MODULE = "arsenal_agent_cluster"
MAX_EVENTS = 500
MAX_DISCOVERED = 200
WATCH_TIMEOUT = 5.0
RETRY_DELAY = 0.5
_EVENT = Atom("arsenal_cluster_event")
_DOWN = Atom("DOWN")
_UP = Atom("up")


@dataclass
class Discovery:
    """What one discovery found through ``seed``: visible peers (attached, already attached or
    failed, with why) and hidden ones (reported only)."""

    seed: str
    visible: list[str] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)
    attached: list[str] = field(default_factory=list)
    already_attached: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)


def _name(term: Any) -> str:
    return term.decode() if isinstance(term, bytes) else str(term)


class ClusterMembership:
    """Discovery, following and the join/leave events of one Arsenal."""

    def __init__(self, services: object = None) -> None:
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self.auto_attach = False
        self.attach_options: dict[str, Any] = {}
        self.last_discovery: Discovery | None = None
        self._pool: NodePool | None = None
        # member -> the followed nodes that see it connected (its observers)
        self._observers: dict[str, set[str]] = {}
        self._hidden: dict[str, set[str]] = {}
        self._reasons: dict[str, str] = {}
        self._follow: dict[str, asyncio.Task[None]] = {}
        self._attaching: dict[str, asyncio.Task[None]] = {}
        self._checks: set[asyncio.Task[None]] = set()
        self._watchers: list[Watcher] = []
        self._closed = False

    def bind(self, pool: NodePool) -> None:
        """The pool whose nodes are members (set by discovery; here for a read before any)."""
        if self._pool is None:
            self._pool = pool

    # ------------------------------------------------------------------ discovery

    async def discover(self, pool: NodePool, seed: Node, *, attach: bool = True, **options: Any) -> Discovery:
        """Ask ``seed`` for its peers; attach the visible ones (concurrently) when ``attach``."""
        self._pool = pool
        raw = await seed.agent_call("facts", [], WATCH_TIMEOUT, module=CLUSTER_MODULE)
        found = Discovery(
            seed=seed.name,
            visible=sorted(_name(n) for n in raw[Atom("visible")])[:MAX_DISCOVERED],
            hidden=sorted(_name(n) for n in raw[Atom("hidden")])[:MAX_DISCOVERED],
        )
        for peer in found.visible:
            self._observers.setdefault(peer, set()).add(seed.name)
        for peer in found.hidden:
            self._hidden.setdefault(peer, set()).add(seed.name)
        if attach:
            attached = {node.name for node in pool.nodes}
            found.already_attached = [peer for peer in found.visible if peer in attached]
            todo = [peer for peer in found.visible if peer not in attached]
            outcomes = await asyncio.gather(*(self._attach(peer, options) for peer in todo))
            for peer, error in zip(todo, outcomes, strict=True):
                if error is None:
                    found.attached.append(peer)
                else:
                    found.failed.append({"node": peer, **error})
        self.last_discovery = found
        return found

    async def _attach(self, name: str, options: dict[str, Any]) -> dict[str, str] | None:
        """Attach ``name``; None when done, else ``{reason: code, message}``."""
        from ..ops.errors import as_operation_error

        assert self._pool is not None
        try:
            await self._pool.attach(name, **options)
        except Exception as exc:
            error = as_operation_error(exc, "attach_node")
            return {"reason": error.code.value, "message": error.message}
        return None

    # ------------------------------------------------------------------ following

    def enable(self, pool: NodePool, *, attach_new: bool = True, **options: Any) -> None:
        """Follow every attached node from now on; ``attach_new``: attach visible nodes that join."""
        self._pool = pool
        self.auto_attach = attach_new
        self.attach_options = options
        for node in pool.nodes:
            self.follow(node)

    @property
    def enabled(self) -> bool:
        return bool(self._follow)

    def follow(self, node: Node) -> None:
        """Start following ``node`` (once)."""
        task = self._follow.get(node.name)
        if self._closed or (task is not None and not task.done()):
            return
        self._follow[node.name] = asyncio.create_task(
            self._follow_loop(node), name=f"cluster-follow {node.name}"
        )

    def _attached(self, name: str) -> Node | None:
        if self._pool is None:
            return None
        return next((node for node in self._pool.nodes if node.name == name), None)

    async def _follow_loop(self, node: Node) -> None:
        """Watch ``node``'s joins and leaves for as long as it stays attached (re-watching after a
        reconnect)."""
        while not self._closed and self._attached(node.name) is node:
            if not node.connected:
                await asyncio.sleep(RETRY_DELAY)
                continue
            owner = node.spawn_process(mailbox_size=1000)
            try:
                await self._watch_once(node, owner)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a lost connection or an agent reload: watch again
                log.info("following %s stopped: %s", node.name, exc)
            finally:
                with contextlib.suppress(Exception):
                    await owner.close()
            await asyncio.sleep(RETRY_DELAY)

    async def _watch_once(self, node: Node, owner: Any) -> None:
        raw = await node.agent_call("watch", [owner.pid], WATCH_TIMEOUT, module=CLUSTER_MODULE)
        _, watcher, visible, hidden = raw
        if isinstance(watcher, Pid):
            await owner.monitor(watcher)
        self._snapshot(node.name, [_name(n) for n in visible], [_name(n) for n in hidden])
        while True:
            message = await owner.receive()
            if not isinstance(message, tuple) or not message:
                continue
            if message[0] == _DOWN:
                return
            if message[0] == _EVENT and len(message) == 7:
                _, _, kind, peer, node_type, reason, dropped = message
                self._on_event(node.name, kind == _UP, _name(peer), str(node_type), reason, dropped)

    def _snapshot(self, observer: str, visible: list[str], hidden: list[str]) -> None:
        """The node lists read when the watcher started: peers seen now are up (new ones joined)."""
        for peer in visible:
            if observer not in self._observers.get(peer, set()):
                self._on_event(observer, True, peer, "visible", None, 0, snapshot=True)
        for peer in hidden:
            self._hidden.setdefault(peer, set()).add(observer)

    def _on_event(
        self,
        observer: str,
        up: bool,
        peer: str,
        node_type: str,
        reason: Any,
        dropped: Any,
        *,
        snapshot: bool = False,
    ) -> None:
        hidden = node_type == "hidden"
        table = self._hidden if hidden else self._observers
        seen = table.setdefault(peer, set())
        if up:
            seen.add(observer)
        else:
            seen.discard(observer)
            self._reasons[peer] = _reason_text(reason)
        action: str | None = None
        if hidden:
            action = "reported (hidden nodes are never attached)"
        elif up and self.auto_attach and self._attached(peer) is None and peer not in self._attaching:
            action = "attaching"
            self._attaching[peer] = asyncio.create_task(
                self._attach_joined(peer), name=f"cluster-attach {peer}"
            )
        event = {
            "event": "nodeup" if up else "nodedown",
            "node": peer,
            "observer": observer,
            "node_type": node_type,
            "reason": None if up else _reason_text(reason),
            "action": action,
            "snapshot": snapshot,
            "dropped": dropped if isinstance(dropped, int) else 0,
            "at": time.time(),
        }
        self._emit(event)
        if not up and not hidden and not seen:
            self._later_mark_down(peer)

    async def _attach_joined(self, peer: str) -> None:
        try:
            error = await self._attach(peer, self.attach_options)
            if error is None:
                node = self._attached(peer)
                if node is not None:
                    self.follow(node)
                self._emit({"event": "attached", "node": peer, "at": time.time()})
            else:
                self._emit({"event": "attach_failed", "node": peer, **error, "at": time.time()})
        finally:
            self._attaching.pop(peer, None)

    def _later_mark_down(self, peer: str) -> None:
        """No followed node sees ``peer``: once Arsenal's own connection to it is gone too (or it
        was never attached), report it down. A node Arsenal still reaches is ``isolated``."""

        async def check() -> None:
            for _ in range(20):  # our own connection usually closes at the same moment
                node = self._attached(peer)
                if node is None or not node.connected:
                    break
                await asyncio.sleep(0.05)
            if self._observers.get(peer):
                return  # it came back meanwhile
            status = self.status(peer)
            self._emit(
                {"event": "marked_down" if status == "down" else "isolated", "node": peer,
                 "reason": self._reasons.get(peer), "at": time.time()}
            )  # fmt: skip

        task = asyncio.create_task(check(), name=f"cluster-down {peer}")
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    # ------------------------------------------------------------------ state

    def status(self, name: str) -> str:
        """``up`` (a followed node sees it), ``isolated`` (only Arsenal reaches it), ``down``."""
        if self._observers.get(name):
            return "up"
        node = self._attached(name)
        if node is not None and node.connected:
            return "isolated" if name in self._observers else "up"
        return "down"

    def members(self) -> list[dict[str, Any]]:
        """Every visible node seen (attached or reported by a followed node), with its status."""
        names = set(self._observers)
        if self._pool is not None:
            names.update(node.name for node in self._pool.nodes)
        rows = []
        for name in sorted(names):
            node = self._attached(name)
            rows.append(
                {
                    "node": name,
                    "status": self.status(name),
                    "attached": node is not None,
                    "connected": bool(node is not None and node.connected),
                    "seen_by": sorted(self._observers.get(name, ())),
                    "last_down_reason": self._reasons.get(name),
                }
            )
        return rows

    def hidden(self) -> list[dict[str, Any]]:
        return [
            {"node": name, "seen_by": sorted(seen)} for name, seen in sorted(self._hidden.items()) if seen
        ]

    # ------------------------------------------------------------------ live events

    def _emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        for watcher in list(self._watchers):
            watcher.offer([event])

    def watch(self) -> Watcher:
        watcher = Watcher()
        self._watchers.append(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        with contextlib.suppress(ValueError):
            self._watchers.remove(watcher)

    async def aclose(self) -> None:
        self._closed = True
        tasks = [*self._follow.values(), *self._attaching.values(), *self._checks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._follow.clear()
        self._attaching.clear()
        for watcher in self._watchers:
            watcher.offer(None, force=True)


def _reason_text(reason: Any) -> str | None:
    if reason is None or reason == Atom("undefined"):
        return None
    from ..terms.render import render

    return render(reason, "erlang", max_items=10)


async def push_events(send: Any, channel: str, membership: ClusterMembership) -> None:
    """The WebSocket's ``cluster`` channel: each membership event as
    ``{"type": "cluster", "channel": "cluster", "data": event}``, until the channel is closed."""
    watcher = membership.watch()
    try:
        while True:
            batch = await watcher.queue.get()
            if batch is None:
                return
            for event in batch:
                await send(
                    {
                        "type": "cluster",
                        "channel": channel,
                        "data": {**event, "dropped_here": watcher.dropped},
                    }
                )
    finally:
        membership.unwatch(watcher)
