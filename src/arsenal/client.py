"""The Python API: an attached node with a typed method per operation.

    async with arsenal.attach("app@host") as node:
        page = await node.list_processes(sort_by="memory", limit=20)

Every method goes through the registry's pipeline, exactly as REST and the CLI
do. The methods are generated from the operations' parameter models, with real
signatures and docstrings (``help(node.list_processes)``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from .beam import Node, NodePool
from .beam.holds import HoldingPool
from .ops.base import Operation, Principal, Result, Services
from .ops.registry import registry
from .security.context import current_principal
from .store import ReadOnlyNodes

__all__ = ["Arsenal", "NodeClient"]


class Arsenal:
    """One Arsenal: the attached nodes and the operations, for programs that hold many nodes."""

    def __init__(
        self, *, cookie: str | None = None, principal: Principal | None = None, home: Path | None = None
    ) -> None:
        registry.discover()
        from .security import install

        install(registry)
        self.registry = registry
        self.principal = principal or Principal()
        # Live trace sessions and the store (ARSENAL_HOME, or ``home``) belong to this Arsenal.
        self.services = Services(home)
        # A node attached read-only stays so (in the store, by name) until an admin lifts it.
        self.pool: NodePool = HoldingPool(lambda: ReadOnlyNodes(self.services.store), cookie=cookie)

    async def attach(self, name: str, *, discover: bool = False, **options: Any) -> NodeClient:
        """Attach to ``name`` (options as :class:`arsenal.beam.Node`).

        ``read_only=True`` holds the node read-only, in this Arsenal's store, until it is lifted
        with ``read_only=False``; left out, a held node is attached read-only (see
        :mod:`arsenal.beam.holds`). Here the caller is this process, an admin: REST and the CLI
        go through the ``attach_node`` operation, which only admins may run.

        ``discover``: also attach the node's visible peers (``nodes()``; hidden ones are only
        reported), and from now on follow every attached node: visible nodes that join are
        attached, those that leave are marked down (see :mod:`arsenal.cluster.membership`)."""
        node = await self.pool.attach(name, **options)
        if discover:
            await self.discover(node.name, **options)
        return NodeClient(self, node)

    async def discover(self, name: str | None = None, **options: Any) -> Any:
        """Discover the cluster of attached node ``name`` (default: the first) and follow it;
        the :class:`arsenal.cluster.membership.Discovery` found."""
        from .cluster.membership import ClusterMembership

        membership = self.services.get(ClusterMembership)
        found = await membership.discover(self.pool, self.pool.get(name), attach=True, **options)
        membership.enable(self.pool, attach_new=True, **options)
        return found

    async def detach(self, name: str) -> None:
        await self.pool.detach(name)

    async def run(
        self,
        operation: str,
        params: dict[str, Any] | None = None,
        *,
        node: str | None = None,
        timeout: float | None = None,
        correlation_id: str | None = None,
        principal: Principal | None = None,
    ) -> Result:
        """Run any operation by name, through the whole pipeline (``timeout`` overrides the operation's;
        ``correlation_id`` names the call in audit and telemetry events, fresh by default;
        ``principal``, who is calling, defaults to this Arsenal's — the API passes the request's key)."""
        return await self.registry.run(
            operation,
            params,
            pool=self.pool,
            node=node,
            principal=principal or current_principal() or self.principal,
            timeout=timeout,
            correlation_id=correlation_id,
            services=self.services,
        )

    async def close(self) -> None:
        """Stop what this Arsenal runs (trace sessions end on their nodes), then detach every node."""
        await self.services.aclose()
        await self.pool.close()

    async def __aenter__(self) -> Arsenal:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class NodeClient:
    """An attached node, with one coroutine method per operation."""

    def __init__(self, arsenal: Arsenal, node: Node) -> None:
        self.arsenal = arsenal
        self.node = node

    @property
    def name(self) -> str:
        return self.node.name

    def __repr__(self) -> str:
        return f"<NodeClient {self.node.name}>"

    async def run(self, operation: str, **params: Any) -> Result:
        return await self.arsenal.run(operation, params, node=self.node.name)


def _method(operation: type[Operation[Any, Any]]) -> Callable[..., Coroutine[Any, Any, Result]]:
    async def method(self: NodeClient, **params: Any) -> Result:
        return await self.run(operation.name, **params)

    fields = operation.params.model_fields
    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)] + [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=inspect.Parameter.empty
            if info.is_required()
            else info.get_default(call_default_factory=True),
            annotation=info.annotation,
        )
        for name, info in fields.items()
    ]
    method.__name__ = method.__qualname__ = operation.name
    method.__signature__ = inspect.Signature(parameters, return_annotation=operation.result)  # type: ignore[attr-defined]
    method.__doc__ = f"{operation.summary}\n\nCost: {operation.cost}\nRisk: {operation.risk}"
    return method


def _install_methods() -> None:
    registry.discover()
    for operation in registry.all():
        if not hasattr(NodeClient, operation.name):
            setattr(NodeClient, operation.name, _method(operation))


_install_methods()
