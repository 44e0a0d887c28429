"""The agent's truncation marker, read back as what it means: how much of a large term is missing.

No operation ships an unbounded term from a node: the agent cuts large ones and marks each cut
with ``'$arsenal_truncated'``, in one of these shapes:

* ``{'$arsenal_truncated', #{binary_bytes => N, head => Bin}}``: a binary of N bytes, its head;
* ``{'$arsenal_truncated', #{tuple_size => N, head => Items}}``: a tuple of N elements, its first;
* ``[..., {'$arsenal_truncated', more_items}]``: a list whose later elements were left out;
* ``#{..., '$arsenal_truncated' => #{map_size => N}}``: a map of N pairs, some of them;
* ``{'$arsenal_truncated', too_deep}``: a term nested deeper than the agent copies;
* ``{'$arsenal_truncated', Bytes, Preview}``, ``{'$arsenal_truncated', Bytes}``,
  ``{'$arsenal_truncated', Preview}``, ``{'$arsenal_truncated', Tag}`` and the bare atom: a
  whole value replaced by its size, a printed prefix, its first element, or nothing.

People see none of that: :func:`arsenal.terms.render` and the plain JSON of results show a cut as
``…(N more)`` (``…(N more bytes)``, ``…(more)`` when the count is unknown) where the missing part
was. This module is the one place that knows the shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from arsenal.dist.terms import Atom, Term

__all__ = ["MARKER", "Cut", "cut_of", "is_cut_key", "list_cut", "map_cut", "note"]

MARKER = Atom("$arsenal_truncated")
_MORE_ITEMS = Atom("more_items")
_TOO_DEEP = Atom("too_deep")


@dataclass(frozen=True, slots=True)
class Cut:
    """One marker, read: ``kind`` is ``binary`` / ``tuple`` (``kept`` is the head, ``total`` the
    full size), ``preview`` (``kept`` is text), ``tagged`` (``kept`` is the term's first element),
    or ``note`` (nothing kept; ``text`` says what is missing)."""

    kind: str
    kept: Any = None
    total: int | None = None
    text: str = "…"


def note(more: int | None, unit: str = "") -> str:
    """``…(12 more)``, ``…(12 more bytes)``, or ``…(more)`` when the count is unknown."""
    if more is None:
        return "…(more)"
    return f"…({more} more{' ' + unit if unit else ''})"


def cut_of(term: Term) -> Cut | None:
    """The cut ``term`` stands for, or None when it is not a marker (the common case, checked fast)."""
    if type(term) is Atom:
        return Cut("note") if term == MARKER else None
    if type(term) is not tuple or not term or type(term[0]) is not Atom or term[0] != MARKER:
        return None
    return _read(term[1:])


def _read(rest: tuple[Any, ...]) -> Cut:
    if len(rest) == 1 and isinstance(rest[0], dict):
        return _from_map(rest[0])
    if len(rest) == 1:
        return _from_one(rest[0])
    if len(rest) == 2 and type(rest[0]) is int and isinstance(rest[1], bytes):
        return Cut("preview", rest[1].decode(errors="replace"), text=f"…({rest[0]} bytes in all)")
    return Cut("note", text="…(truncated)")


def _from_map(info: dict[Any, Any]) -> Cut:
    head = info.get(Atom("head"))
    if type(info.get(Atom("binary_bytes"))) is int and isinstance(head, bytes):
        return Cut("binary", head, info[Atom("binary_bytes")])
    if type(info.get(Atom("tuple_size"))) is int and isinstance(head, list):
        return Cut("tuple", tuple(head), info[Atom("tuple_size")])
    return Cut("note", text="…(truncated)")


def _from_one(value: Any) -> Cut:
    if value == _MORE_ITEMS:
        return Cut("note", text=note(None))
    if value == _TOO_DEEP:
        return Cut("note", text="…(nested too deep)")
    if type(value) is int:
        return Cut("note", text=f"…({value} bytes)")
    if isinstance(value, bytes):
        return Cut("preview", value.decode(errors="replace"), text="…")
    if type(value) is Atom:
        return Cut("tagged", value)
    return Cut("note", text="…(truncated)")


def list_cut(items: Any) -> bool:
    """Whether ``items`` (a list) ends with the marker of left-out elements."""
    return type(items) is list and bool(items) and _is_more_items(items[-1])


def _is_more_items(last: Any) -> bool:
    return type(last) is tuple and len(last) == 2 and last[0] == MARKER and last[1] == _MORE_ITEMS


def is_cut_key(key: Any) -> bool:
    return type(key) is Atom and key == MARKER


def map_cut(term: Any) -> int | None:
    """For a map the agent cut, how many pairs it had (``-1`` if unknown); None for any other map."""
    if type(term) is not dict or MARKER not in term:
        return None
    info = term[MARKER]
    size = info.get(Atom("map_size")) if isinstance(info, dict) else None
    return size if type(size) is int else -1
