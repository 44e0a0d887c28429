"""Supervisor operations: find supervisors, read their children, flags and trees, and operate on them.

The work runs in the agent module ``arsenal_agent_sup``. A supervisor is named
like any process (pid text or registered name). Whether a process is a
supervisor is decided from its dictionary (proc_lib's ``$initial_call``) and its
behaviour module's exports, without sending it a message: OTP's supervisor,
Elixir's Supervisor and DynamicSupervisor, and forks of OTP's supervisor under
another name (a ``supervisor2``), which answer the same protocol. Naming a plain
process never blocks: it is an error of its own (``validation_error``, "not a
supervisor"). Calls into a supervisor (``which_children``, ``sys:get_state``)
have a short timeout; a supervisor that does not answer (paused, overloaded) is
a ``timeout`` error that says so. Strategy and flags come from the supervisor's
state record, whose layout differs between OTP releases (11, 12 or 16 fields):
the agent tells them apart by shape and refuses one it does not know, saying
what it saw.

Pausing (``pause_supervision``) is ``sys:suspend`` of the supervisor: while
paused it handles system messages only, so children that die are not restarted;
their EXIT signals queue in its mailbox and are handled — restarts included,
counting toward its restart intensity — when it is resumed. A watchdog resumes
it after ``auto_resume_seconds`` so a forgotten pause cannot leave a subtree
unsupervised for good. While paused, calls such as ``which_children`` time out.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator

from ..beam import Node
from ..dist import Atom, Pid
from ..terms.render import render
from .base import Context, Operation, Params, Result, Severity
from .errors import ErrorCode, OperationError
from .plain import name_text, pid_or_none, pid_text, plain
from .registry import register
from .safety import ensure_not_protected
from .targets import check_target, is_agent_error, process_ref

__all__ = [
    "AddChild",
    "AddDynamicChild",
    "ChangeSupervisorStrategy",
    "DeleteChild",
    "GetSupervisionTree",
    "GetSupervisorFlags",
    "ListSupervisors",
    "PauseSupervision",
    "RestartChild",
    "ResumeSupervision",
    "SimulateFailure",
    "StartSupervisor",
    "StopSupervisor",
    "SupervisionNode",
    "TerminateChild",
    "WhichChildren",
]

AGENT = "arsenal_agent_sup"
CALL_MS = 2000
"""How long the agent waits for one supervisor to answer (which_children, sys:get_state)."""
MAX_LIMIT = 1000

_NAME_DESCRIPTION = "The supervisor: <0.123.0>, 0.123.0, #PID<0.123.0> or a registered name."
_CHILD = re.compile(r"^[^\x00-\x1f]{1,255}$")


async def _call(node: Node, function: str, args: list[Any], timeout: float) -> Any:
    """Call ``arsenal_agent_sup`` (the node loads the agent again if it lost it)."""
    return await node.agent_call(function, args, timeout, module=AGENT)


def _check(raw: Any, name: str, node: Node, child: str | None = None) -> Any:
    """Raise the OperationError an agent's ``{error, Reason}`` means; return anything else."""
    if not is_agent_error(raw):
        return raw
    check_target(raw, name, node)
    reason = raw[1]
    tag = reason[0] if isinstance(reason, tuple) and reason else reason
    where = f"on {node.name}"
    if tag == Atom("dead"):
        raise OperationError(ErrorCode.not_found, f"{name} is not alive {where} (it may have just died)")
    if tag == Atom("not_supervisor"):
        what = _what(reason[1], node.language)
        raise OperationError(
            ErrorCode.validation_error,
            f"{name} is not a supervisor{what}; list_supervisors shows the supervisors {where}",
        )
    if tag == Atom("timeout"):
        raise OperationError(
            ErrorCode.timeout,
            f"supervisor {name} did not answer within {CALL_MS} ms: it may be paused "
            "(resume_supervision) or overloaded; try again later",
        )
    if tag == Atom("unknown_child"):
        raise OperationError(
            ErrorCode.not_found, f"{name} has no child {child!r}; which_children lists its children"
        )
    if tag == Atom("child_not_running"):
        raise OperationError(
            ErrorCode.conflict, f"child {child!r} of {name} is not running; restart_child starts it"
        )
    if tag == Atom("refused"):
        said = render(reason[1], node.language, max_items=20)
        raise OperationError(
            ErrorCode.conflict,
            f"{name} refused that for child {child!r}: {said} (restart and delete need a stopped child: "
            "terminate_child first)",
        )
    if tag == Atom("dynamic_supervisor"):
        raise OperationError(
            ErrorCode.conflict,
            f"{name} is a dynamic or simple_one_for_one supervisor: its children have no spec to "
            "restart or delete; use terminate_child (and start new children)",
        )
    if tag == Atom("already_paused"):
        raise OperationError(ErrorCode.conflict, f"{name} is already paused; resume_supervision resumes it")
    if tag == Atom("not_paused"):
        raise OperationError(ErrorCode.conflict, f"{name} is not paused; nothing to resume")
    if tag == Atom("unsupported_strategy_change"):
        raise OperationError(
            ErrorCode.conflict,
            f"{name} is a {reason[1]} supervisor: its strategy cannot be changed at run time (its children "
            "are kept differently); only one_for_one, one_for_all and rest_for_one switch between each other",
        )
    if tag == Atom("unsupported_state"):
        seen = _seen(reason[1] if isinstance(reason, tuple) and len(reason) > 1 else None)
        raise OperationError(
            ErrorCode.agent_error,
            f"the state of {name} has a layout Arsenal does not know{seen}: it reads the supervisor "
            "records of OTP 21 to 29 (11, 12 or 16 fields) and Elixir's DynamicSupervisor; its children "
            "(which_children) can still be read, and get_genserver_state shows the state raw",
            {"reason": "unsupported_state"},
        )
    if tag == Atom("unsupported_request"):
        raise OperationError(
            ErrorCode.conflict,
            f"{name} runs {reason[1]}, which has no {reason[2]} (its module does not export it); Arsenal "
            "does not send a supervisor a request it may not handle",
        )
    if tag == Atom("conflict"):
        raise OperationError(ErrorCode.conflict, f"{name} changed meanwhile; read it again and retry")
    raise OperationError(
        ErrorCode.remote_error,
        f"{name}: the node answered {render(reason, node.language, max_items=20)}",
    )


