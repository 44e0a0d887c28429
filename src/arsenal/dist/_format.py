"""Short, always-safe text for terms inside error messages and logs.

``repr`` of a term from a peer can be huge, or fail outright (Python refuses to
print integers over 4300 digits); messages must never do either.
"""

from __future__ import annotations

from typing import Any

__all__ = ["brief"]


def brief(term: Any, limit: int = 200) -> str:
    """``repr(term)`` cut to ``limit`` characters; never raises."""
    try:
        text = repr(term)
    except (ValueError, RecursionError):  # an integer beyond Python's digit limit, or a deep term
        text = f"<{type(term).__name__} too large to show>"
    return text if len(text) <= limit else text[:limit] + "…"
