"""Relationship operations: how processes hang together, and what a death would do.

The work runs in the agent module ``arsenal_agent_rel``, inside the VM, in one
bounded pass: the parent of every process (``process_info(P, parent)``, OTP 25,
with proc_lib's ``$ancestors`` as a fallback), its application (its group
leader, the application master) and whether it is a supervisor (from its
dictionary, without messaging it). The only messages sent are calls to
supervisors (``which_children``, ``sys:get_state``), each with a timeout and
all under a 20 s deadline, so a stuck supervisor shows as an error on its own
node of the answer instead of hanging the operation.

``trace_failure_impact`` is analysis only: nothing is killed. It follows the
rules of the runtime and of OTP (exit signals through links, a gen process
stopping with its parent, supervisor strategies, restart types and restart
intensity) and says for each process why it is affected. What a process does
with a ``DOWN`` message or a trapped ``EXIT`` is up to its code, so those are
reported as ``notified``, never guessed.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from ..beam import Node
from ..dist import Atom, Pid, Port
from ..terms.render import render
from .base import Context, Operation, Params, Result
from .errors import ErrorCode, OperationError
from .plain import mfa_text, name_text, pid_text, plain
from .registry import register
from .targets import check_target, is_agent_error, process_ref

__all__ = [
    "BuildProcessTree",
    "BuildRelationshipGraph",
    "FindProcessDependencies",
    "ProcessTree",
    "RelationshipGraph",
    "TraceFailureImpact",
    "TreeNode",
]

AGENT = "arsenal_agent_rel"
CALL_MS = 2000
"""How long the agent waits for one supervisor (which_children, sys:get_state)."""

_PID_DESCRIPTION = "The process: <0.123.0>, 0.123.0, #PID<0.123.0> or a registered name."


async def _call(node: Node, function: str, args: list[Any], timeout: float) -> Any:
    """Call ``arsenal_agent_rel`` (the node loads the agent again if it lost it)."""
    return await node.agent_call(function, args, timeout, module=AGENT)


def _check(raw: Any, name: str, node: Node) -> Any:
    """Raise the OperationError an agent's ``{error, Reason}`` means; return anything else."""
    if not is_agent_error(raw):
        return raw
    check_target(raw, name, node)
    reason = raw[1]
    tag = reason[0] if isinstance(reason, tuple) and reason else reason
    if tag == Atom("dead"):
        raise OperationError(
            ErrorCode.not_found, f"{name} is not alive on {node.name} (it may have just died); list_processes"
        )
    if tag == Atom("unknown_application"):
        raise OperationError(
            ErrorCode.not_found,
            f"no running application {name!r} on {node.name}; list_applications shows the running ones",
        )
    if tag == Atom("bad_reason"):
        raise OperationError(
            ErrorCode.validation_error,
            f"{name!r} is not a known exit reason on {node.name}: use kill, normal, shutdown or another "
            "atom the node already has",
        )
    raise OperationError(
        ErrorCode.remote_error, f"{name}: the node answered {render(reason, node.language, max_items=20)}"
    )


def _text(value: Any, language: str) -> str | None:
    """Atoms (application names, kinds) as plain words; None for ``undefined``."""
    if value is None or value == Atom("undefined"):
        return None
    if isinstance(value, Atom):
        return str(value)
    return str(plain(value, language))


def _id(value: Any, language: str, local_node: str | None = None) -> str | None:
    """A pid as ``<0.N.S>``, a port as ``#Port<0.N>`` (on ``local_node``); None for anything else."""
    if isinstance(value, Pid):
        return pid_text(value)
    if isinstance(value, Port):
        return render(value, language, local_node=local_node)
    return None


def _error_text(value: Any, language: str) -> str | None:
    if value is None:
        return None
    if value == Atom("deadline"):
        return "not read: the 20 s deadline of this operation had passed"
    if value == Atom("timeout"):
        return f"did not answer which_children within {CALL_MS} ms (paused or overloaded?)"
    return render(value, language, max_items=10)


def _application(value: str | None) -> bytes | None:
    if value is None or not value.strip():
        return None
    return value.strip().lstrip(":").encode()


class ApplicationParam(Params):
    application: str | None = Field(
        None, max_length=255, description="Only this running application (its name, e.g. kernel)."
    )


# ---------------------------------------------------------------------------- build_process_tree