def _seen(info: Any) -> str:
    """What an unsupported state looked like, as the agent described it (types only, no values)."""
    if not isinstance(info, dict):
        return ""
    kind = info.get(Atom("type"))
    if kind == Atom("tuple"):
        fields = ", ".join(str(f) for f in info.get(Atom("fields"), []))
        return f" (a tuple of {info.get(Atom('size'))} fields tagged {info.get(Atom('tag'))}: {fields})"
    if kind == Atom("map"):
        return f" (a map of {info.get(Atom('size'))} keys, struct {info.get(Atom('struct'))})"
    return f" (a {kind})" if kind is not None else ""


def _what(info: Any, language: str) -> str:
    if not isinstance(info, dict):
        return ""
    call = info.get(Atom("initial_call"))
    if isinstance(call, tuple) and len(call) == 3:
        return f" (it runs {render(call[0], language)}, started by {_mfa(call, language)})"
    return ""


def _mfa(call: tuple[Any, ...], language: str) -> str:
    module, function, arity = call
    if language == "elixir":
        return f"{render(module, 'elixir')}.{function}/{arity}"
    return f"{module}:{function}/{arity}"


def _atom(value: Any, language: str) -> str | None:
    if value is None or value == Atom("undefined"):
        return None
    # Strategies, restart types and application names: plain words in either language; anything
    # else (a supervisor fork's restart type such as {transient, 1}) as the node's source text.
    return str(value) if isinstance(value, Atom) else render(value, language, max_items=20)


def _module(value: Any, language: str) -> str | None:
    if value is None or value == Atom("undefined"):
        return None
    return render(value, language)


def _id(value: Any, language: str) -> Any:
    """A child id: an atom, number or binary as plain JSON; a tuple, list or map as the node's
    source text (``{worker,1}``, ``{:worker, 1}``), as people write ids, not as a JSON list."""
    if value == Atom("undefined"):
        return None
    if isinstance(value, (Atom, int, float, bytes)):
        return plain(value, language)
    return render(value, language, max_items=20)


def _child_pid_state(value: Any) -> tuple[str | None, str]:
    """A child's pid and whether it runs: ``running``, ``restarting`` or ``undefined`` (not running)."""
    if isinstance(value, Pid):
        return pid_text(value), "running"
    return None, str(value)


def _supervisor_ref(name: str) -> bytes:
    return process_ref(name)


def _child_ref(child: str) -> bytes:
    text = child.strip()
    if text.startswith(("<", "#PID")) or re.match(r"^\d+\.\d+\.\d+$", text):
        return process_ref(text)
    return text.lstrip(":").encode()


class SupervisorParams(Params):
    name: str = Field(description=_NAME_DESCRIPTION, max_length=300)


class ChildParams(SupervisorParams):
    child: str = Field(
        description="The child: its id (an atom id as text, e.g. demo_worker_1 or ArsenalDemo.Counter1) "
        "or its pid.",
        max_length=255,
    )
    force: bool = Field(False, description="Act even on one of the VM's own processes (admins only).")

    @field_validator("child")
    @classmethod
    def _child_shape(cls, value: str) -> str:
        if not _CHILD.match(value):
            raise ValueError("a child id or pid, as one line of text")
        return value


# ---------------------------------------------------------------------------- list_supervisors


class SupervisorRow(Result):
    pid: str
    name: str | None
    kind: str = Field(description="supervisor (OTP, Elixir Supervisor) or dynamic (DynamicSupervisor).")
    module: str = Field(
        description="The callback module; for a fork of OTP's supervisor, the fork's own module (its "
        "callback module is in its state: get_supervisor_flags)."
    )
    behaviour: str | None = Field(
        None,
        description="The module that implements the supervisor: supervisor, Elixir's DynamicSupervisor, "
        "or a fork such as supervisor2.",
    )
    application: str | None
    parent: str | None = Field(description="The process that started it (proc_lib's $ancestors).")


class SupervisorList(Result):
    node: str
    total: int = Field(description="Supervisors matching, not only those listed.")
    supervisors: list[SupervisorRow]


class ListSupervisorsParams(Params):
    limit: int = Field(200, ge=1, le=MAX_LIMIT, description="At most this many rows.")
    name: str | None = Field(None, max_length=255, description="Part of the registered name.")


@register
class ListSupervisors(Operation[ListSupervisorsParams, SupervisorList]):
    name = "list_supervisors"
    category = "supervisors"
    summary = (
        "Every supervisor of a node (OTP's, Elixir's Supervisor and DynamicSupervisor, forks of OTP's "
        "supervisor), found in the VM."
    )
    cost = (
        "One process_info/2 (initial_call, trap_exit) per process, plus a copy of the dictionary of the "
        "proc_lib processes that trap exits: like list_processes, about 0.3 s at 100 000 processes. "
        "No supervisor is sent a message."
    )
    risk = "None: reads only; nothing is called, suspended or traced."
    params = ListSupervisorsParams
    result = SupervisorList
    path = "/api/v1/supervisors"
    cli_name = "supervisors"
    timeout = 60.0
    example = {"limit": 50}

    async def execute(self, ctx: Context, params: ListSupervisorsParams) -> SupervisorList:
        node = ctx.require_node()
        pattern = params.name.encode() if params.name else Atom("undefined")
        raw = await _call(node, "list_supervisors", [params.limit, pattern], self.timeout)
        lang = node.language
        rows = [
            SupervisorRow(
                pid=pid_text(item[Atom("pid")]),
                name=name_text(item[Atom("name")], lang),
                kind=str(item[Atom("kind")]),
                module=render(item[Atom("module")], lang),
                behaviour=_module(item.get(Atom("behaviour")), lang),
                application=_atom(item[Atom("application")], lang),
                parent=pid_or_none(item[Atom("parent")]),
            )
            for item in raw[Atom("supervisors")]
        ]
        return SupervisorList(node=node.name, total=raw[Atom("total")], supervisors=rows)


