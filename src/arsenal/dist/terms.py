"""The Python model of Erlang terms.

Mapping (decode → Python → encode is lossless):

==========================  =====================================
Erlang                      Python
==========================  =====================================
integer                     ``int``
float                       ``float``
atom ``true`` / ``false``   ``True`` / ``False``
any other atom              :class:`Atom` (a ``str`` subclass)
binary                      ``bytes``
bit string                  :class:`BitString`
tuple                       ``tuple``
proper list                 ``list``
improper list               :class:`ImproperList`
map                         ``dict``
pid / port / reference      :class:`Pid` / :class:`Port` / :class:`Ref`
fun                         :class:`Fun`
external fun ``fun M:F/A``  :class:`Export`
==========================  =====================================

Booleans decode to Python ``bool`` because ``Atom("false")`` would be truthy.
Python ``str`` *encodes* as a UTF-8 binary (the Elixir string convention); it
never becomes an atom, which keeps request data from creating atoms on a target.

Map keys that Python cannot hash (lists, maps) are frozen into
:class:`FrozenList` / :class:`FrozenMap`; keys that Python would merge but
Erlang keeps apart (``1`` and ``1.0``, ``1`` and ``true``) are wrapped in
:class:`StrictKey`. Both encode back to the original term.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "Atom",
    "BitString",
    "Export",
    "FrozenList",
    "FrozenMap",
    "Fun",
    "ImproperList",
    "Pid",
    "Port",
    "Ref",
    "StrictKey",
    "Term",
    "atoms",
    "charlist",
    "freeze",
]

Term = Any
"""Any value that :mod:`arsenal.dist.etf` can encode or has decoded."""


class Atom(str):
    """An Erlang atom. Only build atoms from names you control, never from user input."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Atom({str.__repr__(self)})"


class Pid:
    """A process identifier: ``<node.id.serial>`` plus the node's creation."""

    __slots__ = ("creation", "id", "node", "serial")

    def __init__(self, node: Atom, id: int, serial: int, creation: int) -> None:
        self.node = node
        self.id = id
        self.serial = serial
        self.creation = creation

    def _key(self) -> tuple[Any, ...]:
        return (self.node, self.id, self.serial, self.creation)

    def __eq__(self, other: object) -> bool:
        return type(other) is Pid and self._key() == other._key()  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash(("pid", self.node, self.id, self.serial, self.creation))

    def __repr__(self) -> str:
        return f"Pid({self.node!s}, {self.id}, {self.serial}, creation={self.creation})"


class Port:
    """A port identifier."""

    __slots__ = ("creation", "id", "node")

    def __init__(self, node: Atom, id: int, creation: int) -> None:
        self.node = node
        self.id = id
        self.creation = creation

    def __eq__(self, other: object) -> bool:
        return type(other) is Port and (self.node, self.id, self.creation) == (
            other.node,  # type: ignore[union-attr]
            other.id,  # type: ignore[union-attr]
            other.creation,  # type: ignore[union-attr]
        )

    def __hash__(self) -> int:
        return hash(("port", self.node, self.id, self.creation))

    def __repr__(self) -> str:
        return f"Port({self.node!s}, {self.id}, creation={self.creation})"


class Ref:
    """A reference; ``ids`` are the 32-bit words as the node sent them."""

    __slots__ = ("creation", "ids", "node")

    def __init__(self, node: Atom, creation: int, ids: tuple[int, ...]) -> None:
        self.node = node
        self.creation = creation
        self.ids = ids

    def __eq__(self, other: object) -> bool:
        return type(other) is Ref and (self.node, self.creation, self.ids) == (
            other.node,  # type: ignore[union-attr]
            other.creation,  # type: ignore[union-attr]
            other.ids,  # type: ignore[union-attr]
        )

    def __hash__(self) -> int:
        return hash(("ref", self.node, self.creation, self.ids))

    def __repr__(self) -> str:
        return f"Ref({self.node!s}, {self.creation}, {self.ids})"


class BitString:
    """A bit string whose last byte holds only ``bits`` significant (high) bits (1..8)."""

    __slots__ = ("bits", "data")

    def __init__(self, data: bytes, bits: int) -> None:
        if not data or not 1 <= bits <= 8:
            raise ValueError("a BitString needs at least one byte and 1..8 bits in the last")
        # The unused low bits are not part of the value: clear them so equal values compare equal.
        mask = (0xFF << (8 - bits)) & 0xFF
        if data[-1] & ~mask & 0xFF:
            data = data[:-1] + bytes((data[-1] & mask,))
        self.data = data
        self.bits = bits

    @property
    def bit_size(self) -> int:
        return (len(self.data) - 1) * 8 + self.bits

    def __eq__(self, other: object) -> bool:
        return type(other) is BitString and (self.data, self.bits) == (other.data, other.bits)  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash(("bits", self.data, self.bits))

    def __repr__(self) -> str:
        return f"BitString({self.data!r}, bits={self.bits})"


