"""Profiling operations: how often and how long functions run (cprof/eprof), and where one process
spends its time (stack sampling, as flame graphs show it).

``profile_function`` counts the calls of chosen functions for a window, like ``cprof``
(``measure=count``: a call counter on each function, every caller counted) or ``eprof``
(``measure=time``: calls and time per process, for the processes in scope). It runs as a
*profile session* of the tracer hub (``arsenal_agent_trace``): the session is started through
:class:`~arsenal.ops.trace_sessions.TraceManager`, so it is owned by this Arsenal, stored,
listed and stoppable like every trace, ends by itself at the end of the window (or when this
Arsenal goes away), and the hub reads the counters and removes them as it ends.

``profile_process`` samples one process's stack inside the VM (``arsenal_agent_prof``) every
``interval_ms`` and returns collapsed stacks — ``m:f/a;m:f/a N`` lines, root first, the input
of Brendan Gregg's ``flamegraph.pl`` and of speedscope — with the functions seen most (self:
running, total: anywhere on the stack) and how often the process was running, runnable or
waiting. Optionally it measures the call time of chosen functions for that one process in the
same window (a profile session scoped to it).

Patterns are the ``mod:fun/arity`` text of the tracing operations; conditions make no sense for
counting (the counters count every call), so argument patterns, guards and actions are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
from enum import StrEnum
from typing import Any

from pydantic import Field

from ..beam import Node
from ..dist import Atom, Pid, Term
from .base import Context, Operation, Params, Result, Severity
from .errors import ErrorCode, OperationError
from .plain import mfa_text, pid_text
from .registry import register
from .safeterm import to_wire
from .targets import is_agent_error, resolve_process
from .trace_sessions import LiveTrace, TraceManager
from .tracing import PatternText, check_force, parse_patterns

__all__ = [
    "FunctionProfile",
    "FunctionRow",
    "Measure",
    "ProcessProfile",
    "ProfileFunction",
    "ProfileProcess",
    "collapsed_lines",
]

CATEGORY = "profiling"
AGENT = "arsenal_agent_prof"
MAX_DURATION = 60.0
WAIT_SLACK = 10.0
"""Seconds past the window that Arsenal waits for the node's report before it gives up."""


class Measure(StrEnum):
    count = "count"
    time = "time"


KIND = {Measure.count: "call_count", Measure.time: "call_time"}


class ProcessCost(Result):
    pid: str
    calls: int
    time_us: int


class FunctionRow(Result):
    function: str = Field(description="mod:fun/arity (Mod.fun/arity on an Elixir node).")
    calls: int
    time_us: int = Field(description="Microseconds in the function (0 with measure=count).")
    us_per_call: float | None = Field(description="time_us / calls (None with measure=count).")
    share: float = Field(description="Fraction of all the time measured (of all calls with measure=count).")
    processes: list[ProcessCost] = Field(
        description="With measure=time: the 5 processes that spent most time in it."
    )


class PatternCount(Result):
    pattern: str
    functions: int = Field(description="How many functions of the node it matched.")


class FunctionProfile(Result):
    node: str
    trace: str = Field(description="The profile session's id (list_traces, get_trace_results).")
    measure: Measure
    duration: float = Field(description="Seconds the counters ran.")
    end_reason: str = Field(description="max_ms (the window ended), stopped, processes_exited, owner_down...")
    patterns: list[PatternCount]
    total_calls: int
    total_time_us: int
    functions: list[FunctionRow] = Field(
        description="Functions called in the window, most time (then calls) first; at most 200."
    )


class ProfileFunctionParams(Params):
    patterns: list[PatternText] = Field(
        min_length=1,
        max_length=20,
        description="Functions to measure: mod:fun/2, mod:fun/_, mod (every function); Elixir: Mod.fun/2. "
        "No argument patterns, guards or actions.",
    )
    measure: Measure = Field(
        Measure.time,
        description="count: calls only, every caller (cprof: cheap); time: calls and time per process "
        "(eprof: the processes in scope get the call flag).",
    )
    pids: list[str] | None = Field(
        None, max_length=100, description="measure=time: only these processes; default: every process."
    )
    duration: float = Field(5.0, ge=0.1, le=MAX_DURATION, description="Seconds to measure.")
    force: bool = Field(False, description="Allow every function of a hot module such as lists (admin only).")


