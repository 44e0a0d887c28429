"""Live readers of a stream of event batches (trace sessions, interceptions).

A watcher that falls behind loses batches, counted, instead of slowing the producer: a node's
tracer or proxy must never wait on a browser. Only the end marker (``None``) is always
delivered, making room for it if needed.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

__all__ = ["WATCHER_QUEUE", "Watcher"]

WATCHER_QUEUE = 1000


@dataclass
class Watcher:
    """One live reader: batches of rendered events, then ``None`` at the end."""

    queue: asyncio.Queue[list[dict[str, Any]] | None] = field(
        default_factory=lambda: asyncio.Queue(WATCHER_QUEUE)
    )
    dropped: int = 0

    def offer(self, batch: list[dict[str, Any]] | None, *, force: bool = False) -> None:
        """Queue ``batch``; when full, count it as dropped (``force``: make room, for the end marker)."""
        try:
            self.queue.put_nowait(batch)
        except asyncio.QueueFull:
            if not force:
                self.dropped += len(batch or [])
                return
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(batch)
