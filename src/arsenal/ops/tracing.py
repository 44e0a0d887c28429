"""Tracing operations: function calls, messages and a process's life, with the limits enforced
inside the target (``arsenal_agent_trace``, the way recon_trace and redbug do it).

A session starts and the call returns at once with its id (``wait=true`` waits for its end
and returns its events). Events stream to the WebSocket channel ``trace:<id>`` and are
stored as they arrive; ``get_trace_results`` pages them, during the session and after,
``stop_trace`` ends it. Every session stops itself at its first limit: ``max_events``,
``duration``, ``rate`` events per ``rate_interval`` (a trip), ``max_queue`` messages
waiting in the tracer, and each event is cut to ``max_bytes``. A session also ends when
this Arsenal goes away, or when every process it traces has exited.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from ..beam import Node
from ..dist import Atom, Term
from .base import Context, Operation, Params, Result, Severity
from .errors import ErrorCode, OperationError
from .registry import register
from .safeterm import to_wire
from .targets import resolve_process
from .trace_sessions import LiveTrace, TraceManager

__all__ = [
    "GetProcessHistory",
    "GetTraceResults",
    "ListTraces",
    "StopTrace",
    "TraceCalls",
    "TraceMessages",
    "TraceProcess",
]

CATEGORY = "tracing"
MAX_WAIT_EVENTS = 1000
SAFE_LIMITS = (
    "Limits enforced in the target: max_events (default 100), duration (15 s), rate events per "
    "rate_interval (1000/s; a trip stops the session, like recon_trace), max_queue messages waiting in "
    "the tracer (10 000: past it all tracing stops at once), max_bytes per event (4 KiB; larger "
    "arguments or messages are cut and marked)."
)


PatternText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
"""A trace pattern as given (see :mod:`.trace_patterns`): 1 to 2000 characters."""


class TraceLimits(Params):
    max_events: int = Field(100, ge=1, le=1_000_000, description="Events, then the session stops.")
    duration: float = Field(15.0, ge=0.01, le=3600, description="Seconds, then the session stops.")
    rate: int = Field(1000, ge=1, le=1_000_000, description="Events per rate_interval; more trips it.")
    rate_interval: float = Field(1.0, ge=0.01, le=60, description="Seconds.")
    max_bytes: int = Field(4096, ge=64, le=1_048_576, description="Bytes per event before it is cut.")
    max_queue: int = Field(10_000, ge=100, le=1_000_000, description="Messages waiting in the tracer.")
    wait: bool = Field(
        False,
        description=f"Wait for the session to end and return its events (the first {MAX_WAIT_EVENTS}).",
    )

    def limits(self) -> dict[str, int]:
        return {
            "max_events": self.max_events,
            "max_ms": max(10, int(self.duration * 1000)),
            "rate": self.rate,
            "rate_ms": max(10, int(self.rate_interval * 1000)),
            "max_bytes": self.max_bytes,
            "max_queue": self.max_queue,
        }


class CallScope(StrEnum):
    local = "local"
    global_ = "global"


class PatternMatch(Result):
    pattern: str
    module: str
    function: str | None = Field(description="None: every function of the module.")
    arity: int | None = Field(description="None: any arity.")
    functions: int = Field(description="How many functions the node matched.")
    actions: list[str] = Field(description="return (results and exceptions), caller.")


class TraceInfo(Result):
    id: str
    node: str
    kind: str = Field(description="calls, messages, process or profile.")
    status: str = Field(description="running or finished.")
    started_at: float = Field(description="Seconds since the epoch.")
    ended_at: float | None
    end_reason: str | None = Field(
        description="stopped, max_events, max_ms, rate_limit, queue_overflow, owner_down, "
        "processes_exited, hub_down or node_down."
    )
    events: int = Field(description="Events recorded so far.")
    dropped: int = Field(description="Events the node could not send (a busy connection).")
    truncated: int = Field(description="Events with a part cut to max_bytes.")
    spec: dict[str, Any] = Field(description="What is traced and the limits, as given.")


class TraceStarted(TraceInfo):
    patterns: list[PatternMatch] = Field(default_factory=list)
    results: list[dict[str, Any]] | None = Field(
        None, description=f"With wait=true: the events, at most {MAX_WAIT_EVENTS}."
    )


# ---------------------------------------------------------------------- starting


def _manager(ctx: Context) -> TraceManager:
    return ctx.services.get(TraceManager)


async def _pids(node: Node, texts: list[str]) -> list[Term]:
    return [await resolve_process(node, text) for text in texts]


def check_force(ctx: Context, force: bool) -> None:
    if force and ctx.principal.role != "admin":
        raise OperationError(ErrorCode.forbidden, "only an admin may force a trace of a hot module")


def parse_patterns(texts: list[str], language: str) -> list[Any]:
    from .trace_patterns import TracePatternError, parse_pattern

    parsed = []
    for text in texts:
        try:
            parsed.append(parse_pattern(text))
        except TracePatternError as exc:
            raise OperationError(
                ErrorCode.validation_error, f"pattern {text!r}: {exc}", {"pattern": text}
            ) from None
    return parsed


def _pattern_term(pattern: Any, scope: CallScope) -> dict[Atom, Term]:
    return {
        Atom("module"): Atom(pattern.module),
        Atom("function"): Atom(pattern.function) if pattern.function is not None else Atom("_"),
        Atom("arity"): pattern.arity if pattern.arity is not None else Atom("_"),
        Atom("match_spec"): pattern.match_spec,
        Atom("actions"): [Atom(a) for a in sorted(pattern.actions)],
        Atom("scope"): Atom(scope.value),
    }


async def _start(
    ctx: Context,
    params: TraceLimits,
    *,
    kind: str,
    patterns: list[Any],
    flags: list[str],
    pids: list[Term] | None,
    scope: CallScope,
    force: bool,
    spec: dict[str, Any],
) -> TraceStarted:
    node = ctx.require_node()
    wire_spec = {
        Atom("patterns"): [_pattern_term(p, scope) for p in patterns],
        Atom("flags"): [Atom(f) for f in flags],
        Atom("pids"): pids if pids is not None else Atom("all"),
        Atom("limits"): {Atom(k): v for k, v in params.limits().items()},
        Atom("force"): force,
    }
    manager = _manager(ctx)
    spec = {**spec, "limits": params.limits()}
    trace = await manager.start(node, kind, spec, to_wire(wire_spec, what="trace spec"), ctx.principal.name)
    matched = trace.session.info.get("patterns", [])
    started = _info(manager, trace.id)
    result = TraceStarted(
        **started.model_dump(),
        patterns=[
            PatternMatch(
                pattern=p.source,
                module=p.module,
                function=p.function,
                arity=p.arity,
                functions=int(m[3]) if isinstance(m, tuple) and len(m) == 4 else 0,
                actions=sorted(p.actions),
            )
            for p, m in zip(patterns, matched, strict=False)
        ],
    )
    if params.wait:
        await manager.wait(trace, params.duration + 5.0)
        if not trace.finished.is_set():
            await manager.stop(trace.id)
        done = _info(manager, trace.id)
        result = TraceStarted(
            **{**done.model_dump(), "patterns": result.patterns},
            results=manager.store.events(trace.id, limit=MAX_WAIT_EVENTS),
        )
    return result


def _info(manager: TraceManager, trace_id: str) -> TraceInfo:
    live = manager.live.get(trace_id)
    record = manager.store.get(trace_id)
    if record is None:
        raise OperationError(
            ErrorCode.not_found, f"no trace session {trace_id}; list_traces shows the stored sessions"
        )
    return TraceInfo(
        id=record.id,
        node=record.node,
        kind=record.kind,
        status="running" if live is not None else "finished",
        started_at=record.started_at,
        ended_at=record.ended_at,
        end_reason=record.end_reason,
        events=live.events if live is not None else record.events,
        dropped=record.dropped,
        truncated=record.truncated,
        spec=record.spec,
    )


def _live_session(live: LiveTrace | None) -> bool:
    return live is not None and not live.finished.is_set()


# ---------------------------------------------------------------------- trace_calls


class TraceCallsParams(TraceLimits):
    patterns: list[PatternText] = Field(
        min_length=1,
        max_length=20,
        description="Functions to trace: mod:fun/2, mod:fun/_, mod (every function), with conditions "
        "mod:fun(1, X) when X > 10 -> return, caller; Elixir: Mod.fun/2, :ets.lookup/2.",
    )
    pids: list[str] | None = Field(
        None, max_length=100, description="Only calls made by these processes; default: every process."
    )
    scope: CallScope = Field(
        CallScope.local, description="local: every call (also within the module); global: M:F() calls only."
    )
    force: bool = Field(False, description="Allow every function of a hot module such as lists (admin only).")


@register
class TraceCalls(Operation[TraceCallsParams, TraceStarted]):
    name = "trace_calls"
    category = CATEGORY
    summary = "Trace calls of functions matching patterns (with argument conditions, results, callers)."
    cost = (
        "A trace pattern on the matched functions (a breakpoint each) and the call flag on the traced "
        "processes; each matching call costs the caller a message to the tracer. " + SAFE_LIMITS
    )
    risk = (
        "Tracing a hot function on a busy node costs every caller; the rate limit trips the session "
        "before the tracer falls behind. Every function of a hot module (lists, ets, gen_server...) and "
        "the tracer's own modules are refused."
    )
    severity = Severity.write
    params = TraceCallsParams
    result = TraceStarted
    method = "POST"
    path = "/api/v1/traces/calls"
    cli_name = "trace-calls"
    timeout = 3700.0
    example = {"patterns": ["lists:seq/2"], "max_events": 10, "duration": 5}

    async def execute(self, ctx: Context, params: TraceCallsParams) -> TraceStarted:
        node = ctx.require_node()
        check_force(ctx, params.force)
        patterns = parse_patterns(params.patterns, node.language)
        pids = await _pids(node, params.pids) if params.pids else None
        spec = {"patterns": params.patterns, "pids": params.pids or "all", "scope": params.scope.value}
        return await _start(
            ctx,
            params,
            kind="calls",
            patterns=patterns,
            flags=[],
            pids=pids,
            scope=params.scope,
            force=params.force,
            spec=spec,
        )


# ---------------------------------------------------------------------- trace_messages


class TraceMessagesParams(TraceLimits):
    pids: list[str] = Field(
        min_length=1,
        max_length=100,
        description='The processes whose messages to trace (pids or registered names), or ["all"].',
    )
    send: bool = Field(True, description="Messages they send.")
    receive: bool = Field(True, description="Messages they receive.")


@register
class TraceMessages(Operation[TraceMessagesParams, TraceStarted]):
    name = "trace_messages"
    category = CATEGORY
    summary = "Trace the messages chosen processes send and receive."
    cost = (
        "The send/receive flags on the chosen processes: each message they send or receive costs a "
        "message to the tracer (a copy of the message, cut to max_bytes). " + SAFE_LIMITS
    )
    risk = '["all"] traces every message of the node: the rate limit trips it quickly on a busy node.'
    severity = Severity.write
    params = TraceMessagesParams
    result = TraceStarted
    method = "POST"
    path = "/api/v1/traces/messages"
    cli_name = "trace-messages"
    timeout = 3700.0
    example = {"pids": ["code_server"], "max_events": 20, "duration": 5}

    async def execute(self, ctx: Context, params: TraceMessagesParams) -> TraceStarted:
        node = ctx.require_node()
        if not (params.send or params.receive):
            raise OperationError(ErrorCode.validation_error, "trace send, receive or both")
        everything = params.pids == ["all"]
        pids = None if everything else await _pids(node, params.pids)
        flags = [f for f, on in (("send", params.send), ("receive", params.receive)) if on]
        spec = {"pids": params.pids, "send": params.send, "receive": params.receive}
        return await _start(
            ctx,
            params,
            kind="messages",
            patterns=[],
            flags=flags,
            pids=pids,
            scope=CallScope.local,
            force=False,
            spec=spec,
        )


# ---------------------------------------------------------------------- trace_process


class TraceProcessParams(TraceLimits):
    pid: str = Field(max_length=300, description="<0.123.0>, 0.123.0 or a registered name.")
    messages: bool = Field(True, description="Messages it sends and receives.")
    lifecycle: bool = Field(True, description="Processes it spawns, links and unlinks, its exit, names.")
    patterns: list[PatternText] = Field(
        default_factory=list, max_length=20, description="Its calls of these functions (see trace_calls)."
    )


@register
class TraceProcess(Operation[TraceProcessParams, TraceStarted]):
    name = "trace_process"
    category = CATEGORY
    summary = "Trace one process: its messages, spawns, links, exit, and calls of chosen functions."
    cost = "Trace flags on one process (and patterns, if given). " + SAFE_LIMITS
    risk = "Low: one process. The session ends by itself when the process exits."
    severity = Severity.write
    params = TraceProcessParams
    result = TraceStarted
    method = "POST"
    path = "/api/v1/processes/{pid}/trace"
    cli_name = "trace-process"
    timeout = 3700.0
    example = {"pid": "code_server", "max_events": 20, "duration": 5}

    async def execute(self, ctx: Context, params: TraceProcessParams) -> TraceStarted:
        node = ctx.require_node()
        flags = (["send", "receive"] if params.messages else []) + (["procs"] if params.lifecycle else [])
        if not flags and not params.patterns:
            raise OperationError(ErrorCode.validation_error, "trace messages, lifecycle or some patterns")
        patterns = parse_patterns(params.patterns, node.language)
        pid = await resolve_process(node, params.pid)
        spec = {
            "pid": params.pid,
            "messages": params.messages,
            "lifecycle": params.lifecycle,
            "patterns": params.patterns,
        }
        return await _start(
            ctx,
            params,
            kind="process",
            patterns=patterns,
            flags=flags,
            pids=[pid],
            scope=CallScope.local,
            force=False,
            spec=spec,
        )


# ---------------------------------------------------------------------- results, list, stop


class TraceIdParams(Params):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$", description="The session's id.")


class TraceResultsParams(TraceIdParams):
    after: int = Field(0, ge=0, description="Events after this sequence number (0: from the start).")
    limit: int = Field(100, ge=1, le=1000, description="Events per page.")


class TraceResults(Result):
    trace: TraceInfo
    events: list[dict[str, Any]] = Field(
        description="seq, time_us, time, kind, pid, and by kind: mfa, args, caller, result, class, "
        "reason, message, to, other, name; truncated says a part was cut."
    )
    next_after: int | None = Field(
        description="Pass as `after` for the next page; null when none is stored yet."
    )


@register
class GetTraceResults(Operation[TraceResultsParams, TraceResults]):
    name = "get_trace_results"
    category = CATEGORY
    summary = "A trace session's state and a page of its events (live or finished)."
    cost = "A read of Arsenal's own store; nothing reaches the node."
    risk = "None."
    params = TraceResultsParams
    result = TraceResults
    path = "/api/v1/traces/{id}"
    cli_name = "trace-results"
    needs_node = False
    example = {"id": "0123456789ab", "limit": 50}

    async def execute(self, ctx: Context, params: TraceResultsParams) -> TraceResults:
        manager = _manager(ctx)
        info = _info(manager, params.id)
        events = manager.store.events(params.id, after=params.after, limit=params.limit)
        return TraceResults(
            trace=info, events=events, next_after=events[-1]["seq"] if len(events) == params.limit else None
        )


class ListTracesParams(Params):
    limit: int = Field(50, ge=1, le=500)
    before: float | None = Field(None, description="Only sessions started before this time (paging back).")
    node: str | None = Field(None, max_length=255, description="Only sessions on this node.")


class TraceList(Result):
    traces: list[TraceInfo]
    running: int = Field(description="Live sessions of this Arsenal.")


@register
class ListTraces(Operation[ListTracesParams, TraceList]):
    name = "list_traces"
    category = CATEGORY
    summary = "Trace sessions, running and stored, newest first."
    cost = "A read of Arsenal's own store."
    risk = "None."
    params = ListTracesParams
    result = TraceList
    path = "/api/v1/traces"
    cli_name = "traces"
    needs_node = False
    example = {"limit": 10}

    async def execute(self, ctx: Context, params: ListTracesParams) -> TraceList:
        manager = _manager(ctx)
        records = manager.store.list(limit=params.limit, before=params.before, node=params.node)
        return TraceList(traces=[_info(manager, r.id) for r in records], running=len(manager.live))


@register
class StopTrace(Operation[TraceIdParams, TraceInfo]):
    name = "stop_trace"
    category = CATEGORY
    summary = "Stop a running trace session (its last events are kept)."
    cost = "One call to the tracer; its patterns and flags are removed from the node."
    risk = "None: tracing less is always safe."
    severity = Severity.write
    params = TraceIdParams
    result = TraceInfo
    method = "DELETE"
    path = "/api/v1/traces/{id}"
    cli_name = "trace-stop"
    needs_node = False
    example = {"id": "0123456789ab"}

    async def execute(self, ctx: Context, params: TraceIdParams) -> TraceInfo:
        manager = _manager(ctx)
        live = manager.live.get(params.id)
        if live is None and manager.store.get(params.id) is None:
            raise OperationError(ErrorCode.not_found, f"no trace session {params.id}")
        if _live_session(live):
            await manager.stop(params.id)
        return _info(manager, params.id)


# ---------------------------------------------------------------------- history


class HistoryParams(Params):
    pid: str = Field(
        max_length=300, description="<0.123.0> (also a process that has exited) or a registered name."
    )
    limit: int = Field(100, ge=1, le=1000)


class ProcessHistory(Result):
    node: str
    pid: str
    events: list[dict[str, Any]] = Field(
        description="Newest first, on one timeline: `source` is trace (with its session in `trace`), "
        "checkpoint (name, module) or recording (id, steps)."
    )


@register
class GetProcessHistory(Operation[HistoryParams, ProcessHistory]):
    name = "get_process_history"
    category = CATEGORY
    summary = "A process's trace events, checkpoints and recordings on one timeline, newest first."
    cost = "Reads of Arsenal's own store (indexed by pid); a name is resolved on the node."
    risk = "None."
    params = HistoryParams
    result = ProcessHistory
    path = "/api/v1/processes/{pid}/history"
    cli_name = "history"
    example = {"pid": "<0.80.0>", "limit": 20}

    async def execute(self, ctx: Context, params: HistoryParams) -> ProcessHistory:
        from .plain import pid_text
        from .targets import process_ref

        node = ctx.require_node()
        ref = process_ref(params.pid)
        pid = ref.decode() if ref.startswith(b"<") else pid_text(await resolve_process(node, params.pid))
        names = {pid} if ref.startswith(b"<") else {pid, ref.decode(), f"Elixir.{ref.decode()}"}
        rows = _manager(ctx).store.events_of_pid(node.name, pid, limit=params.limit)
        events = [{**event, "source": "trace", "trace": sid} for sid, event in rows]
        events += _checkpoints_of(ctx, node.name, sorted(names), params.limit)
        events += _recordings_of(ctx, node.name, pid, params.limit)
        events.sort(key=lambda event: event.get("time_us", 0), reverse=True)
        return ProcessHistory(node=node.name, pid=pid, events=events[: params.limit])


def _checkpoints_of(ctx: Context, node: str, targets: list[str], limit: int) -> list[dict[str, Any]]:
    from ..store import CheckpointStore

    return [
        {
            "source": "checkpoint",
            "time_us": int(c.created_at * 1_000_000),
            "name": c.name,
            "module": c.module,
            "size": c.size,
        }
        for c in CheckpointStore(ctx.services.store).list(node, targets, limit=limit)
    ]


def _recordings_of(ctx: Context, node: str, pid: str, limit: int) -> list[dict[str, Any]]:
    from ..store.recordings import RecordingStore

    return [
        {
            "source": "recording",
            "time_us": int(row.started_at * 1_000_000),
            "id": row.id,
            "steps": row.steps,
            "end_reason": row.end_reason,
        }
        for row in RecordingStore(ctx.services.store).list(limit=limit, node=node, pid=pid)
    ]
