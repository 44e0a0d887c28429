"""Process control: kill, suspend, resume, collect, peek at mailboxes, read a gen_server's state,
send messages, find, start, restart and wait on processes.

The work runs inside the VM in ``arsenal_agent_proc``; terms from requests go
through :mod:`arsenal.ops.safeterm`, so no request creates an atom on the node.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from pydantic import Field, model_validator

from ..beam import Node
from ..dist import Atom, Term
from ..terms.render import render
from ..terms.tagged_json import to_json
from .base import Context, Operation, Params, Result, Severity
from .errors import ErrorCode, OperationError
from .plain import mfa_text, pid_text, plain
from .processes import ProcessRefParams, ProcessRow, _row
from .registry import register
from .safeterm import check_decoded, parse_term, to_wire
from .safety import ensure_not_protected
from .state import not_sys_process
from .targets import check_target, is_agent_error, process_ref

__all__ = [
    "FindProcessesByModule",
    "GarbageCollectProcess",
    "GetGenserverState",
    "GetProcessMessages",
    "KillProcess",
    "MonitorProcess",
    "RestartProcess",
    "ResumeProcess",
    "SendMessage",
    "StartProcess",
    "SuspendProcess",
]

log = logging.getLogger("arsenal.ops.process_control")

AGENT = "arsenal_agent_proc"
RENDER_ITEMS = 100
RENDER_BINARY = 1024
_ATOM_NAME = r"^[a-z][A-Za-z0-9_@]{0,254}$"
_MODULE_NAME = r"^:?[A-Za-z][A-Za-z0-9_.@]{0,254}$"


async def agent(node: Node, function: str, args: list[Term], timeout: float | None = None) -> Term:
    """Call ``arsenal_agent_proc:function(args)`` (the agent is loaded again if the node lost it)."""
    return await node.agent_call(function, args, timeout, module=AGENT)


def _module_atom_text(name: str) -> bytes:
    """An Elixir alias (``MyApp.Worker``) is the atom ``Elixir.MyApp.Worker``."""
    name = name.lstrip(":")
    if name[:1].isupper() and not name.startswith("Elixir."):
        name = f"Elixir.{name}"
    return name.encode()


def _fail(raw: Term, pid: str, node: Node, doing: str) -> None:
    """Raise what an agent's ``{error, ...}`` means; return for anything else."""
    check_target(raw, pid, node)
    check_decoded(raw)
    if not is_agent_error(raw):
        return
    reason = raw[1]
    if reason == Atom("gone"):
        raise OperationError(ErrorCode.not_found, f"{pid} is not alive on {node.name}")
    if reason == Atom("timeout"):
        raise OperationError(
            ErrorCode.timeout,
            f"{pid} did not answer in time ({doing} {pid}); it may be busy or not answer calls",
        )
    raise OperationError(
        ErrorCode.remote_error,
        f"{doing} {pid} failed on {node.name}: {render(reason, node.language, max_items=20)}",
        {"reason": render(reason, node.language, max_items=50, max_binary=200)},
    )


def _error_tag(raw: Term) -> Term:
    """``Tag`` of an agent's ``{error, {Tag, ...}}``; None for anything else."""
    if is_agent_error(raw) and isinstance(raw[1], tuple):
        return raw[1][0] if raw[1] else None
    return None


def _shown(term: Term, node: Node) -> str:
    return render(term, node.language, max_items=RENDER_ITEMS, max_binary=RENDER_BINARY, local_node=node.name)


# ---------------------------------------------------------------------- kill


class KillParams(ProcessRefParams):
    reason: str = Field(
        "kill",
        pattern=_ATOM_NAME,
        description="The exit reason, an atom that exists on the node (kill, shutdown, normal...).",
    )
    wait_ms: int = Field(2000, ge=0, le=10_000, description="How long to wait for the process to go.")
    force: bool = Field(False, description="Kill even one of the VM's own processes (admin only).")


class KillResult(Result):
    pid: str
    reason: str
    died: bool = Field(description="Whether the process was seen to exit within wait_ms.")
    exit_reason: str | None = Field(description="Its exit reason as the monitor saw it.")


