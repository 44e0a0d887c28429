"""Arsenal: look inside, and operate, live Erlang and Elixir systems from Python.

    import arsenal

    async with arsenal.attach("app@host") as node:
        page = await node.list_processes(sort_by="memory", limit=10)

Layers (see ARCHITECTURE.md): ``arsenal.dist`` speaks the Erlang distribution
protocol, ``arsenal.beam`` holds attached nodes and the agent, ``arsenal.ops``
holds the operations, ``arsenal.cli`` presents them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from .beam import Node, NodePool
from .client import Arsenal, NodeClient

__version__ = "0.1.0"

__all__ = ["Arsenal", "Node", "NodeClient", "NodePool", "attach", "__version__"]


@asynccontextmanager
async def attach(name: str, *, cookie: str | None = None, **options: Any) -> AsyncIterator[NodeClient]:
    """Attach to one node for the length of an ``async with``; its operations are its methods.

    Options: ``read_only``, ``agent``, ``ssl``, ``timeout``, ``reconnect`` (see :class:`arsenal.beam.Node`).
    """
    async with Arsenal(cookie=cookie) as service:
        yield await service.attach(name, **options)
