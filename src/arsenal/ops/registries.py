"""Distributed registries: ``global`` names, ``pg`` groups and Horde, on every attached node at once.

``cluster_registries`` asks each attached node (or the ones named in ``nodes``) for its own view
with one bounded agent call (``arsenal_agent_registry:snapshot/3``) through :func:`fan_out`, so a
slow or partitioned node is listed in ``missing`` and the rest still answer. Each node's view is
reported as it is, then merged:

- every ``global`` name once, with the pid each node resolves it to. When nodes disagree — each
  side of a partition registered the name for itself — it is a **conflict**, listed with every
  pid, the node it runs on and which nodes see it. Once the link heals, ``global`` resolves the
  clash itself (by default it kills one of the processes); the next call reports the conflicts
  it had seen that are now resolved, with the pid kept and the pids lost (and whether they
  still run).
- every ``pg`` group once per scope, with its members as each node sees them.

Horde is detected, never assumed: when neither the ``horde`` application nor its modules are
loaded on a node, that node's ``horde`` says ``present: false`` and why.

Names, groups and keys are shown in Erlang syntax (``'Elixir.MyApp.Registry'``), the same on every
node so that views can be merged; terms larger than 64 words arrive as text marked truncated.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator

from ..beam import Node
from ..dist import Atom, Pid, Term
from ..terms.render import render
from .base import Context, Operation, Params, Result, Services
from .cluster import CATEGORY, Missing, cluster_nodes, fan_out
from .errors import ErrorCode, OperationError
from .nodes import full_node_name
from .plain import pid_text
from .registry import register
from .targets import is_agent_error

__all__ = [
    "ClusterRegistries",
    "ClusterRegistriesOp",
    "ConflictMemory",
    "GlobalConflict",
    "NodeRegistries",
    "RegistriesParams",
    "RegistryKind",
]

REGISTRY_MODULE = "arsenal_agent_registry"
TRUNCATED = Atom("arsenal_truncated")
MAX_REMEMBERED = 200


class RegistryKind(StrEnum):
    global_ = "global"
    pg = "pg"
    horde = "horde"


# ====================================================================== params and results


class RegistriesParams(Params):
    nodes: list[str] | None = Field(
        None,
        max_length=100,
        description="Only these attached nodes (name@host); default: every attached node.",
    )
    kinds: list[RegistryKind] | None = Field(
        None, max_length=3, description="Which registries to read: global, pg, horde (default: all)."
    )
    limit: int = Field(
        200, ge=1, le=1000, description="global names, pg groups per scope and Horde keys per node."
    )
    member_limit: int = Field(
        50, ge=1, le=500, description="Members per pg group and children per Horde supervisor."
    )
    node_timeout_ms: int = Field(
        2000, ge=10, le=30_000, description="How long to wait for each node; slower ones are missing."
    )

    @field_validator("nodes")
    @classmethod
    def _node_names(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if any(len(name) > 460 for name in value):
            raise ValueError("a node name is at most 460 characters")
        return value


class ProcessAt(Result):
    pid: str = Field(description="<0.N.S> as written on the node it runs on.")
    node: str = Field(description="The node the process runs on.")


class GlobalName(Result):
    name: str
    pid: str
    node: str = Field(description="Where the process runs.")


class GlobalNames(Result):
    running: bool = Field(description="Whether global runs on the node (its name table exists).")
    count: int = Field(description="All names the node knows (the table's size).")
    names: list[GlobalName] = Field(description="At most `limit`, sorted by name.")
    truncated: bool


class PgGroup(Result):
    group: str
    member_count: int
    members: list[ProcessAt] = Field(description="At most `member_limit`, as this node knows them.")
    truncated: bool


class PgScope(Result):
    scope: str
    group_count: int
    groups: list[PgGroup] = Field(description="At most `limit`, sorted.")
    truncated: bool


class PgScopes(Result):
    scope_count: int = Field(description="pg scope processes running on the node (default scope: pg).")
    scopes: list[PgScope] = Field(description="At most 20.")
    truncated: bool


class HordeEntry(Result):
    key: str
    pid: str
    node: str
    value: str


class HordeRegistry(Result):
    name: str
    pid: str
    members: list[str] = Field(description="Horde.Cluster.members/1.")
    key_count: int | None
    entries: list[HordeEntry] = Field(description="At most `limit`.")
    truncated: bool
    error: str | None = Field(description="Why it could not be read (a Horde call failed or timed out).")


class HordeChild(Result):
    id: str
    pid: str | None
    node: str | None
    type: str | None


class HordeSupervisor(Result):
    name: str
    pid: str
    members: list[str] = Field(description="Horde.Cluster.members/1.")
    child_count: int | None = Field(description="Active children across the cluster (count_children).")
    children: list[HordeChild] = Field(
        description="which_children, asked only when child_count is at most `member_limit`."
    )
    truncated: bool
    error: str | None


class HordeInfo(Result):
    present: bool
    reason: str | None = Field(description="Why it is not present.")
    version: str | None = Field(description="The horde application's version, when it is loaded.")
    registries: list[HordeRegistry] = Field(description="At most 10.")
    supervisors: list[HordeSupervisor] = Field(description="At most 10.")


class NodeRegistries(Result):
    node: str
    global_names: GlobalNames | None = Field(description="global's names (null when not asked).")
    pg: PgScopes | None
    horde: HordeInfo | None


class GlobalView(Result):
    name: str
    agreed: bool = Field(description="Every node that lists the name resolves it to the same pid.")
    pid: str | None = Field(description="The pid when the nodes agree.")
    node: str | None = Field(description="Where that pid runs.")
    seen_by: dict[str, ProcessAt] = Field(description="Each answering node's resolution.")
    not_seen_by: list[str] = Field(
        description="Nodes that answered with their complete list and lack the name."
    )


class ConflictSide(Result):
    pid: str
    node: str = Field(description="Where this process runs.")
    seen_by: list[str] = Field(description="The nodes that resolve the name to it.")


class GlobalConflict(Result):
    name: str
    sides: list[ConflictSide] = Field(description="Two or more: one per pid the name resolves to.")
    message: str


class LostProcess(Result):
    pid: str
    node: str
    alive: bool | None = Field(description="Whether it still runs (null: its node did not answer).")


class ResolvedConflict(Result):
    name: str
    kept: ProcessAt | None = Field(description="The pid every node now agrees on; null: unregistered.")
    lost: list[LostProcess]
    message: str


class PgGroupView(Result):
    scope: str
    group: str
    members: list[ProcessAt] = Field(description="Every member any node lists (bounded per node).")
    member_counts: dict[str, int] = Field(description="How many members each answering node counts.")
    agreed: bool = Field(description="Every node with the scope counts the same members.")


class ClusterRegistries(Result):
    nodes: list[NodeRegistries] = Field(description="One per node that answered, in attach order.")
    global_names: list[GlobalView] = Field(description="Each global name once, sorted.")
    conflicts: list[GlobalConflict] = Field(description="Names the nodes resolve to different pids.")
    resolved: list[ResolvedConflict] = Field(
        description="Conflicts reported by an earlier call that the nodes now agree on."
    )
    pg_groups: list[PgGroupView] = Field(description="Each (scope, group) once, sorted.")
    missing: list[Missing]


# ====================================================================== reading one node


def _text(value: Term) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def term_text(value: Term) -> str:
    """A name, key or value in Erlang syntax; the agent's truncation marker as its text."""
    if isinstance(value, tuple) and len(value) == 2 and value[0] == TRUNCATED:
        return f"{_text(value[1])} (truncated)"
    return render(value, "erlang", max_items=50, max_binary=200)


