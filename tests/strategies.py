"""Hypothesis strategies for Erlang terms in Arsenal's Python model, and strict equality.

``terms()`` draws any term the ETF decoder could produce: canonical values only
(``true``/``false`` are booleans, never ``Atom("true")``; bit strings have 1..7
bits in the last byte with the unused bits clear; improper lists have items and a
non-list tail; map keys are frozen and colliding keys wrapped in ``StrictKey``
exactly as the decoder does), with every field inside the range the external term
format can carry. Codec tests can therefore round-trip them through ETF as well as
through tagged JSON.

Python's ``==`` says ``1 == 1.0 == True`` and ``0.0 == -0.0``, and a ``FrozenList``
equals a plain tuple, so round-trip tests compare with :func:`same_term`, which
also requires the same types throughout.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

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
    freeze,
)

__all__ = [
    "atoms",
    "binaries",
    "bitstrings",
    "erlang_map",
    "exports",
    "floats",
    "funs",
    "integers",
    "pids",
    "ports",
    "refs",
    "same_term",
    "scalars",
    "terms",
]

U32 = 2**32 - 1
U64 = 2**64 - 1

_CHARS = st.characters(exclude_categories=("Cs",))


def integers() -> st.SearchStrategy[int]:
    """Small, 32/64-bit, around 2**53 (where JSON gets lossy) and big integers."""
    edges = [
        0,
        1,
        -1,
        255,
        256,
        2**31 - 1,
        -(2**31),
        2**53 - 1,
        2**53,
        -(2**53) + 1,
        -(2**53),
        2**64,
        -(2**64),
    ]
    return st.one_of(
        st.integers(min_value=-1000, max_value=1000),
        st.integers(min_value=-(2**64), max_value=2**64),
        st.integers(min_value=-(2**300), max_value=2**300),
        st.sampled_from(edges),
        st.sampled_from(edges).map(lambda n: n + 1),
    )


def floats() -> st.SearchStrategy[float]:
    """Any finite double, including ``-0.0``, subnormals and integral values."""
    return st.one_of(
        st.floats(allow_nan=False, allow_infinity=False),
        st.integers(min_value=-(2**60), max_value=2**60).map(float),
        st.sampled_from([0.0, -0.0, 1.0, -1.0, 5e-324, 1.7976931348623157e308, 2.0**53, 1e16, 0.1]),
    )


def atom_names(max_size: int = 20) -> st.SearchStrategy[str]:
    """Atom names (at most 255 characters in Erlang), never ``true``/``false``."""
    return st.one_of(
        st.text(_CHARS, max_size=max_size),
        st.sampled_from(["ok", "error", "nil", "undefined", "Elixir.Foo.Bar", "hello world", "é", "'"]),
    ).filter(lambda name: name not in ("true", "false"))


def atoms() -> st.SearchStrategy[Atom]:
    return atom_names().map(Atom)


def node_names() -> st.SearchStrategy[Atom]:
    return st.one_of(st.sampled_from(["app@host", "nonode@nohost", "a@b.example.com"]), atom_names()).map(
        Atom
    )


def binaries() -> st.SearchStrategy[bytes]:
    """Arbitrary bytes and UTF-8 text (the two JSON encodings of a binary)."""
    return st.one_of(
        st.binary(max_size=40),
        st.text(_CHARS, max_size=40).map(lambda text: text.encode("utf-8")),
        st.sampled_from([b"", b"$atom", b"\xff\xfe", b'"\\']),
    )


@st.composite
def bitstrings(draw: st.DrawFn) -> BitString:
    data = bytearray(draw(st.binary(min_size=1, max_size=12)))
    bits = draw(st.integers(min_value=1, max_value=7))
    data[-1] &= (0xFF << (8 - bits)) & 0xFF  # the ETF decoder clears the unused bits
    return BitString(bytes(data), bits)


def pids() -> st.SearchStrategy[Pid]:
    u32 = st.integers(min_value=0, max_value=U32)
    return st.builds(Pid, node_names(), u32, u32, u32)


def ports() -> st.SearchStrategy[Port]:
    return st.builds(
        Port, node_names(), st.integers(min_value=0, max_value=U64), st.integers(min_value=0, max_value=U32)
    )


def refs() -> st.SearchStrategy[Ref]:
    words = st.lists(st.integers(min_value=0, max_value=U32), min_size=1, max_size=5).map(tuple)
    return st.builds(Ref, node_names(), st.integers(min_value=0, max_value=U32), words)


def exports() -> st.SearchStrategy[Export]:
    return st.builds(Export, atoms(), atoms(), st.integers(min_value=0, max_value=255))


def funs(free_vars: st.SearchStrategy[Any]) -> st.SearchStrategy[Fun]:
    u31 = st.integers(min_value=0, max_value=2**31 - 1)
    return st.builds(
        Fun,
        arity=st.integers(min_value=0, max_value=255),
        uniq=st.binary(min_size=16, max_size=16),
        index=u31,
        module=atoms(),
        old_index=u31,
        old_uniq=u31,
        pid=pids(),
        free_vars=st.lists(free_vars, max_size=3),
    )


def scalars() -> st.SearchStrategy[Any]:
    """Every term that holds no other term."""
    return st.one_of(
        integers(),
        floats(),
        st.booleans(),
        atoms(),
        binaries(),
        bitstrings(),
        pids(),
        ports(),
        refs(),
        exports(),
    )


def _is_negative_zero(key: Any) -> bool:
    return type(key) is float and key == 0.0 and str(key).startswith("-")


def erlang_map(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """Build a map as the ETF decoder does: frozen keys, and ``StrictKey`` when Python merges keys.

    Pairs whose keys still collide (``(1,)`` and ``(1.0,)``, which Erlang keeps
    apart but the decoder cannot represent) are dropped.
    """
    # -0.0 as a key is left out: OTP before 27 treats it as the same key as 0.0
    # (the nodes the tests run against would merge them), OTP 27 as another key.
    frozen = [(freeze(0.0 if _is_negative_zero(key) else key), value) for key, value in pairs]
    unique: dict[Any, Any] = {}
    kept: list[tuple[Any, Any]] = []
    for key, value in frozen:
        identity = _identity(key)
        if identity not in unique:
            unique[identity] = True
            kept.append((key, value))
    result = dict(kept)
    if len(result) == len(kept):
        return result
    result = {}
    for key, value in kept:
        strict = StrictKey(key) if type(key) in (int, float, bool) else key
        if strict not in result:
            result[strict] = value
    return result


def _improper(items_and_tail: tuple[list[Any], Any]) -> ImproperList:
    items, tail = items_and_tail
    return ImproperList(items, tail)


def _containers(children: st.SearchStrategy[Any], with_funs: bool) -> st.SearchStrategy[Any]:
    pairs = st.lists(st.tuples(children, children), max_size=5)
    # An improper list's tail is any term but a list; drawn directly rather than filtered.
    tails = st.one_of(scalars(), st.lists(children, max_size=3).map(tuple), pairs.map(erlang_map))
    kinds = [
        st.lists(children, max_size=5),
        st.lists(children, max_size=5).map(tuple),
        st.tuples(st.lists(children, min_size=1, max_size=4), tails).map(_improper),
        pairs.map(erlang_map),
        st.dictionaries(binaries(), children, max_size=4),
    ]
    if with_funs:
        kinds.append(funs(children))
    return st.one_of(kinds)


def terms(max_leaves: int = 25, *, with_funs: bool = True) -> st.SearchStrategy[Any]:
    """Any term of the model, nested; maps may have lists, maps and colliding numbers as keys.

    ``with_funs=False`` leaves out local funs (a node only accepts funs of code it has).
    """
    return st.recursive(scalars(), lambda children: _containers(children, with_funs), max_leaves=max_leaves)


# ---------------------------------------------------------------------------
# Strict equality
# ---------------------------------------------------------------------------


def same_term(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are the same term with the same Python types throughout.

    Maps compare as maps (key order does not matter); floats compare bit for bit
    so ``0.0`` and ``-0.0`` differ.
    """
    if type(a) is not type(b):
        return False
    compare = _COMPARERS.get(type(a))
    return compare(a, b) if compare is not None else bool(a == b)