class TreeNode(Result):
    pid: str | None = Field(description="Null for an application node.")
    name: str | None = Field(description="Registered name, or the application's name.")
    kind: str = Field(description="application, application_master, supervisor, worker or process.")
    application: str | None
    version: str | None = Field(None, description="Applications: their version.")
    memory: int | None = None
    message_queue_len: int | None = None
    supervised: bool | None = Field(
        None,
        description="True for a supervisor's child (and an application's master and top supervisor); "
        "false for a process spawned outside any supervision.",
    )
    children: list[TreeNode] = Field(default_factory=list)
    truncated: bool = Field(False, description="Children left out (depth or node limit).")
    error: str | None = Field(None, description="Why a supervisor's children could not be read.")


class ProcessTree(Result):
    node: str
    applications: list[TreeNode]
    other: list[TreeNode] = Field(
        description="Processes no application's tree reaches (init, erts helpers, shell-spawned ones), "
        "under their own roots. Empty when one application was asked for."
    )
    node_count: int
    supervised_count: int
    unsupervised_count: int
    truncated: bool = Field(description="max_depth or max_nodes cut the tree somewhere.")


class ProcessTreeParams(ApplicationParam):
    max_depth: int = Field(12, ge=1, le=50, description="Levels below each application.")
    max_nodes: int = Field(1000, ge=1, le=5000, description="Nodes in the whole answer.")


@register
class BuildProcessTree(Operation[ProcessTreeParams, ProcessTree]):
    name = "build_process_tree"
    category = "relationships"
    summary = (
        "Every process in one tree: applications, their masters and supervision trees, and under any "
        "process the processes it spawned outside supervision."
    )
    cost = (
        "One process_info(parent, initial_call) per process to build the parent map (about 0.3 s at "
        "100 000 processes), then per node shown a process_info of four items, and one which_children per "
        "supervisor (2 s timeout each, 20 s deadline overall)."
    )
    risk = "None: reads only. A stuck supervisor shows as an error on its node; it does not block the call."
    params = ProcessTreeParams
    result = ProcessTree
    path = "/api/v1/system/process-tree"
    cli_name = "ptree"
    timeout = 60.0
    example = {"application": "kernel", "max_depth": 4, "max_nodes": 200}

    async def execute(self, ctx: Context, params: ProcessTreeParams) -> ProcessTree:
        node = ctx.require_node()
        opts: dict[Any, Any] = {
            Atom("max_depth"): params.max_depth,
            Atom("max_nodes"): params.max_nodes,
            Atom("timeout"): CALL_MS,
        }
        app = _application(params.application)
        if app is not None:
            opts[Atom("application")] = app
        raw = _check(await _call(node, "process_tree", [opts], self.timeout), params.application or "", node)
        lang = node.language
        return ProcessTree(
            node=node.name,
            applications=[_tree_node(item, lang) for item in raw[Atom("applications")]],
            other=[_tree_node(item, lang) for item in raw[Atom("other")]],
            node_count=raw[Atom("node_count")],
            supervised_count=raw[Atom("supervised_count")],
            unsupervised_count=raw[Atom("unsupervised_count")],
            truncated=raw[Atom("truncated")] is True,
        )


def _tree_node(item: dict[Any, Any], language: str) -> TreeNode:
    kind = str(item[Atom("kind")])
    version = item.get(Atom("version"))
    supervised = item.get(Atom("supervised"))
    return TreeNode(
        pid=_id(item.get(Atom("pid")), language),
        name=str(item[Atom("name")]) if kind == "application" else name_text(item[Atom("name")], language),
        kind=kind,
        application=_text(item.get(Atom("application")), language),
        version=version.decode() if isinstance(version, bytes) else None,
        memory=item.get(Atom("memory")),
        message_queue_len=item.get(Atom("message_queue_len")),
        supervised=None if supervised is None else supervised is True,
        children=[_tree_node(child, language) for child in item.get(Atom("children"), [])],
        truncated=item.get(Atom("truncated")) is True,
        error=_error_text(item.get(Atom("error")), language),
    )


# ---------------------------------------------------------------------------- build_relationship_graph


class GraphNode(Result):
    id: str = Field(description="<0.N.S> for a process, #Port<0.N> for a port.")
    name: str | None
    kind: str = Field(description="process, supervisor or port.")
    application: str | None
    memory: int
    message_queue_len: int = Field(description="Ports: bytes queued in the driver.")


class GraphEdge(Result):
    type: str = Field(description="link (symmetric, listed once), monitor or parent.")
    source: str = Field(description="link: one end; monitor: the monitoring process; parent: the parent.")
    target: str = Field(description="link: the other end; monitor: the monitored; parent: the child.")
    by_name: str | None = Field(None, description="Monitors by registered name: the name.")


class RelationshipGraph(Result):
    node: str
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    truncated: bool = Field(description="max_nodes or max_edges left something out.")


