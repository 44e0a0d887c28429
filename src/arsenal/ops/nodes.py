"""Node operations: which nodes this Arsenal is attached to, attaching more, detaching.

One Arsenal serves many nodes: these act on the pool of attached nodes
(:class:`arsenal.beam.NodePool`), not on a node, so they need none attached.
Attaching connects as a hidden node with the pool's cookie and loads the agent;
the name travels only to EPMD and in the handshake, never into an rpc on any
node, so it creates no atom anywhere but on the node being attached (which
learns Arsenal's own name, as any peer does: one of a small pool reused across
runs, see :mod:`arsenal.dist.naming`).

Read-only holds. A node attached read-only stays read-only, by name, in the store:
detaching it, attaching it again without ``read_only`` or restarting Arsenal leaves
it read-only (:mod:`arsenal.beam.holds`). Only an explicit ``read_only=false`` lifts
it, and attaching and detaching are admin operations, so only an admin can, on record
in the audit trail (whose rows name the node attached or detached). ``read_only=true``
on a node attached already makes it read-only at once; ``false`` lifts it in place.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from ..beam import Node
from ..dist import split_node_name
from .base import Context, NoParams, Operation, Params, Result, Severity
from .errors import ErrorCode, OperationError
from .registry import register

__all__ = ["AttachNode", "DetachNode", "ListNodes", "NodeRow"]

CATEGORY = "nodes"
_NODE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,200}(?:@[A-Za-z0-9_.-]{1,255})?$")


class NodeRow(Result):
    name: str
    connected: bool
    read_only: bool
    default: bool = Field(description="The node operations use when none is named.")
    language: str | None = Field(description="erlang or elixir; null when attached without the agent.")
    otp_release: str | None
    erts_version: str | None
    elixir_version: str | None = Field(None, description="The node's Elixir release; null without Elixir.")
    agent_version: str | None
    reconnects: int = Field(description="How many times the connection was re-established.")


def _row(node: Node, default: bool) -> NodeRow:
    try:
        info = node.info
    except Exception:  # attached without the agent: no facts to show
        info = None
    return NodeRow(
        name=node.name,
        connected=node.connected,
        read_only=node.read_only,
        default=default,
        language=info.language if info else None,
        otp_release=info.otp_release if info else None,
        erts_version=info.erts_version if info else None,
        elixir_version=info.elixir_version if info else None,
        agent_version=info.agent_version if info else None,
        reconnects=node.reconnects,
    )


class NodeList(Result):
    nodes: list[NodeRow]


@register
class ListNodes(Operation[NoParams, NodeList]):
    name = "list_nodes"
    category = CATEGORY
    summary = "The nodes this Arsenal is attached to, with their connection state, language and release."
    cost = "O(attached nodes): nothing is sent to any node."
    risk = "None."
    result = NodeList
    path = "/api/v1/nodes"
    needs_node = False
    example: dict[str, Any] = {}

    async def execute(self, ctx: Context, params: NoParams) -> NodeList:
        nodes = ctx.pool.nodes
        return NodeList(nodes=[_row(node, index == 0) for index, node in enumerate(nodes)])


def _named_node(params: Params | None) -> str | None:
    """The node an operation on the pool acts on (its ``name`` parameter, completed)."""
    name = getattr(params, "name", None)
    if not isinstance(name, str):
        return None
    try:
        return name if "@" in name else "@".join(split_node_name(name))
    except ValueError:
        return name


class NodeNameParams(Params):
    name: str = Field(max_length=460, description="name@host, or name for a node on this host.")

    @field_validator("name")
    @classmethod
    def _name_shape(cls, value: str) -> str:
        value = value.strip()
        if not _NODE_NAME.match(value):
            raise ValueError("not a node name (name@host, or name on this host)")
        return value


class AttachNodeParams(NodeNameParams):
    read_only: bool | None = Field(
        None,
        description="true: refuse every write and code loading on this node, and keep it so (across "
        "detach, attach and restarts of Arsenal) until an admin lifts it; false: lift it (audited); "
        "omitted: read-only if it was attached read-only before and not lifted since.",
    )
    reconnect: bool = Field(True, description="Reconnect by itself when the connection drops.")
    discover: bool = Field(
        False,
        description="Also attach the node's visible peers (nodes(); hidden ones are only reported) and "
        "follow the cluster: nodes that join are attached, those that leave are marked down.",
    )


class DiscoveryFailure(Result):
    node: str
    reason: str = Field(description="The error code attaching it failed with (forbidden: another cookie).")
    message: str


class DiscoveryResult(Result):
    visible: list[str] = Field(description="The node's nodes().")
    hidden: list[str] = Field(description="The node's nodes(hidden): reported, never attached.")
    attached: list[str]
    already_attached: list[str]
    failed: list[DiscoveryFailure]


class AttachedNode(Result):
    node: NodeRow
    already_attached: bool
    discovery: DiscoveryResult | None = Field(None, description="With discover=true: what was found.")


def full_node_name(name: str) -> str:
    """``name@host`` as given, or a short ``name`` completed with this host, as Erlang does."""
    try:
        return name if "@" in name else "@".join(split_node_name(name))
    except ValueError as exc:
        raise OperationError(ErrorCode.validation_error, f"{exc}; a node is name@host") from None


@register
class AttachNode(Operation[AttachNodeParams, AttachedNode]):
    name = "attach_node"
    category = CATEGORY
    summary = (
        "Attach to one more node (admin), with the pool's cookie; read-only, if asked, holds until an "
        "admin lifts it."
    )
    cost = "An EPMD lookup, a distribution handshake, and loading the agent's modules unless already loaded."
    risk = (
        "Loads Arsenal's agent modules into the node (a few small modules; nothing runs until called). "
        "The node sees Arsenal as a hidden peer."
    )
    params = AttachNodeParams
    result = AttachedNode
    severity = Severity.write
    admin_only = True
    method = "POST"
    path = "/api/v1/nodes"
    needs_node = False
    timeout = 30.0
    example = {"name": "app@localhost", "read_only": True}

    @classmethod
    def target_node(cls, ctx: Context, params: Params | None) -> str | None:
        return _named_node(params)

    async def execute(self, ctx: Context, params: AttachNodeParams) -> AttachedNode:
        full = full_node_name(params.name)
        existing = next((n for n in ctx.pool.nodes if n.name == full), None)
        # Left out, read_only is the pool's to decide (a node held read-only stays so).
        mode = {} if params.read_only is None else {"read_only": params.read_only}
        node = await ctx.pool.attach(full, reconnect=params.reconnect, **mode)
        default = ctx.pool.nodes[0] is node
        discovery = await _discover(ctx, node, params) if params.discover else None
        return AttachedNode(
            node=_row(node, default), already_attached=existing is not None, discovery=discovery
        )


async def _discover(ctx: Context, node: Node, params: AttachNodeParams) -> DiscoveryResult:
    """Attach the node's visible peers the same way, and follow the cluster from now on."""
    from ..cluster.membership import ClusterMembership

    membership = ctx.services.get(ClusterMembership)
    # Peers are held read-only with the seed, never lifted by it: read_only=false is for one node.
    options = {"read_only": True if params.read_only else None, "reconnect": params.reconnect}
    found = await membership.discover(ctx.pool, node, attach=True, **options)
    membership.enable(ctx.pool, attach_new=True, **options)
    return DiscoveryResult(
        visible=found.visible,
        hidden=found.hidden,
        attached=found.attached,
        already_attached=found.already_attached,
        failed=[DiscoveryFailure(**failure) for failure in found.failed],
    )