def _identity(term: Any) -> Any:
    """A hashable key that is equal only for terms :func:`same_term` calls the same."""
    kind = type(term)
    if kind is float:
        return (float, struct.pack(">d", term))
    if kind in (list, tuple, FrozenList, FrozenMap):
        return (kind, tuple(_identity(item) for item in term))
    if kind is dict:
        return (dict, frozenset((_identity(k), _identity(v)) for k, v in term.items()))
    if kind is StrictKey:
        return (StrictKey, _identity(term.value))
    if kind is ImproperList:
        return (ImproperList, _identity(term.items), _identity(term.tail))
    if kind is Fun:
        return (Fun, term._key(), _identity(term.free_vars))
    return (kind, term)


def _same_items(a: Any, b: Any) -> bool:
    return len(a) == len(b) and all(same_term(x, y) for x, y in zip(a, b, strict=True))


def _same_map(a: dict[Any, Any], b: dict[Any, Any]) -> bool:
    if len(a) != len(b):
        return False
    b_keys = {_identity(key): key for key in b}
    for key, value in a.items():
        other = b_keys.get(_identity(key))
        if other is None or not same_term(value, b[other]):
            return False
    return True


def _same_float(a: float, b: float) -> bool:
    return struct.pack(">d", a) == struct.pack(">d", b) or (math.isnan(a) and math.isnan(b))


def _same_fields(*names: str) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        return all(same_term(getattr(a, name), getattr(b, name)) for name in names)

    return compare


_COMPARERS: dict[type, Callable[[Any, Any], bool]] = {
    float: _same_float,
    list: _same_items,
    tuple: _same_items,
    FrozenList: _same_items,
    FrozenMap: lambda a, b: _same_items(a, b),
    dict: _same_map,
    StrictKey: _same_fields("value"),
    ImproperList: _same_fields("items", "tail"),
    BitString: _same_fields("data", "bits"),
    Pid: _same_fields("node", "id", "serial", "creation"),
    Port: _same_fields("node", "id", "creation"),
    Ref: _same_fields("node", "creation", "ids"),
    Export: _same_fields("module", "function", "arity"),
    Fun: _same_fields("arity", "uniq", "index", "module", "old_index", "old_uniq", "pid", "free_vars"),
}
