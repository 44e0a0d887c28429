"""Supervisors' restart history, recorded continuously from each attached node.

The agent module ``arsenal_agent_restarts`` installs a logger primary filter on the node
that sees every supervisor report (child_terminated, start_error, shutdown, and the
progress report of each child started) as it is logged, so nothing polls the children.
Its collector batches compact events to a Python process here (the owner); when that
process closes or the connection drops, the agent removes the filter and puts the logger's
module levels back. Events are stored in ``supervisor_restarts`` and handed to subscribers
(the alert evaluator). Retention: rows older than ``retention_days`` and, per node, all but
the newest ``max_rows_per_node`` are pruned when a collector starts and every
``prune_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..dist import Atom, Pid, Process
from ..dist.process import DOWN
from ..ops.plain import pid_text
from ..terms.render import render

if TYPE_CHECKING:
    from ..beam import Node
    from ..ops.base import Services
    from ..store import Store

__all__ = ["AGENT", "RestartEvent", "RestartHistory", "child_text"]

AGENT = "arsenal_agent_restarts"
BATCH = Atom("arsenal_restarts")
MAILBOX = 2_000
log = logging.getLogger("arsenal.analytics")


@dataclass(frozen=True, slots=True)
class RestartEvent:
    """One supervisor event as stored: ``event`` is started, child_terminated, start_error,
    shutdown or shutdown_error; ``time`` is seconds since the epoch, taken in the VM."""

    node: str
    supervisor: str
    child_id: str
    event: str
    reason: str | None
    pid: str | None
    time: float


Listener = Callable[[RestartEvent], None]


def child_text(value: Any, language: str) -> str:
    """A child id as text, the same way for history rows and for live children."""
    if value == Atom("undefined"):
        return "undefined"
    return render(value, language, max_items=20)


def _env_number(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass
class _Collector:
    node: Node
    process: Process
    collector: Pid
    task: asyncio.Task[None] | None = None
    dropped: int = 0
    received: int = 0
    ended: str | None = None


@dataclass
class RestartHistory:
    """The restart history service (one per Arsenal: ``services.get(RestartHistory)``)."""

    services: Services
    retention_days: float = field(default_factory=lambda: _env_number("ARSENAL_RESTART_RETENTION_DAYS", 30))
    max_rows_per_node: int = field(
        default_factory=lambda: int(_env_number("ARSENAL_RESTART_MAX_ROWS", 100_000))
    )
    prune_interval: float = 3600.0
    _collectors: dict[str, _Collector] = field(default_factory=dict)
    _listeners: list[Listener] = field(default_factory=list)
    _pruner: asyncio.Task[None] | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def store(self) -> Store:
        return self.services.store

    # ------------------------------------------------------------------ collectors

    def running(self, node_name: str) -> bool:
        entry = self._collectors.get(node_name)
        return entry is not None and entry.ended is None

    async def ensure(self, node: Node, timeout: float = 10.0) -> None:
        """Record ``node``'s supervisor events from now on (nothing if already recording)."""
        async with self._lock:
            if self.running(node.name):
                return
            process = node.spawn_process(mailbox_size=MAILBOX)
            try:
                reply = await node.agent_call("start", [process.pid, {}], timeout, module=AGENT)
                if not (isinstance(reply, tuple) and len(reply) == 2 and reply[0] == Atom("ok")):
                    raise RuntimeError(f"{node.name} refused to record supervisor events: {reply!r}")
                entry = _Collector(node, process, reply[1])
                await process.monitor(entry.collector)
            except BaseException:
                await process.close()
                raise
            entry.task = asyncio.create_task(self._receive(entry), name=f"arsenal-restarts {node.name}")
            self._collectors[node.name] = entry
            if self._pruner is None:
                self.prune()
                self._pruner = asyncio.create_task(self._prune_loop(), name="arsenal-restarts prune")

    async def stop(self, node_name: str) -> None:
        """Stop recording ``node_name``: the agent removes its filter and restores the logger."""
        entry = self._collectors.pop(node_name, None)
        if entry is None:
            return
        if entry.task is not None:
            entry.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await entry.task
        await entry.process.close()

    async def aclose(self) -> None:
        for name in list(self._collectors):
            await self.stop(name)
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
            self._pruner = None

    def status(self, node_name: str) -> dict[str, Any]:
        entry = self._collectors.get(node_name)
        if entry is None:
            return {"recording": False, "received": 0, "dropped": 0}
        return {"recording": entry.ended is None, "received": entry.received, "dropped": entry.dropped}

    async def _receive(self, entry: _Collector) -> None:
        try:
            while True:
                message = await entry.process.receive()
                if isinstance(message, tuple) and len(message) == 3 and message[0] == BATCH:
                    events = [self._event(entry.node, raw) for raw in message[1]]
                    entry.received += len(events)
                    entry.dropped += int(message[2]) if isinstance(message[2], int) else 0
                    self._record([e for e in events if e is not None])
                elif isinstance(message, tuple) and len(message) == 5 and message[0] == DOWN:
                    entry.ended = "node_down" if message[4] == Atom("noconnection") else "collector_down"
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a closed process (detach) ends the loop
            entry.ended = f"closed: {exc}"
        finally:
            if entry.ended is None:
                entry.ended = "stopped"

    def _event(self, node: Node, raw: Any) -> RestartEvent | None:
        try:
            time_ms, kind, sup_pid, sup_name, child_id, pid, reason = raw
        except (TypeError, ValueError):
            return None
        lang = node.language
        if isinstance(sup_name, Atom) and sup_name != Atom("undefined"):
            supervisor = render(sup_name, lang)
        else:
            supervisor = pid_text(sup_pid) if isinstance(sup_pid, Pid) else "undefined"
        return RestartEvent(
            node=node.name,
            supervisor=supervisor,
            child_id=child_text(child_id, lang),
            event=str(kind),
            reason=reason.decode(errors="replace") if isinstance(reason, bytes) else None,
            pid=pid_text(pid) if isinstance(pid, Pid) else None,
            time=time_ms / 1000.0,
        )

    def _record(self, events: list[RestartEvent]) -> None:
        if not events:
            return
        self.store.write_many(
            "INSERT INTO supervisor_restarts (node, supervisor, child_id, event, reason, pid, time) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(e.node, e.supervisor, e.child_id, e.event, e.reason, e.pid, e.time) for e in events],
        )
        for event in events:
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:  # a listener's failure must not stop the recording
                    log.exception("restart-history listener failed")

    # ------------------------------------------------------------------ subscribers

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(event)`` for every event recorded from now on (on the event loop)."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    # ------------------------------------------------------------------ queries and retention

    def events(
        self, node: str, supervisors: list[str], since: float, *, limit: int = 100_000
    ) -> list[RestartEvent]:
        """Stored events of the supervisor (any of its names: registered name, pid text) since then."""
        if not supervisors:
            return []
        marks = ",".join("?" * len(supervisors))
        rows = self.store.execute(
            f"SELECT node, supervisor, child_id, event, reason, pid, time FROM supervisor_restarts "
            f"WHERE node = ? AND supervisor IN ({marks}) AND time >= ? ORDER BY time, id LIMIT ?",
            (node, *supervisors, since, limit),
        )
        return [RestartEvent(**dict(row)) for row in rows]

    def prune(self, now: float | None = None) -> int:
        """Apply retention; the number of rows removed."""
        now = time.time() if now is None else now
        removed = self.store.write(
            "DELETE FROM supervisor_restarts WHERE time < ?", (now - self.retention_days * 86400,)
        )
        for row in self.store.execute("SELECT DISTINCT node FROM supervisor_restarts"):
            removed += self.store.write(
                "DELETE FROM supervisor_restarts WHERE node = ? AND id <= (SELECT id FROM "
                "supervisor_restarts WHERE node = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (row["node"], row["node"], self.max_rows_per_node),
            )
        return removed

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(self.prune_interval)
            try:
                self.prune()
            except Exception:
                log.exception("pruning the restart history failed")
