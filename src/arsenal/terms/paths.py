"""Paths into terms: name a part of a process state, read it, replace it, merge into it.

A path is a list of segments. A ``str`` segment is a map key: it matches an atom key of that
name or a binary key with those UTF-8 bytes (never anything else, and it never creates an
atom: a segment that names no existing key is an error listing the keys that are there). An
``int`` segment is a 0-based index into a tuple or a list, or, in a map, an integer key.

``parse_path("users.alice.count")`` and ``parse_path('items[0].name')`` give
``["users", "alice", "count"]`` and ``["items", 0, "name"]``; a key with dots or brackets is
written quoted, ``config["a.b"]``.

Paths produced by :func:`arsenal.terms.diff.diff_terms` use the same conventions, so a change
it reports can be read back with :func:`get_in`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from arsenal.dist.terms import Atom, StrictKey, Term
from arsenal.terms.render import Language, render

__all__ = [
    "MAX_PATH",
    "Path",
    "PathError",
    "deep_merge",
    "format_path",
    "get_in",
    "key_text",
    "parse_path",
    "put_in",
]

Segment = str | int
Path = list[Segment]

MAX_PATH = 100
"""Most segments in a path (as deep as a term may nest)."""
MAX_PATH_TEXT = 4096
"""Longest path text accepted, in characters."""
_SHOWN_KEYS = 20
"""How many keys an error lists before saying how many more there are."""


class PathError(ValueError):
    """The path does not fit the term (or is not a path); ``index`` is the failing segment's position."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.index = index


# ---------------------------------------------------------------------------------- path text

_PLAIN = re.compile(r"[^.\[\]\"\s]+")
_INDEX = re.compile(r"\[\s*(-?\d+)\s*\]")
_QUOTED = re.compile(r'\[\s*("(?:[^"\\]|\\.)*")\s*\]')


def parse_path(text: str | list[Any]) -> Path:
    """``"a.b[0].c"`` → ``["a", "b", 0, "c"]``; empty text is the whole term; a list is checked."""
    if isinstance(text, list):
        return _checked(text)
    if not isinstance(text, str):
        raise PathError("a path is text such as users.alice.count or items[0].name")
    if len(text) > MAX_PATH_TEXT:
        raise PathError(f"the path is {len(text)} characters long; at most {MAX_PATH_TEXT} are allowed")
    path: Path = []
    pos, text = 0, text.strip()
    while pos < len(text):
        if path and text[pos] == ".":
            pos += 1
            found = _PLAIN.match(text, pos)
            if found is None:
                raise PathError(f"expected a key after '.' at character {pos + 1} of {text!r}")
            path.append(_plain_segment(found.group()))
        elif (found := _INDEX.match(text, pos)) is not None:
            path.append(_index(int(found.group(1)), len(path)))
        elif (found := _QUOTED.match(text, pos)) is not None:
            path.append(json.loads(found.group(1)))
        elif not path and (found := _PLAIN.match(text, pos)) is not None:
            path.append(_plain_segment(found.group()))
        else:
            raise PathError(
                f"unexpected {text[pos]!r} at character {pos + 1} of {text!r}: write keys as a.b, "
                'indexes as [0], keys with dots as ["a.b"]'
            )
        pos = found.end()
    return _checked(path)


def _plain_segment(word: str) -> Segment:
    """A bare segment: digits are an index (``a.0`` is ``a[0]``), anything else a key."""
    return int(word) if word.isdigit() else word


def _index(value: int, position: int) -> int:
    if value < 0:
        raise PathError(f"segment {position + 1}: an index counts from 0, not {value}", position)
    return value


def _checked(path: list[Any]) -> Path:
    if len(path) > MAX_PATH:
        raise PathError(f"the path has {len(path)} segments; at most {MAX_PATH} are allowed")
    for position, segment in enumerate(path):
        if type(segment) is int:
            _index(segment, position)
        elif type(segment) is not str:
            raise PathError(
                f"segment {position + 1} is {segment!r}: a segment is a key (text) or an index (integer)",
                position,
            )
    return list(path)


def format_path(path: Path) -> str:
    """The text :func:`parse_path` reads back as ``path``."""
    out: list[str] = []
    for segment in path:
        if type(segment) is int:
            out.append(f"[{segment}]")
        elif _PLAIN.fullmatch(segment) and not segment.isdigit():
            out.append(("." if out else "") + segment)
        else:
            out.append(f"[{json.dumps(segment, ensure_ascii=False)}]")
    return "".join(out)


# --------------------------------------------------------------------------------- walking


