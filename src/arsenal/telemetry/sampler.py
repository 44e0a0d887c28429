"""The node sampler: every attached node's vital signs, one cheap agent call per node per interval.

A service of one Arsenal (``services.get(NodeSampler)``), started with the node pool it samples
(``start(pool, interval)``; ``arsenal serve --sample-interval``). Each round calls
``arsenal_agent_vitals:vitals/0`` on every attached node at once, each with its own timeout, so a
slow or dead node neither delays the others nor stops the loop: it is reported down until it
answers again. The next round starts ``interval`` seconds after the previous one started (never
sooner), so a scrape of /metrics reads the last sample and never makes a node work more often.

Scheduler utilisation comes from ``scheduler_wall_time`` deltas kept here. The flag is held on
each node by a small process of the agent's (``hold/1``) that watches a Python process of ours:
closing that process (``aclose``, a node detached) or losing the connection ends the holder and
the VM turns the flag back off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..beam import Node, NodePool
from ..dist import Atom, Process, Term

__all__ = ["DEFAULT_INTERVAL", "MIN_INTERVAL", "NodeSampler", "NodeVitals"]

log = logging.getLogger("arsenal.telemetry")

VITALS_MODULE = "arsenal_agent_vitals"
DEFAULT_INTERVAL = 10.0
MIN_INTERVAL = 0.1
MAX_CALL_TIMEOUT = 5.0
RECENT = 16


@dataclass
class NodeVitals:
    """The last sample of one node; ``up`` False (and ``values`` empty) when it did not answer."""

    node: str
    up: bool
    sampled_at: float = field(default_factory=time.time)
    duration_s: float = 0.0
    error: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, int] = field(default_factory=dict)
    run_queues: list[int] = field(default_factory=list)
    utilization: dict[int, float] | None = None
    """Per normal scheduler, busy share of the time since the previous sample (None until two)."""


@dataclass
class _Holder:
    """The scheduler_wall_time holder on one node, tied to one connection of it."""

    owner: Process
    connection: object
    wall: dict[int, tuple[int, int]] | None = None


class NodeSampler:
    """Samples every node of a pool at an interval; ``snapshot()`` is what /metrics reads."""

    def __init__(self, services: Any = None) -> None:
        self.services = services
        self.interval = DEFAULT_INTERVAL
        self.pool: NodePool | None = None
        self.samples: dict[str, NodeVitals] = {}
        self.counts: dict[str, int] = {}
        self.recent: dict[str, deque[float]] = {}
        """Monotonic start times of the last samples per node (the interval can be checked)."""
        self._holders: dict[str, _Holder] = {}
        self._subscribers: list[Any] = []
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ lifetime

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, pool: NodePool, interval: float | None = None) -> None:
        """Sample ``pool``'s nodes every ``interval`` seconds (default 10) until :meth:`aclose`."""
        if interval is not None:
            if interval < MIN_INTERVAL:
                raise ValueError(f"the sampling interval must be at least {MIN_INTERVAL} s")
            self.interval = interval
        self.pool = pool
        if not self.running:
            self._task = asyncio.create_task(self._loop(), name="arsenal-node-sampler")

    def ensure_started(self, pool: NodePool) -> None:
        """Start with the current interval unless running (the /metrics route calls this)."""
        if not self.running:
            self.start(pool)

    async def aclose(self) -> None:
        """Stop sampling and let every node turn scheduler_wall_time back off."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for name in list(self._holders):
            await self._release(name)

    async def _loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.sample_now()
            except Exception:  # a bug here must not end the sampling of every node
                log.exception("sampling round failed")
            await asyncio.sleep(max(0.0, started + self.interval - time.monotonic()))

    # ------------------------------------------------------------------ sampling

    def snapshot(self) -> dict[str, NodeVitals]:
        """The last sample of every node still attached."""
        return dict(self.samples)

    async def sample_now(self, *, only_missing: bool = False) -> None:
        """One round over the attached nodes (``only_missing``: just those never sampled yet)."""
        if self.pool is None or (only_missing and self._lock.locked()):
            return  # a round is under way: it samples the new nodes too
        async with self._lock:
            nodes = self.pool.nodes
            attached = {node.name for node in nodes}
            for name in [n for n in self.samples if n not in attached]:
                self._forget(name)
            for name in [n for n in self._holders if n not in attached]:
                await self._release(name)
            if only_missing:
                nodes = [node for node in nodes if node.name not in self.samples]
            if nodes:
                await asyncio.gather(*(self._sample(node) for node in nodes))

    async def _sample(self, node: Node) -> None:
        started = time.monotonic()
        self.recent.setdefault(node.name, deque(maxlen=RECENT)).append(started)
        self.counts[node.name] = self.counts.get(node.name, 0) + 1
        timeout = min(MAX_CALL_TIMEOUT, max(self.interval, 1.0))
        try:
            raw = await asyncio.wait_for(self._call(node, timeout), timeout)
            vitals = _vitals(node.name, raw)
        except Exception as exc:  # down, timed out, agent missing: all mean "no sample this round"
            self.samples[node.name] = NodeVitals(
                node.name, up=False, error=str(exc) or type(exc).__name__,
                duration_s=time.monotonic() - started,
            )  # fmt: skip
            return
        vitals.duration_s = time.monotonic() - started
        vitals.utilization = self._utilization(node.name, raw[Atom("scheduler_wall_time")])
        self.samples[node.name] = vitals
        self._publish(vitals)

    def subscribe(self, callback: Any) -> None:
        """Call ``callback(node, {metric: number}, sampled_at)`` after every sample (alert rules)."""
        if callback not in self._subscribers:
            self._subscribers.append(callback)

    def _publish(self, vitals: NodeVitals) -> None:
        flat = {k: float(v) for k, v in vitals.values.items() if isinstance(v, int | float)}
        flat.update({f"memory_{kind}": float(size) for kind, size in vitals.memory.items()})
        flat["run_queue"] = float(sum(vitals.run_queues))
        if vitals.utilization:
            flat["scheduler_utilization"] = sum(vitals.utilization.values()) / len(vitals.utilization)
        for callback in list(self._subscribers):
            try:
                callback(vitals.node, flat, vitals.sampled_at)
            except Exception:  # a broken subscriber must not stop sampling
                log.exception("a sample subscriber failed")

    async def _call(self, node: Node, timeout: float) -> Term:
        if not node.connected:
            raise ConnectionError(f"{node.name} is not connected")
        await self._hold(node, timeout)
        return await node.agent_call("vitals", [], timeout, module=VITALS_MODULE)

    # ------------------------------------------------------------------ scheduler_wall_time

    async def _hold(self, node: Node, timeout: float) -> None:
        """Make sure a holder runs on the node's current connection (a reconnect needs a new one)."""
        holder = self._holders.get(node.name)
        connection = node.connection
        if holder is not None and holder.connection is connection and not holder.owner.closed:
            return
        if holder is not None:
            await self._release(node.name)
        owner = node.spawn_process(mailbox_size=1)
        try:
            await node.agent_call("hold", [owner.pid], timeout, module=VITALS_MODULE)
        except BaseException:
            await owner.close()
            raise
        self._holders[node.name] = _Holder(owner, connection)

    async def _release(self, name: str) -> None:
        holder = self._holders.pop(name, None)
        if holder is not None:
            with contextlib.suppress(Exception):  # a dead connection ends the holder by itself
                await holder.owner.close()

    def _utilization(self, name: str, wall: Term) -> dict[int, float] | None:
        holder = self._holders.get(name)
        if holder is None or not isinstance(wall, list):
            return None
        current = {int(id_): (int(active), int(total)) for id_, active, total in wall}
        previous, holder.wall = holder.wall, current
        if previous is None:
            return None
        usage: dict[int, float] = {}
        for id_, (active, total) in current.items():
            before = previous.get(id_)
            if before is not None and total > before[1]:
                usage[id_] = min(1.0, max(0.0, (active - before[0]) / (total - before[1])))
        return usage or None

    def _forget(self, name: str) -> None:
        self.samples.pop(name, None)
        self.counts.pop(name, None)
        self.recent.pop(name, None)


def _vitals(name: str, raw: Any) -> NodeVitals:
    def get(key: str) -> Any:
        return raw[Atom(key)]

    scalars = (
        "process_count", "process_limit", "port_count", "port_limit", "atom_count", "atom_limit",
        "ets_count", "ets_limit", "schedulers", "schedulers_online", "dirty_cpu_run_queue",
        "dirty_io_run_queue", "reductions", "runtime_ms", "uptime_ms",
    )  # fmt: skip
    return NodeVitals(
        name,
        up=True,
        values={key: int(get(key)) for key in scalars},
        memory={str(kind): int(value) for kind, value in get("memory").items()},
        run_queues=[int(n) for n in get("run_queues")],
    )
