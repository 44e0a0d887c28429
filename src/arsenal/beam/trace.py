"""A trace session on an attached node: the agent's tracer hub runs it, Python receives its events.

The session's limits are enforced inside the target (``arsenal_agent_trace``); this side
only starts a session, receives its event batches in a Python process's mailbox, and
stops it. The Python process is the session's owner on the node: when it closes, or the
connection drops, the hub ends the session by itself, so an Arsenal that goes away leaves
no tracing behind. The hub is monitored from here too, so a hub that dies (or a node that
goes away) ends the session on this side with a reason rather than a silent wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ..dist import Atom, Pid, Process, Term
from ..dist.process import DOWN
from .node import Node

__all__ = ["TRACE_MODULE", "TraceEnd", "TraceEvent", "TraceSession"]

TRACE_MODULE = "arsenal_agent_trace"
TRACE = Atom("arsenal_trace")
DONE = Atom("arsenal_trace_done")
MAILBOX_BATCHES = 10_000


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One event as the hub sends it: ``a`` and ``b`` depend on ``kind`` (see the agent's doc).

    call: a = (M, F, Args), b = caller MFA or undefined; return_from: a = (M, F, Arity),
    b = value; exception_from: a = (M, F, Arity), b = (Class, Reason); send: a = message,
    b = destination; receive: a = message; spawn: a = new pid, b = (M, F, Args); exit: a =
    reason; link/unlink/getting_linked/getting_unlinked: a = the other process;
    register/unregister: a = the name.
    """

    seq: int
    time_us: int
    kind: str
    pid: Term
    a: Term
    b: Term


@dataclass(frozen=True, slots=True)
class TraceEnd:
    """Why and how a session ended (``reason``: stopped, max_events, max_ms, rate_limit,
    queue_overflow, owner_down, processes_exited, hub_down, node_down)."""

    reason: str
    events: int = 0
    dropped: int = 0
    truncated: int = 0
    duration_ms: int = 0
    profile: list[Any] = field(default_factory=list)
    """For profiling sessions: one map per counted function (mfa, calls, time_us, processes),
    read by the hub just before it removed the counters."""


@dataclass
class TraceSession:
    """One live session; iterate :meth:`batches` until it ends, or :meth:`stop` it."""

    node: Node
    id: int
    process: Process
    hub: Pid
    info: dict[str, Any]
    end: TraceEnd | None = None
    _hub_ref: Any = field(default=None, repr=False)

    @classmethod
    async def start(cls, node: Node, wire_spec: Term, *, timeout: float = 15.0) -> TraceSession | Term:
        """Start a session from a safe-term encoded spec; the agent's ``{error, Reason}`` is returned
        as it is (the operation layer turns it into a message)."""
        process = node.spawn_process(mailbox_size=MAILBOX_BATCHES)
        try:
            reply = await node.agent_call(
                "start_session", [wire_spec, process.pid], timeout, module=TRACE_MODULE
            )
        except BaseException:
            await process.close()
            raise
        if not (isinstance(reply, tuple) and len(reply) == 2 and reply[0] == Atom("ok")):
            await process.close()
            return reply
        info = {str(k): v for k, v in reply[1].items()}
        session = cls(node, int(info["id"]), process, info["hub"], info)
        session._hub_ref = await process.monitor(session.hub)
        return session

    @property
    def done(self) -> bool:
        return self.end is not None

    async def batches(self) -> AsyncIterator[list[TraceEvent]]:
        """Event batches in order, until the session ends (then :attr:`end` says why)."""
        while self.end is None:
            message = await self.process.receive()
            batch = self._handle(message)
            if batch:
                yield batch
        await self.process.close()

    def _handle(self, message: Term) -> list[TraceEvent] | None:
        if isinstance(message, tuple) and len(message) == 3 and message[0] == TRACE and message[1] == self.id:
            return [_event(raw) for raw in message[2]]
        if isinstance(message, tuple) and len(message) == 4 and message[0] == DONE and message[1] == self.id:
            stats = {str(k): v for k, v in message[3].items()} if isinstance(message[3], dict) else {}
            self.end = TraceEnd(
                reason=str(message[2]),
                events=stats.get("events", 0),
                dropped=stats.get("dropped", 0),
                truncated=stats.get("truncated", 0),
                duration_ms=stats.get("duration_ms", 0),
                profile=list(stats.get("profile", [])),
            )
        elif (
            isinstance(message, tuple)
            and len(message) == 5
            and message[0] == DOWN
            and message[1] == self._hub_ref
        ):
            self.end = TraceEnd(reason="node_down" if message[4] == Atom("noconnection") else "hub_down")
        return None

    async def stop(self, timeout: float = 10.0) -> None:
        """Ask the hub to end the session; its last batch and end message still arrive."""
        if self.end is not None or not self.node.connected:
            return
        with contextlib.suppress(Exception):  # already ended on the node: its end message is on its way
            await self.node.agent_call("stop_session", [self.id], timeout, module=TRACE_MODULE)

    async def close(self) -> None:
        """Forget the session on this side; closing the owner process ends it on the node too."""
        if self.end is None:
            self.end = TraceEnd(reason="stopped")
        await self.process.close()


def _event(raw: Term) -> TraceEvent:
    seq, time_us, kind, pid, a, b = raw  # type: ignore[misc]
    return TraceEvent(seq, time_us, str(kind), pid, a, b)


async def drain(session: TraceSession, timeout: float) -> list[TraceEvent]:
    """Every event until the session ends or ``timeout`` passes (for scripts and tests)."""
    events: list[TraceEvent] = []

    async def collect() -> None:
        async for batch in session.batches():
            events.extend(batch)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(collect(), timeout)
    return events