# ---------------------------------------------------------------------- profile sessions


def _profile_patterns(texts: list[str], language: str) -> list[Any]:
    """The patterns, parsed; conditions and actions are refused (a counter counts every call)."""
    parsed = parse_patterns(texts, language)
    for pattern in parsed:
        clauses = pattern.match_spec
        plain_head = len(clauses) == 1 and clauses[0][0] == Atom("_") and not clauses[0][1]
        if not plain_head or pattern.actions:
            raise OperationError(
                ErrorCode.validation_error,
                f"pattern {pattern.source!r}: profiling counts every call, so argument patterns, guards "
                "and actions do not apply; write mod:fun/arity, mod:fun/_ or mod",
                {"pattern": pattern.source},
            )
    return parsed


def _profile_term(pattern: Any, measure: Measure) -> dict[Atom, Term]:
    return {
        Atom("module"): Atom(pattern.module),
        Atom("function"): Atom(pattern.function) if pattern.function is not None else Atom("_"),
        Atom("arity"): pattern.arity if pattern.arity is not None else Atom("_"),
        Atom("kind"): Atom(KIND[measure]),
    }


async def _start_profile(
    ctx: Context,
    node: Node,
    patterns: list[Any],
    measure: Measure,
    pids: list[Pid] | None,
    window: float,
    force: bool,
    spec: dict[str, Any],
) -> LiveTrace:
    """A profile session of the tracer hub, owned and stored by this Arsenal's TraceManager."""
    wire_spec = {
        Atom("profiles"): [_profile_term(p, measure) for p in patterns],
        Atom("pids"): pids if pids is not None else Atom("all"),
        Atom("limits"): {Atom("max_ms"): max(10, int(window * 1000))},
        Atom("force"): force,
    }
    manager = ctx.services.get(TraceManager)
    wire = to_wire(wire_spec, what="profile spec")
    return await manager.start(node, "profile", spec, wire, ctx.principal.name)


async def _finish_profile(ctx: Context, trace: LiveTrace, timeout: float, *, stop: bool = False) -> None:
    """Wait for the session's end (or stop it now), so its counters have been read and removed."""
    manager = ctx.services.get(TraceManager)
    if not stop:
        await manager.wait(trace, timeout)
    if not trace.finished.is_set():
        await manager.stop(trace.id)


def _matched(patterns: list[Any], trace: LiveTrace) -> list[PatternCount]:
    """How many functions each pattern matched (the hub's reply: ``{M, F, A, Count, Kind}`` each)."""
    matched = list(trace.session.info.get("profiles", []))
    counts = [int(m[3]) if isinstance(m, tuple) and len(m) == 5 else 0 for m in matched]
    counts += [0] * (len(patterns) - len(counts))
    return [PatternCount(pattern=p.source, functions=n) for p, n in zip(patterns, counts, strict=False)]


def _rows(raw: list[Any], measure: Measure, language: str) -> tuple[list[FunctionRow], int, int]:
    """The hub's profile maps as rows, with the totals the shares are of."""
    items, seen = [], set()
    for row in raw:  # overlapping patterns of one request count a function once
        item = {str(k): v for k, v in row.items()} if isinstance(row, dict) else {}
        if item and item.get("mfa") not in seen:
            seen.add(item.get("mfa"))
            items.append(item)
    total_calls = sum(int(r.get("calls", 0)) for r in items)
    total_time = sum(int(r.get("time_us", 0)) for r in items)
    rows = []
    for r in items:
        calls, time_us = int(r.get("calls", 0)), int(r.get("time_us", 0))
        if measure is Measure.time:
            share = time_us / total_time if total_time else 0.0
        else:
            share = calls / total_calls if total_calls else 0.0
        rows.append(
            FunctionRow(
                function=mfa_text(r.get("mfa"), language) or str(r.get("mfa")),
                calls=calls,
                time_us=time_us,
                us_per_call=round(time_us / calls, 3) if measure is Measure.time and calls else None,
                share=round(share, 6),
                processes=[_process_cost(p) for p in r.get("processes", [])],
            )
        )
    return rows, total_calls, total_time


