"""Arsenal: look inside, and operate, live Erlang and Elixir systems from Python.

    import arsenal

    async with arsenal.attach("app@host") as node:
        top = await arsenal.ops.processes.top_processes(node, "memory", 10)

Layers (see ARCHITECTURE.md): ``arsenal.dist`` speaks the Erlang distribution
protocol, ``arsenal.beam`` holds attached nodes and the agent, ``arsenal.ops``
holds the operations, ``arsenal.cli`` presents them.
"""

from __future__ import annotations

from typing import Any

from .beam import Node, NodePool

__version__ = "0.1.0"

__all__ = ["Node", "NodePool", "attach", "__version__"]


def attach(name: str, **options: Any) -> Node:
    """A node to use with ``async with``: connects and loads the agent on entry.

    Options: ``cookie``, ``read_only``, ``agent``, ``ssl``, ``timeout``, ``reconnect``.
    """
    return Node(name, **options)
