"""Recording and replay of gen_server processes: every message in, every state after it.

A recording runs inside the target (``arsenal_agent_record``): a sys debug function in each
recorded process sends every handled message and the state after it to a recorder process,
which enforces the limits (steps, bytes, duration) and, at the end, removes every debug
function and sends the whole recording here in bounded chunks. It is stored compressed in
the ``recordings`` table (:mod:`arsenal.store.recordings`); nothing of it stays on the node.

A replay puts a recorded state back (into the live process, or into a copy started in a
sandbox node without running ``init/1``), re-delivers the recorded messages one by one
(optionally dropped, modified or with messages inserted), reads the state after each and
reports the first step whose state (or reply) differs from the recording, with a diff.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, model_validator

from ..beam import Node
from ..dist import Atom, Pid, Process, Term
from ..dist.etf import term_to_binary
from ..dist.process import DOWN
from ..store.recordings import RecordingStore, decode, encode_from_node
from ..terms.diff import diff_terms
from ..terms.paths import format_path
from ..terms.render import render
from .base import Context, Operation, Params, Result, Services, Severity
from .errors import ErrorCode, OperationError
from .plain import pid_text, plain
from .registry import register
from .safeterm import parse_term
from .safety import ensure_not_protected
from .targets import is_agent_error, process_ref

__all__ = [
    "GetRecording",
    "ListRecordings",
    "RecordingManager",
    "ReplayRecording",
    "StartRecording",
    "StopRecording",
    "diff_states",
]

REC_MODULE = "arsenal_agent_record"
CATEGORY = "state"
CHUNK = Atom("arsenal_record_chunk")
DONE = Atom("arsenal_record_done")
MAX_RENDER_ITEMS = 50
MAX_DIFFS = 50


# ====================================================================== the live recordings


@dataclass
class LiveRecording:
    id: str
    node: Node
    recorder: Pid
    process: Process
    targets: list[dict[str, Any]]
    spec: dict[str, Any]
    started_at: float
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class RecordingManager:
    """The recordings one Arsenal runs (a service: ``ctx.services.get(RecordingManager)``)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.live: dict[str, LiveRecording] = {}
        self.store = RecordingStore(services.store)

    async def start(
        self,
        node: Node,
        refs: list[bytes],
        limits: dict[str, int],
        spec: dict[str, Any],
        principal: str | None,
    ) -> LiveRecording:
        process = node.spawn_process(mailbox_size=10_000)
        try:
            reply = await node.agent_call(
                "start", [refs, process.pid, {Atom(k): v for k, v in limits.items()}], 40.0, module=REC_MODULE
            )
        except BaseException:
            await process.close()
            raise
        if is_agent_error(reply):
            await process.close()
            raise _refusal(reply[1], node)  # type: ignore[index]
        _, recorder, info = reply  # type: ignore[misc]
        targets = [
            {
                "pid": pid_text(t[Atom("pid")]),
                "module": _text(t[Atom("module")], node.language),
                "name": _name(t[Atom("name")], node.language),
            }
            for t in info
        ]
        live = LiveRecording(
            id=secrets.token_hex(6),
            node=node,
            recorder=recorder,
            process=process,
            targets=targets,
            spec=spec,
            started_at=time.time(),
        )
        self.store.create(
            live.id, node.name, [t["pid"] for t in targets], {**spec, "targets": targets}, principal
        )
        self.live[live.id] = live
        ref = await process.monitor(recorder)
        live.task = asyncio.create_task(self._pump(live, ref), name=f"arsenal-recording {live.id}")
        return live

    async def _pump(self, live: LiveRecording, ref: Any) -> None:
        chunks: dict[int, bytes] = {}
        reason, steps, size, data = "recorder_down", 0, 0, None
        try:
            while True:
                message = await live.process.receive()
                if _is(message, CHUNK, 4) and message[1] == live.recorder:
                    chunks[int(message[2])] = bytes(message[3])
                elif _is(message, DONE, 3) and message[1] == live.recorder:
                    summary = {str(k): v for k, v in message[2].items()}
                    reason, steps, size = (
                        str(summary["end_reason"]),
                        int(summary["steps"]),
                        int(summary["bytes"]),
                    )
                    blob = b"".join(chunks[i] for i in range(int(summary["chunks"])))
                    data = encode_from_node(blob)
                    break
                elif _is(message, DOWN, 5) and message[1] == ref:
                    reason = "node_down" if message[4] == Atom("noconnection") else "recorder_down"
                    break
        except Exception:  # the connection closed under us: the node removes the hooks by itself
            reason = "node_down"
        finally:
            with contextlib.suppress(Exception):  # a closed store at shutdown loses only this row's end
                self.store.finish(live.id, reason, steps, size, data)
            self.live.pop(live.id, None)
            live.finished.set()
            with contextlib.suppress(Exception):
                await live.process.close()

    async def stop(self, id: str, timeout: float = 30.0) -> None:
        """End a live recording and wait until it is stored."""
        live = self.live.get(id)
        if live is None:
            return
        with contextlib.suppress(Exception):
            await live.node.agent_call("stop", [live.recorder], 10.0, module=REC_MODULE)
        await self.wait(live, timeout)
        if not live.finished.is_set() and live.task is not None:
            live.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await live.task

    async def wait(self, live: LiveRecording, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(live.finished.wait(), timeout)

    async def status(self, live: LiveRecording) -> dict[str, Any]:
        with contextlib.suppress(Exception):
            reply = await live.node.agent_call("status", [live.recorder], 10.0, module=REC_MODULE)
            if isinstance(reply, tuple) and reply[0] == Atom("ok"):
                return {str(k): v for k, v in reply[1].items()}
        return {}

    async def aclose(self) -> None:
        for id in list(self.live):
            with contextlib.suppress(Exception):
                await self.stop(id, timeout=10.0)


def _is(message: Term, tag: Atom, size: int) -> bool:
    return isinstance(message, tuple) and len(message) == size and message[0] == tag


def _text(value: Term, language: str) -> str:
    return render(value, language) if isinstance(value, Atom) else str(plain(value, language))


def _name(value: Term, language: str) -> str | None:
    return None if value == Atom("undefined") else render(value, language)


def _refusal(reason: Term, node: Node) -> OperationError:
    """The agent's ``{error, Reason}`` for start and replay, as an error that says what to do."""
    if isinstance(reason, tuple) and reason:
        tag = str(reason[0])
        who = (
            pid_text(reason[1])
            if len(reason) > 1 and isinstance(reason[1], Pid)
            else render(reason[1:], "erlang")
        )
        if tag == "not_gen_server":
            return OperationError(
                ErrorCode.validation_error,
                f"{who} is a {reason[2]} process; recording and replay work on gen_server processes "
                "(GenServer), whose debug events carry the state",
            )
        if tag == "not_sys_compliant":
            return OperationError(
                ErrorCode.validation_error,
                f"{who} does not answer system messages (it is not a gen_server or :sys-compliant "
                "process in its receive loop); only gen_server processes can be recorded",
            )
        if tag == "dead":
            return OperationError(ErrorCode.not_found, f"{who} is not alive on {node.name}")
        if tag in ("not_found", "bad_pid"):
            return OperationError(
                ErrorCode.not_found, f"no process {render(reason[1], 'erlang')} on {node.name}"
            )
        if tag == "timeout":
            return OperationError(
                ErrorCode.timeout, f"{who} did not answer a system message within 5 s; it is busy"
            )
    if reason == Atom("unknown_atoms"):
        return OperationError(
            ErrorCode.validation_error,
            f"the replay names atoms {node.name} does not know (in a modified message or a recorded state); "
            "nothing was created and the process is untouched: replay into a sandbox instead",
        )
    return OperationError(
        ErrorCode.agent_error, f"the node refused: {render(reason, 'erlang', max_items=20)}"
    )


def _manager(ctx: Context) -> RecordingManager:
    return ctx.services.get(RecordingManager)


# ====================================================================== summaries


class RecordingTarget(Result):
    pid: str
    module: str | None
    name: str | None


class RecordingInfo(Result):
    id: str
    node: str
    status: Literal["running", "finished"]
    targets: list[RecordingTarget]
    started_at: float
    ended_at: float | None
    end_reason: str | None = Field(
        description="stopped, duration, max_steps, max_bytes, processes_exited, owner_down, node_down."
    )
    steps: int
    bytes: int = Field(description="Term size of the steps and initial states (external format).")
    stored_bytes: int | None = Field(None, description="Compressed size in the store.")
    spec: dict[str, Any]


async def _info(manager: RecordingManager, id: str) -> RecordingInfo:
    row = manager.store.get(id)
    if row is None:
        raise OperationError(ErrorCode.not_found, f"no recording {id}; `list_recordings` shows them")
    live = manager.live.get(id)
    steps, size = row.steps, row.bytes
    if live is not None:
        status = await manager.status(live)
        steps, size = int(status.get("steps", 0)), int(status.get("bytes", 0))
    data = manager.store.data(id) if row.has_data else None
    return RecordingInfo(
        id=row.id,
        node=row.node,
        status="running" if live is not None else "finished",
        targets=[RecordingTarget(**t) for t in row.spec.get("targets", [])],
        started_at=row.started_at,
        ended_at=row.ended_at,
        end_reason=row.end_reason,
        steps=steps,
        bytes=size,
        stored_bytes=len(data) if data is not None else None,
        spec={k: v for k, v in row.spec.items() if k != "targets"},
    )


# ====================================================================== start_recording


class StartRecordingParams(Params):
    pids: list[str] = Field(
        min_length=1,
        max_length=20,
        description="Processes to record: <0.123.0> or registered names (1 to 20).",
    )
    duration: float = Field(60.0, gt=0, le=600, description="Seconds (at most 10 minutes).")
    max_steps: int = Field(1000, ge=1, le=100_000, description="Messages recorded, all processes together.")
    max_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024, description="Term size of messages and states."
    )
    wait: bool = Field(False, description="Return when the recording has ended (and is stored).")
    force: bool = Field(False, description="Admins only: record one of the VM's own processes.")