@register
class KillProcess(Operation[KillParams, KillResult]):
    name = "kill_process"
    category = "processes"
    summary = "Send an exit signal to a process (exit/2) and report whether it died."
    cost = "One exit signal and a monitor; waits at most wait_ms."
    risk = (
        "Destructive: the process's state is lost; linked processes die too unless they trap exits, and "
        "its supervisor restarts it (or, past its restart intensity, gives up and dies itself). `kill` "
        "cannot be trapped; other reasons can, and `normal` does nothing to a process that does not trap "
        "exits. The VM's own processes are refused unless an admin forces it."
    )
    params = KillParams
    result = KillResult
    severity = Severity.destructive
    method = "DELETE"
    path = "/api/v1/processes/{pid}"
    cli_name = "kill"
    timeout = 15.0
    example = {"pid": "demo_worker_1", "reason": "kill"}

    async def execute(self, ctx: Context, params: KillParams) -> KillResult:
        node = ctx.require_node()
        await ensure_not_protected(ctx, params.pid, force=params.force, action="killing")
        log.warning(
            "kill_process %s on %s with reason %s by %s",
            params.pid,
            node.name,
            params.reason,
            ctx.principal.name,
        )
        raw = await agent(node, "kill", [process_ref(params.pid), params.reason.encode(), params.wait_ms])
        if _error_tag(raw) == Atom("unknown_atom"):
            raise OperationError(
                ErrorCode.validation_error,
                f"the atom '{params.reason}' does not exist on the node; Arsenal never creates atoms "
                "from requests: use kill, shutdown or another reason the node knows",
            )
        _fail(raw, params.pid, node, "killing")
        _, status, why = raw  # type: ignore[misc]
        died = status == Atom("died")
        return KillResult(
            pid=params.pid, reason=params.reason, died=died, exit_reason=_shown(why, node) if died else None
        )


# ---------------------------------------------------------------------- suspend / resume


class SuspendParams(ProcessRefParams):
    force: bool = Field(False, description="Suspend even one of the VM's own processes (admin only).")


class SuspendResult(Result):
    pid: str
    status: str = Field(description="suspended, already_suspended or resumed.")


@register
class SuspendProcess(Operation[SuspendParams, SuspendResult]):
    name = "suspend_process"
    category = "processes"
    summary = "Suspend a process (erlang:suspend_process/1) until resume_process."
    cost = "One suspend; the suspension is held by one agent process on the node until resumed."
    risk = (
        "Write: the process stops running. Everything that calls it blocks until its own timeouts fire "
        "(gen_server:call's 5 s default), so suspending a busy server can cascade into timeouts "
        "elsewhere. Suspending the node's own processes (code_server, application_controller, "
        "net_kernel, the logger) can hang the whole node and Arsenal's own calls, so they are refused "
        "unless an admin forces it. Resumed automatically if Arsenal's agent is unloaded or replaced."
    )
    params = SuspendParams
    result = SuspendResult
    severity = Severity.write
    method = "POST"
    path = "/api/v1/processes/{pid}/suspend"
    cli_name = "suspend"
    example = {"pid": "demo_spinner"}

    async def execute(self, ctx: Context, params: SuspendParams) -> SuspendResult:
        node = ctx.require_node()
        await ensure_not_protected(ctx, params.pid, force=params.force, action="suspending")
        raw = await agent(node, "suspend", [process_ref(params.pid)])
        _fail(raw, params.pid, node, "suspending")
        return SuspendResult(pid=params.pid, status=str(raw[1]))  # type: ignore[index]


@register
class ResumeProcess(Operation[ProcessRefParams, SuspendResult]):
    name = "resume_process"
    category = "processes"
    summary = "Resume a process that suspend_process suspended."
    cost = "One resume."
    risk = "Write: the process runs again and works through what queued up meanwhile."
    params = ProcessRefParams
    result = SuspendResult
    severity = Severity.write
    method = "POST"
    path = "/api/v1/processes/{pid}/resume"
    cli_name = "resume"
    example = {"pid": "demo_spinner"}

    async def execute(self, ctx: Context, params: ProcessRefParams) -> SuspendResult:
        node = ctx.require_node()
        raw = await agent(node, "resume", [process_ref(params.pid)])
        if raw == (Atom("error"), Atom("not_suspended")):
            raise OperationError(
                ErrorCode.conflict,
                f"{params.pid} is not suspended by Arsenal on {node.name}; only suspensions made with "
                "suspend_process can be resumed here",
            )
        _fail(raw, params.pid, node, "resuming")
        return SuspendResult(pid=params.pid, status=str(raw[1]))  # type: ignore[index]


