"""Live trace sessions of one Arsenal: started, pumped into the store, watched, stopped.

:class:`TraceManager` is a service (see :class:`arsenal.ops.base.Services`): one per Arsenal,
holding the sessions it started. Each session has a pump task that takes the event batches
the node sends (:class:`arsenal.beam.trace.TraceSession`), renders them as JSON-ready dicts
in the node's language, appends them to the store and hands them to live watchers (the
WebSocket's ``trace:<id>`` channel, the CLI's live view). A watcher that falls behind loses
batches, counted, instead of slowing the pump: the node must never wait on a browser.

When the Arsenal closes, its sessions are stopped; if it dies instead, the node ends them by
itself (the session's owner is a process of this Arsenal's connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..beam import Node
from ..beam.trace import TraceEnd, TraceEvent, TraceSession
from ..dist import Atom, Pid, Term
from ..store import TraceStore
from ..terms.render import render
from .base import Services
from .errors import ErrorCode, OperationError
from .plain import mfa_text, pid_text
from .watchers import Watcher

__all__ = ["LiveTrace", "TraceManager", "Watcher", "render_event"]

TRUNCATED = Atom("$arsenal_truncated")
MAX_ITEMS = 200


@dataclass
class LiveTrace:
    id: str
    node: Node
    kind: str
    spec: dict[str, Any]
    session: TraceSession
    started_at: float
    events: int = 0
    watchers: list[Watcher] = field(default_factory=list)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class TraceManager:
    """The trace sessions one Arsenal runs (a service: ``ctx.services.get(TraceManager)``)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.live: dict[str, LiveTrace] = {}
        self.store = TraceStore(services.store)

    async def start(
        self, node: Node, kind: str, spec: dict[str, Any], wire: Term, principal: str | None
    ) -> LiveTrace:
        """Start a session on ``node``; the agent's refusals become :class:`OperationError`."""
        started = await TraceSession.start(node, wire)
        if not isinstance(started, TraceSession):
            raise refusal(started, node, self)
        trace = LiveTrace(
            id=secrets.token_hex(6),
            node=node,
            kind=kind,
            spec=spec,
            session=started,
            started_at=time.time(),
        )
        self.store.create(trace.id, node.name, kind, spec, principal)
        self.live[trace.id] = trace
        trace.task = asyncio.create_task(self._pump(trace), name=f"arsenal-trace {trace.id}")
        return trace

    async def _pump(self, trace: LiveTrace) -> None:
        language = trace.node.language
        try:
            async for batch in trace.session.batches():
                rendered = [render_event(event, language, trace.node.name) for event in batch]
                trace.events += len(rendered)
                self.store.append(trace.id, rendered)
                for watcher in trace.watchers:
                    watcher.offer(rendered)
        finally:
            end = trace.session.end or TraceEnd(reason="stopped")
            with contextlib.suppress(Exception):  # a closed store at shutdown loses only the summary
                self.store.finish(trace.id, end.reason, trace.events, end.dropped, end.truncated)
            for watcher in trace.watchers:
                watcher.offer(None, force=True)
            self.live.pop(trace.id, None)
            trace.finished.set()
            with contextlib.suppress(Exception):
                await trace.session.process.close()

    def agent_ids(self, node: Node) -> dict[int, str]:
        """The node's session numbers of this Arsenal's sessions there, to name them in errors."""
        return {t.session.id: t.id for t in self.live.values() if t.node is node}

    def watch(self, trace_id: str) -> Watcher:
        trace = self.live.get(trace_id)
        if trace is None:
            raise OperationError(ErrorCode.not_found, f"no live trace session {trace_id}; it may have ended")
        watcher = Watcher()
        trace.watchers.append(watcher)
        return watcher

    def unwatch(self, trace_id: str, watcher: Watcher) -> None:
        trace = self.live.get(trace_id)
        if trace is not None and watcher in trace.watchers:
            trace.watchers.remove(watcher)

    async def wait(self, trace: LiveTrace, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(trace.finished.wait(), timeout)

    async def stop(self, trace_id: str, timeout: float = 10.0) -> None:
        """Stop a live session and wait for its last events to be stored."""
        trace = self.live.get(trace_id)
        if trace is None:
            return
        await trace.session.stop(timeout)
        await self.wait(trace, timeout)
        if not trace.finished.is_set() and trace.task is not None:
            # The node did not answer: end it on this side (the node ends it when the owner goes).
            trace.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await trace.task

    async def aclose(self) -> None:
        for trace_id in list(self.live):
            with contextlib.suppress(Exception):
                await self.stop(trace_id, timeout=5.0)


# ---------------------------------------------------------------------- errors from the agent


def refusal(reply: Term, node: Node, manager: TraceManager | None = None) -> OperationError:
    """The agent's ``{error, Reason}`` for a session start, as an error that says what to do."""
    reason = reply[1] if isinstance(reply, tuple) and len(reply) == 2 else reply
    tag = reason[0] if isinstance(reason, tuple) and reason else reason
    arg = reason[1] if isinstance(reason, tuple) and len(reason) > 1 else None
    name = node.name
    if tag == Atom("unknown_atom"):
        text = arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)
        return OperationError(
            ErrorCode.not_found,
            f"{text!r} is not an atom on {name}, so no module, function or value of that name is "
            "loaded there (nothing was created): check the spelling, or load the module first",
            {"atom": text},
        )
    if tag == Atom("refused"):
        return _refused(arg)
    if tag == Atom("conflict"):
        holder = manager.agent_ids(node).get(reason[2]) if manager else None
        who = f"session {holder}" if holder else f"another Arsenal session (#{reason[2]} on the node)"
        return OperationError(
            ErrorCode.conflict,
            f"{_mfa(arg)} is already traced by {who}; one function has one trace pattern, so stop that "
            "session or add your conditions to it",
            {"function": _mfa(arg), "session": holder},
        )
    if tag == Atom("foreign_tracer"):
        return OperationError(
            ErrorCode.conflict,
            f"another tracer ({render(arg)}: dbg, recon_trace or redbug?) is tracing these processes on "
            f"{name}; stop it first (dbg:stop(), recon_trace:clear())",
        )
    if tag == Atom("dead"):
        return OperationError(ErrorCode.not_found, f"{render(arg)} exited before tracing started")
    if tag == Atom("not_loaded"):
        return OperationError(
            ErrorCode.not_found,
            f"module {render(arg, node.language)} is not loaded on {name}; Arsenal does not load code to "
            "trace it: load it first (code:ensure_loaded/1) or trace once it runs",
        )
    if tag == Atom("no_match"):
        return OperationError(
            ErrorCode.not_found,
            f"no function matches {_mfa(arg)} on {name}; Mod:module_info(exports) lists the exported "
            "ones (local ones need scope=local)",
        )
    if tag == Atom("bad_match_spec"):
        problems = [p.decode(errors="replace") if isinstance(p, bytes) else str(p) for p in arg or []]
        return OperationError(
            ErrorCode.validation_error,
            f"the node refused the match conditions: {'; '.join(problems)[:500]}",
            {"problems": problems},
        )
    if tag == Atom("too_many_sessions"):
        return OperationError(
            ErrorCode.limit_exceeded,
            f"{name} already runs {arg} trace sessions, the most it allows; stop one first",
        )
    if tag == Atom("hub_timeout"):
        return OperationError(ErrorCode.timeout, f"the tracer on {name} did not answer in 10 s; try again")
    if tag in (Atom("too_deep"), Atom("unsafe_term")):
        return OperationError(
            ErrorCode.validation_error, f"the trace spec cannot be sent safely: {render(reason)}"
        )
    return OperationError(
        ErrorCode.agent_error, f"the tracer on {name} refused: {render(reason, max_items=20)}"
    )


