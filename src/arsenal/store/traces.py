"""Finished and running trace sessions, and their events, in the store.

Events are stored as the JSON the API serves (one row each, keyed by session and
sequence number), so paging a session is an index range scan and an export is the
rows as they are, one JSON object per line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .db import Store

__all__ = ["TraceRecord", "TraceStore"]


@dataclass(frozen=True)
class TraceRecord:
    id: str
    node: str
    kind: str
    spec: dict[str, Any]
    principal: str | None
    started_at: float
    ended_at: float | None
    end_reason: str | None
    events: int
    dropped: int
    truncated: int


class TraceStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, id: str, node: str, kind: str, spec: dict[str, Any], principal: str | None) -> None:
        self.store.write(
            "INSERT INTO trace_sessions (id, node, kind, spec, principal, started_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (id, node, kind, json.dumps(spec), principal, time.time()),
        )

    def append(self, id: str, events: list[dict[str, Any]]) -> None:
        self.store.write_many(
            "INSERT OR IGNORE INTO trace_events (session_id, seq, time_us, kind, pid, data) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(id, e["seq"], e["time_us"], e["kind"], e.get("pid"), json.dumps(e)) for e in events],
        )

    def finish(self, id: str, reason: str, events: int, dropped: int, truncated: int) -> None:
        self.store.write(
            "UPDATE trace_sessions SET ended_at = ?, end_reason = ?, events = ?, dropped = ?, truncated = ? "
            "WHERE id = ?",
            (time.time(), reason, events, dropped, truncated, id),
        )

    def get(self, id: str) -> TraceRecord | None:
        rows = self.store.execute("SELECT * FROM trace_sessions WHERE id = ?", (id,))
        return _record(rows[0]) if rows else None

    def list(self, *, limit: int, before: float | None = None, node: str | None = None) -> list[TraceRecord]:
        """Newest first; ``before`` (a started_at) pages back."""
        sql = "SELECT * FROM trace_sessions WHERE 1 = 1"
        args: list[Any] = []
        if before is not None:
            sql += " AND started_at < ?"
            args.append(before)
        if node is not None:
            sql += " AND node = ?"
            args.append(node)
        sql += " ORDER BY started_at DESC LIMIT ?"
        args.append(limit)
        return [_record(row) for row in self.store.execute(sql, args)]

    def count_events(self, id: str) -> int:
        return int(self.store.execute("SELECT count(*) FROM trace_events WHERE session_id = ?", (id,))[0][0])

    def events(self, id: str, *, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.store.execute(
            "SELECT data FROM trace_events WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (id, after, limit),
        )
        return [json.loads(row[0]) for row in rows]

    def events_of_pid(self, node: str, pid: str, *, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """What any session on ``node`` recorded about ``pid``, newest first."""
        rows = self.store.execute(
            "SELECT e.session_id, e.data FROM trace_events e JOIN trace_sessions s ON s.id = e.session_id "
            "WHERE e.pid = ? AND s.node = ? ORDER BY e.time_us DESC LIMIT ?",
            (pid, node, limit),
        )
        return [(row[0], json.loads(row[1])) for row in rows]

    def export_lines(self, id: str, chunk: int = 1000) -> Iterator[str]:
        """Every event of a session as JSON lines, read a chunk at a time."""
        after = 0
        while True:
            rows = self.store.execute(
                "SELECT seq, data FROM trace_events WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (id, after, chunk),
            )
            if not rows:
                return
            for row in rows:
                yield row[1] + "\n"
            after = rows[-1][0]

    def delete(self, id: str) -> bool:
        return self.store.write("DELETE FROM trace_sessions WHERE id = ?", (id,)) > 0


def _record(row: Any) -> TraceRecord:
    return TraceRecord(
        id=row["id"],
        node=row["node"],
        kind=row["kind"],
        spec=json.loads(row["spec"]),
        principal=row["principal"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        end_reason=row["end_reason"],
        events=row["events"],
        dropped=row["dropped"],
        truncated=row["truncated"],
    )