# ---------------------------------------------------------------------- garbage collection


class GcResult(Result):
    pid: str
    collected: bool
    memory_before: int = Field(description="Bytes.")
    memory_after: int = Field(description="Bytes.")


@register
class GarbageCollectProcess(Operation[ProcessRefParams, GcResult]):
    name = "garbage_collect_process"
    category = "processes"
    summary = "Force a full garbage collection of one process; its memory before and after."
    cost = "One full GC of that process: proportional to its live heap (a 1 GB heap takes a while)."
    risk = (
        "Write: the process pauses for the collection; refc binaries it no longer holds are released. "
        "Harmless otherwise."
    )
    params = ProcessRefParams
    result = GcResult
    severity = Severity.write
    method = "POST"
    path = "/api/v1/processes/{pid}/gc"
    cli_name = "gc"
    timeout = 30.0
    example = {"pid": "demo_big_state"}

    async def execute(self, ctx: Context, params: ProcessRefParams) -> GcResult:
        node = ctx.require_node()
        raw = await agent(node, "garbage_collect", [process_ref(params.pid)], self.timeout)
        _fail(raw, params.pid, node, "collecting")
        _, done, before, after = raw  # type: ignore[misc]
        return GcResult(pid=params.pid, collected=bool(done), memory_before=before, memory_after=after)


# ---------------------------------------------------------------------- mailbox peek

HARD_MAX_QUEUE = 100_000


class MessagesParams(ProcessRefParams):
    limit: int = Field(10, ge=1, le=100, description="How many messages, from the front of the queue.")
    max_queue: int = Field(
        10_000,
        ge=1,
        le=HARD_MAX_QUEUE,
        description="Refuse when the queue is longer: the peek copies the whole mailbox.",
    )


class Message(Result):
    value: Any = Field(description="The message as plain JSON.")
    source: str = Field(description="The message in the node's language (bounded).")


class MessagesResult(Result):
    pid: str
    message_queue_len: int
    messages: list[Message] = Field(description="Oldest first; big parts cut, with …(N more) in their place.")


@register
class GetProcessMessages(Operation[MessagesParams, MessagesResult]):
    name = "get_process_messages"
    category = "processes"
    summary = "Peek at the first messages of a process's mailbox, without taking them."
    cost = (
        "process_info(P, messages) copies the whole mailbox onto the agent's heap, so the peek is refused "
        "past max_queue messages; only `limit` messages, each cut to 100 items and 1 KiB binaries, cross "
        "the wire."
    )
    risk = "None: reads only (the copy's memory is freed when the call ends)."
    params = MessagesParams
    result = MessagesResult
    path = "/api/v1/processes/{pid}/messages"
    cli_name = "messages"
    timeout = 30.0
    example = {"pid": "demo_busy_mailbox", "limit": 5}

    async def execute(self, ctx: Context, params: MessagesParams) -> MessagesResult:
        node = ctx.require_node()
        raw = await agent(
            node, "messages", [process_ref(params.pid), params.max_queue, params.limit], self.timeout
        )
        if _error_tag(raw) == Atom("queue_too_long"):
            raise OperationError(
                ErrorCode.limit_exceeded,
                f"{params.pid} has {raw[1][1]:,} messages queued, more than max_queue="
                f"{params.max_queue:,}; peeking copies the whole mailbox. Raise max_queue (at most "
                f"{HARD_MAX_QUEUE:,}) if the node can afford the copy",
                {"message_queue_len": raw[1][1]},
            )
        _fail(raw, params.pid, node, "reading the mailbox of")
        _, length, messages = raw  # type: ignore[misc]
        return MessagesResult(
            pid=params.pid,
            message_queue_len=length,
            messages=[
                Message(value=plain(m, node.language, local_node=node.name), source=_shown(m, node))
                for m in messages
            ],
        )


# ---------------------------------------------------------------------- gen_server state

STATE_JSON_CAP = 256 * 1024


