"""Recordings of processes (messages in, states after) in the store.

One row per recording (table ``recordings``, migration 3). While it runs, the row holds
its spec and targets; when it ends, ``data`` holds the whole recording as
``zlib(term_to_binary(recording))`` — the map the agent built (``arsenal_agent_record``:
version, node, targets with their initial states, steps, end reason) — so a recording
is one blob to read back and decode with :func:`decode`.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass
from typing import Any

from ..dist.etf import binary_to_term
from ..dist.terms import Term
from .db import Store

__all__ = ["RecordingRow", "RecordingStore", "decode", "encode_from_node"]


@dataclass(frozen=True)
class RecordingRow:
    id: str
    node: str
    targets: list[str]
    spec: dict[str, Any]
    principal: str | None
    started_at: float
    ended_at: float | None
    end_reason: str | None
    steps: int
    bytes: int
    has_data: bool


def encode_from_node(compressed_etf: bytes) -> bytes:
    """The stored form of a recording that the node sent as ``term_to_binary(R, [compressed])``:
    that is ``131, 80, Size:32, zlib(ETF without its version byte)``; stored is
    ``zlib(131 ++ ETF)``, i.e. zlib of the plain external term format."""
    if len(compressed_etf) > 6 and compressed_etf[0] == 131 and compressed_etf[1] == 80:
        plain = b"\x83" + zlib.decompress(compressed_etf[6:])
    else:
        plain = compressed_etf
    return zlib.compress(plain, 6)


def decode(data: bytes) -> Term:
    """The recording a row's ``data`` holds."""
    return binary_to_term(zlib.decompress(data))


class RecordingStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    def create(
        self, id: str, node: str, targets: list[str], spec: dict[str, Any], principal: str | None
    ) -> None:
        self.store.write(
            "INSERT INTO recordings (id, node, targets, spec, principal, started_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (id, node, json.dumps(targets), json.dumps(spec), principal, time.time()),
        )

    def finish(self, id: str, reason: str, steps: int, size: int, data: bytes | None) -> None:
        self.store.write(
            "UPDATE recordings SET ended_at = ?, end_reason = ?, steps = ?, bytes = ?, data = ? WHERE id = ?",
            (time.time(), reason, steps, size, data, id),
        )

    def get(self, id: str) -> RecordingRow | None:
        rows = self.store.execute(
            "SELECT id, node, targets, spec, principal, started_at, ended_at, end_reason, steps, bytes, "
            "data IS NOT NULL FROM recordings WHERE id = ?",
            (id,),
        )
        return _row(rows[0]) if rows else None

    def data(self, id: str) -> bytes | None:
        rows = self.store.execute("SELECT data FROM recordings WHERE id = ?", (id,))
        return rows[0][0] if rows and rows[0][0] is not None else None

    def list(self, *, limit: int, node: str | None = None, pid: str | None = None) -> list[RecordingRow]:
        """Newest first; ``pid`` keeps the recordings of that process."""
        sql = (
            "SELECT id, node, targets, spec, principal, started_at, ended_at, end_reason, steps, bytes, "
            "data IS NOT NULL FROM recordings WHERE 1 = 1"
        )
        args: list[Any] = []
        if node is not None:
            sql += " AND node = ?"
            args.append(node)
        if pid is not None:
            sql += " AND targets LIKE ?"
            args.append(f'%"{pid}"%')
        sql += " ORDER BY started_at DESC LIMIT ?"
        args.append(limit)
        return [_row(row) for row in self.store.execute(sql, args)]

    def delete(self, id: str) -> bool:
        before = self.get(id)
        self.store.write("DELETE FROM recordings WHERE id = ?", (id,))
        return before is not None


def _row(row: Any) -> RecordingRow:
    return RecordingRow(
        id=row[0],
        node=row[1],
        targets=json.loads(row[2]),
        spec=json.loads(row[3]),
        principal=row[4],
        started_at=row[5],
        ended_at=row[6],
        end_reason=row[7],
        steps=row[8],
        bytes=row[9],
        has_data=bool(row[10]),
    )