def process_at(pid: Pid) -> ProcessAt:
    return ProcessAt(pid=pid_text(pid), node=str(pid.node))


def _get(raw: Any, key: str, default: Any = None) -> Any:
    return raw.get(Atom(key), default) if isinstance(raw, dict) else default


def parse_global(raw: Any) -> GlobalNames:
    rows = [
        GlobalName(name=term_text(name), pid=pid_text(pid), node=str(pid.node))
        for name, pid in _get(raw, "names", [])
        if isinstance(pid, Pid)
    ]
    return GlobalNames(
        running=_get(raw, "running") is True,
        count=_get(raw, "count", 0),
        names=sorted(rows, key=lambda row: row.name),
        truncated=_get(raw, "truncated") is True,
    )


def parse_pg(raw: Any) -> PgScopes:
    scopes = []
    for scope in _get(raw, "scopes", []):
        groups = [
            PgGroup(
                group=term_text(_get(group, "group")),
                member_count=_get(group, "member_count", 0),
                members=[process_at(p) for p in _get(group, "members", []) if isinstance(p, Pid)],
                truncated=_get(group, "truncated") is True,
            )
            for group in _get(scope, "groups", [])
        ]
        scopes.append(
            PgScope(
                scope=term_text(_get(scope, "scope")),
                group_count=_get(scope, "group_count", 0),
                groups=sorted(groups, key=lambda g: g.group),
                truncated=_get(scope, "truncated") is True,
            )
        )
    return PgScopes(
        scope_count=_get(raw, "scope_count", 0), scopes=scopes, truncated=_get(raw, "truncated") is True
    )