class StateParams(ProcessRefParams):
    timeout: float = Field(5.0, gt=0, le=30, description="Seconds to wait for sys:get_state.")


class StateResult(Result):
    pid: str
    behaviour: str | None = Field(description="The callback module the process started with.")
    state: str = Field(description="The state in the node's language (bounded).")
    state_json: Any = Field(
        description="The state as lossless tagged JSON, when it is whole and under 256 KiB; else null."
    )
    size: int = Field(description="The state's external size, bytes.")
    whole: bool = Field(description="False when the state was over 1 MB and cut before it was sent.")


@register
class GetGenserverState(Operation[StateParams, StateResult]):
    name = "get_genserver_state"
    category = "processes"
    summary = "The state of a gen_server, gen_statem or other OTP process (sys:get_state/2)."
    cost = (
        "One system message, answered by the process between messages; the state is copied once. A state "
        "over 1 MB is cut inside the VM before it is sent."
    )
    risk = (
        "Read: the process answers between two of its messages, so a busy one makes this wait up to "
        "`timeout`. Processes that do not answer system messages are detected first (not a sys process) "
        "and never sent one."
    )
    params = StateParams
    result = StateResult
    path = "/api/v1/processes/{pid}/state"
    cli_name = "state"
    timeout = 40.0
    example = {"pid": "demo_worker_1", "timeout": 5}

    async def execute(self, ctx: Context, params: StateParams) -> StateResult:
        node = ctx.require_node()
        timeout_ms = int(params.timeout * 1000)
        raw = await agent(node, "get_state", [process_ref(params.pid), timeout_ms], params.timeout + 5)
        if raw == (Atom("error"), Atom("not_sys_process")):
            raise not_sys_process(params.pid, node, "reading the state of")
        _fail(raw, params.pid, node, "reading the state of")
        _, behaviour, bounded = raw  # type: ignore[misc]
        state = bounded[Atom("term")]
        whole = bool(bounded[Atom("whole")])
        size = bounded[Atom("size")]
        return StateResult(
            pid=params.pid,
            behaviour=None if behaviour == Atom("undefined") else render(behaviour, node.language),
            state=_shown(state, node),
            state_json=to_json(state) if whole and size <= STATE_JSON_CAP else None,
            size=size,
            whole=whole,
        )


# ---------------------------------------------------------------------- send


class SendMode(StrEnum):
    send = "send"
    cast = "cast"
    call = "call"


class SendParams(ProcessRefParams):
    message: Any = Field(description="The message as tagged JSON (plain JSON is a subset).")
    mode: SendMode = Field(SendMode.send, description="send (!), cast (gen_server:cast) or call.")
    timeout: float = Field(5.0, gt=0, le=30, description="Seconds a call waits for its reply.")


class SendResult(Result):
    pid: str
    mode: SendMode
    reply: str | None = Field(description="A call's reply in the node's language (bounded).")
    reply_json: Any = Field(description="A call's reply as tagged JSON, when whole and under 256 KiB.")


@register
class SendMessage(Operation[SendParams, SendResult]):
    name = "send_message"
    category = "processes"
    summary = "Send a process a message: plain send, gen_server cast, or call with its reply."
    cost = "One message (at most 1 MB encoded); a call waits for the reply up to `timeout`."
    risk = (
        "Write: the process acts on the message as its code decides; a message it does not expect may "
        "crash it or sit in its mailbox forever. Atoms in the message must already exist on the node."
    )
    params = SendParams
    result = SendResult
    severity = Severity.write
    method = "POST"
    path = "/api/v1/processes/{pid}/message"
    cli_name = "send"
    timeout = 40.0
    example = {"pid": "demo_worker_1", "message": {"$atom": "ping"}, "mode": "call"}

    async def execute(self, ctx: Context, params: SendParams) -> SendResult:
        node = ctx.require_node()
        wire = to_wire(parse_term(params.message))
        timeout_ms = int(params.timeout * 1000)
        raw = await agent(
            node,
            "send_message",
            [process_ref(params.pid), params.mode.value.encode(), wire, timeout_ms],
            params.timeout + 5,
        )
        _fail(raw, params.pid, node, f"sending ({params.mode.value}) to")
        reply = reply_json = None
        if params.mode is SendMode.call:
            bounded = raw[1][1]  # type: ignore[index]
            term = bounded[Atom("term")]
            reply = _shown(term, node)
            if bounded[Atom("whole")] and bounded[Atom("size")] <= STATE_JSON_CAP:
                reply_json = to_json(term)
        return SendResult(pid=params.pid, mode=params.mode, reply=reply, reply_json=reply_json)