@register
class StartRecording(Operation[StartRecordingParams, RecordingInfo]):
    name = "start_recording"
    category = CATEGORY
    summary = (
        "Record gen_server processes over a window: every message they handle (call, cast, info) and "
        "their state after it, through sys debug functions; stored compressed."
    )
    cost = (
        "Per handled message, in the recorded process: one debug-function call and one copy of the new "
        "state to the recorder (proportional to the state's size: a 1 MB state costs 1 MB per message). "
        "Bounded by max_steps, max_bytes and duration; at the end the recording (at most max_bytes) "
        "crosses the wire once, compressed."
    )
    risk = (
        "Low: the process keeps running as before; a large state with a high message rate slows it "
        "(copying). The debug functions remove themselves at the limits or when Arsenal goes away."
    )
    severity = Severity.write
    params = StartRecordingParams
    result = RecordingInfo
    method = "POST"
    path = "/api/v1/recordings"
    cli_name = "record"
    timeout = 700.0
    example = {"pids": ["ArsenalDemo.Counter1"], "duration": 60, "max_steps": 1000}

    async def execute(self, ctx: Context, params: StartRecordingParams) -> RecordingInfo:
        node = ctx.require_node()
        for pid in params.pids:
            await ensure_not_protected(ctx, pid, force=params.force, action="recording")
        limits = {
            "max_steps": params.max_steps,
            "max_bytes": params.max_bytes,
            "duration_ms": int(params.duration * 1000),
        }
        spec = {"pids": params.pids, **limits}
        manager = _manager(ctx)
        live = await manager.start(
            node, [process_ref(p) for p in params.pids], limits, spec, ctx.principal.name
        )
        if params.wait:
            await manager.wait(live, params.duration + 30.0)
            if not live.finished.is_set():
                await manager.stop(live.id)
        return await _info(manager, live.id)