# ---------------------------------------------------------------------------- get_supervisor_flags


class SupervisorFlags(Result):
    pid: str
    name: str | None
    kind: str
    module: str
    strategy: str = Field(description="one_for_one, one_for_all, rest_for_one or simple_one_for_one.")
    intensity: int = Field(description="Restarts allowed within `period` before the supervisor gives up.")
    period: int = Field(description="Seconds.")
    auto_shutdown: str = Field(description="never, any_significant or all_significant.")
    paused: bool = Field(description="Suspended (pause_supervision or sys:suspend): no restarts happen.")
    max_children: Any = Field(None, description="DynamicSupervisor only: its max_children.")
    behaviour: str | None = Field(
        None, description="The module that implements the supervisor (supervisor, or a fork's module)."
    )
    layout: str | None = Field(
        None,
        description="The state layout read: state11 (OTP 21-23 and forks of it), state12 (OTP 24-28), "
        "state16 (OTP 29) or dynamic_supervisor.",
    )


@register
class GetSupervisorFlags(Operation[SupervisorParams, SupervisorFlags]):
    name = "get_supervisor_flags"
    category = "supervisors"
    summary = "A supervisor's strategy, restart intensity and period, and auto_shutdown, from its state."
    cost = "Two sys calls into the supervisor (get_state, get_status), each with a 2 s timeout."
    risk = "None: reads only. The supervisor handles the sys calls between its other messages."
    params = SupervisorParams
    result = SupervisorFlags
    path = "/api/v1/supervisors/{name}/flags"
    cli_name = "sup-flags"
    example = {"name": "kernel_sup"}

    async def execute(self, ctx: Context, params: SupervisorParams) -> SupervisorFlags:
        node = ctx.require_node()
        raw = await _call(node, "flags", [_supervisor_ref(params.name), CALL_MS], self.timeout)
        raw = _check(raw, params.name, node)
        lang = node.language
        max_children = raw.get(Atom("max_children"))
        return SupervisorFlags(
            pid=pid_text(raw[Atom("pid")]),
            name=name_text(raw[Atom("name")], lang),
            kind=str(raw[Atom("kind")]),
            module=render(raw[Atom("callback")], lang),
            strategy=str(raw[Atom("strategy")]),
            intensity=raw[Atom("intensity")],
            period=raw[Atom("period")],
            auto_shutdown=str(raw[Atom("auto_shutdown")]),
            paused=raw[Atom("suspended")] is True,
            max_children=plain(max_children, lang) if max_children is not None else None,
            behaviour=_module(raw.get(Atom("behaviour")), lang),
            layout=_atom(raw.get(Atom("layout")), lang),
        )


# ---------------------------------------------------------------------------- which_children


class ChildRow(Result):
    id: Any = Field(description="The child's id (null for dynamic and simple_one_for_one children).")
    pid: str | None
    state: str = Field(description="running, restarting or undefined (not running).")
    name: str | None = Field(description="The child's registered name, if any.")
    type: str = Field(description="worker or supervisor.")
    restart: str | None = Field(description="permanent, transient or temporary.")
    modules: Any


class ChildList(Result):
    pid: str
    name: str | None
    total: int = Field(description="All children, not only those listed.")
    children: list[ChildRow]


class WhichChildrenParams(SupervisorParams):
    limit: int = Field(200, ge=1, le=MAX_LIMIT, description="At most this many children.")


@register
class WhichChildren(Operation[WhichChildrenParams, ChildList]):
    name = "which_children"
    category = "supervisors"
    summary = "The children of a supervisor, in its order, with id, pid, type and restart type."
    cost = (
        "supervisor:which_children (the supervisor copies every child: O(children)) and sys:get_state, "
        "each with a 2 s timeout; only `limit` rows cross the wire."
    )
    risk = "None: reads only. On a supervisor with a huge number of children the copy costs it memory."
    params = WhichChildrenParams
    result = ChildList
    path = "/api/v1/supervisors/{name}/children"
    cli_name = "children"
    example = {"name": "kernel_sup", "limit": 50}

    async def execute(self, ctx: Context, params: WhichChildrenParams) -> ChildList:
        node = ctx.require_node()
        raw = _check(
            await _call(
                node, "which_children", [_supervisor_ref(params.name), params.limit, CALL_MS], self.timeout
            ),
            params.name,
            node,
        )
        lang = node.language
        return ChildList(
            pid=pid_text(raw[Atom("pid")]),
            name=name_text(raw[Atom("name")], lang),
            total=raw[Atom("total")],
            children=[_child_row(item, lang) for item in raw[Atom("children")]],
        )


def _child_row(item: dict[Any, Any], language: str) -> ChildRow:
    pid, state = _child_pid_state(item[Atom("pid")])
    return ChildRow(
        id=_id(item[Atom("id")], language),
        pid=pid,
        state=state,
        name=name_text(item[Atom("name")], language),
        type=str(item[Atom("type")]),
        restart=_atom(item[Atom("restart")], language),
        modules=plain(item[Atom("modules")], language),
    )


# ---------------------------------------------------------------------------- get_supervision_tree


class SupervisionNode(Result):
    pid: str | None
    state: str = Field(description="running, restarting or undefined (not running).")
    name: str | None
    id: Any = Field(description="Its child id in its supervisor (null for a root or a dynamic child).")
    type: str = Field(description="worker or supervisor.")
    restart: str | None
    strategy: str | None = Field(None, description="Supervisors: their restart strategy.")
    module: str | None = Field(None, description="Supervisors: their callback module.")
    behaviour: str | None = Field(
        None, description="Supervisors: the module that implements them (supervisor, or a fork's module)."
    )
    application: str | None = None
    children: list[SupervisionNode] = Field(default_factory=list)
    truncated: bool = Field(False, description="Children left out (depth or node limit).")
    error: str | None = Field(None, description="Why this supervisor's children could not be read.")


