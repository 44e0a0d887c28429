"""Nodes held read-only: attached read-only once, they stay so until an admin lifts it.

Keyed by node name (``name@host``), so detaching, attaching again, restarting Arsenal or the
node itself changes nothing; only :meth:`ReadOnlyNodes.lift` does.
"""

from __future__ import annotations

import time

from .db import Store

__all__ = ["ReadOnlyNodes"]


class ReadOnlyNodes:
    """The ``read_only_nodes`` table (see :class:`arsenal.beam.holds.ReadOnlyHolds`)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def held(self, node: str) -> bool:
        return bool(self.store.execute("SELECT 1 FROM read_only_nodes WHERE node = ?", (node,)))

    def hold(self, node: str) -> None:
        """Hold ``node`` read-only (since the first time; holding again changes nothing)."""
        self.store.write(
            "INSERT OR IGNORE INTO read_only_nodes (node, since) VALUES (?, ?)", (node, time.time())
        )

    def lift(self, node: str) -> bool:
        """Let writes reach ``node`` again; whether it was held."""
        return self.store.write("DELETE FROM read_only_nodes WHERE node = ?", (node,)) > 0

    def nodes(self) -> list[str]:
        return [row["node"] for row in self.store.execute("SELECT node FROM read_only_nodes ORDER BY node")]