class GraphParams(ApplicationParam):
    pid: str | None = Field(
        None, max_length=300, description="Around this process (pid or registered name), `radius` hops out."
    )
    radius: int = Field(1, ge=1, le=5, description="Hops from `pid` over links, monitors and parents.")
    max_nodes: int = Field(200, ge=1, le=2000)
    max_edges: int = Field(1000, ge=1, le=10000)

    @model_validator(mode="after")
    def _one_scope(self) -> GraphParams:
        if self.pid is not None and self.application is not None:
            raise ValueError("give pid or application, not both (neither: the whole node)")
        return self


@register
class BuildRelationshipGraph(Operation[GraphParams, RelationshipGraph]):
    name = "build_relationship_graph"
    category = "relationships"
    summary = (
        "The graph of links, monitors and parent-child relations around a process, in an application "
        "or on the whole node (linked ports included)."
    )
    cost = (
        "Per node one process_info of links, monitors and monitored_by (copies as long as those lists); "
        "around a pid also one process_info(parent) per process to find children. Bounded by max_nodes "
        "and max_edges."
    )
    risk = "None: reads only; no process is sent a message."
    params = GraphParams
    result = RelationshipGraph
    path = "/api/v1/system/relationships"
    cli_name = "graph"
    timeout = 30.0
    example = {"pid": "code_server", "radius": 1, "max_nodes": 50}

    async def execute(self, ctx: Context, params: GraphParams) -> RelationshipGraph:
        node = ctx.require_node()
        opts: dict[Any, Any] = {
            Atom("radius"): params.radius,
            Atom("max_nodes"): params.max_nodes,
            Atom("max_edges"): params.max_edges,
        }
        label = params.pid or params.application or "*"
        if params.pid is not None:
            opts[Atom("pid")] = process_ref(params.pid)
        app = _application(params.application)
        if app is not None:
            opts[Atom("application")] = app
        raw = _check(await _call(node, "graph", [opts], self.timeout), label, node)
        lang = node.language
        nodes = [
            GraphNode(
                id=_id(item[Atom("id")], lang, node.name) or "",
                name=_port_or_process_name(item, lang),
                kind=str(item[Atom("kind")]),
                application=_text(item[Atom("application")], lang),
                memory=item[Atom("memory")],
                message_queue_len=item[Atom("message_queue_len")],
            )
            for item in raw[Atom("nodes")]
        ]
        edges = [
            GraphEdge(
                type=str(item[Atom("type")]),
                source=_id(item[Atom("from")], lang, node.name) or "",
                target=_id(item[Atom("to")], lang, node.name) or "",
                by_name=name_text(item.get(Atom("by_name")), lang),
            )
            for item in raw[Atom("edges")]
        ]
        return RelationshipGraph(
            node=node.name, nodes=nodes, edges=edges, truncated=raw[Atom("truncated")] is True
        )


def _port_or_process_name(item: dict[Any, Any], language: str) -> str | None:
    name = item[Atom("name")]
    if isinstance(name, bytes):
        return name.decode(errors="replace")
    return name_text(name, language)


# ---------------------------------------------------------------------------- trace_failure_impact


class AffectedProcess(Result):
    pid: str
    name: str | None
    effect: str = Field(
        description="dies, restarted, terminated_and_restarted, not_restarted, notified or escalates."
    )
    why: str = Field(description="The chain of reasons, in order.")
    depth: int = Field(description="Steps from the process analysed (0: that process).")


class FailureImpact(Result):
    pid: str
    reason: str = Field(description="The reason it was assumed to die with.")
    exit_reason: str = Field(description="What links and monitors see (kill arrives as killed).")
    affected: list[AffectedProcess]
    summary: dict[str, int] = Field(description="How many processes per effect.")
    notes: list[str] = Field(description="Escalations: supervisors giving up, applications stopping.")
    truncated: bool = Field(description="max_affected or max_depth stopped the analysis.")


class ImpactParams(Params):
    pid: str = Field(description=_PID_DESCRIPTION, max_length=300)
    reason: str = Field(
        "kill",
        max_length=255,
        description="The exit reason: kill (untrappable, seen as killed), normal, shutdown or another atom "
        "the node has.",
    )
    max_affected: int = Field(200, ge=1, le=1000, description="At most this many processes listed.")
    max_depth: int = Field(10, ge=1, le=20, description="Steps of propagation followed.")