class SupervisionTree(Result):
    node: str
    roots: list[SupervisionNode]
    node_count: int
    truncated: bool = Field(description="The depth or node limit cut the tree somewhere.")


class TreeParams(Params):
    name: str | None = Field(
        None,
        max_length=300,
        description="The supervisor to start from; none (or *) for every root supervisor (an "
        "application's top supervisor, or one started outside any supervisor).",
    )
    max_depth: int = Field(6, ge=1, le=20, description="Levels below the root(s).")
    max_nodes: int = Field(500, ge=1, le=2000, description="Nodes in the whole answer.")


@register
class GetSupervisionTree(Operation[TreeParams, SupervisionTree]):
    name = "get_supervision_tree"
    category = "supervisors"
    summary = "The supervision tree under a supervisor, or under every application's top supervisor."
    cost = (
        "One which_children and one sys:get_state per supervisor visited (2 s timeout each), bounded by "
        "max_depth and max_nodes; without a name, a scan of every process to find the roots (like "
        "list_supervisors)."
    )
    risk = "None: reads only. A paused or stuck supervisor shows as an error in its node, it does not block."
    params = TreeParams
    result = SupervisionTree
    path = "/api/v1/supervisors/{name}/tree"
    cli_name = "tree"
    timeout = 60.0
    example = {"name": "kernel_sup", "max_depth": 3}

    async def execute(self, ctx: Context, params: TreeParams) -> SupervisionTree:
        node = ctx.require_node()
        everything = params.name is None or params.name.strip() in ("", "*")
        target: Any = Atom("all") if everything else _supervisor_ref(params.name or "")
        raw = await _call(node, "tree", [target, params.max_depth, params.max_nodes, CALL_MS], self.timeout)
        raw = _check(raw, params.name or "*", node)
        lang = node.language
        return SupervisionTree(
            node=node.name,
            roots=[_tree_node(item, lang) for item in raw[Atom("roots")]],
            node_count=raw[Atom("node_count")],
            truncated=raw[Atom("truncated")] is True,
        )


def _tree_node(item: dict[Any, Any], language: str) -> SupervisionNode:
    pid, state = _child_pid_state(item[Atom("pid")])
    error = item.get(Atom("error"))
    strategy = item.get(Atom("strategy"))
    module = item.get(Atom("module"))
    return SupervisionNode(
        pid=pid,
        state=state,
        name=name_text(item[Atom("name")], language),
        id=_id(item[Atom("id")], language),
        type=str(item[Atom("type")]),
        restart=_atom(item[Atom("restart")], language),
        strategy=_atom(strategy, language),
        module=render(module, language) if module is not None else None,
        behaviour=_module(item.get(Atom("behaviour")), language),
        application=_atom(item.get(Atom("application")), language),
        children=[_tree_node(child, language) for child in item.get(Atom("children"), [])],
        truncated=item.get(Atom("truncated")) is True,
        error=render(error, language, max_items=10) if error is not None else None,
    )


# ---------------------------------------------------------------------------- child operations


class ChildOutcome(Result):
    supervisor: str
    id: Any
    pid: str | None = Field(description="The child's pid before the operation.")
    new_pid: str | None = Field(None, description="restart_child: the pid it runs with now.")


async def _protect_child(ctx: Context, node: Node, params: ChildParams, action: str) -> dict[Any, Any]:
    """Resolve the child, and refuse if it or its supervisor is one of the VM's own processes."""
    raw = await _call(
        node, "child", [_supervisor_ref(params.name), _child_ref(params.child), CALL_MS], CALL_MS / 1000 + 3
    )
    found = _check(raw, params.name, node, params.child)[1]
    await ensure_not_protected(ctx, pid_text(found[Atom("supervisor")]), force=params.force, action=action)
    if isinstance(found[Atom("pid")], Pid):
        await ensure_not_protected(ctx, pid_text(found[Atom("pid")]), force=params.force, action=action)
    return found


async def _child_op(ctx: Context, params: ChildParams, op: str, action: str, timeout: float) -> ChildOutcome:
    node = ctx.require_node()
    await _protect_child(ctx, node, params, action)
    raw = await _call(
        node,
        "child_op",
        [op.encode(), _supervisor_ref(params.name), _child_ref(params.child), CALL_MS * 3],
        timeout,
    )
    done = _check(raw, params.name, node, params.child)[1]
    new_pid = done.get(Atom("new_pid"))
    return ChildOutcome(
        supervisor=pid_text(done[Atom("supervisor")]),
        id=_id(done[Atom("id")], node.language),
        pid=pid_or_none(done[Atom("pid")]),
        new_pid=pid_or_none(new_pid),
    )


@register
class RestartChild(Operation[ChildParams, ChildOutcome]):
    name = "restart_child"
    category = "supervisors"
    summary = "Start again a stopped child of a supervisor from its spec (supervisor:restart_child/2)."
    cost = "A which_children and one restart_child call into the supervisor; the child's init runs."
    risk = (
        "Starts a process. The child must be stopped first (terminate_child): a running child is a "
        "conflict. Not for dynamic or simple_one_for_one supervisors."
    )
    params = ChildParams
    result = ChildOutcome
    severity = Severity.write
    method = "POST"
    path = "/api/v1/supervisors/{name}/children/{child}/restart"
    cli_name = "restart-child"
    timeout = 15.0
    example = {"name": "my_sup", "child": "my_worker"}

    async def execute(self, ctx: Context, params: ChildParams) -> ChildOutcome:
        return await _child_op(ctx, params, "restart", "restarting", self.timeout)