class ImproperList:
    """A list whose tail is not ``[]``: ``[a, b | tail]``."""

    __slots__ = ("items", "tail")

    def __init__(self, items: list[Term], tail: Term) -> None:
        if not items or type(tail) is list:
            raise ValueError("an improper list needs elements and a tail that is not a list")
        self.items = items
        self.tail = tail

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is ImproperList
            and self.items == other.items  # type: ignore[union-attr]
            and self.tail == other.tail  # type: ignore[union-attr]
        )

    def __hash__(self) -> int:
        return hash(("improper", freeze(self.items), freeze(self.tail)))

    def __repr__(self) -> str:
        return f"ImproperList({self.items!r}, tail={self.tail!r})"


class Export:
    """An external fun, ``fun Module:Function/Arity``."""

    __slots__ = ("arity", "function", "module")

    def __init__(self, module: Atom, function: Atom, arity: int) -> None:
        self.module = module
        self.function = function
        self.arity = arity

    def __eq__(self, other: object) -> bool:
        return type(other) is Export and (self.module, self.function, self.arity) == (
            other.module,  # type: ignore[union-attr]
            other.function,  # type: ignore[union-attr]
            other.arity,  # type: ignore[union-attr]
        )

    def __hash__(self) -> int:
        return hash(("export", self.module, self.function, self.arity))

    def __repr__(self) -> str:
        return f"Export({self.module!s}:{self.function!s}/{self.arity})"


class Fun:
    """A local fun (``NEW_FUN_EXT``), kept whole so it re-encodes byte for byte.

    Python cannot call it; it can only be shown, stored and sent back.
    """

    __slots__ = ("arity", "free_vars", "index", "module", "old_index", "old_uniq", "pid", "uniq")

    def __init__(
        self,
        arity: int,
        uniq: bytes,
        index: int,
        module: Atom,
        old_index: int,
        old_uniq: int,
        pid: Pid,
        free_vars: list[Term],
    ) -> None:
        self.arity = arity
        self.uniq = uniq
        self.index = index
        self.module = module
        self.old_index = old_index
        self.old_uniq = old_uniq
        self.pid = pid
        self.free_vars = free_vars

    def _key(self) -> tuple[Any, ...]:
        return (self.arity, self.uniq, self.index, self.module, self.old_index, self.old_uniq, self.pid)

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is Fun
            and self._key() == other._key()  # type: ignore[union-attr]
            and self.free_vars == other.free_vars  # type: ignore[union-attr]
        )

    def __hash__(self) -> int:
        return hash(("fun", *self._key(), freeze(self.free_vars)))

    def __repr__(self) -> str:
        return f"Fun({self.module!s}, index={self.index}, arity={self.arity}, free={len(self.free_vars)})"


class FrozenList(tuple):  # type: ignore[type-arg]
    """A list used as a map key (Python lists are not hashable). Encodes as a list.

    Never equal to a tuple: ``#{[] => a, {} => b}`` has two keys.
    """

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is FrozenList and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(("list", tuple.__hash__(self)))

    def __repr__(self) -> str:
        return f"FrozenList({list(self)!r})"


class FrozenMap(tuple):  # type: ignore[type-arg]
    """A map used as a map key: its ``(key, value)`` pairs. Encodes as a map.

    Equal to another FrozenMap with the same pairs in any order, as maps are.
    """

    __slots__ = ()

    def to_dict(self) -> dict[Term, Term]:
        return dict(self)

    def __eq__(self, other: object) -> bool:
        return type(other) is FrozenMap and frozenset(self) == frozenset(other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(("map", frozenset(self)))

    def __repr__(self) -> str:
        return f"FrozenMap({dict(self)!r})"


class StrictKey:
    """A map key compared by Erlang's exact equality (``=:=``), not Python's ``==``.

    Used only when a decoded map holds keys Python would merge (``1``, ``1.0``,
    ``True``; ``0.0`` and ``-0.0``, distinct keys since OTP 27); ``value`` is the
    key as decoded.
    """

    __slots__ = ("value",)

    def __init__(self, value: Term) -> None:
        self.value = value

    def _identity(self) -> tuple[Any, ...]:
        value = self.value
        return (type(value), value.hex() if type(value) is float else value)

    def __eq__(self, other: object) -> bool:
        return type(other) is StrictKey and self._identity() == other._identity()  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash(self._identity())

    def __repr__(self) -> str:
        return f"StrictKey({self.value!r})"


def freeze(term: Term) -> Term:
    """Return a hashable equivalent of ``term`` that encodes to the same Erlang term."""
    kind = type(term)
    if kind is list:
        return FrozenList(freeze(item) for item in term)
    if kind is dict:
        return FrozenMap((freeze(k), freeze(v)) for k, v in term.items())
    if kind is tuple:
        return tuple(freeze(item) for item in term)
    return term


def charlist(text: str) -> list[int]:
    """An Erlang string (a list of code points), for calls that want ``"text"`` in Erlang."""
    return [ord(ch) for ch in text]


def atoms(names: Iterable[str]) -> list[Atom]:
    """Atoms for a fixed set of names that Arsenal itself chose."""
    return [Atom(name) for name in names]