@register
class TraceFailureImpact(Operation[ImpactParams, FailureImpact]):
    name = "trace_failure_impact"
    category = "relationships"
    summary = (
        "What would happen if a process died: who dies through links, what its supervisor restarts, "
        "whether restart intensity escalates, who is notified. Nothing is killed."
    )
    cost = (
        "Per affected process one process_info (links, monitored_by, trap_exit); per supervisor met one "
        "sys:get_state (2 s timeout, 20 s deadline overall). Bounded by max_affected."
    )
    risk = "None: an analysis; no signal is sent and nothing is killed."
    params = ImpactParams
    result = FailureImpact
    path = "/api/v1/processes/{pid}/impact"
    cli_name = "impact"
    timeout = 30.0
    example = {"pid": "code_server", "reason": "kill"}

    async def execute(self, ctx: Context, params: ImpactParams) -> FailureImpact:
        node = ctx.require_node()
        reason = params.reason.strip().lstrip(":")
        if not reason:
            raise OperationError(ErrorCode.validation_error, "reason is empty: use kill, normal or shutdown")
        opts = {Atom("max_affected"): params.max_affected, Atom("max_depth"): params.max_depth}
        raw = await _call(
            node, "impact", [process_ref(params.pid), reason.encode(), opts, CALL_MS], self.timeout
        )
        if is_agent_error(raw) and isinstance(raw[1], tuple) and raw[1][:1] == (Atom("bad_reason"),):
            _check(raw, params.reason, node)
        raw = _check(raw, params.pid, node)
        lang = node.language
        affected = [
            AffectedProcess(
                pid=pid_text(item[Atom("pid")]),
                name=name_text(item[Atom("name")], lang),
                effect=str(item[Atom("effect")]),
                why="; ".join(w.decode(errors="replace") for w in reversed(item[Atom("why")])),
                depth=item[Atom("depth")],
            )
            for item in raw[Atom("affected")]
        ]
        summary: dict[str, int] = {}
        for row in affected:
            summary[row.effect] = summary.get(row.effect, 0) + 1
        return FailureImpact(
            pid=pid_text(raw[Atom("pid")]),
            reason=_text(raw[Atom("reason")], lang) or "undefined",
            exit_reason=_text(raw[Atom("exit_reason")], lang) or "undefined",
            affected=affected,
            summary=summary,
            notes=[n.decode(errors="replace") for n in raw[Atom("notes")]],
            truncated=raw[Atom("truncated")] is True,
        )


# ---------------------------------------------------------------------------- find_process_dependencies


class RelatedProcess(Result):
    pid: str | None = Field(description="<0.N.S>, #Port<0.N>, or null (a by-name monitor of a dead name).")
    name: str | None
    kind: str | None = Field(None, description="supervisor, process, application_master or port.")
    application: str | None = None
    by_name: str | None = Field(None, description="Monitors by registered name: the name.")
    linked: bool | None = Field(None, description="Children: whether it is linked to the process.")


class RelatedList(Result):
    total: int = Field(description="All of them, not only those listed.")
    items: list[RelatedProcess]


class BlockedCall(Result):
    function: str = Field(description="The current function that shows it waits for a reply.")
    detected_by: str = Field(description="How that was detected.")
    candidates: list[RelatedProcess] = Field(description="The process(es) it may be calling.")
    certain: bool = Field(description="True when exactly one candidate: it is the callee.")


class Upstream(Result):
    chain: list[RelatedProcess] = Field(
        description="Parent, its parent... up to the application master (an OTP process: its supervisors)."
    )
    monitors: RelatedList = Field(description="Processes (and ports) it monitors.")
    linked: RelatedList = Field(description="Linked processes other than its parent and children.")
    blocked_on: BlockedCall | None = Field(description="The call it is blocked in right now, if any.")


class Downstream(Result):
    monitored_by: RelatedList = Field(description="Processes monitoring it: they get a DOWN when it dies.")
    linked: RelatedList = Field(
        description="Every linked process but its parent: its exit signal reaches them."
    )
    children: RelatedList = Field(description="The processes it spawned that are alive.")


class EtsRow(Result):
    id: str
    name: str
    size: int | None
    type: str | None
    protection: str | None
    memory_words: int | None


class EtsList(Result):
    total: int
    items: list[EtsRow]


class PortRow(Result):
    id: str
    name: str | None = Field(description="The port's name (the driver or command).")
    linked: bool


class PortList(Result):
    total: int
    items: list[PortRow]


class Dependencies(Result):
    pid: str
    name: str | None
    application: str | None
    status: str
    trap_exit: bool
    current_function: str | None
    upstream: Upstream
    downstream: Downstream
    ets_tables: EtsList = Field(description="ETS tables it owns (they go when it dies, unless an heir).")
    ports: PortList = Field(description="Ports it is the connected process of.")


class DependencyParams(Params):
    pid: str = Field(description=_PID_DESCRIPTION, max_length=300)
    limit: int = Field(50, ge=1, le=1000, description="At most this many items in each list.")