@register
class TerminateChild(Operation[ChildParams, ChildOutcome]):
    name = "terminate_child"
    category = "supervisors"
    summary = "Stop a child the way its supervisor does (supervisor:terminate_child/2), without a restart."
    cost = "A which_children and one terminate_child call; waits for the child's shutdown (its spec says)."
    risk = (
        "Stops a process and loses its state; it stays stopped (restart_child starts it again). A dynamic "
        "or simple_one_for_one child is removed for good."
    )
    params = ChildParams
    result = ChildOutcome
    severity = Severity.destructive
    method = "POST"
    path = "/api/v1/supervisors/{name}/children/{child}/terminate"
    cli_name = "terminate-child"
    timeout = 30.0
    example = {"name": "my_sup", "child": "my_worker"}

    async def execute(self, ctx: Context, params: ChildParams) -> ChildOutcome:
        return await _child_op(ctx, params, "terminate", "terminating", self.timeout)


@register
class DeleteChild(Operation[ChildParams, ChildOutcome]):
    name = "delete_child"
    category = "supervisors"
    summary = "Remove a stopped child's spec from its supervisor (supervisor:delete_child/2)."
    cost = "A which_children and one delete_child call into the supervisor."
    risk = (
        "The supervisor forgets the child until it restarts itself (init/1 brings the spec back). "
        "A running child is a conflict: terminate_child first."
    )
    params = ChildParams
    result = ChildOutcome
    severity = Severity.destructive
    method = "DELETE"
    path = "/api/v1/supervisors/{name}/children/{child}"
    cli_name = "delete-child"
    timeout = 15.0
    example = {"name": "my_sup", "child": "my_worker"}

    async def execute(self, ctx: Context, params: ChildParams) -> ChildOutcome:
        return await _child_op(ctx, params, "delete", "deleting", self.timeout)


# ---------------------------------------------------------------------------- simulate_failure


class FailureReason(StrEnum):
    kill = "kill"
    shutdown = "shutdown"
    crash = "crash"


class SimulateFailureParams(ChildParams):
    reason: FailureReason = Field(
        FailureReason.crash,
        description="kill (untrappable), shutdown, or crash (exit reason {arsenal, simulated_failure}).",
    )
    wait_ms: int = Field(2000, ge=0, le=10000, description="How long to watch the supervisor react.")


class ChildChange(Result):
    id: Any
    old_pid: str | None
    new_pid: str | None
    outcome: str = Field(
        description="restarted, unchanged, not_running or removed; started for a new dynamic child (dynamic "
        "children have no id, so a restarted one shows as removed + started)."
    )


class FailureReport(Result):
    supervisor: str
    id: Any
    pid: str = Field(description="The child killed.")
    reason: str
    child_died: bool
    supervisor_alive: bool = Field(description="False when the failure went past its restart intensity.")
    restarted: list[str] = Field(description="Ids (as text) of the children that got new pids.")
    changes: list[ChildChange]


@register
class SimulateFailure(Operation[SimulateFailureParams, FailureReport]):
    name = "simulate_failure"
    category = "supervisors"
    summary = "Kill a child with a reason and report what its supervisor restarted (its strategy at work)."
    cost = "which_children before, exit/2, then which_children every 20-50 ms until it settles (<= wait_ms)."
    risk = (
        "Kills a process: its state is lost, and its siblings too under one_for_all or rest_for_one. "
        "Repeated quickly it can exceed the restart intensity and take the supervisor (and more) down."
    )
    params = SimulateFailureParams
    result = FailureReport
    severity = Severity.destructive
    method = "POST"
    path = "/api/v1/supervisors/{name}/simulate-failure"
    cli_name = "simulate-failure"
    timeout = 30.0
    example = {"name": "my_sup", "child": "my_worker", "reason": "kill", "wait_ms": 1000}

    async def execute(self, ctx: Context, params: SimulateFailureParams) -> FailureReport:
        node = ctx.require_node()
        found = await _protect_child(ctx, node, params, "killing")
        if not isinstance(found[Atom("pid")], Pid):
            raise OperationError(
                ErrorCode.conflict, f"child {params.child!r} of {params.name} is not running; nothing to kill"
            )
        raw = await _call(
            node,
            "simulate_failure",
            [
                _supervisor_ref(params.name),
                _child_ref(params.child),
                params.reason.value.encode(),
                params.wait_ms,
                CALL_MS,
            ],
            self.timeout,
        )
        raw = _check(raw, params.name, node, params.child)
        lang = node.language
        changes = [
            ChildChange(
                id=_id(c[Atom("id")], lang),
                old_pid=pid_or_none(c[Atom("old_pid")]),
                new_pid=pid_or_none(c[Atom("new_pid")]),
                outcome=str(c[Atom("outcome")]),
            )
            for c in raw[Atom("changes")]
        ]
        return FailureReport(
            supervisor=pid_text(raw[Atom("supervisor")]),
            id=_id(raw[Atom("id")], lang),
            pid=pid_text(raw[Atom("pid")]),
            reason=render(raw[Atom("reason")], lang),
            child_died=raw[Atom("child_died")] is True,
            supervisor_alive=raw[Atom("supervisor_alive")] is True,
            restarted=[str(c.id) for c in changes if c.outcome == "restarted"],
            changes=changes,
        )


# ---------------------------------------------------------------------------- pause / resume / strategy


class PauseParams(SupervisorParams):
    auto_resume_seconds: int = Field(
        60, ge=1, le=3600, description="Resume by itself after this long if nobody resumed it."
    )
    force: bool = Field(False, description="Pause even one of the VM's own supervisors (admins only).")


class PauseOutcome(Result):
    pid: str
    name: str | None
    paused: bool
    auto_resume_seconds: int | None = None


