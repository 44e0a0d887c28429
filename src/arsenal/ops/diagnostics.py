"""Diagnostics: deadlocks between processes blocked in calls, and memory that keeps growing.

Both sample process_info inside the VM (``arsenal_agent_diag``) more than once, so what they
report lasted: a call that was still the same call ``interval_ms`` later, a footprint that
never fell between samples. Only the findings (capped) cross the wire, each with a sentence
that says what it means.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..beam import Node
from ..dist import Atom, Pid, Term
from .base import Context, Operation, Params, Result
from .errors import ErrorCode, OperationError
from .plain import mfa_text, name_text, pid_text, plain
from .registry import register

__all__ = ["AnalyzeDeadlocks", "MemoryLeakDetection"]

DIAG_MODULE = "arsenal_agent_diag"
CATEGORY = "diagnostics"
MAX_LIMIT = 100


async def diag_call(node: Node, function: str, args: list[Term], timeout: float) -> Term:
    """Call ``arsenal_agent_diag:function(args)`` (the agent is loaded again if the node lost it)."""
    return await node.agent_call(function, args, timeout, module=DIAG_MODULE)


def _process_id(value: Term, node: Node) -> str | None:
    """A pid as ``<0.N.S>`` (a remote one as the node writes it), ``name@node`` for a remote
    registered name, None for ``undefined``."""
    if isinstance(value, Pid):
        return plain(value, node.language, local_node=node.name)
    if isinstance(value, tuple) and len(value) == 2:
        return f"{plain(value[0], node.language)} on {value[1]}"
    return None


def _label(pid: str | None, name: str | None) -> str:
    """How a sentence names a process: its name with its pid, or its pid."""
    if name and pid:
        return f"{name} {pid}"
    return name or pid or "?"


# ====================================================================== analyze_deadlocks


class WaitingProcess(Result):
    pid: str
    name: str | None
    current_function: str | None = Field(description="Where it waits: gen:do_call/4 for every gen call.")
    call: str | None = Field(description="The call API it is in: gen_server:call/3, gen_statem:call/3...")
    location: str | None = Field(
        description="Where its own code made the call (the first frame outside OTP)."
    )
    status: str
    message_queue_len: int
    waiting_on: str | None = Field(description="The process it waits on (the one its call monitors).")
    certain: bool = Field(
        description="True when its call monitors one process only; false: waiting_on was picked among "
        "candidates (the one itself blocked, else the first)."
    )
    candidates: list[str] = Field(description="Every process it monitors: its callee is one of them.")


class Blocker(Result):
    pid: str | None
    name: str | None
    status: str = Field(
        description="suspended, waiting (in a receive: not answering), running, runnable, gone, or "
        "remote (on another node: not looked at)."
    )
    current_function: str | None
    message_queue_len: int
    remote_node: str | None


class DeadlockCycle(Result):
    processes: list[WaitingProcess] = Field(
        description="Each waits on the next; the last on the first. At most 50 listed."
    )
    length: int = Field(description="Processes in the cycle.")
    certain: bool = Field(description="Every wait in the cycle has a single candidate callee.")
    waiting_count: int = Field(description="Other blocked processes whose waits lead into this cycle.")
    finding: str


class WaitChain(Result):
    processes: list[WaitingProcess] = Field(
        description="The longest chain: caller first, each waits on the next."
    )
    blocker: Blocker = Field(description="Where the chain ends: a process that is not in a call.")
    length: int = Field(description="Processes in the chain, the blocker included.")
    waiting_count: int = Field(description="Blocked processes whose waits end at this blocker (all chains).")
    finding: str


class DeadlockReport(Result):
    node: str
    interval_ms: int
    blocked_first: int = Field(description="Processes in a gen call at the first sample.")
    blocked_count: int = Field(description="Of those, still in the same call at the second sample.")
    truncated: bool = Field(description="More than 10 000 were blocked: only the first 10 000 were followed.")
    cycle_count: int
    cycles: list[DeadlockCycle] = Field(description="Biggest first, at most limit.")
    chain_count: int
    chains: list[WaitChain] = Field(description="Suspended blockers first, then longest; at most limit.")
    findings: list[str]


class DeadlockParams(Params):
    interval_ms: int = Field(
        500, ge=100, le=10_000, description="Time between the two samples: a wait must last this long."
    )
    limit: int = Field(10, ge=1, le=MAX_LIMIT, description="Cycles and chains listed at most (each).")
    min_chain: int = Field(
        3,
        ge=2,
        le=50,
        description="A chain that is no cycle is reported from this many processes (blocker included), "
        "or at any length when its blocker is suspended.",
    )


def _waiter(raw: dict[Any, Any], node: Node) -> WaitingProcess:
    lang = node.language
    return WaitingProcess(
        pid=pid_text(raw[Atom("pid")]),
        name=name_text(raw[Atom("name")], lang),
        current_function=mfa_text(raw[Atom("current_function")], lang),
        call=mfa_text(raw[Atom("call")], lang),
        location=mfa_text(raw[Atom("location")], lang),
        status=str(raw[Atom("status")]),
        message_queue_len=raw[Atom("message_queue_len")],
        waiting_on=_process_id(raw[Atom("waiting_on")], node),
        certain=raw[Atom("certain")] is True,
        candidates=[c for c in (_process_id(c, node) for c in raw[Atom("candidates")]) if c],
    )


def _blocker(raw: dict[Any, Any], node: Node) -> Blocker:
    remote = raw[Atom("remote_node")]
    return Blocker(
        pid=_process_id(raw[Atom("pid")], node),
        name=name_text(raw[Atom("name")], node.language),
        status=str(raw[Atom("status")]),
        current_function=mfa_text(raw[Atom("current_function")], node.language),
        message_queue_len=raw[Atom("message_queue_len")],
        remote_node=None if remote == Atom("undefined") else str(remote),
    )


def _where(process: WaitingProcess) -> str:
    call = process.call or process.current_function or "a call"
    return f" in {call}" + (f" from {process.location}" if process.location else "")


def _cycle_finding(processes: list[WaitingProcess], length: int, certain: bool, waiting: int) -> str:
    names = {p.pid: _label(p.pid, p.name) for p in processes}
    steps = "; ".join(
        f"{_label(p.pid, p.name)} waits{_where(p)} on {names.get(p.waiting_on or '', p.waiting_on)}"
        for p in processes
    )
    more = f" (the first {len(processes)} listed)" if len(processes) < length else ""
    sentence = f"Deadlock of {length} processes calling each other{more}: {steps}."
    if not certain:
        sentence += " (Some wait on a callee picked among several monitored processes.)"
    if waiting:
        sentence += f" {waiting} more process(es) wait on them."
    return sentence + " None can answer until a call times out or one of them is killed."


def _chain_finding(processes: list[WaitingProcess], blocker: Blocker, waiting: int) -> str:
    path = " -> ".join([_label(p.pid, p.name) for p in processes] + [_label(blocker.pid, blocker.name)])
    end = _label(blocker.pid, blocker.name)
    state = {
        "suspended": f"{end} is suspended",
        "waiting": f"{end} waits in {blocker.current_function or 'a receive'} without answering",
        "remote": f"{end} is on {blocker.remote_node} (not looked at)",
        "gone": f"{end} has exited",
    }.get(blocker.status, f"{end} is {blocker.status} in {blocker.current_function or '?'}")
    sentence = f"Chain of {len(processes) + 1} waits: {path}; {state}"
    if blocker.message_queue_len:
        sentence += f" with {blocker.message_queue_len} message(s) queued"
    return sentence + f". {waiting} blocked process(es) wait on it."


@register
class AnalyzeDeadlocks(Operation[DeadlockParams, DeadlockReport]):
    name = "analyze_deadlocks"
    category = CATEGORY
    summary = (
        "Processes blocked in synchronous calls on each other (deadlock cycles) and long chains of waits "
        "ending at a stuck or suspended process, from two samples interval_ms apart."
    )
    cost = (
        "One process_info(P, current_function) per process; for the processes in a gen call (at most "
        "10 000) monitors, reductions and queue length twice; current_stacktrace of the processes "
        "reported. About 0.1 s per 100 000 processes, plus the interval."
    )
    risk = "None: reads only; no process is sent a message, suspended or traced."
    params = DeadlockParams
    result = DeadlockReport
    path = "/api/v1/system/deadlocks"
    cli_name = "deadlocks"
    timeout = 60.0
    example = {"interval_ms": 500, "limit": 10}

    async def execute(self, ctx: Context, params: DeadlockParams) -> DeadlockReport:
        node = ctx.require_node()
        options = {
            Atom("interval_ms"): params.interval_ms,
            Atom("limit"): params.limit,
            Atom("min_chain"): params.min_chain,
        }
        raw = await diag_call(node, "deadlocks", [options], params.interval_ms / 1000 + 45)
        cycles = [_cycle(c, node) for c in raw[Atom("cycles")]]
        chains = [_chain(c, node) for c in raw[Atom("chains")]]
        return DeadlockReport(
            node=node.name,
            interval_ms=raw[Atom("interval_ms")],
            blocked_first=raw[Atom("blocked_first")],
            blocked_count=raw[Atom("blocked_count")],
            truncated=raw[Atom("truncated")] is True,
            cycle_count=raw[Atom("cycle_count")],
            cycles=cycles,
            chain_count=raw[Atom("chain_count")],
            chains=chains,
            findings=[c.finding for c in cycles] + [c.finding for c in chains],
        )


def _cycle(raw: dict[Any, Any], node: Node) -> DeadlockCycle:
    processes = [_waiter(p, node) for p in raw[Atom("processes")]]
    length = raw[Atom("length")]
    certain = raw[Atom("certain")] is True
    waiting = raw[Atom("waiting_count")]
    return DeadlockCycle(
        processes=processes,
        length=length,
        certain=certain,
        waiting_count=waiting,
        finding=_cycle_finding(processes, length, certain, waiting),
    )


def _chain(raw: dict[Any, Any], node: Node) -> WaitChain:
    processes = [_waiter(p, node) for p in raw[Atom("processes")]]
    blocker = _blocker(raw[Atom("blocker")], node)
    waiting = raw[Atom("waiting_count")]
    return WaitChain(
        processes=processes,
        blocker=blocker,
        length=raw[Atom("length")],
        waiting_count=waiting,
        finding=_chain_finding(processes, blocker, waiting),
    )


# ====================================================================== memory_leak_detection


class GrowingProcess(Result):
    pid: str
    name: str | None
    initial_call: str | None
    current_function: str | None
    message_queue_len: int
    memory: list[int] = Field(description="process_info memory at each sample, bytes (heap, stack...).")
    binary: list[int] = Field(description="Refc binary bytes it references at each sample.")
    growth: int = Field(
        description="Footprint (memory + binary) at the last sample minus at the first, bytes."
    )
    growth_per_s: float
    rises: int = Field(description="Intervals in which the footprint rose (it never fell).")
    intervals: int
    every_interval: bool = Field(description="It rose in every interval (rises == intervals).")


class BinaryHolder(Result):
    pid: str
    name: str | None
    binary_memory: int = Field(
        description="Bytes of the refc binaries it references (shared ones count fully)."
    )
    binary_count: int
    memory: int


class GcOutcome(Result):
    pid: str
    name: str | None
    outcome: str = Field(
        description="done; timeout (no answer within 2 s); deadline (10 s in all spent); gone."
    )
    memory_before: int | None
    memory_after: int | None
    binary_before: int | None
    binary_after: int | None
    binary_freed: int | None = Field(description="binary_before - binary_after: what only it held, freed.")


class LeakReport(Result):
    node: str
    samples: int
    interval_ms: int
    process_count: int = Field(description="Processes at the first sample.")
    growing_count: int = Field(
        description="Processes whose footprint rose at every sample (every_sample=false: that never fell "
        "and rose)."
    )
    growing: list[GrowingProcess] = Field(description="Largest growth first, at most limit.")
    binary_total: int = Field(
        description="Sum of every process's refc binary bytes (shared ones per holder)."
    )
    binary_holders: list[BinaryHolder] = Field(description="At the last sample, largest first.")
    gc: list[GcOutcome] = Field(description="With gc_top: the largest holders garbage-collected.")
    findings: list[str]


class LeakParams(Params):
    samples: int = Field(3, ge=2, le=10, description="How many times every process is sampled.")
    interval_ms: int = Field(1000, ge=100, le=10_000, description="Time between samples.")
    limit: int = Field(10, ge=1, le=MAX_LIMIT, description="Rows per list.")
    every_sample: bool = Field(
        True,
        description="Only processes whose footprint rose at every sample. False: also those that never "
        "fell and rose at least once (a heap grows in steps, at garbage collections, so a slow heap leak "
        "may skip an interval).",
    )
    gc_top: int = Field(
        0,
        ge=0,
        le=50,
        description="Garbage-collect this many of the largest binary holders and report what each freed "
        "(recon:bin_leak, without collecting every process). 0: none.",
    )


def _int_or_none(raw: dict[Any, Any], key: str) -> int | None:
    value = raw.get(Atom(key))
    return value if isinstance(value, int) else None


def _grower(raw: dict[Any, Any], node: Node, seconds: float) -> GrowingProcess:
    lang = node.language
    growth = raw[Atom("growth")]
    return GrowingProcess(
        pid=pid_text(raw[Atom("pid")]),
        name=name_text(raw[Atom("name")], lang),
        initial_call=mfa_text(raw[Atom("initial_call")], lang),
        current_function=mfa_text(raw[Atom("current_function")], lang),
        message_queue_len=raw[Atom("message_queue_len")],
        memory=list(raw[Atom("memory")]),
        binary=list(raw[Atom("binary")]),
        growth=growth,
        growth_per_s=growth / seconds,
        rises=raw[Atom("rises")],
        intervals=raw[Atom("intervals")],
        every_interval=raw[Atom("rises")] == raw[Atom("intervals")],
    )


def _gc(raw: dict[Any, Any], node: Node) -> GcOutcome:
    before, after = _int_or_none(raw, "binary_before"), _int_or_none(raw, "binary_after")
    return GcOutcome(
        pid=pid_text(raw[Atom("pid")]),
        name=name_text(raw[Atom("name")], node.language),
        outcome=str(raw[Atom("outcome")]),
        memory_before=_int_or_none(raw, "memory_before"),
        memory_after=_int_or_none(raw, "memory_after"),
        binary_before=before,
        binary_after=after,
        binary_freed=None if before is None or after is None else before - after,
    )


def _kib(value: int) -> str:
    return f"{value / 1024:,.0f} KiB"


def _leak_findings(report: LeakReport) -> list[str]:
    findings = []
    for row in report.growing:
        how = "in every interval" if row.every_interval else f"in {row.rises} of {row.intervals} intervals"
        findings.append(
            f"{_label(row.pid, row.name)} ({row.initial_call or '?'}) grew {_kib(row.growth)} "
            f"({_kib(round(row.growth_per_s))}/s), {how}, never shrinking: "
            f"memory {_kib(row.memory[0])} -> {_kib(row.memory[-1])}, "
            f"binaries {_kib(row.binary[0])} -> {_kib(row.binary[-1])}."
        )
    for gc in report.gc:
        if gc.outcome == "done" and gc.binary_freed:
            findings.append(
                f"{_label(gc.pid, gc.name)} held {_kib(gc.binary_freed)} of refc binaries it no longer "
                "used: a garbage collection freed them (a binary leak: it allocates too little to be "
                "collected often; consider hibernation or a manual GC)."
            )
    return findings


@register
class MemoryLeakDetection(Operation[LeakParams, LeakReport]):
    name = "memory_leak_detection"
    category = CATEGORY
    summary = (
        "Processes whose memory (heap and refc binaries) grew at every sample, ranked by growth with "
        "their series; the largest refc binary holders; optionally what garbage-collecting the top "
        "holders frees (like recon:bin_leak)."
    )
    cost = (
        "Per sample one process_info(P, [memory, binary]) per process (the binary list is copied: long "
        "for a process holding many binaries), and a few words per process kept in the agent between "
        "samples: about 0.2 s per sample per 100 000 processes, plus samples x interval_ms of waiting. "
        "gc_top: one full garbage collection per process collected."
    )
    risk = (
        "Reads only unless gc_top > 0: then each of the gc_top largest binary holders is "
        "garbage-collected (a pause proportional to its heap, waited on at most 2 s each, 10 s in all); "
        "never every process. Refused on a read-only node."
    )
    params = LeakParams
    result = LeakReport
    path = "/api/v1/system/memory-leaks"
    cli_name = "leaks"
    timeout = 150.0
    example = {"samples": 3, "interval_ms": 1000, "limit": 10}

    async def execute(self, ctx: Context, params: LeakParams) -> LeakReport:
        node = ctx.require_node()
        if params.gc_top and node.read_only:
            raise OperationError(
                ErrorCode.read_only,
                f"{node.name} is attached read-only: gc_top garbage-collects processes; use gc_top=0",
            )
        options = {
            Atom("samples"): params.samples,
            Atom("interval_ms"): params.interval_ms,
            Atom("limit"): params.limit,
            Atom("gc_top"): params.gc_top,
            Atom("every_sample"): params.every_sample,
        }
        waited = params.samples * params.interval_ms / 1000
        raw = await diag_call(node, "leaks", [options], waited + 40)
        seconds = (raw[Atom("samples")] - 1) * raw[Atom("interval_ms")] / 1000
        report = LeakReport(
            node=node.name,
            samples=raw[Atom("samples")],
            interval_ms=raw[Atom("interval_ms")],
            process_count=raw[Atom("process_count")],
            growing_count=raw[Atom("growing_count")],
            growing=[_grower(g, node, seconds) for g in raw[Atom("growing")]],
            binary_total=raw[Atom("binary_total")],
            binary_holders=[
                BinaryHolder(
                    pid=pid_text(h[Atom("pid")]),
                    name=name_text(h[Atom("name")], node.language),
                    binary_memory=h[Atom("binary_memory")],
                    binary_count=h[Atom("binary_count")],
                    memory=h[Atom("memory")],
                )
                for h in raw[Atom("binary_holders")]
            ],
            gc=[_gc(g, node) for g in raw[Atom("gc")]],
            findings=[],
        )
        report.findings = _leak_findings(report)
        return report
