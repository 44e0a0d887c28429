"""Cluster operations: every attached node at once, and what they know of each other.

An operation reaches every attached node through ``ctx.pool`` (the pool it runs with), so no
change to the pipeline was needed: these operations need no default node
(``needs_node = False``) and :func:`fan_out` calls each attached node concurrently, each with
its own timeout. A node that is down, too slow, not granted to the caller's key, or known only
through its peers (not attached) is listed in ``missing`` with why; the call itself fails only
when no node is attached at all. Work on each node is the single-node operation's own
(``list_processes`` ranks in the VM, ``get_supervision_tree`` walks in the VM), run through its
class with a context for that node, so filters, bounds and errors are the same.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from pydantic import Field, field_validator

from ..beam import Node
from ..dist import Term
from .base import Context, Operation, Params, Result
from .errors import ErrorCode, OperationError, as_operation_error
from .nodes import full_node_name
from .processes import ListProcesses, ListProcessesParams, ProcessRow, SortKey
from .registry import register
from .supervisors import GetSupervisionTree, SupervisionTree, TreeParams

__all__ = [
    "ClusterEventsOp",
    "ClusterHealthOp",
    "ClusterProcessListOp",
    "ClusterSupervisionTreesOp",
    "ClusterTopology",
    "FanOut",
    "Missing",
    "NodeInfoOp",
    "fan_out",
]

CATEGORY = "cluster"
CLUSTER_MODULE = "arsenal_agent_cluster"
DEFAULT_NODE_TIMEOUT_MS = 400
NOT_ATTACHED = "not_attached"
T = TypeVar("T")


class Missing(Result):
    node: str
    reason: str = Field(
        description="Why it is not in the result: node_down, timeout, forbidden (not granted to this "
        "key), not_attached (seen by its peers only), agent_error, remote_error..."
    )
    message: str


class NodeTimeoutParams(Params):
    node_timeout_ms: int = Field(
        DEFAULT_NODE_TIMEOUT_MS,
        ge=10,
        le=30_000,
        description="How long to wait for each node; slower ones are listed in `missing`.",
    )


# ====================================================================== fan-out


@dataclass
class FanOut(Generic[T]):
    """Each answering node's value (in attach order), how long it took, and who is missing."""

    results: dict[str, T] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    missing: list[Missing] = field(default_factory=list)


def cluster_nodes(ctx: Context) -> tuple[list[Node], list[Missing]]:
    """The attached nodes the caller may reach, and those its key is not granted."""
    nodes = ctx.pool.nodes
    if not nodes:
        raise OperationError(
            ErrorCode.not_found, "no node is attached; attach one node of the cluster first (discover=true)"
        )
    granted = ctx.principal.nodes
    if granted is None:
        return nodes, []
    refused = [
        Missing(node=n.name, reason="forbidden", message="this API key is not granted the node")
        for n in nodes
        if n.name not in granted
    ]
    return [n for n in nodes if n.name in granted], refused


async def fan_out(
    ctx: Context, call: Callable[[Node], Awaitable[T]], timeout: float, nodes: list[Node] | None = None
) -> FanOut[T]:
    """Run ``call`` on every attached node at once, each bounded by ``timeout`` seconds; a failure
    or a timeout puts that node in ``missing`` instead of failing the whole."""
    refused: list[Missing] = []
    if nodes is None:
        nodes, refused = cluster_nodes(ctx)

    async def one(node: Node) -> tuple[str, Any, float]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                value = await call(node)
        except TimeoutError:
            return (
                node.name,
                Missing(
                    node=node.name, reason="timeout", message=f"no answer within {timeout * 1000:.0f} ms"
                ),
                0.0,
            )
        except Exception as exc:
            error = as_operation_error(exc)
            return node.name, Missing(node=node.name, reason=error.code.value, message=error.message), 0.0
        return node.name, value, (time.perf_counter() - started) * 1000

    out: FanOut[T] = FanOut(missing=list(refused))
    for name, value, latency in await asyncio.gather(*(one(node) for node in nodes)):
        if isinstance(value, Missing):
            out.missing.append(value)
        else:
            out.results[name] = value
            out.latency_ms[name] = round(latency, 3)
    return out