@register
class PauseSupervision(Operation[PauseParams, PauseOutcome]):
    name = "pause_supervision"
    category = "supervisors"
    summary = "Suspend a supervisor (sys:suspend): no restarts happen until it is resumed."
    cost = "Two sys calls into the supervisor and one small watchdog process (it resumes it on time)."
    risk = (
        "While paused, children that die stay dead: their EXIT signals queue and are handled, restarts "
        "included, on resume. Calls to the supervisor (which_children, start_child, its parent's shutdown) "
        "wait, so an application stop hangs until it is resumed. Auto-resumes after auto_resume_seconds."
    )
    params = PauseParams
    result = PauseOutcome
    severity = Severity.write
    method = "POST"
    path = "/api/v1/supervisors/{name}/pause"
    cli_name = "pause-supervision"
    example = {"name": "my_sup", "auto_resume_seconds": 60}

    async def execute(self, ctx: Context, params: PauseParams) -> PauseOutcome:
        node = ctx.require_node()
        ref = _supervisor_ref(params.name)
        _check(await _call(node, "flags", [ref, CALL_MS], self.timeout), params.name, node)
        await ensure_not_protected(ctx, params.name, force=params.force, action="pausing")
        raw = _check(
            await _call(node, "pause", [ref, params.auto_resume_seconds * 1000, CALL_MS], self.timeout),
            params.name,
            node,
        )
        return PauseOutcome(
            pid=pid_text(raw[Atom("pid")]),
            name=name_text(raw[Atom("name")], node.language),
            paused=True,
            auto_resume_seconds=raw[Atom("auto_resume_ms")] // 1000,
        )


@register
class ResumeSupervision(Operation[SupervisorParams, PauseOutcome]):
    name = "resume_supervision"
    category = "supervisors"
    summary = "Resume a paused supervisor (sys:resume): restarts that queued while it was paused happen now."
    cost = "Two sys calls and a scan of initial calls (one process_info per process) to stop the watchdog."
    risk = (
        "The children that died while it was paused are restarted at once; enough of them can exceed "
        "its restart intensity and take it down."
    )
    params = SupervisorParams
    result = PauseOutcome
    severity = Severity.write
    method = "POST"
    path = "/api/v1/supervisors/{name}/resume"
    cli_name = "resume-supervision"
    timeout = 30.0
    example = {"name": "my_sup"}

    async def execute(self, ctx: Context, params: SupervisorParams) -> PauseOutcome:
        node = ctx.require_node()
        raw = _check(
            await _call(node, "resume", [_supervisor_ref(params.name), CALL_MS], self.timeout),
            params.name,
            node,
        )
        return PauseOutcome(
            pid=pid_text(raw[Atom("pid")]), name=name_text(raw[Atom("name")], node.language), paused=False
        )


class Strategy(StrEnum):
    one_for_one = "one_for_one"
    one_for_all = "one_for_all"
    rest_for_one = "rest_for_one"


class StrategyParams(SupervisorParams):
    strategy: Strategy
    force: bool = Field(False, description="Change even one of the VM's own supervisors (admins only).")


class StrategyOutcome(Result):
    pid: str
    name: str | None
    old_strategy: str
    new_strategy: str


@register
class ChangeSupervisorStrategy(Operation[StrategyParams, StrategyOutcome]):
    name = "change_supervisor_strategy"
    category = "supervisors"
    summary = "Switch a running supervisor between one_for_one, one_for_all and rest_for_one, in place."
    cost = "sys:get_state, sys:replace_state and a read back: three sys calls into the supervisor."
    risk = (
        "Only the strategy field of the supervisor's state changes: no child stops, so there is no gap in "
        "supervision, and the next failure is handled the new way. Not kept across a restart of the "
        "supervisor (its init/1 says the old strategy). simple_one_for_one and dynamic supervisors are "
        "refused."
    )
    params = StrategyParams
    result = StrategyOutcome
    severity = Severity.write
    method = "PUT"
    path = "/api/v1/supervisors/{name}/strategy"
    cli_name = "set-strategy"
    example = {"name": "my_sup", "strategy": "rest_for_one"}

    async def execute(self, ctx: Context, params: StrategyParams) -> StrategyOutcome:
        node = ctx.require_node()
        ref = _supervisor_ref(params.name)
        _check(await _call(node, "flags", [ref, CALL_MS], self.timeout), params.name, node)
        await ensure_not_protected(ctx, params.name, force=params.force, action="changing the strategy of")
        raw = _check(
            await _call(node, "set_strategy", [ref, params.strategy.value.encode(), CALL_MS], self.timeout),
            params.name,
            node,
        )
        return StrategyOutcome(
            pid=pid_text(raw[Atom("pid")]),
            name=name_text(raw[Atom("name")], node.language),
            old_strategy=str(raw[Atom("old")]),
            new_strategy=str(raw[Atom("new")]),
        )


# ---------------------------------------------------------------------------- adding children, start, stop

_MAX_ARGS_SIZE = 10_000


def _arg_term(value: Any, depth: int = 0) -> Any:
    """A JSON-compatible plain value as the term a start function gets: strings become binaries."""
    if depth > 8:
        raise ValueError("arguments nest deeper than 8 levels")
    if isinstance(value, bool):
        return Atom("true" if value else "false")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, list):
        return [_arg_term(item, depth + 1) for item in value]
    raise ValueError(f"{type(value).__name__} is not a plain value (ints, strings, booleans, lists)")


def _check_args(value: list[Any]) -> list[Any]:
    _arg_term(value)
    if len(repr(value)) > _MAX_ARGS_SIZE:
        raise ValueError(f"arguments longer than {_MAX_ARGS_SIZE} characters")
    return value


_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_.@]{0,254}$")


def _module_text(text: str) -> bytes:
    """An Erlang module name, or an Elixir alias (``Foo.Bar`` means ``Elixir.Foo.Bar``)."""
    text = text.strip().lstrip(":")
    if text[:1].isupper() and not text.startswith("Elixir."):
        text = f"Elixir.{text}"
    return text.encode()


class RestartType(StrEnum):
    permanent = "permanent"
    transient = "transient"
    temporary = "temporary"


class ChildType(StrEnum):
    worker = "worker"
    supervisor = "supervisor"


