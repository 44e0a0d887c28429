"""The audit trail: every write and destructive operation, before it runs and after.

Rows go to SQLite (WAL, ``synchronous=NORMAL``) as they happen, on the caller's thread: an
``intent`` row is committed before the operation starts, a ``result`` row (outcome, error
code, duration) after it, and a ``refused`` row for a write the caller was not allowed. So a
crash of Arsenal (even SIGKILL) loses nothing already written: an intent without a result is
an operation that was running when Arsenal died.

Parameters are stored with secrets redacted (cookies, keys, tokens, passwords) and cut at
64 KiB (source code can be long).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

from ..ops.registry import AuditEvent
from ..store import Store

__all__ = ["AuditLog", "redact"]

_SECRET = re.compile(r"cookie|secret|password|passwd|token|api_key|^key$|authorization", re.IGNORECASE)
MAX_PARAMS = 64 * 1024
REDACTED = "[redacted]"


def redact(value: Any) -> Any:
    """``value`` with every field whose name says it is a secret replaced by ``[redacted]``."""
    if isinstance(value, dict):
        return {
            k: REDACTED if isinstance(k, str) and _SECRET.search(k) else redact(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _params_text(params: dict[str, Any]) -> str:
    text = json.dumps(redact(params), default=str)
    if len(text) > MAX_PARAMS:
        return json.dumps({"$truncated": True, "size": len(text), "head": text[:4096]})
    return text


class AuditLog:
    """The ``audit`` table; ``record`` is the registry's audit hook."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def record(self, event: AuditEvent) -> None:
        phase = (event.outcome and "result") or "intent"
        if event.outcome == "refused":
            phase = "refused"
        principal = event.principal
        self.store.write(
            "INSERT INTO audit (correlation_id, phase, time, principal, key_id, role, operation, severity, "
            "node, params, outcome, error_code, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.correlation_id,
                phase,
                time.time(),
                principal.name,
                principal.key_id,
                principal.role,
                event.operation,
                event.severity,
                event.node,
                _params_text(event.params),
                event.outcome,
                event.error_code,
                event.duration_ms,
            ),
        )

    def query(
        self,
        *,
        limit: int = 100,
        before: float | None = None,
        operation: str | None = None,
        principal: str | None = None,
        outcome: str | None = None,
        correlation_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first."""
        sql, args = self._where(before, operation, principal, outcome, correlation_id)
        rows = self.store.execute(
            f"SELECT * FROM audit {sql} ORDER BY time DESC, id DESC LIMIT ?", (*args, limit)
        )
        return [_entry(row) for row in rows]

    def export(self, **filters: Any) -> Iterator[str]:
        """Every matching entry as JSON lines, oldest first, read a page at a time."""
        sql, args = self._where(None, **filters)
        after = 0
        while True:
            extra = "AND" if sql else "WHERE"
            rows = self.store.execute(
                f"SELECT * FROM audit {sql} {extra} id > ? ORDER BY id LIMIT 1000", (*args, after)
            )
            if not rows:
                return
            for row in rows:
                yield json.dumps(_entry(row)) + "\n"
            after = rows[-1]["id"]

    @staticmethod
    def _where(
        before: float | None,
        operation: str | None = None,
        principal: str | None = None,
        outcome: str | None = None,
        correlation_id: str | None = None,
    ) -> tuple[str, list[Any]]:
        clauses, args = [], []
        for column, value in (
            ("operation", operation),
            ("principal", principal),
            ("correlation_id", correlation_id),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if outcome is not None:
            clauses.append("(outcome = ? OR phase = ?)")
            args += [outcome, outcome]
        if before is not None:
            clauses.append("time < ?")
            args.append(before)
        return ("WHERE " + " AND ".join(clauses) if clauses else ""), args


def _entry(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "time": row["time"],
        "phase": row["phase"],
        "correlation_id": row["correlation_id"],
        "principal": row["principal"],
        "key_id": row["key_id"],
        "role": row["role"],
        "operation": row["operation"],
        "severity": row["severity"],
        "node": row["node"],
        "params": json.loads(row["params"]),
        "outcome": row["outcome"],
        "error_code": row["error_code"],
        "duration_ms": row["duration_ms"],
    }
