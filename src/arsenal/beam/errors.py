"""Errors of the attached-node layer (on top of :mod:`arsenal.dist.errors`)."""

from __future__ import annotations

from ..dist.errors import DistError

__all__ = ["AgentError", "AgentNotBuilt", "ReadOnlyNode", "UnknownNode"]


class AgentError(DistError):
    """The agent could not be loaded into, verified on, or called on the node."""


class AgentNotBuilt(AgentError):
    """The agent's .beam files are not in the package (run ``make agent``)."""


class ReadOnlyNode(DistError):
    """The node was attached read-only and the call would change it."""


class UnknownNode(DistError):
    """No node of that name is attached."""