@register
class FindProcessDependencies(Operation[DependencyParams, Dependencies]):
    name = "find_process_dependencies"
    category = "relationships"
    summary = (
        "What a process depends on (supervisor chain, monitors, links, the call it is blocked in) and "
        "what depends on it (monitors, links, children), with its ETS tables and ports."
    )
    cost = (
        "One process_info of the process; one process_info(parent) per process to find its children, a "
        "pass over ets:all() and erlang:ports() for the ones it owns (about 0.3 s at 100 000 processes)."
    )
    risk = "None: reads only; no process is sent a message."
    params = DependencyParams
    result = Dependencies
    path = "/api/v1/processes/{pid}/dependencies"
    cli_name = "deps"
    timeout = 30.0
    example = {"pid": "code_server", "limit": 20}

    async def execute(self, ctx: Context, params: DependencyParams) -> Dependencies:
        node = ctx.require_node()
        raw = await _call(
            node, "dependencies", [process_ref(params.pid), params.limit, CALL_MS], self.timeout
        )
        raw = _check(raw, params.pid, node)
        lang = node.language
        up = raw[Atom("upstream")]
        down = raw[Atom("downstream")]
        blocked = up[Atom("blocked_on")]
        return Dependencies(
            pid=pid_text(raw[Atom("pid")]),
            name=name_text(raw[Atom("name")], lang),
            application=_text(raw[Atom("application")], lang),
            status=str(raw[Atom("status")]),
            trap_exit=raw[Atom("trap_exit")] is True,
            current_function=mfa_text(raw[Atom("current_function")], lang),
            upstream=Upstream(
                chain=[_related(item, node) for item in up[Atom("chain")]],
                monitors=_related_list(up[Atom("monitors")], node),
                linked=_related_list(up[Atom("linked")], node),
                blocked_on=None if blocked == Atom("undefined") else _blocked(blocked, node),
            ),
            downstream=Downstream(
                monitored_by=_related_list(down[Atom("monitored_by")], node),
                linked=_related_list(down[Atom("linked")], node),
                children=_related_list(down[Atom("children")], node),
            ),
            ets_tables=EtsList(
                total=raw[Atom("ets_tables")][Atom("total")],
                items=[_ets_row(item, node) for item in raw[Atom("ets_tables")][Atom("items")]],
            ),
            ports=PortList(
                total=raw[Atom("ports")][Atom("total")],
                items=[
                    PortRow(
                        id=_id(item[Atom("id")], lang, node.name) or "",
                        name=item[Atom("name")].decode(errors="replace")
                        if isinstance(item[Atom("name")], bytes)
                        else None,
                        linked=item[Atom("linked")] is True,
                    )
                    for item in raw[Atom("ports")][Atom("items")]
                ],
            ),
        )


def _related(item: dict[Any, Any], node: Node) -> RelatedProcess:
    language = node.language
    pid = item.get(Atom("pid"))
    kind = item.get(Atom("kind"))
    if kind is None and isinstance(pid, Port):
        kind = Atom("port")
    linked = item.get(Atom("linked"))
    return RelatedProcess(
        pid=_id(pid, language, node.name),
        name=name_text(item.get(Atom("name")), language),
        kind=_text(kind, language),
        application=_text(item.get(Atom("application")), language),
        by_name=name_text(item.get(Atom("by_name")), language),
        linked=None if linked is None else linked is True,
    )


def _related_list(raw: dict[Any, Any], node: Node) -> RelatedList:
    return RelatedList(total=raw[Atom("total")], items=[_related(item, node) for item in raw[Atom("items")]])


def _blocked(raw: dict[Any, Any], node: Node) -> BlockedCall:
    return BlockedCall(
        function=mfa_text(raw[Atom("function")], node.language) or "",
        detected_by=raw[Atom("detected_by")].decode(errors="replace"),
        candidates=[_related(item, node) for item in raw[Atom("candidates")]],
        certain=raw[Atom("certain")] is True,
    )


def _ets_row(item: dict[Any, Any], node: Node) -> EtsRow:
    language = node.language

    def word(key: str) -> str | None:
        value = item[Atom(key)]
        return None if value == Atom("undefined") else render(value, language)

    size = item[Atom("size")]
    memory = item[Atom("memory_words")]
    return EtsRow(
        id=render(item[Atom("id")], language, local_node=node.name),
        name=render(item[Atom("name")], language),
        size=size if isinstance(size, int) else None,
        type=word("type"),
        protection=word("protection"),
        memory_words=memory if isinstance(memory, int) else None,
    )