def _process_cost(raw: Any) -> ProcessCost:
    item = {str(k): v for k, v in raw.items()}
    pid = item.get("pid")
    return ProcessCost(
        pid=pid_text(pid) if isinstance(pid, Pid) else str(pid),
        calls=int(item.get("calls", 0)),
        time_us=int(item.get("time_us", 0)),
    )


def _function_profile(node: Node, trace: LiveTrace, patterns: list[Any], measure: Measure) -> FunctionProfile:
    end = trace.session.end
    rows, calls, time_us = _rows(end.profile if end else [], measure, node.language)
    return FunctionProfile(
        node=node.name,
        trace=trace.id,
        measure=measure,
        duration=(end.duration_ms if end else 0) / 1000,
        end_reason=end.reason if end else "stopped",
        patterns=_matched(patterns, trace),
        total_calls=calls,
        total_time_us=time_us,
        functions=rows,
    )


# ---------------------------------------------------------------------- profile_function


@register
class ProfileFunction(Operation[ProfileFunctionParams, FunctionProfile]):
    name = "profile_function"
    category = CATEGORY
    summary = "Count the calls (and time) of chosen functions for a window, like cprof and eprof."
    cost = (
        "measure=count: a call counter on each matched function (a breakpoint that increments an "
        "atomic counter: cheap, cprof's method), every caller counted. measure=time: a timing breakpoint "
        "on each function and the call flag on the processes in scope (every process by default), so "
        "every call of a matched function by them reads the clock twice (eprof's method): costlier on "
        "a hot function. Both end at the window (at most 60 s) or when Arsenal goes away; the hub reads "
        "the counters and removes them."
    )
    risk = (
        "Counting a hot function on a busy node slows every caller a little for the window; measure=time "
        "on every process costs more than count. Every function of a hot module (lists, ets, "
        "gen_server...) and Arsenal's own modules are refused (an admin may force the first)."
    )
    severity = Severity.write
    params = ProfileFunctionParams
    result = FunctionProfile
    method = "POST"
    path = "/api/v1/profile/functions"
    cli_name = "profile"
    timeout = MAX_DURATION + 30.0
    example = {"patterns": ["lists:seq/2"], "measure": "count", "duration": 0.5}

    async def execute(self, ctx: Context, params: ProfileFunctionParams) -> FunctionProfile:
        node = ctx.require_node()
        check_force(ctx, params.force)
        patterns = _profile_patterns(params.patterns, node.language)
        if params.pids and params.measure is Measure.count:
            raise OperationError(
                ErrorCode.validation_error,
                "measure=count counts every caller (a call counter has no process); drop pids or use "
                "measure=time",
            )
        pids = [await resolve_process(node, text) for text in params.pids] if params.pids else None
        spec = {
            "profile": params.patterns,
            "measure": params.measure.value,
            "pids": params.pids or "all",
            "duration": params.duration,
        }
        trace = await _start_profile(
            ctx, node, patterns, params.measure, pids, params.duration, params.force, spec
        )
        try:
            await _finish_profile(ctx, trace, params.duration + WAIT_SLACK)
        finally:
            if not trace.finished.is_set():  # cancelled: do not leave the counters running
                with contextlib.suppress(Exception):
                    await _finish_profile(ctx, trace, 0, stop=True)
        return _function_profile(node, trace, patterns, params.measure)


# ---------------------------------------------------------------------- profile_process