class RecordingIdParams(Params):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$", description="The recording's id.")


@register
class StopRecording(Operation[RecordingIdParams, RecordingInfo]):
    name = "stop_recording"
    category = CATEGORY
    summary = "End a running recording; it is stored and its debug functions removed."
    cost = "One message to the recorder, then the recording crosses the wire once, compressed."
    risk = "None: recording less is always safe."
    severity = Severity.write
    params = RecordingIdParams
    result = RecordingInfo
    method = "DELETE"
    path = "/api/v1/recordings/{id}"
    cli_name = None  # a CLI recording belongs to its `arsenal record` command: Ctrl-C stops it
    needs_node = False
    timeout = 60.0
    example = {"id": "0123456789ab"}

    async def execute(self, ctx: Context, params: RecordingIdParams) -> RecordingInfo:
        manager = _manager(ctx)
        if manager.store.get(params.id) is None:
            raise OperationError(ErrorCode.not_found, f"no recording {params.id}")
        await manager.stop(params.id)
        return await _info(manager, params.id)


# ====================================================================== get / list


class GetRecordingParams(RecordingIdParams):
    pid: str | None = Field(None, max_length=300, description="Only this recorded process's steps.")
    offset: int = Field(0, ge=0, description="Steps to skip.")
    limit: int = Field(50, ge=1, le=500, description="Steps per page.")
    max_items: int = Field(MAX_RENDER_ITEMS, ge=1, le=1000, description="Elements shown per list/map/tuple.")


class RecordedStep(Result):
    step: int
    time_us: int
    pid: str
    kind: str = Field(description="call, cast, info, continue, or exit (the process died: message = reason).")
    message: str
    from_: str | None = Field(None, alias="from", serialization_alias="from")
    state: str | None = Field(description="The state after the message.")
    reply: str | None = Field(None, description="For calls answered by the callback.")


class RecordingTargetState(RecordingTarget):
    initial_state: str | None


class RecordingPage(Result):
    recording: RecordingInfo
    targets: list[RecordingTargetState]
    steps: list[RecordedStep]
    total: int = Field(description="Steps recorded (of the chosen process when pid is given).")
    next_offset: int | None