class DetachedNode(Result):
    name: str
    remaining: list[str] = Field(description="The nodes still attached.")


@register
class DetachNode(Operation[NodeNameParams, DetachedNode]):
    name = "detach_node"
    category = CATEGORY
    summary = (
        "Detach from a node (admin): close the connection and stop reconnecting; the agent stays loaded "
        "and a node held read-only stays so."
    )
    cost = "Closing one connection."
    risk = "Operations in flight on that node fail with node_down; the node itself is untouched."
    params = NodeNameParams
    result = DetachedNode
    severity = Severity.write
    admin_only = True
    method = "DELETE"
    path = "/api/v1/nodes/{name}"
    needs_node = False
    example = {"name": "app@localhost"}

    @classmethod
    def target_node(cls, ctx: Context, params: Params | None) -> str | None:
        return _named_node(params)

    async def execute(self, ctx: Context, params: NodeNameParams) -> DetachedNode:
        full = full_node_name(params.name)
        if all(n.name != full for n in ctx.pool.nodes):
            attached = ", ".join(n.name for n in ctx.pool.nodes) or "none"
            raise OperationError(ErrorCode.not_found, f"{params.name} is not attached (attached: {attached})")
        await ctx.pool.detach(full)
        return DetachedNode(name=full, remaining=[n.name for n in ctx.pool.nodes])