def key_text(key: Term, language: Language = "erlang") -> str | int:
    """A map key as a path segment: atoms and UTF-8 binaries by name, integers as is, others rendered."""
    if type(key) is StrictKey:
        key = key.value
    if type(key) is Atom:
        return str(key)
    if type(key) is bool:
        return "true" if key else "false"
    if type(key) is int:
        return key
    if type(key) is bytes:
        try:
            return key.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return render(key, language, max_items=20, max_depth=5, max_binary=64)


def _matches(key: Term, segment: Segment) -> bool:
    """Whether ``key`` is what ``segment`` names (see the module docstring)."""
    if type(key) is StrictKey:
        key = key.value
    if type(segment) is int:
        return type(key) is int and key == segment
    if type(key) is Atom:
        return str(key) == segment
    if type(key) is bool:
        return segment == ("true" if key else "false")
    if type(key) is bytes:
        return key == segment.encode("utf-8", "surrogatepass")
    return False


def _where(path: Path, upto: int) -> str:
    return format_path(path[:upto]) or "the top"


def _kind(term: Term) -> str:
    names = {
        dict: "a map",
        tuple: "a tuple",
        list: "a list",
        int: "an integer",
        float: "a float",
        bool: "an atom",
        Atom: "an atom",
        bytes: "a binary",
    }
    return names.get(type(term), f"a {type(term).__name__.lower()}")


def _keys_listed(term: dict[Any, Any]) -> str:
    shown = [render(k.value if type(k) is StrictKey else k, max_items=5, max_binary=40) for k in term]
    more = len(shown) - _SHOWN_KEYS
    text = ", ".join(shown[:_SHOWN_KEYS]) + (f" and {more} more" if more > 0 else "")
    return text or "none (the map is empty)"


def _child_key(term: Term, segment: Segment, path: Path, position: int) -> Any:
    """The dict key or sequence index ``segment`` selects in ``term``; :class:`PathError` if none."""
    where = _where(path, position)
    if type(term) is dict:
        found = [key for key in term if _matches(key, segment)]
        if len(found) == 1:
            return found[0]
        if found:
            raise PathError(
                f"{segment!r} at {where} names both an atom key and a binary key; "
                "the path cannot tell them apart",
                position,
            )
        raise PathError(
            f"no key {segment!r} in the map at {where}; its keys are: {_keys_listed(term)}", position
        )
    if type(term) in (tuple, list):
        noun = "tuple" if type(term) is tuple else "list"
        if type(segment) is not int:
            raise PathError(
                f"the value at {where} is a {noun} of {len(term)} elements: "
                f"use an index [0]..[{len(term) - 1}], "
                f"not the key {segment!r}",
                position,
            )
        if segment >= len(term):
            raise PathError(
                f"index {segment} is out of range at {where}: the {noun} has {len(term)} elements", position
            )
        return segment
    raise PathError(
        f"the value at {where} is {_kind(term)}, which has no keys or elements (segment {segment!r})",
        position,
    )


def get_in(term: Term, path: Path) -> Term:
    """The part of ``term`` at ``path``; :class:`PathError` naming the segment that does not exist."""
    path = parse_path(path)
    for position, segment in enumerate(path):
        term = term[_child_key(term, segment, path, position)]
    return term


def put_in(term: Term, path: Path, value: Term) -> Term:
    """A copy of ``term`` with the part at ``path`` replaced by ``value`` (only existing parts can be)."""
    path = parse_path(path)
    parents: list[tuple[Term, Any]] = []
    current = term
    for position, segment in enumerate(path):
        key = _child_key(current, segment, path, position)
        parents.append((current, key))
        current = current[key]
    for parent, key in reversed(parents):
        value = _replaced(parent, key, value)
    return value


def _replaced(parent: Term, key: Any, value: Term) -> Term:
    if type(parent) is dict:
        return {**parent, key: value}
    items = list(parent)
    items[key] = value
    return tuple(items) if type(parent) is tuple else items


def deep_merge(old: Term, new: Term, *, max_depth: int = MAX_PATH) -> Term:
    """``new`` merged into ``old``: maps merge key by key (recursively, ``new`` wins); others are replaced.

    A struct keeps its ``__struct__`` (a merge edits fields; it does not change the module).
    Deeper than ``max_depth`` maps are replaced whole rather than merged.
    """
    if type(old) is not dict or type(new) is not dict or max_depth <= 0:
        return new
    merged = dict(old)
    for key, value in new.items():
        merged[key] = deep_merge(old[key], value, max_depth=max_depth - 1) if key in old else value
    struct = Atom("__struct__")
    if struct in old:
        merged[struct] = old[struct]
    return merged