def _load(
    manager: RecordingManager, id: str
) -> tuple[dict[str, Any], list[tuple[Any, ...]], list[dict[str, Any]]]:
    """The stored recording: its map, its steps, its targets (each a dict with Atom keys made str)."""
    data = manager.store.data(id)
    if data is None:
        row = manager.store.get(id)
        if row is None:
            raise OperationError(ErrorCode.not_found, f"no recording {id}; `list_recordings` shows them")
        if id in manager.live:
            raise OperationError(ErrorCode.conflict, f"recording {id} is still running; stop it first")
        raise OperationError(ErrorCode.not_found, f"recording {id} ended ({row.end_reason}) without data")
    term = decode(data)
    rec = {str(k): v for k, v in term.items()}
    targets = [{str(k): v for k, v in t.items()} for t in rec["targets"]]
    return rec, list(rec["steps"]), targets


def recorded_states(
    services: Services, id: str, pid: str, language: str
) -> list[tuple[int, str, Term, Term]]:
    """What a recording holds for one of its processes, oldest first: ``(step, kind, message,
    state after)``, the initial state as step 0 (for the debugger to step back through)."""
    _rec, steps, targets = _load(services.get(RecordingManager), id)
    target = _find_target(targets, pid, language)
    states: list[tuple[int, str, Term, Term]] = [(0, "initial", None, target["initial_state"])]
    for seq, _time, step_pid, kind, message, _from, state, _reply in steps:
        if step_pid == target["pid"] and str(kind) != "exit":
            states.append((int(seq), str(kind), message, state))
    return states


def _matches(target: dict[str, Any], text: str, language: str) -> bool:
    """Whether ``text`` (a pid in any accepted form, or a name) names this recorded process."""
    try:
        ref = process_ref(text).decode()
    except OperationError:
        return False
    if ref == pid_text(target["pid"]):
        return True
    name = target.get("name")
    if not isinstance(name, Atom) or name == Atom("undefined"):
        return False
    return ref in (str(name), render(name, language).lstrip(":"))


def _find_target(targets: list[dict[str, Any]], text: str, language: str) -> dict[str, Any]:
    for target in targets:
        if _matches(target, text, language):
            return target
    recorded = ", ".join(pid_text(t["pid"]) for t in targets)
    raise OperationError(ErrorCode.not_found, f"{text} is not one of the recorded processes ({recorded})")


def _render(term: Term, language: str, max_items: int) -> str:
    return render(term, language, max_items=max_items, max_depth=20)  # type: ignore[arg-type]


def _rendered_step(raw: tuple[Any, ...], language: str, max_items: int) -> RecordedStep:
    seq, time_us, pid, kind, message, from_, state, reply = raw
    undefined = Atom("undefined")
    return RecordedStep.model_validate(
        {
            "step": seq,
            "time_us": time_us,
            "pid": pid_text(pid),
            "kind": str(kind),
            "message": _render(message, language, max_items),
            "from": None if from_ == undefined else _render(from_, language, max_items),
            "state": None if str(kind) == "exit" else _render(state, language, max_items),
            "reply": _render(reply[1], language, max_items) if isinstance(reply, tuple) else None,
        }
    )


@register
class GetRecording(Operation[GetRecordingParams, RecordingPage]):
    name = "get_recording"
    category = CATEGORY
    summary = "A recording's summary and a page of its steps: message, kind, time, state after, reply."
    cost = "A read of Arsenal's own store (the recording is decompressed once); nothing reaches the node."
    risk = "None."
    params = GetRecordingParams
    result = RecordingPage
    path = "/api/v1/recordings/{id}"
    cli_name = "recording"
    needs_node = False
    example = {"id": "0123456789ab", "limit": 20}

    async def execute(self, ctx: Context, params: GetRecordingParams) -> RecordingPage:
        manager = _manager(ctx)
        info = await _info(manager, params.id)
        language = _language(ctx, info.node)
        if info.status == "running":
            return RecordingPage(recording=info, targets=[], steps=[], total=info.steps, next_offset=None)
        _, steps, targets = _load(manager, params.id)
        if params.pid is not None:
            pid = _find_target(targets, params.pid, language)["pid"]
            steps = [s for s in steps if s[2] == pid]
        page = steps[params.offset : params.offset + params.limit]
        end = params.offset + len(page)
        return RecordingPage(
            recording=info,
            targets=[
                RecordingTargetState(
                    pid=pid_text(t["pid"]),
                    module=_text(t["module"], language),
                    name=_name(t["name"], language),
                    initial_state=_render(t["initial_state"], language, params.max_items),
                )
                for t in targets
            ],
            steps=[_rendered_step(s, language, params.max_items) for s in page],
            total=len(steps),
            next_offset=end if end < len(steps) else None,
        )


def _language(ctx: Context, node_name: str) -> str:
    """The recorded node's language if it is attached; Erlang syntax otherwise."""
    with contextlib.suppress(Exception):
        return ctx.pool.get(node_name).language
    if ctx.node is not None and ctx.node.name == node_name:
        return ctx.node.language
    return "erlang"


