"""Structural differences between two terms: what changed in a process state, and where.

``diff_terms(old, new)`` walks both terms together and reports each place they differ as a
:class:`Change` with a ``path`` in the conventions of :mod:`arsenal.terms.paths` (map keys
by name, tuple and list positions 0-based), so a change can be read back with ``get_in``.

* Maps are compared key by key (keys compared exactly: ``1``, ``1.0`` and ``true`` are
  different keys); a key only in ``old`` is ``removed``, only in ``new`` is ``added``.
* Tuples of the same size and lists are compared position by position; a longer or shorter
  list reports its extra positions as ``added`` / ``removed``. Tuples of different sizes are
  one ``changed`` (a record that gained a field is a different shape, not an edit).
* Structs (maps with ``__struct__``) are maps; a struct of another module is a ``type`` change.
* Values of different kinds (an integer becoming a float, a map becoming a list) are a
  ``type`` change; equal kinds with different values are ``changed``. Comparison is Erlang's
  exact equality: ``1`` and ``1.0`` differ.

The walk is bounded: it stops after ``max_changes`` changes and sets ``truncated``, and below
``max_depth`` levels it reports a differing subtree as one change instead of descending.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from arsenal.dist.terms import (
    Atom,
    BitString,
    Export,
    FrozenList,
    FrozenMap,
    Fun,
    ImproperList,
    Pid,
    Port,
    Ref,
    StrictKey,
    Term,
)
from arsenal.terms.paths import key_text
from arsenal.terms.render import Language

__all__ = ["MAX_CHANGES", "MAX_DEPTH", "Change", "Changes", "diff_terms", "same_term"]

ChangeKind = Literal["changed", "added", "removed", "type"]

MAX_CHANGES = 200
"""Default for how many changes one diff reports."""
MAX_DEPTH = 100
"""Default for how deep the walk descends before reporting a whole subtree as changed."""

_MISSING: Any = None


@dataclass(frozen=True, slots=True)
class Change:
    """One difference. ``old`` is ``None`` for ``added``, ``new`` is ``None`` for ``removed``."""

    path: list[str | int]
    kind: ChangeKind
    old: Term
    new: Term

    def as_dict(self) -> dict[str, Any]:
        """The change as a plain dict (terms left as terms: convert them with ``to_json`` or ``plain``)."""
        return {"path": list(self.path), "kind": self.kind, "old": self.old, "new": self.new}


class Changes(list[Change]):
    """The changes, in walk order; ``truncated`` is true when the walk stopped at ``max_changes``."""

    truncated: bool = False


def diff_terms(
    old: Term,
    new: Term,
    *,
    max_changes: int = MAX_CHANGES,
    max_depth: int = MAX_DEPTH,
    language: Language = "erlang",
) -> Changes:
    """Every place ``old`` and ``new`` differ (see the module docstring); equal terms give ``[]``.

    ``language`` only decides how map keys that are neither atoms, UTF-8 binaries nor integers
    are written in paths.
    """
    if max_changes < 1 or max_depth < 0:
        raise ValueError("max_changes must be at least 1 and max_depth at least 0")
    walk = _Walk(max_changes, max_depth, language)
    try:
        walk.compare(old, new, [], 0)
    except _Full:
        walk.changes.truncated = True
    return walk.changes


class _Full(Exception):
    """Raised inside the walk when ``max_changes`` is reached."""


class _Walk:
    def __init__(self, max_changes: int, max_depth: int, language: Language) -> None:
        self.max_changes = max_changes
        self.max_depth = max_depth
        self.language = language
        self.changes = Changes()

    def add(self, path: list[str | int], kind: ChangeKind, old: Term, new: Term) -> None:
        if len(self.changes) >= self.max_changes:
            raise _Full
        self.changes.append(Change(list(path), kind, old, new))

    def compare(self, old: Term, new: Term, path: list[str | int], depth: int) -> None:
        old_kind, new_kind = _kind(old), _kind(new)
        if old_kind != new_kind or _struct(old) != _struct(new):
            self.add(path, "type", old, new)
        elif depth >= self.max_depth or old_kind not in ("map", "tuple", "list"):
            if not same_term(old, new):
                self.add(path, "changed", old, new)
        elif old_kind == "map":
            self.maps(old, new, path, depth)
        elif old_kind == "tuple" and len(old) != len(new):
            self.add(path, "changed", old, new)
        else:
            self.sequences(old, new, path, depth)

    def maps(self, old: dict[Any, Any], new: dict[Any, Any], path: list[str | int], depth: int) -> None:
        new_keys = {_key_id(key): key for key in new}
        seen = set()
        for key, value in old.items():
            identity = _key_id(key)
            seen.add(identity)
            segment = key_text(key, self.language)
            if identity in new_keys:
                self.compare(value, new[new_keys[identity]], [*path, segment], depth + 1)
            else:
                self.add([*path, segment], "removed", value, _MISSING)
        for identity, key in new_keys.items():
            if identity not in seen:
                self.add([*path, key_text(key, self.language)], "added", _MISSING, new[key])

    def sequences(self, old: Any, new: Any, path: list[str | int], depth: int) -> None:
        if type(old) is ImproperList:  # same kind "list": both improper, or compared as leaves
            if not same_term(old, new):
                self.add(path, "changed", old, new)
            return
        common = min(len(old), len(new))
        for index in range(common):
            self.compare(old[index], new[index], [*path, index], depth + 1)
        for index in range(common, len(old)):
            self.add([*path, index], "removed", old[index], _MISSING)
        for index in range(common, len(new)):
            self.add([*path, index], "added", _MISSING, new[index])


_KINDS: dict[type, str] = {
    bool: "atom",
    Atom: "atom",
    int: "integer",
    float: "float",
    bytes: "binary",
    str: "binary",
    BitString: "bitstring",
    tuple: "tuple",
    list: "list",
    FrozenList: "list",
    dict: "map",
    FrozenMap: "map",
    Pid: "pid",
    Port: "port",
    Ref: "reference",
    Fun: "fun",
    Export: "fun",
}


def _kind(term: Term) -> str:
    """The Erlang kind of a term; an improper list is its own kind next to proper lists."""
    if type(term) is ImproperList:
        return "improper_list"
    return _KINDS.get(type(term), type(term).__name__)


def _struct(term: Term) -> Term:
    """The module of a struct map, else ``None``."""
    if type(term) is dict:
        module = term.get(Atom("__struct__"))
        return module if type(module) is Atom else None
    return None


def _key_id(key: Term) -> tuple[type, Any]:
    """A map key compared exactly (``1`` vs ``1.0`` vs ``true``), ``StrictKey`` unwrapped."""
    if type(key) is StrictKey:
        key = key.value
    return (type(key), key)


def same_term(a: Term, b: Term) -> bool:
    """Erlang exact equality (``=:=``): same kinds throughout, so ``1`` and ``1.0`` differ.

    Iterative, so any nesting depth compares without touching Python's stack.
    """
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if type(x) is not type(y):
            return False
        kind = type(x)
        if kind in (list, tuple, FrozenList):
            if len(x) != len(y):
                return False
            stack.extend(zip(x, y, strict=True))
        elif kind is dict:
            if len(x) != len(y):
                return False
            others = {_key_id(key): key for key in y}
            for key, value in x.items():
                identity = _key_id(key)
                if identity not in others:
                    return False
                stack.append((value, y[others[identity]]))
        elif kind is ImproperList:
            stack.append((x.items, y.items))
            stack.append((x.tail, y.tail))
        elif kind is StrictKey:
            stack.append((x.value, y.value))
        elif kind is float:
            if x.hex() != y.hex():
                return False
        elif x != y:
            return False
    return True