def _refused(arg: Term) -> OperationError:
    if arg == Atom("every_module"):
        text = "tracing every module would trace the whole VM; name a module (mod:fun/arity)"
    elif isinstance(arg, tuple) and arg[0] == Atom("arsenal_agent"):
        text = f"{arg[1]} is Arsenal's own agent; tracing it would trace the tracer"
    elif isinstance(arg, tuple) and arg[0] == Atom("hot_module"):
        text = (
            f"every function of {arg[1]} is called all the time by the VM itself; name the function "
            f"({arg[1]}:fun/arity) or, as an admin, force it"
        )
    else:
        text = f"refused: {render(arg)}"
    return OperationError(ErrorCode.forbidden, text)


def _mfa(value: Term) -> str:
    if isinstance(value, tuple) and len(value) == 3:
        module, function, arity = (render(v) for v in value)
        return f"{module}:{function}/{arity}"
    return render(value)


# ---------------------------------------------------------------------- events as JSON


def render_event(event: TraceEvent, language: str, local_node: str | None = None) -> dict[str, Any]:
    """A trace event as the API and the store serve it: text in the node's language, the node's own
    pids written as requests write them (``<0.N.S>``, ``#PID<0.N.S>``)."""
    row: dict[str, Any] = {
        "seq": event.seq,
        "time_us": event.time_us,
        "time": datetime.fromtimestamp(event.time_us / 1_000_000, UTC).isoformat(timespec="microseconds"),
        "kind": event.kind,
        "pid": _id(event.pid, language),
    }
    truncated = False

    def text(term: Term) -> str:
        nonlocal truncated
        if isinstance(term, tuple) and len(term) == 3 and term[0] == TRUNCATED:
            truncated = True
            preview = term[2].decode(errors="replace") if isinstance(term[2], bytes) else ""
            return f"... ({term[1]} bytes, truncated) {preview}"
        return render(term, language, max_items=MAX_ITEMS, local_node=local_node)

    kind, a, b = event.kind, event.a, event.b
    if kind == "call" and isinstance(a, tuple) and len(a) == 3:
        module, function, args = a
        arity = len(args) if isinstance(args, list) else None
        row["mfa"] = mfa_text((module, function, arity), language) if arity is not None else text(a)
        row["args"] = [text(arg) for arg in args] if isinstance(args, list) else [text(args)]
        row["caller"] = mfa_text(b, language) if b != Atom("undefined") else None
    elif kind in ("return_from", "exception_from"):
        row["mfa"] = mfa_text(a, language)
        if kind == "return_from":
            row["result"] = text(b)
        elif isinstance(b, tuple) and len(b) == 2:
            row["class"] = str(b[0])
            row["reason"] = text(b[1])
    elif kind in ("send", "send_to_non_existing_process"):
        row["message"] = text(a)
        row["to"] = _id(b, language, local_node)
    elif kind == "receive":
        row["message"] = text(a)
    elif kind == "exit":
        row["reason"] = text(a)
    elif kind in ("spawn", "spawned"):
        row["other"] = _id(a, language)
        row["mfa"] = text(b)
    elif kind in ("link", "unlink", "getting_linked", "getting_unlinked"):
        row["other"] = _id(a, language)
    elif kind in ("register", "unregister"):
        row["name"] = text(a)
    else:
        row["data"] = text(a)
    row["truncated"] = truncated
    return row


def _id(value: Term, language: str, local_node: str | None = None) -> str:
    if isinstance(value, Pid):
        return pid_text(value)
    return render(value, language, max_items=20, local_node=local_node)