class ListRecordingsParams(Params):
    limit: int = Field(50, ge=1, le=500)
    node: str | None = Field(None, max_length=255, description="Only recordings of this node.")
    pid: str | None = Field(None, max_length=300, description="Only recordings of this pid (<0.N.S>).")


class RecordingList(Result):
    recordings: list[RecordingInfo]
    running: int


@register
class ListRecordings(Operation[ListRecordingsParams, RecordingList]):
    name = "list_recordings"
    category = CATEGORY
    summary = "Recordings, running and stored, newest first."
    cost = "A read of Arsenal's own store (one call per running recording for its counts)."
    risk = "None."
    params = ListRecordingsParams
    result = RecordingList
    path = "/api/v1/recordings"
    cli_name = "recordings"
    needs_node = False
    example = {"limit": 10}

    async def execute(self, ctx: Context, params: ListRecordingsParams) -> RecordingList:
        manager = _manager(ctx)
        pid = None
        if params.pid is not None:
            pid = process_ref(params.pid).decode()
        rows = manager.store.list(limit=params.limit, node=params.node, pid=pid)
        return RecordingList(recordings=[await _info(manager, r.id) for r in rows], running=len(manager.live))


# ====================================================================== replay


class ChangeAction(StrEnum):
    drop = "drop"
    modify = "modify"
    insert = "insert"


class MessageKind(StrEnum):
    call = "call"
    cast = "cast"
    info = "info"


class Change(Params):
    step: int = Field(ge=1, description="The recorded step (its number in get_recording).")
    action: ChangeAction
    message: Any = Field(
        None, description="Tagged JSON term: the new message (modify) or the one inserted before the step."
    )
    kind: MessageKind | None = Field(None, description="For insert (default: the step's kind) or modify.")

    @model_validator(mode="after")
    def _message_given(self) -> Change:
        if self.action is not ChangeAction.drop and self.message is None:
            raise ValueError(f"{self.action.value} needs a message (tagged JSON)")
        return self


class ReplayTarget(StrEnum):
    live = "live"
    sandbox = "sandbox"


class ReplayParams(RecordingIdParams):
    pid: str = Field(max_length=300, description="Which recorded process (its pid or registered name).")
    from_step: int = Field(
        0, ge=0, description="Start from the state after this step (0: the initial state)."
    )
    to_step: int | None = Field(None, ge=1, description="Last step re-delivered (default: the last).")
    target: ReplayTarget = Field(
        ReplayTarget.sandbox, description="sandbox (a copy) or live (the process itself)."
    )
    changes: list[Change] = Field(default_factory=list, max_length=100)
    keep_sandbox: bool = Field(False, description="Keep the sandbox node (its id is in the result).")
    call_timeout: float = Field(5.0, gt=0, le=60, description="Seconds per re-delivered call.")
    ignore: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="Parts of the state not compared, e.g. history[*].at (timestamps): keys, [N] positions "
        "(from 0) and * (every element or value), separated by dots.",
    )
    force: bool = Field(False, description="Admins only: live replay into one of the VM's own processes.")


class StateChange(Result):
    path: str = Field(description="Where in the state, e.g. counter or history[0].at.")
    change: str = Field(description="changed, added, removed.")
    recorded: str | None
    replayed: str | None


class ReplayedStep(Result):
    index: int = Field(description="Position in the replay.")
    step: int | None = Field(description="The recorded step; null for an inserted message.")
    kind: str
    message: str
    change: str | None = Field(description="modified, inserted, dropped, or null (as recorded).")
    outcome: str = Field(description="same, different, not_compared (inserted), dropped, not_delivered.")
    state_differs: bool = False
    reply_differs: bool = False
    diff: list[StateChange] = Field(default_factory=list)
    recorded_reply: str | None = None
    replayed_reply: str | None = None


class Divergence(Result):
    step: int | None
    index: int
    state_differs: bool
    reply_differs: bool
    diff: list[StateChange]
    recorded_reply: str | None
    replayed_reply: str | None


class ReplayResult(Result):
    recording: str
    pid: str
    target: str
    replayed_into: str = Field(description="The pid that received the messages (in the sandbox for sandbox).")
    sandbox: str | None = Field(description="The sandbox's id when kept.")
    steps: list[ReplayedStep]
    first_change: int | None = Field(description="The first recorded step a change touched.")
    divergence: Divergence | None = Field(
        description="The first step whose state or reply differs; null: none."
    )
    different_steps: int
    ended: str = Field(description="completed, or why the replay stopped early.")


@dataclass
class _Entry:
    step: int | None
    kind: str
    message: Term
    change: str | None
    expected: tuple[Term, Term] | None