def _optional_text(value: Term) -> str | None:
    return None if value is None or value == Atom("undefined") else _text(value)


def _pid_fields(value: Term) -> tuple[str | None, str | None]:
    return (pid_text(value), str(value.node)) if isinstance(value, Pid) else (None, None)


def parse_horde(raw: Any) -> HordeInfo:
    if _get(raw, "present") is not True:
        return HordeInfo(
            present=False,
            reason=_optional_text(_get(raw, "reason")) or "Horde is not loaded",
            version=None,
            registries=[],
            supervisors=[],
        )
    registries = []
    for item in _get(raw, "registries", []):
        pid, _ = _pid_fields(_get(item, "pid"))
        entries = []
        for key, owner, value in _get(item, "entries", []):
            owner_pid, owner_node = _pid_fields(owner)
            entries.append(
                HordeEntry(
                    key=term_text(key),
                    pid=owner_pid or term_text(owner),
                    node=owner_node or "",
                    value=term_text(value),
                )
            )
        registries.append(
            HordeRegistry(
                name=term_text(_get(item, "name")),
                pid=pid or "",
                members=[term_text(m) for m in _get(item, "members", [])],
                key_count=_get(item, "key_count"),
                entries=entries,
                truncated=_get(item, "truncated") is True,
                error=_optional_text(_get(item, "error")),
            )
        )
    supervisors = []
    for item in _get(raw, "supervisors", []):
        pid, _ = _pid_fields(_get(item, "pid"))
        children = []
        for child in _get(item, "children", []):
            child_pid, child_node = _pid_fields(_get(child, "pid"))
            kind = _get(child, "type")
            children.append(
                HordeChild(
                    id=term_text(_get(child, "id")),
                    pid=child_pid,
                    node=child_node,
                    type=None if kind in (None, Atom("undefined")) else str(kind),
                )
            )
        count = _get(item, "child_count")
        supervisors.append(
            HordeSupervisor(
                name=term_text(_get(item, "name")),
                pid=pid or "",
                members=[term_text(m) for m in _get(item, "members", [])],
                child_count=count if isinstance(count, int) and not isinstance(count, bool) else None,
                children=children,
                truncated=_get(item, "truncated") is True,
                error=_optional_text(_get(item, "error")),
            )
        )
    return HordeInfo(
        present=True,
        reason=None,
        version=_optional_text(_get(raw, "version")),
        registries=registries,
        supervisors=supervisors,
    )


async def read_node(node: Node, params: RegistriesParams, kinds: list[str], timeout: float) -> NodeRegistries:
    """One node's registries: one bounded agent call."""
    raw = await node.agent_call(
        "snapshot",
        [params.limit, params.member_limit, [kind.encode() for kind in kinds]],
        timeout,
        module=REGISTRY_MODULE,
    )
    return NodeRegistries(
        node=node.name,
        global_names=parse_global(raw[Atom("global")]) if Atom("global") in raw else None,
        pg=parse_pg(raw[Atom("pg")]) if Atom("pg") in raw else None,
        horde=parse_horde(raw[Atom("horde")]) if Atom("horde") in raw else None,
    )


# ====================================================================== merging


def merge_global(views: list[NodeRegistries]) -> tuple[list[GlobalView], list[GlobalConflict]]:
    """Each name once with each node's resolution; names resolved to different pids are conflicts."""
    seen: dict[str, dict[str, ProcessAt]] = {}
    complete: list[str] = []
    for view in views:
        if view.global_names is None or not view.global_names.running:
            continue
        if not view.global_names.truncated:
            complete.append(view.node)
        for row in view.global_names.names:
            seen.setdefault(row.name, {})[view.node] = ProcessAt(pid=row.pid, node=row.node)
    merged: list[GlobalView] = []
    conflicts: list[GlobalConflict] = []
    for name in sorted(seen):
        by_node = seen[name]
        pids = {(at.pid, at.node) for at in by_node.values()}
        agreed = len(pids) == 1
        only = next(iter(pids)) if agreed else (None, None)
        merged.append(
            GlobalView(
                name=name,
                agreed=agreed,
                pid=only[0],
                node=only[1],
                seen_by=dict(sorted(by_node.items())),
                not_seen_by=[node for node in complete if node not in by_node],
            )
        )
        if not agreed:
            conflicts.append(_conflict(name, by_node))
    return merged, conflicts