# ---------------------------------------------------------------------- find by module


class FindParams(Params):
    module: str = Field(pattern=_MODULE_NAME, description="A module (Elixir aliases as MyApp.Worker).")
    limit: int = Field(50, ge=1, le=1000)


class FindResult(Result):
    module: str
    processes: list[ProcessRow]


@register
class FindProcessesByModule(Operation[FindParams, FindResult]):
    name = "find_processes_by_module"
    category = "processes"
    summary = "Processes running, or started in, a module (current function, initial call, proc_lib's)."
    cost = (
        "One scan of every process, copying each one's dictionary (for proc_lib's $initial_call): like "
        "list_processes with a module filter, about 0.5 s at 100 000 processes."
    )
    risk = "None beyond the scan's CPU time."
    params = FindParams
    result = FindResult
    path = "/api/v1/modules/{module}/processes"
    cli_name = "find"
    timeout = 60.0
    example = {"module": "gen_server", "limit": 20}

    async def execute(self, ctx: Context, params: FindParams) -> FindResult:
        node = ctx.require_node()
        options = {
            Atom("module"): _module_atom_text(params.module),
            Atom("limit"): params.limit,
            Atom("sort"): b"memory",
        }
        raw = await node.agent_call("list_processes", [options], self.timeout)
        if isinstance(raw, tuple):
            raise OperationError(ErrorCode.agent_error, f"the agent refused the scan: {raw!r}")
        return FindResult(
            module=params.module, processes=[_row(item, node.language) for item in raw[Atom("rows")]]
        )


# ---------------------------------------------------------------------- start


class StartParams(Params):
    module: str = Field(pattern=_MODULE_NAME, description="An existing module.")
    function: str = Field(pattern=r"^[a-z_][A-Za-z0-9_?!@]{0,254}$", description="An exported function.")
    args: list[Any] = Field(default_factory=list, max_length=255, description="Arguments, tagged JSON.")
    register_as: str | None = Field(
        None, pattern=_ATOM_NAME, description="Register the process under this name (an existing atom)."
    )
    supervisor: str | None = Field(
        None,
        max_length=300,
        description="Start it as a temporary child of this supervisor (pid or name) instead of bare.",
    )
    timeout: float = Field(5.0, gt=0, le=30, description="Seconds the supervisor may take.")
    force: bool = Field(False, description="Add a child to one of the VM's own supervisors (admin only).")

    @model_validator(mode="after")
    def _one_way(self) -> StartParams:
        if self.supervisor is not None and self.register_as is not None:
            raise ValueError(
                "register_as is for bare processes; under a supervisor, the start function registers it"
            )
        return self


class StartResult(Result):
    pid: str
    registered_name: str | None
    initial_call: str
    supervisor: str | None = Field(description="The supervisor it was started under, if any.")
    child_id: str | None = Field(description="Its child id there ({arsenal, N}).")