def _plan(
    steps: list[tuple[Any, ...]], pid: Pid, params: ReplayParams, initial: Term
) -> tuple[Term, list[_Entry], list[ReplayedStep], str | None]:
    """The start state, the entries to deliver, the dropped steps and a recorded exit (if any)."""
    mine = [s for s in steps if s[2] == pid]
    start = initial
    for s in mine:
        if s[0] <= params.from_step and str(s[3]) != "exit":
            start = s[6]
    last = params.to_step if params.to_step is not None else max([s[0] for s in mine], default=0)
    if params.to_step is not None and params.to_step <= params.from_step:
        raise OperationError(ErrorCode.validation_error, "to_step must be after from_step")
    window = [s for s in mine if params.from_step < s[0] <= last]
    by_step: dict[int, list[Change]] = {}
    for change in params.changes:
        if not any(s[0] == change.step for s in window):
            raise OperationError(
                ErrorCode.validation_error,
                f"step {change.step} is not a step of {pid_text(pid)} between from_step and to_step",
            )
        by_step.setdefault(change.step, []).append(change)
    entries: list[_Entry] = []
    dropped: list[ReplayedStep] = []
    exited: str | None = None
    for s in window:
        seq, _, _, kind, message, _, state, reply = s
        kind = str(kind)
        if kind == "exit":
            reason = render(message, "erlang", max_items=10)
            exited = f"the process exited at step {seq} in the recording ({reason})"
            break
        if kind == "continue":
            if entries and entries[-1].expected is not None:
                entries[-1].expected = (state, entries[-1].expected[1])
            continue
        change_here = by_step.get(seq, [])
        for change in change_here:
            if change.action is ChangeAction.insert:
                entries.append(
                    _Entry(
                        None,
                        (change.kind.value if change.kind else kind),
                        _user_term(change),
                        "inserted",
                        None,
                    )
                )
        drop = any(c.action is ChangeAction.drop for c in change_here)
        modify = next((c for c in change_here if c.action is ChangeAction.modify), None)
        if drop:
            dropped.append(
                ReplayedStep(
                    index=-1,
                    step=seq,
                    kind=kind,
                    message=render(message, "erlang"),
                    change="dropped",
                    outcome="dropped",
                )
            )
            continue
        if modify is not None:
            entries.append(
                _Entry(
                    seq,
                    modify.kind.value if modify.kind else kind,
                    _user_term(modify),
                    "modified",
                    (state, reply),
                )
            )
        else:
            entries.append(_Entry(seq, kind, message, None, (state, reply)))
    return start, entries, dropped, exited


def _user_term(change: Change) -> Term:
    return parse_term(change.message, what=f"message of the change at step {change.step}")


_SEGMENT = re.compile(r"\[(\*|\d+)\]|\.?([^.\[\]]+)")


def parse_ignore(text: str) -> list[Term]:
    """``history[*].at`` as the agent's path: ``[{key, history}, '*', {key, at}]``."""
    path: list[Term] = []
    for match in _SEGMENT.finditer(text.strip()):
        part = match.group(1) or match.group(2)
        if part == "*":
            path.append(Atom("*"))
        elif part.isdigit():
            path.append(int(part))
        else:
            path.append((Atom("key"), Atom(part.lstrip(":"))))
    if not path or len(path) > 20:
        raise OperationError(ErrorCode.validation_error, f"{text!r} is not a path: write e.g. history[*].at")
    return path


def _blank(term: Term, path: list[Term]) -> Term:
    """The agent's blank/2 on this side, so diffs leave out the ignored parts too."""
    if not path:
        return IGNORED
    head, rest = path[0], path[1:]
    if isinstance(term, dict):
        if head == Atom("*"):
            return {k: _blank(v, rest) for k, v in term.items()}
        if isinstance(head, tuple) and head[1] in term:
            return {**term, head[1]: _blank(term[head[1]], rest)}
        return term
    if isinstance(term, (list, tuple)):
        items = list(term)
        if head == Atom("*"):
            items = [_blank(e, rest) for e in items]
        elif isinstance(head, int) and 0 <= head < len(items):
            items[head] = _blank(items[head], rest)
        else:
            return term
        return type(term)(items) if isinstance(term, tuple) else items
    return term


IGNORED = Atom("$arsenal_ignored")


def _plan_binary(
    entries: list[_Entry], initial: Term | None, call_timeout: float, ignore: list[list[Term]]
) -> bytes:
    steps = [
        (
            i,
            Atom(e.kind),
            e.message,
            Atom("none") if e.expected is None else e.expected,
        )
        for i, e in enumerate(entries)
    ]
    plan = {
        Atom("initial"): Atom("keep") if initial is None else (Atom("state"), initial),
        Atom("steps"): steps,
        Atom("call_timeout"): int(call_timeout * 1000),
        Atom("ignore"): ignore,
    }
    return term_to_binary(plan)