def node_context(ctx: Context, node: Node) -> Context:
    """The context of a single-node operation run on ``node`` as part of a cluster one."""
    return replace(ctx, node=node)


async def facts_of(node: Node, timeout: float) -> dict[str, Any]:
    """``arsenal_agent_cluster:facts/0`` as plain Python values."""
    raw = await node.agent_call("facts", [], timeout, module=CLUSTER_MODULE)
    return {str(key): value for key, value in raw.items()}


def _names(value: Term) -> list[str]:
    return sorted(_text(item) for item in value) if isinstance(value, list) else []


def _text(value: Term) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


async def gather_facts(ctx: Context, timeout_ms: int) -> FanOut[dict[str, Any]]:
    """Every attached node's facts; visible members not attached are added to ``missing``."""
    facts = await fan_out(ctx, lambda node: facts_of(node, timeout_ms / 1000), timeout_ms / 1000)
    attached = {node.name for node in ctx.pool.nodes}
    reported: dict[str, list[str]] = {}
    for name, fact in facts.results.items():
        for peer in _names(fact["visible"]):
            if peer not in attached:
                reported.setdefault(peer, []).append(name)
    for peer, seers in sorted(reported.items()):
        facts.missing.append(
            Missing(
                node=peer,
                reason=NOT_ATTACHED,
                message=f"connected to {', '.join(sorted(seers))} but not attached to Arsenal; attach it "
                "(attach_node with discover=true attaches every peer)",
            )
        )
    return facts


# ====================================================================== topology


class Edge(Result):
    a: str
    b: str
    seen_by: list[str] = Field(description="Which of the two list the other in nodes() (both, normally).")


class TopologyNode(Result):
    node: str
    reachable: bool = Field(description="Arsenal got this node's own view (nodes()).")
    attached: bool
    visible: list[str] = Field(description="Its nodes() (at most 200).")
    hidden: list[str] = Field(
        description="Its nodes(hidden) (at most 200): tools like Arsenal, never attached."
    )


class Topology(Result):
    nodes: list[TopologyNode]
    edges: list[Edge]
    components: list[list[str]] = Field(
        description="Groups of nodes connected to each other, largest first: more than one is a partition."
    )
    partitioned: bool
    missing_edges: list[Edge] = Field(
        description="Pairs of cluster members not connected to each other (a full mesh has none); "
        "seen_by is empty."
    )
    hidden_nodes: list[str] = Field(description="Every hidden node any member reports (Arsenal among them).")
    arsenal_node: str = Field(description="Arsenal's own (hidden) node name.")
    missing: list[Missing]


def build_topology(ctx: Context, facts: FanOut[dict[str, Any]]) -> Topology:
    """The graph of who lists whom in nodes(), its connected components and its missing edges."""
    views = {name: set(_names(fact["visible"])) for name, fact in facts.results.items()}
    members = set(views)
    for view in views.values():
        members |= view
    seen: dict[frozenset[str], set[str]] = {}
    for name, view in views.items():
        for peer in view:
            seen.setdefault(frozenset((name, peer)), set()).add(name)
    edges = [
        Edge(a=min(pair), b=max(pair), seen_by=sorted(by))
        for pair, by in sorted(seen.items(), key=lambda item: sorted(item[0]))
    ]
    missing_edges = [
        Edge(a=a, b=b, seen_by=[])
        for a in sorted(members)
        for b in sorted(members)
        if a < b and frozenset((a, b)) not in seen and (a in views or b in views)
    ]
    attached = {node.name for node in ctx.pool.nodes}
    hidden: set[str] = set()
    rows = []
    for name in sorted(members | attached):  # attached but unreachable: a row, in no component
        fact = facts.results.get(name)
        if fact is not None:
            hidden |= set(_names(fact["hidden"]))
        rows.append(
            TopologyNode(
                node=name,
                reachable=fact is not None,
                attached=name in attached,
                visible=sorted(views.get(name, ())),
                hidden=_names(fact["hidden"]) if fact is not None else [],
            )
        )
    components = _components(members, seen)
    return Topology(
        nodes=rows,
        edges=edges,
        components=components,
        partitioned=len(components) > 1,
        missing_edges=missing_edges,
        hidden_nodes=sorted(hidden),
        arsenal_node=str(ctx.pool.local.name),
        missing=facts.missing,
    )


