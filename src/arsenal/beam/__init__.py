"""``arsenal.beam`` — attached nodes: connect, agent, reconnect, many nodes at once."""

from .agent import AGENT_MODULE, AgentLoader
from .errors import AgentError, AgentNotBuilt, ReadOnlyNode, UnknownNode
from .node import Node, NodeInfo, NodePool

__all__ = [
    "AGENT_MODULE",
    "AgentError",
    "AgentLoader",
    "AgentNotBuilt",
    "Node",
    "NodeInfo",
    "NodePool",
    "ReadOnlyNode",
    "UnknownNode",
]