@register
class ReplayRecording(Operation[ReplayParams, ReplayResult]):
    name = "replay_recording"
    category = CATEGORY
    summary = (
        "Put a recorded state back (into the live process or a sandbox copy), re-deliver the recorded "
        "messages one by one (dropped, modified or inserted as asked) and report the first step whose "
        "state or reply differs from the recording, with a diff."
    )
    cost = (
        "Per re-delivered message: the message itself, one sys:get_state and one comparison in the VM; "
        "only differing states cross the wire back. A sandbox replay starts a node (~1-2 s) and copies "
        "the process's application's object code into it."
    )
    risk = (
        "live: overwrites the process's state with the recorded one (sys:replace_state) and sends it "
        "the messages again, with their side effects (replies to callers are not re-sent; messages the "
        "process sends are). sandbox: none for the node, the copy runs in Arsenal's own sandbox node."
    )
    severity = Severity.destructive
    params = ReplayParams
    result = ReplayResult
    method = "POST"
    path = "/api/v1/recordings/{id}/replay"
    cli_name = "replay"
    timeout = 300.0
    needs_node = False
    example = {"id": "0123456789ab", "pid": "ArsenalDemo.Counter1", "target": "sandbox"}

    async def execute(self, ctx: Context, params: ReplayParams) -> ReplayResult:
        manager = _manager(ctx)
        row = manager.store.get(params.id)
        if row is None:
            raise OperationError(ErrorCode.not_found, f"no recording {params.id}")
        _, steps, targets = _load(manager, params.id)
        node = _recorded_node(ctx, row.node)
        language = node.language
        target = _find_target(targets, params.pid, language)
        start, entries, dropped, exited = _plan(steps, target["pid"], params, target["initial_state"])
        sandbox: str | None = None
        if params.target is ReplayTarget.live:
            into, reply = await _replay_live(ctx, node, target, start, entries, params)
        else:
            into, sandbox, reply = await _replay_sandbox(ctx, node, target, start, entries, params)
        return _report(params, target, entries, dropped, exited, reply, into, sandbox, language)


def _recorded_node(ctx: Context, name: str) -> Node:
    try:
        return ctx.pool.get(name)
    except Exception:
        raise OperationError(
            ErrorCode.not_found,
            f"the recording is of {name}, which is not attached; attach it (--node {name})",
        ) from None


async def _replay_live(
    ctx: Context, node: Node, target: dict[str, Any], start: Term, entries: list[_Entry], params: ReplayParams
) -> tuple[str, Term]:
    node.ensure_writable("replaying into a live process")
    name = target.get("name")
    text = str(name) if isinstance(name, Atom) and name != Atom("undefined") else pid_text(target["pid"])
    await ensure_not_protected(ctx, text, force=params.force, action="replaying into")
    plan = _plan_binary(entries, start, params.call_timeout, [parse_ignore(i) for i in params.ignore])
    timeout = 30.0 + len(entries) * (params.call_timeout + 5.0)
    reply = await node.agent_call("replay", [process_ref(text), plan, True], timeout, module=REC_MODULE)
    if is_agent_error(reply):
        raise _refusal(reply[1], node)  # type: ignore[index]
    return text, reply


async def _replay_sandbox(
    ctx: Context, node: Node, target: dict[str, Any], start: Term, entries: list[_Entry], params: ReplayParams
) -> tuple[str, str | None, Term]:
    from ..sandbox.manager import SandboxError, SandboxManager, SandboxSpec

    module = target["module"]
    if not isinstance(module, Atom) or module == Atom("undefined"):
        raise OperationError(
            ErrorCode.validation_error, "the recorded process's module is unknown; replay it live"
        )
    code = await node.agent_call("module_code", [str(module).encode(), True], 60.0, module=REC_MODULE)
    if is_agent_error(code):
        raise OperationError(
            ErrorCode.not_found,
            f"the object code of {module} cannot be read on {node.name} "
            f"({render(code[1], 'erlang')}); a sandbox needs the .beam files",  # type: ignore[index]
        )
    sandboxes = ctx.services.get(SandboxManager)
    sandbox_id = f"replay_{secrets.token_hex(4)}"
    try:
        await sandboxes.create(sandbox_id, SandboxSpec(language=node.language))
    except SandboxError as exc:
        raise OperationError(ErrorCode.internal_error, f"the replay sandbox did not start: {exc}") from None
    keep = False
    try:
        sbx = await sandboxes.node(sandbox_id)
        for mod, file, binary in code[1]:  # type: ignore[index]
            await sbx.call("code", "load_binary", [mod, file, binary], 30.0)
        started = await sbx.call(REC_MODULE, "sandbox_start", [module, term_to_binary(start)], 30.0)
        if is_agent_error(started):
            raise _refusal(started[1], sbx)  # type: ignore[index]
        pid = pid_text(started[1])  # type: ignore[index]
        plan = _plan_binary(entries, None, params.call_timeout, [parse_ignore(i) for i in params.ignore])
        timeout = 30.0 + len(entries) * (params.call_timeout + 5.0)
        reply = await sbx.call(REC_MODULE, "replay", [pid.encode(), plan, False], timeout)
        if is_agent_error(reply):
            raise _refusal(reply[1], sbx)  # type: ignore[index]
        keep = params.keep_sandbox
        return pid, (sandbox_id if keep else None), reply
    finally:
        if not keep:
            with contextlib.suppress(Exception):
                await sandboxes.destroy(sandbox_id)