class FunctionSamples(Result):
    function: str = Field(description="mod:fun/arity (Mod.fun/arity on an Elixir node).")
    self: int = Field(description="Samples where it was the running function.")
    total: int = Field(description="Samples where it was anywhere on the stack.")
    self_share: float = Field(description="self / samples.")
    total_share: float = Field(description="total / samples.")


class ProcessProfile(Result):
    node: str
    pid: str
    duration: float = Field(description="Seconds the sampling ran.")
    interval_ms: int
    samples: int
    stopped: str = Field(description="window, max_samples or process_exited.")
    process_exited: bool = Field(description="The process died during the window (the profile ends there).")
    statuses: dict[str, int] = Field(
        description="Samples per status (running, runnable, waiting...) as process_info reports it: "
        "reading another process wakes it to answer, so a process waiting in receive often reports "
        "runnable; its stack (timer:sleep/1, gen_server:loop/7...) tells where it waits."
    )
    top_functions: list[FunctionSamples] = Field(
        description="Functions in the top 50 by self or by total samples, most self samples first."
    )
    collapsed: list[str] = Field(
        description="Collapsed stacks, 'root;...;leaf N' (flamegraph.pl, speedscope), most seen first."
    )
    distinct_stacks: int = Field(description="Distinct stacks kept (at most 5000).")
    other_stacks: int = Field(
        description="Samples whose stack was not kept (past 5000 distinct ones); '[other] N' in collapsed."
    )
    functions: FunctionProfile | None = Field(
        None, description="With `functions`: their calls and time in this process in the same window."
    )


class ProfileProcessParams(Params):
    pid: str = Field(max_length=300, description="<0.123.0>, 0.123.0 or a registered name.")
    duration: float = Field(5.0, ge=0.1, le=MAX_DURATION, description="Seconds to sample.")
    interval_ms: int = Field(10, ge=1, le=1000, description="Milliseconds between samples.")
    max_samples: int = Field(2000, ge=1, le=20_000, description="Samples, then the sampling stops.")
    functions: list[PatternText] = Field(
        default_factory=list,
        max_length=20,
        description="Also measure these functions' calls and time in this process (mod:fun/arity), "
        "through a profile session of the tracer in the same window.",
    )
    force: bool = Field(
        False, description="Allow every function of a hot module in `functions` (admin only)."
    )


@register
class ProfileProcess(Operation[ProfileProcessParams, ProcessProfile]):
    name = "profile_process"
    category = CATEGORY
    summary = (
        "Sample one process's stack for a window: collapsed stacks (flame graph), top functions, states."
    )
    cost = (
        "A sampler process on the node calls process_info(Pid, [current_stacktrace, status]) every "
        "interval_ms (default 10 ms): each sample walks at most backtrace_depth frames (8 by default) of "
        "the target, between two of its reductions; at most max_samples samples (20 000) and 5000 "
        "distinct stacks are kept in the VM. With `functions`, a call_time profile session on that one "
        "process as profile_function measures it."
    )
    risk = (
        "Low: the target is read, never stopped; at interval_ms=1 a busy target is interrupted 1000 times "
        "a second. The sampler stops at the window, at max_samples, when the process exits and when "
        "Arsenal goes away. Stacks deeper than backtrace_depth lose their root frames."
    )
    severity = Severity.write
    params = ProfileProcessParams
    result = ProcessProfile
    method = "POST"
    path = "/api/v1/processes/{pid}/profile"
    cli_name = "profile"
    timeout = MAX_DURATION + 30.0
    example = {"pid": "code_server", "duration": 0.5, "interval_ms": 10}

    async def execute(self, ctx: Context, params: ProfileProcessParams) -> ProcessProfile:
        node = ctx.require_node()
        check_force(ctx, params.force)
        patterns = _profile_patterns(params.functions, node.language) if params.functions else []
        pid = await resolve_process(node, params.pid)
        trace = None
        if patterns:
            spec = {
                "profile": params.functions,
                "measure": "time",
                "pids": [pid_text(pid)],
                "duration": params.duration,
            }
            trace = await _start_profile(
                ctx, node, patterns, Measure.time, [pid], params.duration, params.force, spec
            )
        try:
            report = await _sample(node, pid, params)
        finally:
            if trace is not None:  # the same window: the counters stop with the sampler
                with contextlib.suppress(Exception):
                    await _finish_profile(ctx, trace, 0, stop=True)
        measured = _function_profile(node, trace, patterns, Measure.time) if trace is not None else None
        return _process_profile(node, pid, params, report, measured)


