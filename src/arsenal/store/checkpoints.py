"""Checkpoints in the store: named snapshots of a process's state (or an ETS table's rows).

The term is kept as zlib-compressed external term format, exactly as the node sent it, so a
rollback puts back the very same term; ``info`` is JSON (the process's facts when it was taken).
A checkpoint belongs to a node and a target: a pid's text, or ``ets:<table>`` for a table.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass
from typing import Any

from ..dist.etf import binary_to_term, term_to_binary
from ..dist.terms import Term
from .db import Store

__all__ = ["Checkpoint", "CheckpointStore"]


@dataclass(frozen=True)
class Checkpoint:
    id: int
    node: str
    target: str
    kind: str
    name: str
    module: str | None
    created_at: float
    principal: str | None
    info: dict[str, Any]
    size: int
    blob: bytes

    def term(self) -> Term:
        return binary_to_term(zlib.decompress(self.blob))


class CheckpointStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    def create(
        self,
        *,
        node: str,
        target: str,
        kind: str,
        name: str,
        module: str | None,
        principal: str | None,
        info: dict[str, Any],
        term: Term,
    ) -> Checkpoint:
        encoded = term_to_binary(term)
        blob = zlib.compress(encoded, 6)
        self.store.write(
            "INSERT INTO checkpoints (node, target, kind, name, module, created_at, principal, info, "
            "term, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (node, target, kind, name, module, time.time(), principal, json.dumps(info), blob, len(encoded)),
        )
        found = self.get(node, target, name)
        assert found is not None
        return found

    def get(self, node: str, target: str, name: str) -> Checkpoint | None:
        rows = self.store.execute(
            "SELECT * FROM checkpoints WHERE node = ? AND target = ? AND name = ?", (node, target, name)
        )
        return _checkpoint(rows[0]) if rows else None

    def find(self, node: str, targets: list[str], name: str) -> Checkpoint | None:
        """The newest checkpoint ``name`` of any of ``targets`` (a pid and the name it is registered as)."""
        marks = ", ".join("?" for _ in targets)
        rows = self.store.execute(
            f"SELECT * FROM checkpoints WHERE node = ? AND target IN ({marks}) AND name = ? "
            "ORDER BY created_at DESC LIMIT 1",
            (node, *targets, name),
        )
        return _checkpoint(rows[0]) if rows else None

    def list(self, node: str, targets: list[str], *, limit: int = 100) -> list[Checkpoint]:
        marks = ", ".join("?" for _ in targets)
        rows = self.store.execute(
            f"SELECT * FROM checkpoints WHERE node = ? AND target IN ({marks}) "
            "ORDER BY created_at DESC LIMIT ?",
            (node, *targets, limit),
        )
        return [_checkpoint(row) for row in rows]

    def delete(self, checkpoint_id: int) -> bool:
        return self.store.write("DELETE FROM checkpoints WHERE id = ?", (checkpoint_id,)) > 0


def _checkpoint(row: Any) -> Checkpoint:
    return Checkpoint(
        id=row["id"],
        node=row["node"],
        target=row["target"],
        kind=row["kind"],
        name=row["name"],
        module=row["module"],
        created_at=row["created_at"],
        principal=row["principal"],
        info=json.loads(row["info"]),
        size=row["size"],
        blob=bytes(row["term"]),
    )