def _conflict(name: str, by_node: dict[str, ProcessAt]) -> GlobalConflict:
    sides: dict[tuple[str, str], list[str]] = {}
    for viewer, at in by_node.items():
        sides.setdefault((at.pid, at.node), []).append(viewer)
    listed = [
        ConflictSide(pid=pid, node=node, seen_by=sorted(viewers))
        for (pid, node), viewers in sorted(sides.items(), key=lambda item: item[0][1])
    ]
    described = "; ".join(f"{s.pid} on {s.node} (seen by {', '.join(s.seen_by)})" for s in listed)
    return GlobalConflict(
        name=name,
        sides=listed,
        message=f"global name {name} resolves to {len(listed)} different processes: {described}. The nodes "
        "do not see each other (a partition); when they reconnect global keeps one and, by default, "
        "kills the others",
    )


def merge_pg(views: list[NodeRegistries]) -> list[PgGroupView]:
    """Each (scope, group) once: the union of members and each node's count."""
    members: dict[tuple[str, str], dict[tuple[str, str], ProcessAt]] = {}
    counts: dict[tuple[str, str], dict[str, int]] = {}
    scopes_on: dict[str, set[str]] = {}
    for view in views:
        if view.pg is None:
            continue
        for scope in view.pg.scopes:
            scopes_on.setdefault(scope.scope, set()).add(view.node)
            for group in scope.groups:
                key = (scope.scope, group.group)
                counts.setdefault(key, {})[view.node] = group.member_count
                for at in group.members:
                    members.setdefault(key, {})[(at.node, at.pid)] = at
    merged = []
    for key in sorted(counts):
        by_node = counts[key]
        full = {node: by_node.get(node, 0) for node in sorted(scopes_on[key[0]])}
        merged.append(
            PgGroupView(
                scope=key[0],
                group=key[1],
                members=[members[key][k] for k in sorted(members.get(key, {}))],
                member_counts=full,
                agreed=len(set(full.values())) == 1,
            )
        )
    return merged


# ====================================================================== resolved conflicts


class ConflictMemory:
    """Conflicts an earlier call reported, so the next one can say how global resolved them.

    One per Arsenal (a service, made by ``Services.get``); at most 200 names are remembered, the
    oldest dropped first."""

    def __init__(self, services: Services | None = None) -> None:
        self.conflicts: dict[str, GlobalConflict] = {}

    def remember(self, conflicts: Iterable[GlobalConflict]) -> None:
        for conflict in conflicts:
            self.conflicts.pop(conflict.name, None)
            self.conflicts[conflict.name] = conflict
        while len(self.conflicts) > MAX_REMEMBERED:
            self.conflicts.pop(next(iter(self.conflicts)))

    def settled(
        self, merged: list[GlobalView], answered: set[str], complete: set[str]
    ) -> list[tuple[GlobalConflict, GlobalView | None]]:
        """Remembered conflicts that the nodes now agree on, or that no node lists any more (said
        only when every node that saw the conflict answered with its complete list); forgotten."""
        by_name = {view.name: view for view in merged}
        done = []
        for name, conflict in list(self.conflicts.items()):
            viewers = {viewer for side in conflict.sides for viewer in side.seen_by}
            if not viewers <= answered:
                continue  # a side is not in this answer: nothing can be said yet
            view = by_name.get(name)
            if (view is not None and view.agreed) or (view is None and viewers <= complete):
                done.append((conflict, view))
                del self.conflicts[name]
        return done