async def _sample(node: Node, pid: Pid, params: ProfileProcessParams) -> dict[str, Any]:
    """Run the agent's sampler; its owner is a process of this connection (gone with it)."""
    owner = node.spawn_process(mailbox_size=16)
    window_ms = max(1, int(params.duration * 1000))
    try:
        raw = await node.agent_call(
            "sample",
            [pid_text(pid).encode(), owner.pid, window_ms, params.interval_ms, params.max_samples],
            params.duration + WAIT_SLACK,
            module=AGENT,
        )
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(owner.close())
    if is_agent_error(raw):
        raise _sample_error(raw[1], params.pid, node)  # type: ignore[index]
    return {str(k): v for k, v in raw[1].items()}  # type: ignore[index]


def _sample_error(reason: Term, text: str, node: Node) -> OperationError:
    if reason in (Atom("dead"), Atom("not_found")):
        return OperationError(
            ErrorCode.not_found, f"{text} is not a live process on {node.name}; it may have exited"
        )
    if reason == Atom("bad_pid"):
        return OperationError(ErrorCode.validation_error, f"{text} is not a valid pid on {node.name}")
    if reason == Atom("timeout"):
        return OperationError(
            ErrorCode.timeout, f"the sampler on {node.name} did not report in time; try again"
        )
    return OperationError(ErrorCode.agent_error, f"the sampler on {node.name} failed: {reason!r}")


def _process_profile(
    node: Node,
    pid: Pid,
    params: ProfileProcessParams,
    report: dict[str, Any],
    measured: FunctionProfile | None,
) -> ProcessProfile:
    language = node.language
    samples = int(report["samples"])
    stopped = str(report["stopped"])
    rows = []
    for mfa, self_count, total in report.get("functions", []):
        rows.append(
            FunctionSamples(
                function=_frame(mfa, language),
                self=self_count,
                total=total,
                self_share=round(self_count / samples, 6) if samples else 0.0,
                total_share=round(total / samples, 6) if samples else 0.0,
            )
        )
    rows.sort(key=lambda r: (-r.self, -r.total, r.function))
    other = int(report.get("other_stacks", 0))
    return ProcessProfile(
        node=node.name,
        pid=pid_text(pid),
        duration=int(report.get("elapsed_ms", 0)) / 1000,
        interval_ms=params.interval_ms,
        samples=samples,
        stopped=stopped,
        process_exited=stopped == "process_exited",
        statuses={str(k): int(v) for k, v in report.get("statuses", {}).items()},
        top_functions=rows,
        collapsed=collapsed_lines(report.get("stacks", []), other, language),
        distinct_stacks=int(report.get("distinct_stacks", 0)),
        other_stacks=other,
        functions=measured,
    )


def collapsed_lines(stacks: list[Any], other: int, language: str) -> list[str]:
    """``root;...;leaf N`` lines, as flamegraph.pl and speedscope read them (``[other] N`` last)."""
    lines = [";".join(_frame(mfa, language) for mfa in stack) + f" {count}" for stack, count in stacks]
    if other:
        lines.append(f"[other] {other}")
    return lines


def _frame(mfa: Term, language: str) -> str:
    """One frame; ';' separates frames and a line ends the stack, so neither may appear in a name."""
    text = mfa_text(mfa, language) or str(mfa)
    return text.replace(";", ",").replace("\n", " ")