@register
class StartProcess(Operation[StartParams, StartResult]):
    name = "start_process"
    category = "processes"
    summary = (
        "Start module:function(args): a bare process (optionally registered), or a temporary child of a "
        "supervisor."
    )
    cost = (
        "One spawn (and loading the module if it is not loaded yet); under a supervisor, one sys:get_state "
        "of it (to learn its strategy) and one start_child call."
    )
    risk = (
        "Code execution, so an admin's: the caller chooses the module, function and arguments that run "
        "on the node (os:cmd/1 or erlang:halt/0 as easily as a worker's start_link), and the audit "
        "row holds them. A bare process is unlinked and "
        "unsupervised: nobody restarts it, and it lives until it returns or is killed. The name must "
        "already exist as an atom (registering a new name would create one). Under a supervisor, the "
        "function must start and link a process the OTP way (a start_link); the child is temporary (never "
        "restarted, stays out of the restart intensity) and is shut down with the supervisor. "
        "simple_one_for_one and dynamic supervisors are refused (their children come from a template), "
        "and the VM's own supervisors unless an admin forces it."
    )
    params = StartParams
    result = StartResult
    severity = Severity.write
    admin_only = True
    method = "POST"
    path = "/api/v1/processes"
    cli_name = "spawn"
    example = {"module": "timer", "function": "sleep", "args": [60000]}

    async def execute(self, ctx: Context, params: StartParams) -> StartResult:
        node = ctx.require_node()
        wire = to_wire(parse_term(params.args, what="args"), what="args")
        module = _module_atom_text(params.module)
        if params.supervisor is not None:
            await ensure_not_protected(ctx, params.supervisor, force=params.force, action="adding a child to")
            raw = await agent(
                node,
                "start_under",
                [
                    process_ref(params.supervisor),
                    module,
                    params.function.encode(),
                    wire,
                    int(params.timeout * 1000),
                ],
                params.timeout * 2 + 5,
            )
            _start_refused(raw, params, node)
        else:
            raw = await agent(
                node,
                "start",
                [module, params.function.encode(), wire, (params.register_as or "").encode()],
            )
        if is_agent_error(raw):
            reason = raw[1]
            if reason == Atom("name_taken"):
                raise OperationError(
                    ErrorCode.conflict, f"{params.register_as} is already registered on {node.name}"
                )
            if isinstance(reason, tuple) and reason[0] == Atom("undef"):
                raise OperationError(
                    ErrorCode.not_found,
                    f"{params.module}:{params.function}/{reason[3]} is not exported on {node.name} "
                    "(or the module does not load)",
                )
            if isinstance(reason, tuple) and reason[0] == Atom("unknown_atom"):
                name = reason[1].decode(errors="replace")
                which = (
                    "module"
                    if reason[1] == module
                    else "function"
                    if name == params.function
                    else "name"
                    if name == params.register_as
                    else "atom"
                )
                raise OperationError(
                    ErrorCode.not_found if which in ("module", "function") else ErrorCode.validation_error,
                    f"the atom '{name}' does not exist on the node (the {which} is unknown there); "
                    "Arsenal never creates atoms from requests",
                    {"atom": name},
                )
        _fail(raw, params.supervisor or params.module, node, "starting")
        pid = raw[1]  # type: ignore[index]
        return StartResult(
            supervisor=params.supervisor,
            child_id=_shown(raw[2], node) if len(raw) > 2 else None,  # type: ignore[arg-type]
            pid=pid_text(pid),
            registered_name=params.register_as,
            initial_call=mfa_text(
                (Atom(module.decode()), Atom(params.function), len(params.args)), node.language
            )
            or "",
        )


def _start_refused(raw: Term, params: StartParams, node: Node) -> None:
    """The errors only starting under a supervisor has."""
    reason = raw[1] if is_agent_error(raw) else None
    if reason == Atom("not_a_supervisor"):
        raise OperationError(
            ErrorCode.validation_error, f"{params.supervisor} is not a supervisor on {node.name}"
        )
    if reason == Atom("dynamic_supervisor"):
        raise OperationError(
            ErrorCode.conflict,
            f"{params.supervisor} is a simple_one_for_one or dynamic supervisor: its children come from its "
            "own template, so use its start_child function (e.g. with send_message) instead",
        )
    if _error_tag(raw) == Atom("start_failed"):
        raise OperationError(
            ErrorCode.remote_error,
            f"{params.supervisor} could not start {params.module}:{params.function}: "
            f"{render(reason[1], node.language, max_items=20, max_binary=200)}",  # type: ignore[index]
        )


# ---------------------------------------------------------------------- restart


class RestartParams(ProcessRefParams):
    timeout: float = Field(5.0, gt=0, le=30, description="Seconds each call to the supervisor may take.")
    keep_state: bool = Field(
        False,
        description="Put the old state into the new process (gen_server / gen_statem only): "
        "sys:get_state before, sys:replace_state after.",
    )
    force: bool = Field(False, description="Restart even one of the VM's own processes (admin only).")


class RestartResult(Result):
    supervisor: str
    child_id: str
    old_pid: str
    new_pid: str | None = Field(description="Null when the child spec is not restartable (e.g. ignore).")
    state_kept: bool = Field(description="Whether the old state was put into the new process.")