async def resolved_conflicts(
    ctx: Context,
    memory: ConflictMemory,
    views: list[NodeRegistries],
    merged: list[GlobalView],
    timeout: float,
) -> list[ResolvedConflict]:
    """The remembered conflicts now settled: which pid was kept, which were lost and whether they run."""
    answered = {view.node for view in views if view.global_names is not None}
    complete = {view.node for view in views if view.global_names and not view.global_names.truncated}
    out = []
    for conflict, view in memory.settled(merged, answered, complete):
        kept = ProcessAt(pid=view.pid, node=view.node) if view and view.pid and view.node else None
        lost = []
        for side in conflict.sides:
            if kept is not None and (side.pid, side.node) == (kept.pid, kept.node):
                continue
            lost.append(LostProcess(pid=side.pid, node=side.node, alive=await _alive(ctx, side, timeout)))
        if kept is None:
            message = f"global name {conflict.name} is no longer registered on any node that answered"
        else:
            gone = ", ".join(f"{p.pid} on {p.node} ({'still running' if p.alive else 'gone'})" for p in lost)
            message = (
                f"global resolved the conflict on {conflict.name}: kept {kept.pid} on {kept.node}; "
                f"lost {gone}"
            )
        out.append(ResolvedConflict(name=conflict.name, kept=kept, lost=lost, message=message))
    return out


async def _alive(ctx: Context, side: ConflictSide, timeout: float) -> bool | None:
    """Whether the process still runs, asked of the node it ran on (None when that is not possible)."""
    node = next((n for n in ctx.pool.nodes if n.name == side.node), None)
    if node is None:
        return None
    try:
        raw = await node.agent_call("target", [side.pid.encode()], timeout)
        if is_agent_error(raw):
            return None
        return await node.call("erlang", "is_process_alive", [raw[1]], timeout) is True  # type: ignore[index]
    except Exception:  # its node went away meanwhile: unknown, never an error of the whole
        return None


# ====================================================================== the operation


def selected_nodes(ctx: Context, names: list[str] | None) -> tuple[list[Node], list[Missing]]:
    """The attached nodes asked (all, or those named) and the ones refused to this key."""
    nodes, refused = cluster_nodes(ctx)
    if names is None:
        return nodes, refused
    wanted = [full_node_name(name.strip()) for name in names]
    attached = {node.name for node in ctx.pool.nodes}
    unknown = [name for name in wanted if name not in attached]
    if unknown:
        raise OperationError(
            ErrorCode.not_found,
            f"not attached: {', '.join(unknown)}; attached nodes: {', '.join(sorted(attached))} "
            "(attach a node with discover=true to attach its peers)",
        )
    return [n for n in nodes if n.name in wanted], [m for m in refused if m.node in wanted]


@register
class ClusterRegistriesOp(Operation[RegistriesParams, ClusterRegistries]):
    name = "cluster_registries"
    category = CATEGORY
    summary = (
        "global names, pg groups and Horde registries/supervisors on every attached node, and merged: "
        "each global name once with whether the nodes agree (a conflict after a partition names both "
        "pids and nodes), each pg group with its members per node."
    )
    cost = (
        "One call per node, all at once, each bounded by node_timeout_ms: global's name table size "
        "(O(1)) and one ets:select of at most `limit` rows; pg scopes found among at most 10 000 "
        "registered names (an ets:info each, a dictionary read for candidates), `limit` groups and "
        "`member_limit` pids per group; Horde only when loaded: count then select (or a bounded read of "
        "its key table) per registry, count_children then which_children only up to `member_limit` "
        "children, each Horde call killed after 500 ms."
    )
    risk = (
        "None: reads only; nothing is registered, joined or resolved. Horde's which_children asks "
        "every member node, so it is skipped for supervisors with more than `member_limit` children."
    )
    params = RegistriesParams
    result = ClusterRegistries
    path = "/api/v1/cluster/registries"
    needs_node = False
    timeout = 40.0
    example = {"limit": 100, "member_limit": 20}

    async def execute(self, ctx: Context, params: RegistriesParams) -> ClusterRegistries:
        nodes, refused = selected_nodes(ctx, params.nodes)
        kinds = [kind.value for kind in (params.kinds or list(RegistryKind))]
        timeout = params.node_timeout_ms / 1000
        found = await fan_out(ctx, lambda node: read_node(node, params, kinds, timeout), timeout, nodes)
        views = list(found.results.values())
        merged, conflicts = merge_global(views)
        resolved: list[ResolvedConflict] = []
        if RegistryKind.global_.value in kinds:
            memory = ctx.services.get(ConflictMemory)
            resolved = await resolved_conflicts(ctx, memory, views, merged, timeout)
            memory.remember(conflicts)
        return ClusterRegistries(
            nodes=views,
            global_names=merged,
            conflicts=conflicts,
            resolved=resolved,
            pg_groups=merge_pg(views),
            missing=[*refused, *found.missing],
        )
