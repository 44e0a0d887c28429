"""Structured logs: one JSON object per line, with the correlation id of the request being served.

``arsenal serve --log-format json`` installs :class:`JsonFormatter` on a stderr handler of the root
logger (:func:`configure_logging`), so Arsenal's loggers and uvicorn's all write JSON lines. The
correlation id is the record's own ``correlation_id`` when the code that logged gave one (the
operation metrics do: the pipeline's event carries it), else the id of the HTTP request or
WebSocket being answered (the context variable set by :mod:`arsenal.api.correlation`), the same id
that is in the answer's ``meta``, its ``X-Correlation-ID`` header, error bodies and the audit trail.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

__all__ = ["LOG_FORMATS", "JsonFormatter", "configure_logging"]

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(levelname)s %(message)s"

# LogRecord's own attributes: anything else on a record came from ``extra=`` and is kept.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def _current_correlation_id() -> str | None:
    try:
        from ..api.correlation import current_correlation_id
    except ImportError:  # the API's dependencies are not installed: no request to follow
        return None
    return current_correlation_id()


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "correlation_id"?, "exception"?, extras...}``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        correlation_id = getattr(record, "correlation_id", None) or _current_correlation_id()
        if correlation_id:
            entry["correlation_id"] = correlation_id
        for key, value in vars(record).items():
            if key not in _STANDARD and key != "correlation_id" and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(
    log_format: str = "text", level: int = logging.WARNING, stream: IO[str] | None = None
) -> logging.Handler:
    """Send every log record at ``level`` or above to ``stream`` (stderr) as text or JSON lines.

    Replaces the root logger's handlers, so calling it again (or after ``logging.basicConfig``)
    switches the format rather than logging every line twice. Returns the handler.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r}: use one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