@register
class RestartProcess(Operation[RestartParams, RestartResult]):
    name = "restart_process"
    category = "processes"
    summary = "Restart a supervised process through its supervisor (terminate_child + restart_child)."
    cost = (
        "Three calls to the supervisor (which_children, terminate_child, restart_child); with keep_state "
        "two system messages too, and the state is copied twice."
    )
    risk = (
        "Destructive: the child is shut down as its spec says (shutdown timeout or brutal_kill) and started "
        "again from its start function: its in-memory state is lost, unless keep_state carries a "
        "gen_server's or gen_statem's state over (the new process runs init/1 first, then gets the old "
        "state, which may still name the old process's monitors, ports or ETS tables, now gone). Other "
        "children are not touched, whatever the strategy (terminate_child/restart_child act on one child). "
        "Children of simple_one_for_one / DynamicSupervisor have no id and are refused. The VM's own "
        "processes are refused unless an admin forces it."
    )
    params = RestartParams
    result = RestartResult
    severity = Severity.destructive
    method = "POST"
    path = "/api/v1/processes/{pid}/restart"
    cli_name = "restart"
    timeout = 160.0
    example = {"pid": "demo_worker_1"}

    async def execute(self, ctx: Context, params: RestartParams) -> RestartResult:
        node = ctx.require_node()
        await ensure_not_protected(ctx, params.pid, force=params.force, action="restarting")
        timeout_ms = int(params.timeout * 1000)
        raw = await agent(
            node, "restart", [process_ref(params.pid), timeout_ms, params.keep_state], params.timeout * 5 + 5
        )
        if raw == (Atom("error"), Atom("state_not_kept")):
            raise OperationError(
                ErrorCode.conflict,
                f"{params.pid} is not a gen_server or gen_statem whose state can be read, so keep_state "
                "cannot carry it over; nothing was restarted. Restart it without keep_state",
            )
        if raw == (Atom("error"), Atom("no_supervisor")):
            raise OperationError(
                ErrorCode.conflict,
                f"{params.pid} has no supervisor that lists it as a child on {node.name}; kill_process "
                "it instead if that is what you mean",
            )
        if _error_tag(raw) == Atom("dynamic_child"):
            raise OperationError(
                ErrorCode.conflict,
                f"{params.pid} is a child of a simple_one_for_one or dynamic supervisor "
                f"({pid_text(raw[1][1])}), whose children have no id to restart; kill it and, if it "
                "is permanent or transient, its supervisor starts a new one",
            )
        _fail(raw, params.pid, node, "restarting")
        _, sup, child_id, old, new, kept = raw  # type: ignore[misc]
        return RestartResult(
            supervisor=pid_text(sup),
            child_id=_shown(child_id, node),
            old_pid=pid_text(old),
            new_pid=pid_text(new) if not isinstance(new, Atom) else None,
            state_kept=kept is True,
        )


# ---------------------------------------------------------------------- monitor


class MonitorParams(ProcessRefParams):
    timeout: float = Field(10.0, ge=0, le=60, description="Seconds to wait for the exit.")


class MonitorResult(Result):
    pid: str
    exited: bool
    reason: str | None = Field(description="The exit reason, when it exited (noproc: it was already gone).")


@register
class MonitorProcess(Operation[MonitorParams, MonitorResult]):
    name = "monitor_process"
    category = "processes"
    summary = "Wait for a process to exit (a monitor), up to a timeout; its exit reason or still alive."
    cost = "One monitor, held for at most `timeout` seconds."
    risk = "None: reads only."
    params = MonitorParams
    result = MonitorResult
    path = "/api/v1/processes/{pid}/exit"
    cli_name = "wait"
    timeout = 70.0
    example = {"pid": "demo_worker_1", "timeout": 1}

    async def execute(self, ctx: Context, params: MonitorParams) -> MonitorResult:
        node = ctx.require_node()
        raw = await agent(
            node, "await_exit", [process_ref(params.pid), int(params.timeout * 1000)], params.timeout + 5
        )
        _fail(raw, params.pid, node, "monitoring")
        _, status, reason = raw  # type: ignore[misc]
        exited = status == Atom("exited")
        return MonitorResult(pid=params.pid, exited=exited, reason=_shown(reason, node) if exited else None)