def _report(
    params: ReplayParams,
    target: dict[str, Any],
    entries: list[_Entry],
    dropped: list[ReplayedStep],
    exited: str | None,
    reply: Term,
    into: str,
    sandbox: str | None,
    language: str,
) -> ReplayResult:
    body = {str(k): v for k, v in reply[1].items()}  # type: ignore[index]
    ignore = [parse_ignore(i) for i in params.ignore]
    results = {int(r[0]): r for r in body["results"]}
    rendered: list[ReplayedStep] = []
    divergence: Divergence | None = None
    for i, entry in enumerate(entries):
        item = ReplayedStep(
            index=i,
            step=entry.step,
            kind=entry.kind,
            message=_render(entry.message, language, MAX_RENDER_ITEMS),
            change=entry.change,
            outcome="not_delivered",
        )
        result = results.get(i)
        if result is not None:
            item.outcome = str(result[1])
            if item.outcome == "different":
                _, _, state_differs, state, reply_differs, actual_reply = result
                item.state_differs = state_differs is True
                item.reply_differs = reply_differs is True
                assert entry.expected is not None
                if item.state_differs and state != Atom("truncated"):
                    recorded = entry.expected[0]
                    for path in ignore:
                        recorded, state = _blank(recorded, path), _blank(state, path)
                    item.diff = diff_states(recorded, state, language)
                if item.reply_differs:
                    item.recorded_reply = _reply_text(entry.expected[1], language)
                    item.replayed_reply = _reply_text(actual_reply, language)
                if divergence is None:
                    divergence = Divergence(
                        step=entry.step,
                        index=i,
                        state_differs=item.state_differs,
                        reply_differs=item.reply_differs,
                        diff=item.diff,
                        recorded_reply=item.recorded_reply,
                        replayed_reply=item.replayed_reply,
                    )
        rendered.append(item)
    changed = [e.step for e in entries if e.change is not None and e.step is not None]
    changed += [d.step for d in dropped if d.step is not None]
    changed += [_next_step(entries, i) for i, e in enumerate(entries) if e.change == "inserted"]
    first_change = min((c for c in changed if c is not None), default=None)
    steps = sorted(
        rendered + dropped,
        key=lambda s: (s.step if s.step is not None else _next_step(entries, s.index) or 0, s.index),
    )
    return ReplayResult(
        recording=params.id,
        pid=pid_text(target["pid"]),
        target=params.target.value,
        replayed_into=into,
        sandbox=sandbox,
        steps=steps,
        first_change=first_change,
        divergence=divergence,
        different_steps=int(body["different"]),
        ended=_ended(body["ended"], entries, exited),
    )


def _next_step(entries: list[_Entry], index: int) -> int | None:
    for entry in entries[index:]:
        if entry.step is not None:
            return entry.step
    return None


def _ended(value: Term, entries: list[_Entry], exited: str | None) -> str:
    if value == Atom("completed"):
        return exited or "completed"
    if isinstance(value, tuple) and len(value) == 3:
        how, index, reason = value
        step = entries[int(index)].step if int(index) < len(entries) else None
        where = f"step {step}" if step is not None else f"the inserted message #{index}"
        if str(how) == "exited":
            return f"the process exited at {where}: {render(reason, 'erlang', max_items=10)}"
        return f"the call at {where} failed: {render(reason, 'erlang', max_items=10)}"
    return render(value, "erlang")


def _reply_text(reply: Term, language: str) -> str | None:
    if isinstance(reply, tuple) and len(reply) == 2 and reply[0] == Atom("reply"):
        return _render(reply[1], language, MAX_RENDER_ITEMS)
    return None


# ====================================================================== diff


def diff_states(recorded: Term, replayed: Term, language: str) -> list[StateChange]:
    """Where two states differ (``arsenal.terms.diff``), each part rendered in the node's language."""
    changes = diff_terms(recorded, replayed, max_changes=MAX_DIFFS, language=language)  # type: ignore[arg-type]
    return [
        StateChange(
            path=format_path(change.path) or "(whole state)",
            change=change.kind,
            recorded=None if change.kind == "added" else _render(change.old, language, 20),
            replayed=None if change.kind == "removed" else _render(change.new, language, 20),
        )
        for change in changes
    ]