class StartSpec(Params):
    module: str = Field(max_length=255, description="The start function's module (must exist on the node).")
    function: str = Field("start_link", max_length=255, description="Must be exported with len(args).")
    args: list[Any] = Field(
        default_factory=list,
        max_length=20,
        description="Plain values: ints, strings, booleans, lists.",
    )
    restart: RestartType = RestartType.temporary
    type: ChildType = ChildType.worker
    shutdown_ms: int = Field(5000, ge=0, le=600_000, description="Workers: how long a shutdown may take.")

    @field_validator("module", "function")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value.strip().lstrip(":")):
            raise ValueError("a module or function name")
        return value

    @field_validator("args")
    @classmethod
    def _plain(cls, value: list[Any]) -> list[Any]:
        return _check_args(value)

    def request(self) -> dict[Any, Any]:
        return {
            Atom("module"): _module_text(self.module),
            Atom("function"): self.function.strip().lstrip(":").encode(),
            Atom("args"): _arg_term(self.args),
            Atom("restart"): self.restart.value.encode(),
            Atom("type"): self.type.value.encode(),
            Atom("shutdown"): self.shutdown_ms,
        }


class AddChildParams(StartSpec):
    name: str = Field(description=_NAME_DESCRIPTION, max_length=300)
    id: str = Field(max_length=255, description="The new child's id (kept as a binary: no atom is made).")
    force: bool = Field(False, description="Add to one of the VM's own supervisors (admins only).")


class ChildStarted(Result):
    supervisor: str
    id: Any
    pid: str


def _check_start(raw: Any, name: str, node: Node) -> Any:
    if not is_agent_error(raw):
        return raw
    reason = raw[1]
    tag = reason[0] if isinstance(reason, tuple) and reason else reason
    lang = node.language
    if tag == Atom("unknown_module"):
        raise OperationError(
            ErrorCode.not_found,
            f"no module {reason[1].decode()} on {node.name}; load it first",
        )
    if tag == Atom("undefined_function"):
        _, module, function, arity = reason
        raise OperationError(
            ErrorCode.not_found, f"{module.decode()} exports no {function.decode()}/{arity} on {node.name}"
        )
    if tag == Atom("start_failed"):
        raise OperationError(
            ErrorCode.conflict,
            f"the child did not start: {render(reason[1], lang, max_items=20, max_depth=6)}",
        )
    if tag == Atom("already_started"):
        raise OperationError(
            ErrorCode.conflict, f"a process is already registered under that name ({pid_text(reason[1])})"
        )
    if tag == Atom("new_atom"):
        raise OperationError(
            ErrorCode.validation_error,
            f"{reason[1].decode()!r} is not an existing atom on {node.name}; registering under it would make "
            "one: start it unnamed",
        )
    if tag == Atom("use_dynamic"):
        raise OperationError(
            ErrorCode.conflict, f"{name} is a {reason[1]} supervisor: use add_dynamic_child to start children"
        )
    if tag == Atom("use_add_child"):
        raise OperationError(
            ErrorCode.conflict,
            f"{name} is a {reason[1]} supervisor: its children have specs; use add_child",
        )
    if tag == Atom("simple_takes_args"):
        raise OperationError(
            ErrorCode.validation_error,
            f"{name} is simple_one_for_one: give only `args` (appended to its child spec's), no module",
        )
    return _check(raw, name, node)


@register
class AddChild(Operation[AddChildParams, ChildStarted]):
    name = "add_child"
    category = "supervisors"
    summary = "Add a child spec to a supervisor and start it (supervisor:start_child/2 with a spec)."
    cost = "A few lookups, then one start_child call; the start function runs inside the supervisor."
    risk = (
        "Starts a process under the supervisor. The start function runs in the supervisor itself: one "
        "that blocks blocks the supervisor (the call times out, the supervisor stays busy). A permanent "
        "child that keeps crashing can exhaust the supervisor's restart intensity."
    )
    params = AddChildParams
    result = ChildStarted
    severity = Severity.write
    method = "POST"
    path = "/api/v1/supervisors/{name}/children"
    cli_name = "add-child"
    timeout = 15.0
    example = {"name": "my_sup", "id": "events", "module": "gen_event", "function": "start_link", "args": []}

    async def execute(self, ctx: Context, params: AddChildParams) -> ChildStarted:
        node = ctx.require_node()
        ref = _supervisor_ref(params.name)
        _check(await _call(node, "flags", [ref, CALL_MS], self.timeout), params.name, node)
        await ensure_not_protected(ctx, params.name, force=params.force, action="adding a child to")
        request = {**params.request(), Atom("id"): params.id.encode()}
        raw = await _call(node, "add_child", [ref, request, CALL_MS * 3], self.timeout)
        raw = _check_start(raw, params.name, node)
        return ChildStarted(
            supervisor=pid_text(raw[Atom("supervisor")]),
            id=_id(raw[Atom("id")], node.language),
            pid=pid_text(raw[Atom("pid")]),
        )


class AddDynamicChildParams(Params):
    name: str = Field(description=_NAME_DESCRIPTION, max_length=300)
    args: list[Any] = Field(
        default_factory=list,
        max_length=20,
        description="simple_one_for_one: the extra arguments; DynamicSupervisor: the start function's.",
    )
    module: str | None = Field(None, max_length=255, description="DynamicSupervisor only: the start module.")
    function: str = Field("start_link", max_length=255)
    restart: RestartType = RestartType.temporary
    type: ChildType = ChildType.worker
    shutdown_ms: int = Field(5000, ge=0, le=600_000)
    force: bool = Field(False, description="Add to one of the VM's own supervisors (admins only).")

    @field_validator("args")
    @classmethod
    def _plain(cls, value: list[Any]) -> list[Any]:
        return _check_args(value)

    @field_validator("module", "function")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        if value is not None and not _IDENTIFIER.match(value.strip().lstrip(":")):
            raise ValueError("a module or function name")
        return value


