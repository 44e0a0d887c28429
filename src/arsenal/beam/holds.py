"""Read-only that holds: a node attached read-only stays read-only until it is lifted on purpose.

:class:`HoldingPool` is a :class:`NodePool` that asks a record of held nodes (Arsenal keeps it
in its store, by node name) on every attach, whoever attaches — an operation, the server at
start-up, cluster discovery, the Python API:

* ``read_only=True`` holds the node read-only from now on;
* ``read_only=False`` lifts the hold (callers above make sure only an admin can ask that);
* ``read_only`` left out (None) keeps whatever holds: a held node is attached read-only.

So detaching and attaching again, or restarting Arsenal, never lifts it. A node attached
already changes mode in place. A bare :class:`Node` knows nothing of holds: it is the layer
below this policy, as it is below authorization and audit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from ..dist import split_node_name
from .node import Node, NodePool

__all__ = ["HoldingPool", "ReadOnlyHolds"]

log = logging.getLogger("arsenal.beam")


class ReadOnlyHolds(Protocol):
    """Where holds are kept (Arsenal: :class:`arsenal.store.ReadOnlyNodes`)."""

    def held(self, node: str) -> bool: ...

    def hold(self, node: str) -> None: ...

    def lift(self, node: str) -> bool: ...


class HoldingPool(NodePool):
    """A pool whose read-only attachments hold (see the module docstring)."""

    def __init__(self, holds: Callable[[], ReadOnlyHolds], **options: Any) -> None:
        super().__init__(**options)
        self._holds = holds  # called when needed: the record may be opened lazily

    async def attach(self, name: str, *, read_only: bool | None = None, **options: Any) -> Node:
        full = name if "@" in name else "@".join(split_node_name(name))
        existing = next((node for node in self.nodes if node.name == full), None)
        mode = self.decide(full, read_only, existing is not None and existing.read_only)
        if existing is not None:
            existing.read_only = mode
            return existing
        return await super().attach(full, read_only=mode, **options)

    def decide(self, node: str, requested: bool | None, current: bool = False) -> bool:
        """Whether ``node`` is read-only once attached with ``requested``; records a hold or a lift.

        If the record cannot be read (an unusable store), a node is attached read-only: reads
        still work, and nothing is written to a node that may be held. A lift that cannot be
        recorded fails."""
        if requested is False:
            if self._holds().lift(node) or current:
                log.warning("read-only lifted on %s", node)
            return False
        try:
            holds = self._holds()
            if requested is True:
                holds.hold(node)
                return True
            return current or holds.held(node)
        except Exception as exc:  # whatever the record's failure, the safe answer is read-only
            log.warning("cannot read or record read-only holds (%s): %s is attached read-only", exc, node)
            return True