def _components(members: set[str], edges: dict[frozenset[str], set[str]]) -> list[list[str]]:
    neighbours: dict[str, set[str]] = {name: set() for name in members}
    for pair in edges:
        a, b = sorted(pair)
        neighbours[a].add(b)
        neighbours[b].add(a)
    components: list[list[str]] = []
    left = set(members)
    while left:
        start = min(left)
        group, todo = {start}, [start]
        while todo:
            for peer in neighbours[todo.pop()]:
                if peer not in group:
                    group.add(peer)
                    todo.append(peer)
        left -= group
        components.append(sorted(group))
    return sorted(components, key=lambda c: (-len(c), c))


@register
class ClusterTopology(Operation[NodeTimeoutParams, Topology]):
    name = "cluster_topology"
    category = CATEGORY
    summary = (
        "Who is connected to whom: every attached node's nodes(), the connected components "
        "(more than one is a partition), the missing edges of the mesh, and the hidden nodes."
    )
    cost = (
        "One call per attached node, all at once (O(1) counters and nodes() lists capped at 200), each "
        "bounded by node_timeout_ms; the graph is built in Arsenal (O(members²) for missing edges)."
    )
    risk = "None: reads only."
    params = NodeTimeoutParams
    result = Topology
    path = "/api/v1/cluster/topology"
    needs_node = False
    timeout = 40.0
    example = {"node_timeout_ms": 400}

    async def execute(self, ctx: Context, params: NodeTimeoutParams) -> Topology:
        return build_topology(ctx, await gather_facts(ctx, params.node_timeout_ms))


# ====================================================================== health


class NodeHealth(Result):
    node: str
    reachable: bool
    latency_ms: float | None = Field(description="Round trip of the health call, in Arsenal.")
    process_count: int | None
    process_limit: int | None
    memory_total: int | None = Field(description="Bytes (erlang:memory(total)).")
    run_queue: int | None = Field(description="statistics(total_run_queue_lengths).")
    schedulers_online: int | None
    alarms: list[str] = Field(description="SASL alarm_handler's alarms (when it runs), at most 20.")
    visible_nodes: int | None = Field(description="How many nodes it is connected to.")
    otp_release: str | None
    language: str | None
    uptime_seconds: float | None
    error: str | None = Field(description="Why it could not be read (unreachable nodes).")


class HealthReason(Result):
    node: str | None
    severity: str = Field(description="critical or warning.")
    reason: str


class ClusterHealth(Result):
    score: int = Field(description="100 is a healthy, fully meshed cluster; each reason takes points off.")
    status: str = Field(description="healthy (≥ 90), degraded (≥ 60) or critical.")
    reasons: list[HealthReason]
    nodes: list[NodeHealth]
    partitioned: bool
    components: list[list[str]]
    missing_edges: list[Edge]
    missing: list[Missing]


def _health_row(
    name: str, fact: dict[str, Any] | None, latency: float | None, error: str | None
) -> NodeHealth:
    if fact is None:
        return NodeHealth(
            node=name, reachable=False, latency_ms=None, process_count=None, process_limit=None,
            memory_total=None, run_queue=None, schedulers_online=None, alarms=[], visible_nodes=None,
            otp_release=None, language=None, uptime_seconds=None, error=error,
        )  # fmt: skip
    return NodeHealth(
        node=name,
        reachable=True,
        latency_ms=latency,
        process_count=fact["process_count"],
        process_limit=fact["process_limit"],
        memory_total=fact["memory_total"],
        run_queue=fact["run_queue"],
        schedulers_online=fact["schedulers_online"],
        alarms=[_text(a) for a in fact["alarms"]],
        visible_nodes=fact["visible_count"],
        otp_release=_text(fact["otp_release"]),
        language=str(fact["language"]),
        uptime_seconds=fact["uptime_ms"] / 1000,
        error=None,
    )