@register
class AddDynamicChild(Operation[AddDynamicChildParams, ChildStarted]):
    name = "add_dynamic_child"
    category = "supervisors"
    summary = "Start a child of a simple_one_for_one supervisor or an Elixir DynamicSupervisor."
    cost = "A few lookups, then one start_child call; the start function runs inside the supervisor."
    risk = (
        "Starts a process under the supervisor; its start function runs in the supervisor (one that blocks "
        "blocks it). Bounded by the supervisor's own max_children, if it has one."
    )
    params = AddDynamicChildParams
    result = ChildStarted
    severity = Severity.write
    method = "POST"
    path = "/api/v1/supervisors/{name}/dynamic-children"
    cli_name = "add-dynamic-child"
    timeout = 15.0
    example = {"name": "my_dynamic_sup", "module": "gen_event", "function": "start_link", "args": []}

    async def execute(self, ctx: Context, params: AddDynamicChildParams) -> ChildStarted:
        node = ctx.require_node()
        ref = _supervisor_ref(params.name)
        _check(await _call(node, "flags", [ref, CALL_MS], self.timeout), params.name, node)
        await ensure_not_protected(ctx, params.name, force=params.force, action="adding a child to")
        request: dict[Any, Any] = {Atom("args"): _arg_term(params.args)}
        if params.module is not None:
            request = StartSpec(
                module=params.module,
                function=params.function,
                args=params.args,
                restart=params.restart,
                type=params.type,
                shutdown_ms=params.shutdown_ms,
            ).request()
        raw = await _call(node, "add_dynamic_child", [ref, request, CALL_MS * 3], self.timeout)
        raw = _check_start(raw, params.name, node)
        return ChildStarted(
            supervisor=pid_text(raw[Atom("supervisor")]), id=None, pid=pid_text(raw[Atom("pid")])
        )


class StartSupervisorParams(Params):
    module: str = Field(max_length=255, description="The supervisor's callback module (exports init/1).")
    arg: Any = Field(None, description="The argument of its init/1: a plain value (null means []).")
    register_as: str | None = Field(
        None, max_length=255, description="A registered name: must already be an atom on the node."
    )

    @field_validator("module")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value.strip().lstrip(":")):
            raise ValueError("a module name")
        return value

    @field_validator("arg")
    @classmethod
    def _plain(cls, value: Any) -> Any:
        if value is not None:
            _check_args([value])
        return value

    @field_validator("register_as")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _IDENTIFIER.match(value.strip().lstrip(":")):
            raise ValueError("a registered name")
        return value


class SupervisorStarted(Result):
    pid: str
    name: str | None
    module: str


@register
class StartSupervisor(Operation[StartSupervisorParams, SupervisorStarted]):
    name = "start_supervisor"
    category = "supervisors"
    summary = "Start a supervisor outside any tree (supervisor:start_link/2,3, then unlinked from Arsenal)."
    cost = "Runs the module's init/1 and starts its children, in a process of the node."
    risk = (
        "Starts processes nobody supervises: stop them with stop_supervisor. To start one under another "
        "supervisor use add_child with type=supervisor."
    )
    params = StartSupervisorParams
    result = SupervisorStarted
    severity = Severity.write
    method = "POST"
    path = "/api/v1/supervisors"
    cli_name = "start-supervisor"
    timeout = 30.0
    example = {"module": "my_sup", "arg": []}

    async def execute(self, ctx: Context, params: StartSupervisorParams) -> SupervisorStarted:
        node = ctx.require_node()
        arg = _arg_term(params.arg if params.arg is not None else [])
        name: Any = (
            params.register_as.strip().lstrip(":").encode() if params.register_as else Atom("undefined")
        )
        raw = await _call(node, "start_supervisor", [_module_text(params.module), arg, name], self.timeout)
        raw = _check_start(raw, params.module, node)
        return SupervisorStarted(
            pid=pid_text(raw[Atom("pid")]),
            name=name_text(raw[Atom("name")], node.language),
            module=render(raw[Atom("module")], node.language),
        )


class StopSupervisorParams(SupervisorParams):
    force: bool = Field(False, description="Stop even one of the VM's own supervisors (admins only).")


class SupervisorStopped(Result):
    pid: str
    name: str | None
    parent: str | None = Field(
        description="Its parent supervisor, which restarts it if its restart type says so (terminate_child "
        "on the parent keeps it stopped)."
    )


@register
class StopSupervisor(Operation[StopSupervisorParams, SupervisorStopped]):
    name = "stop_supervisor"
    category = "supervisors"
    summary = "Stop a supervisor and its whole subtree, in order (proc_lib:stop with reason shutdown)."
    cost = "One stop call; waits for every child's shutdown (up to 10 s here)."
    risk = (
        "Stops every process of the subtree and loses their state. A supervisor that is a child of "
        "another may be restarted by it; an application's top supervisor stopping stops the application."
    )
    params = StopSupervisorParams
    result = SupervisorStopped
    severity = Severity.destructive
    method = "DELETE"
    path = "/api/v1/supervisors/{name}"
    cli_name = "stop-supervisor"
    timeout = 15.0
    example = {"name": "my_sup"}

    async def execute(self, ctx: Context, params: StopSupervisorParams) -> SupervisorStopped:
        node = ctx.require_node()
        ref = _supervisor_ref(params.name)
        _check(await _call(node, "flags", [ref, CALL_MS], self.timeout), params.name, node)
        await ensure_not_protected(ctx, params.name, force=params.force, action="stopping")
        raw = await _call(node, "stop_supervisor", [ref, 10_000], self.timeout)
        if is_agent_error(raw) and isinstance(raw[1], tuple) and raw[1][0] == Atom("stop_failed"):
            raise OperationError(
                ErrorCode.remote_error,
                f"{params.name} did not stop cleanly: {render(raw[1][1], node.language, max_items=20)}",
            )
        raw = _check(raw, params.name, node)
        return SupervisorStopped(
            pid=pid_text(raw[Atom("pid")]),
            name=name_text(raw[Atom("name")], node.language),
            parent=pid_or_none(raw[Atom("parent")]),
        )