def score_health(rows: list[NodeHealth], topology: Topology) -> tuple[int, list[HealthReason]]:
    """Points off 100 for what an operator would want to know first, worst first."""
    reasons: list[tuple[int, HealthReason]] = []

    def add(points: int, node: str | None, severity: str, text: str) -> None:
        reasons.append((points, HealthReason(node=node, severity=severity, reason=text)))

    members = max(1, len(rows) + sum(1 for m in topology.missing if m.reason == NOT_ATTACHED))
    for missing in topology.missing:
        if missing.reason in (NOT_ATTACHED, "forbidden"):
            add(5, missing.node, "warning", f"{missing.reason}: {missing.message}")
        else:
            add(max(20, 60 // members), missing.node, "critical", f"{missing.reason}: {missing.message}")
    if topology.partitioned:
        parts = " | ".join(", ".join(c) for c in topology.components)
        add(45, None, "critical", f"partitioned into {len(topology.components)} parts: {parts}")
    elif topology.missing_edges:
        pairs = ", ".join(f"{e.a} - {e.b}" for e in topology.missing_edges[:10])
        add(15, None, "warning", f"not fully meshed; not connected: {pairs}")
    for row in rows:
        if not row.reachable:
            continue
        if row.alarms:
            add(10, row.node, "warning", f"{len(row.alarms)} alarm(s): {'; '.join(row.alarms[:3])}")
        if row.run_queue is not None and row.schedulers_online and row.run_queue > 4 * row.schedulers_online:
            add(5, row.node, "warning", f"run queue {row.run_queue} on {row.schedulers_online} schedulers")
        if row.process_count and row.process_limit and row.process_count > 0.8 * row.process_limit:
            add(10, row.node, "warning", f"{row.process_count} processes of {row.process_limit} allowed")
    reasons.sort(key=lambda item: (item[1].severity != "critical", -item[0]))
    return max(0, 100 - sum(points for points, _ in reasons)), [reason for _, reason in reasons]


@register
class ClusterHealthOp(Operation[NodeTimeoutParams, ClusterHealth]):
    name = "cluster_health"
    category = CATEGORY
    summary = (
        "Every attached node's reachability, latency, process count, memory, run queue and alarms, "
        "with partitions, and a cluster score with the reasons it is not 100."
    )
    cost = (
        "One call per attached node, all at once: O(1) counters the VM keeps, nodes() capped at 200 and "
        "one alarm_handler call (200 ms at most); each node bounded by node_timeout_ms."
    )
    risk = "None: reads only."
    params = NodeTimeoutParams
    result = ClusterHealth
    path = "/api/v1/cluster/health"
    needs_node = False
    timeout = 40.0
    example = {"node_timeout_ms": 400}

    async def execute(self, ctx: Context, params: NodeTimeoutParams) -> ClusterHealth:
        facts = await gather_facts(ctx, params.node_timeout_ms)
        topology = build_topology(ctx, facts)
        errors = {m.node: f"{m.reason}: {m.message}" for m in facts.missing}
        names = [node.name for node in ctx.pool.nodes if node.name in facts.results or node.name in errors]
        rows = [
            _health_row(name, facts.results.get(name), facts.latency_ms.get(name), errors.get(name))
            for name in names
        ]
        score, reasons = score_health(rows, topology)
        return ClusterHealth(
            score=score,
            status="healthy" if score >= 90 else "degraded" if score >= 60 else "critical",
            reasons=reasons,
            nodes=rows,
            partitioned=topology.partitioned,
            components=topology.components,
            missing_edges=topology.missing_edges,
            missing=facts.missing,
        )


# ====================================================================== node_info


class NodeInfoParams(Params):
    name: str = Field(max_length=460, description="The node, name@host (or name on this host).")
    node_timeout_ms: int = Field(2000, ge=10, le=30_000, description="How long to wait for the node.")


class NodeInfo(Result):
    node: str
    attached: bool
    connected: bool
    read_only: bool
    latency_ms: float
    otp_release: str
    language: str
    process_count: int
    process_limit: int
    memory_total: int
    run_queue: int
    schedulers_online: int
    uptime_seconds: float
    alarms: list[str]
    visible: list[str] = Field(description="Its nodes().")
    hidden: list[str] = Field(description="Its nodes(hidden).")


@register
class NodeInfoOp(Operation[NodeInfoParams, NodeInfo]):
    name = "node_info"
    category = CATEGORY
    summary = "One cluster member's facts: release, counts, memory, run queue, alarms and its connections."
    cost = "One call into that node: O(1) counters, nodes() capped at 200, one alarm_handler call."
    risk = "None: reads only."
    params = NodeInfoParams
    result = NodeInfo
    path = "/api/v1/cluster/nodes/{name}/info"
    needs_node = False
    example = {"name": "app@localhost"}

    async def execute(self, ctx: Context, params: NodeInfoParams) -> NodeInfo:
        full = full_node_name(params.name.strip())
        node = next((n for n in ctx.pool.nodes if n.name == full), None)
        if node is None:
            raise await _unknown_node(ctx, full)
        granted = ctx.principal.nodes
        if granted is not None and full not in granted:
            raise OperationError(ErrorCode.forbidden, f"this API key is not granted {full}")
        started = time.perf_counter()
        try:
            async with asyncio.timeout(params.node_timeout_ms / 1000):
                fact = await facts_of(node, params.node_timeout_ms / 1000)
        except TimeoutError:
            raise OperationError(
                ErrorCode.timeout, f"{full} did not answer within {params.node_timeout_ms} ms"
            ) from None
        latency = (time.perf_counter() - started) * 1000
        return NodeInfo(
            node=full,
            attached=True,
            connected=node.connected,
            read_only=node.read_only,
            latency_ms=round(latency, 3),
            otp_release=_text(fact["otp_release"]),
            language=str(fact["language"]),
            process_count=fact["process_count"],
            process_limit=fact["process_limit"],
            memory_total=fact["memory_total"],
            run_queue=fact["run_queue"],
            schedulers_online=fact["schedulers_online"],
            uptime_seconds=fact["uptime_ms"] / 1000,
            alarms=[_text(a) for a in fact["alarms"]],
            visible=_names(fact["visible"]),
            hidden=_names(fact["hidden"]),
        )


async def _unknown_node(ctx: Context, full: str) -> OperationError:
    """not_found, saying whether the node is a member that is only not attached."""
    if not ctx.pool.nodes:
        return OperationError(
            ErrorCode.not_found, f"{full} is not attached, and no node is: attach one first"
        )
    facts = await fan_out(ctx, lambda node: facts_of(node, 1.0), 1.0)
    seers = sorted(name for name, fact in facts.results.items() if full in _names(fact["visible"]))
    if seers:
        return OperationError(
            ErrorCode.not_found,
            f"{full} is connected to {', '.join(seers)} but not attached to Arsenal; attach it "
            "(POST /api/v1/nodes with its name, or discover=true)",
        )
    attached = ", ".join(n.name for n in ctx.pool.nodes)
    return OperationError(
        ErrorCode.not_found, f"{full} is not a known member of the cluster (attached: {attached})"
    )


# ====================================================================== process list

_CLUSTER_CURSOR = re.compile(r"^(\d+):([A-Za-z0-9_.@-]{1,460}):<0\.(\d+)\.(\d+)>$")
SMALLEST_PID = "<0.0.0>"


class ClusterProcessesParams(ListProcessesParams):
    cursor: str | None = Field(None, description="`next_cursor` of the previous page.")
    node_timeout_ms: int = Field(
        2000, ge=10, le=60_000, description="How long to wait for each node's scan; slower ones are missing."
    )

    @field_validator("cursor")
    @classmethod
    def _cursor_shape(cls, value: str | None) -> str | None:
        if value is not None and not _CLUSTER_CURSOR.match(value):
            raise ValueError("not a cursor returned by cluster_process_list")
        return value


class ClusterProcessRow(ProcessRow):
    node: str


class ClusterProcessList(Result):
    sort: SortKey
    process_count: int = Field(description="All processes on the nodes that answered.")
    process_counts: dict[str, int] = Field(description="By node.")
    processes: list[ClusterProcessRow] = Field(
        description="Largest first; ties by node name, then in each node's own order."
    )
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")
    missing: list[Missing]


def node_cursor(cursor: str | None, node: str) -> str | None:
    """A cluster cursor ``value:node:pid`` as the ``list_processes`` cursor for ``node``.

    The merged order is value (largest first), then node name, then each node's own order:
    after the cursor's row come, on its node, the rows after it there; on nodes named before it,
    rows with a smaller value; on nodes named after it, rows with a value up to the cursor's."""
    if cursor is None:
        return None
    value, cursor_node, number, serial = _CLUSTER_CURSOR.match(cursor).groups()  # type: ignore[union-attr]
    if node == cursor_node:
        return f"{value}:<0.{number}.{serial}>"
    if node < cursor_node:
        return f"{value}:{SMALLEST_PID}"
    return f"{int(value) + 1}:{SMALLEST_PID}"


@register
class ClusterProcessListOp(Operation[ClusterProcessesParams, ClusterProcessList]):
    name = "cluster_process_list"
    category = CATEGORY
    summary = (
        "The processes of every attached node, with list_processes' filters and sorting, ranked in "
        "each VM at once, merged and paged with a cursor; each row names its node."
    )
    cost = (
        "list_processes on every attached node at once (one process_info/2 per process and a bounded "
        "top-N in each VM: about 0.3 s at 100 000 processes per node), limit rows from each, merged in "
        "Arsenal. Each page is a new scan everywhere."
    )
    risk = "None beyond each node's scan time: nothing is suspended, traced or collected."
    params = ClusterProcessesParams
    result = ClusterProcessList
    path = "/api/v1/cluster/processes"
    needs_node = False
    timeout = 90.0
    example = {"sort_by": "memory", "limit": 20}

    async def execute(self, ctx: Context, params: ClusterProcessesParams) -> ClusterProcessList:
        base = params.model_dump(exclude={"cursor", "node_timeout_ms"})

        async def page(node: Node) -> Any:
            single = ListProcessesParams(**base, cursor=node_cursor(params.cursor, node.name))
            return await ListProcesses().execute(node_context(ctx, node), single)

        found = await fan_out(ctx, page, params.node_timeout_ms / 1000)
        ranked: list[tuple[int, str, int, ProcessRow]] = []
        key = params.sort_by.value
        for name, result in found.results.items():
            for index, row in enumerate(result.processes):
                ranked.append((-getattr(row, key), name, index, row))
        ranked.sort(key=lambda item: item[:3])
        rows = [
            ClusterProcessRow(**row.model_dump(), node=name) for _, name, _, row in ranked[: params.limit]
        ]
        more = len(ranked) > params.limit or any(
            len(r.processes) == params.limit for r in found.results.values()
        )
        next_cursor = None
        if rows and more and len(rows) == params.limit:
            last = rows[-1]
            next_cursor = f"{getattr(last, key)}:{last.node}:{last.pid}"
        counts = {name: result.process_count for name, result in found.results.items()}
        return ClusterProcessList(
            sort=params.sort_by,
            process_count=sum(counts.values()),
            process_counts=counts,
            processes=rows,
            next_cursor=next_cursor,
            missing=found.missing,
        )


# ====================================================================== supervision trees


class ClusterTreesParams(Params):
    max_depth: int = Field(4, ge=1, le=20, description="Levels below each node's roots.")
    max_nodes: int = Field(300, ge=1, le=2000, description="Tree nodes per cluster node.")
    node_timeout_ms: int = Field(5000, ge=10, le=60_000, description="How long to wait for each node.")


class ClusterSupervisionTrees(Result):
    trees: list[SupervisionTree] = Field(description="One per node that answered, in attach order.")
    missing: list[Missing]


@register
class ClusterSupervisionTreesOp(Operation[ClusterTreesParams, ClusterSupervisionTrees]):
    name = "cluster_supervision_trees"
    category = CATEGORY
    summary = "Every attached node's supervision trees (under each application's top supervisor), at once."
    cost = (
        "get_supervision_tree on every attached node at once: a scan of every process to find the roots, "
        "then one which_children and one sys:get_state per supervisor visited, bounded by max_depth and "
        "max_nodes per node."
    )
    risk = "None: reads only. A stuck supervisor shows as an error in its tree; a slow node is missing."
    params = ClusterTreesParams
    result = ClusterSupervisionTrees
    path = "/api/v1/cluster/supervision-trees"
    needs_node = False
    timeout = 90.0
    example = {"max_depth": 3}

    async def execute(self, ctx: Context, params: ClusterTreesParams) -> ClusterSupervisionTrees:
        tree_params = TreeParams(max_depth=params.max_depth, max_nodes=params.max_nodes)

        async def tree(node: Node) -> SupervisionTree:
            return await GetSupervisionTree().execute(node_context(ctx, node), tree_params)

        found = await fan_out(ctx, tree, params.node_timeout_ms / 1000)
        return ClusterSupervisionTrees(trees=list(found.results.values()), missing=found.missing)


# ====================================================================== events


class ClusterMember(Result):
    node: str
    status: str = Field(description="up (a followed node sees it), isolated (only Arsenal reaches it), down.")
    attached: bool
    connected: bool
    seen_by: list[str] = Field(description="The followed nodes that see it connected.")
    last_down_reason: str | None


class HiddenMember(Result):
    node: str
    seen_by: list[str]


class ClusterEvents(Result):
    following: bool = Field(description="Whether joins and leaves are being followed (discovery on).")
    auto_attach: bool = Field(description="Whether visible nodes that join are attached.")
    members: list[ClusterMember]
    hidden: list[HiddenMember] = Field(description="Hidden nodes reported (never attached).")
    events: list[dict[str, Any]] = Field(
        description="The latest join/leave events, oldest first: nodeup, nodedown (with observer, "
        "node_type, reason), attached, attach_failed, marked_down, isolated."
    )


class ClusterEventsParams(Params):
    limit: int = Field(100, ge=1, le=500, description="The latest this many events.")


@register
class ClusterEventsOp(Operation[ClusterEventsParams, ClusterEvents]):
    name = "cluster_events"
    category = CATEGORY
    summary = (
        "Cluster membership as followed since discovery was turned on: members with their status, hidden "
        "nodes, and the latest joins and leaves (also pushed live on the WebSocket's cluster channel)."
    )
    cost = "Nothing is sent to any node: what the followers recorded (at most 500 events)."
    risk = "None."
    params = ClusterEventsParams
    result = ClusterEvents
    path = "/api/v1/cluster/events"
    needs_node = False
    example = {"limit": 50}

    async def execute(self, ctx: Context, params: ClusterEventsParams) -> ClusterEvents:
        from ..cluster.membership import ClusterMembership

        membership = ctx.services.get(ClusterMembership)
        membership.bind(ctx.pool)
        events = list(membership.events)[-params.limit :]
        return ClusterEvents(
            following=membership.enabled,
            auto_attach=membership.auto_attach,
            members=[ClusterMember(**row) for row in membership.members()],
            hidden=[HiddenMember(**row) for row in membership.hidden()],
            events=events,
        )
