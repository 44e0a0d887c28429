"""Lossless tagged JSON for Erlang terms, for programs (the HTTP API, scripts, browsers).

``from_json(to_json(term))`` gives back exactly ``term``: the same Python types
(int, float and bool apart, Atom apart from binary, list apart from tuple) and the
same values. Plain JSON is used wherever it is unambiguous, so everyday data stays
readable (``{"name": "web", "port": 8080}``); everything else is a *tag*, a JSON
object with exactly one key that starts with ``$``.

=====================================  ================================================
Term                                   JSON
=====================================  ================================================
integer, ``|n| <= 2**53 - 1``          ``42``
integer, larger                        ``{"$int": "12345678901234567890"}``
float, not integral                    ``1.5``
float, integral (and ``-0.0``)         ``{"$float": "2.0"}``
``true`` / ``false``                   ``true`` / ``false``
other atom                             ``{"$atom": "ok"}``
binary, valid UTF-8                    ``"hello"``
binary, otherwise                      ``{"$bin": "<base64>"}``
bit string                             ``{"$bits": {"data": "<base64>", "bits": 3}}``
proper list                            ``[1, 2]``
tuple                                  ``{"$tuple": [1, 2]}``
improper list ``[a, b | t]``           ``{"$improper": {"items": [a, b], "tail": t}}``
map, all keys UTF-8 binaries not       ``{"name": "web"}``
starting with ``$``
any other map                          ``{"$map": [[key, value], ...]}``
pid                                    ``{"$pid": {"node": "a@h", "id": 80, "serial": 0,
                                       "creation": 1}}``
port                                   ``{"$port": {"node": "a@h", "id": 5, "creation": 1}}``
reference                              ``{"$ref": {"node": "a@h", "creation": 1,
                                       "ids": [1, 2, 3]}}``
local fun                              ``{"$fun": {"module": "m", "arity": 1, "index": 0,
                                       "uniq": "<32 hex digits>", "old_index": 0,
                                       "old_uniq": 1234, "pid": {"$pid": ...},
                                       "free_vars": [...]}}``
external fun ``fun m:f/2``             ``{"$export": {"module": "m", "function": "f",
                                       "arity": 2}}``
:class:`FrozenList` (a list map key)   ``{"$flist": [...]}``
:class:`FrozenMap` (a map map key)     ``{"$fmap": [[key, value], ...]}``
:class:`StrictKey`                     ``{"$strict": term}``
=====================================  ================================================

Why this scheme:

* **Numbers.** JavaScript holds every number as a double, so integers past 2**53
  would silently change there; they travel as decimal strings (hexadecimal
  ``"0x..."`` / ``"-0x..."`` past Python's 4300-digit conversion limit). A JSON
  number that is integral means an Erlang integer and one with a fraction means a
  float, which JavaScript can tell apart with ``Number.isInteger``; only integral
  floats, which JavaScript cannot tell from integers, are tagged. ``$float`` holds
  Python's shortest round-tripping ``repr`` as a string so ``-0.0`` survives. NaN
  and infinities do not exist in Erlang and are refused both ways. On input, a
  Python ``float`` is always a float and an ``int`` always an integer, whatever
  its size, and ``$int`` / ``$float`` also accept plain numbers.
* **Maps.** JSON object keys are strings, so only maps keyed by UTF-8 binaries
  can be plain objects; a key starting with ``$`` would read as a tag, so such a
  map uses the ``$map`` form instead. On input, an object with a ``$`` key must be
  exactly one known tag. Map keys from ``$map`` are frozen (lists become
  :class:`FrozenList`) so they can be Python dict keys. Keys that are distinct in
  Erlang but equal in Python (``1``, ``1.0``, ``true``) are wrapped in
  :class:`StrictKey`, as the ETF decoder does; other duplicates are an error.
* **Python-only wrappers** (``$flist``, ``$fmap``, ``$strict``) mean the same
  Erlang term as the list, map or key inside; they exist so that a value read from
  a node and written back is exactly what it was. Consumers may unwrap them.
* **Pid, port, ref, fun and export** use named fields, because programs read them;
  their integer fields follow the integer rule above.

Input is untrusted (it comes from HTTP clients): anything malformed raises
:class:`TaggedJSONError` naming the JSON path of the bad part, e.g.
``$.state.$tuple[1]``, and nesting deeper than ``max_depth`` (default 200) is
refused before any work is done on it. Atoms built by :func:`from_json` are plain
:class:`~arsenal.dist.terms.Atom` objects: whether a request may send a new atom
to a node (atoms are never garbage collected there) is decided by the caller, not
here.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import sys
from collections.abc import Callable
from typing import Any, TypeAlias

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
    freeze,
)

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "JSONValue",
    "MAX_SAFE_INTEGER",
    "TaggedJSONError",
    "dumps",
    "from_json",
    "loads",
    "to_json",
]

JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"

MAX_SAFE_INTEGER = 2**53 - 1
"""The largest integer every JSON reader (JavaScript's ``Number``) holds exactly."""
DEFAULT_MAX_DEPTH = 200
"""Deepest nesting of containers accepted, each way."""

_U32 = 2**32 - 1
_U64 = 2**64 - 1
_MAX_ATOM_CHARS = 255
_MAX_REF_WORDS = 5


class TaggedJSONError(ValueError):
    """Tagged JSON that does not describe a term, or a term that cannot be written as JSON.

    ``path`` is where, as a JSONPath into the JSON (``$.$tuple[1]``); ``reason`` is what.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{reason} (at {path})")
        self.path = path
        self.reason = reason


# ---------------------------------------------------------------------------
# Paths: built as cheap linked tuples, formatted only when there is an error
# ---------------------------------------------------------------------------

_Path: TypeAlias = "tuple[_Path, str | int] | None"
_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


def _format_path(path: _Path) -> str:
    segments: list[str] = []
    while path is not None:
        path, segment = path
        if isinstance(segment, int):
            segments.append(f"[{segment}]")
        elif _IDENTIFIER.fullmatch(segment):
            segments.append(f".{segment}")
        else:
            segments.append(f"[{json.dumps(segment)}]")
    return "$" + "".join(reversed(segments))


def _error(path: _Path, reason: str) -> TaggedJSONError:
    return TaggedJSONError(_format_path(path), reason)


def _describe(value: Any) -> str:
    """A short description of an offending JSON value for error messages."""
    names = {type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    names |= {list: "an array", dict: "an object"}
    return names.get(type(value), f"a Python {type(value).__name__}")


# ---------------------------------------------------------------------------
# Scalars shared by both directions
# ---------------------------------------------------------------------------


def _int_text(value: int) -> str:
    """Decimal, or hexadecimal past Python's decimal conversion limit (which refuses both ways)."""
    try:
        return str(value)
    except ValueError:
        return f"{'-' if value < 0 else ''}0x{abs(value):x}"


def _encode_int(value: int) -> JSONValue:
    if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return value
    return {"$int": _int_text(value)}


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ---------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------


def to_json(term: Term, *, max_depth: int = DEFAULT_MAX_DEPTH) -> JSONValue:
    """The tagged JSON value for ``term`` (see the module docstring for the scheme).

    Raises :class:`TaggedJSONError` for a float that is NaN or infinite, a term
    nested deeper than ``max_depth``, or a malformed term (an improper list whose
    tail is a list); ``TypeError`` for a value that is not a term at all.
    """
    try:
        return _Encoder(max_depth).encode(term, None, 0)
    except RecursionError:  # only if max_depth was set past what this Python stack holds
        raise TaggedJSONError(
            "$", f"term nested too deeply for Python's stack (max_depth={max_depth})"
        ) from None


class _Encoder:
    """Walks a term; one method per Python type of the term model."""

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self.handlers: dict[type, Callable[[Any, _Path, int], JSONValue]] = {
            bool: self.scalar,
            int: self.integer,
            float: self.float_,
            Atom: self.atom,
            bytes: self.binary,
            str: self.text,
            BitString: self.bitstring,
            list: self.list_,
            tuple: self.tuple_,
            ImproperList: self.improper_list,
            dict: self.dict_,
            FrozenList: self.frozen_list,
            FrozenMap: self.frozen_map,
            StrictKey: self.strict_key,
            Pid: self.pid,
            Port: self.port,
            Ref: self.ref,
            Fun: self.fun,
            Export: self.export,
        }

    def encode(self, term: Term, path: _Path, depth: int) -> JSONValue:
        handler = self.handlers.get(type(term))
        if handler is None:
            raise TypeError(f"a {type(term).__name__} is not an Erlang term (at {_format_path(path)})")
        return handler(term, path, depth)

    def child_depth(self, path: _Path, depth: int) -> int:
        if depth >= self.max_depth:
            raise _error(path, f"term nested deeper than {self.max_depth} levels")
        return depth + 1

    def items(self, items: Any, path: _Path, depth: int) -> list[JSONValue]:
        depth = self.child_depth(path, depth)
        result = []
        for index, item in enumerate(items):  # a loop, not a comprehension: one stack frame less per level
            result.append(self.encode(item, (path, index), depth))
        return result

    def pairs(self, pairs: Any, path: _Path, depth: int) -> list[JSONValue]:
        depth = self.child_depth(path, depth)
        result: list[JSONValue] = []
        for index, (key, value) in enumerate(pairs):
            here = (path, index)
            result.append([self.encode(key, (here, 0), depth), self.encode(value, (here, 1), depth)])
        return result

    def scalar(self, term: bool, path: _Path, depth: int) -> JSONValue:
        return term

    def integer(self, term: int, path: _Path, depth: int) -> JSONValue:
        return _encode_int(term)

    def float_(self, term: float, path: _Path, depth: int) -> JSONValue:
        if not math.isfinite(term):
            raise _error(path, f"{term!r} is not an Erlang float: Erlang has no NaN or infinity")
        return {"$float": repr(term)} if term.is_integer() else term

    def atom(self, term: Atom, path: _Path, depth: int) -> JSONValue:
        return {"$atom": str(term)}

    def binary(self, term: bytes, path: _Path, depth: int) -> JSONValue:
        try:
            return term.decode("utf-8")
        except UnicodeDecodeError:
            return {"$bin": _base64(term)}

    def text(self, term: str, path: _Path, depth: int) -> JSONValue:
        try:
            term.encode("utf-8")
        except UnicodeEncodeError:
            raise _error(path, "string holds a lone surrogate, which is not UTF-8") from None
        return str(term)

    def bitstring(self, term: BitString, path: _Path, depth: int) -> JSONValue:
        return {"$bits": {"data": _base64(term.data), "bits": term.bits}}

    def list_(self, term: list[Any], path: _Path, depth: int) -> JSONValue:
        return self.items(term, path, depth)

    def tuple_(self, term: tuple[Any, ...], path: _Path, depth: int) -> JSONValue:
        return {"$tuple": self.items(term, (path, "$tuple"), depth)}

    def improper_list(self, term: ImproperList, path: _Path, depth: int) -> JSONValue:
        path = (path, "$improper")
        _check_improper(term.items, term.tail, path)
        items = self.items(term.items, (path, "items"), depth)
        tail = self.encode(term.tail, (path, "tail"), self.child_depth(path, depth))
        return {"$improper": {"items": items, "tail": tail}}

    def dict_(self, term: dict[Any, Any], path: _Path, depth: int) -> JSONValue:
        names = _object_keys(term)
        if names is None:
            return {"$map": self.pairs(term.items(), (path, "$map"), depth)}
        depth = self.child_depth(path, depth)
        obj = {
            name: self.encode(value, (path, name), depth)
            for name, value in zip(names, term.values(), strict=True)
        }
        if len(obj) != len(term):
            raise _error(path, "map holds the same binary key twice (as bytes and as str)")
        return obj

    def frozen_list(self, term: FrozenList, path: _Path, depth: int) -> JSONValue:
        return {"$flist": self.items(term, (path, "$flist"), depth)}

    def frozen_map(self, term: FrozenMap, path: _Path, depth: int) -> JSONValue:
        return {"$fmap": self.pairs(term, (path, "$fmap"), depth)}

    def strict_key(self, term: StrictKey, path: _Path, depth: int) -> JSONValue:
        path = (path, "$strict")
        return {"$strict": self.encode(term.value, path, self.child_depth(path, depth))}

    def pid(self, term: Pid, path: _Path, depth: int) -> JSONValue:
        fields = {"node": str(term.node), "id": term.id, "serial": term.serial, "creation": term.creation}
        return {"$pid": _with_ints(fields)}

    def port(self, term: Port, path: _Path, depth: int) -> JSONValue:
        return {"$port": _with_ints({"node": str(term.node), "id": term.id, "creation": term.creation})}

    def ref(self, term: Ref, path: _Path, depth: int) -> JSONValue:
        fields = {"node": str(term.node), "creation": _encode_int(term.creation)}
        return {"$ref": {**fields, "ids": [_encode_int(word) for word in term.ids]}}

    def fun(self, term: Fun, path: _Path, depth: int) -> JSONValue:
        path = (path, "$fun")
        inner = self.child_depth(path, depth)
        fields: dict[str, JSONValue] = {
            "module": str(term.module),
            "arity": _encode_int(term.arity),
            "index": _encode_int(term.index),
            "uniq": term.uniq.hex(),
            "old_index": _encode_int(term.old_index),
            "old_uniq": _encode_int(term.old_uniq),
            "pid": self.encode(term.pid, (path, "pid"), inner),
            "free_vars": self.items(term.free_vars, (path, "free_vars"), depth),
        }
        return {"$fun": fields}

    def export(self, term: Export, path: _Path, depth: int) -> JSONValue:
        fields = {"module": str(term.module), "function": str(term.function), "arity": term.arity}
        return {"$export": _with_ints(fields)}


def _with_ints(fields: dict[str, Any]) -> dict[str, JSONValue]:
    return {name: _encode_int(value) if type(value) is int else value for name, value in fields.items()}


def _object_keys(term: dict[Any, Any]) -> list[str] | None:
    """The JSON object keys for a map keyed by UTF-8 binaries none of which starts with ``$``.

    ``None`` if the map needs the ``$map`` form. (``str`` keys stand for binaries too.)
    """
    names = []
    for key in term:
        kind = type(key)
        try:
            if kind is bytes:
                name = key.decode("utf-8")
            elif kind is str:
                key.encode("utf-8")
                name = str(key)
            else:
                return None
        except UnicodeError:
            return None
        if name.startswith("$"):
            return None
        names.append(name)
    return names


def _check_improper(items: Any, tail: Any, path: _Path) -> None:
    """An improper list has at least one item and a tail that is not itself a list."""
    if not items:
        raise _error(path, "improper list needs at least one item before its tail")
    if type(tail) in (list, FrozenList, ImproperList):
        raise _error(path, f"improper list tail must not be a list (got a {type(tail).__name__})")


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------


def from_json(value: JSONValue, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Term:
    """The term a tagged JSON value describes: the inverse of :func:`to_json`.

    ``value`` is parsed JSON (``json.loads`` output). Raises
    :class:`TaggedJSONError`, naming the path to the problem, for anything that does
    not describe a term or is nested deeper than ``max_depth``.
    """
    try:
        return _Decoder(max_depth).decode(value, None, 0)
    except RecursionError:  # only if max_depth was set past what this Python stack holds
        raise TaggedJSONError("$", f"nested too deeply for Python's stack (max_depth={max_depth})") from None


_DECIMAL_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_HEX_INT = re.compile(r"-?0x[0-9a-fA-F]+")
_FLOAT_TEXT = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_HEX_UNIQ = re.compile(r"[0-9a-fA-F]{32}")


class _Decoder:
    """Walks parsed JSON; one method per JSON type and one per tag."""

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self.tags: dict[str, Callable[[Any, _Path, int], Term]] = {
            "$int": self.tag_int,
            "$float": self.tag_float,
            "$atom": self.tag_atom,
            "$bin": self.tag_bin,
            "$bits": self.tag_bits,
            "$tuple": self.tag_tuple,
            "$improper": self.tag_improper,
            "$map": self.tag_map,
            "$flist": self.tag_flist,
            "$fmap": self.tag_fmap,
            "$strict": self.tag_strict,
            "$pid": self.tag_pid,
            "$port": self.tag_port,
            "$ref": self.tag_ref,
            "$fun": self.tag_fun,
            "$export": self.tag_export,
        }

    def decode(self, value: Any, path: _Path, depth: int) -> Term:
        kind = type(value)
        if kind is bool or kind is int:
            return value
        if kind is str:
            return _utf8(value, path)
        if kind is float:
            return _finite(value, path)
        if kind is list:
            return self.items(value, path, depth)
        if kind is dict:
            tag = _tag_of(value, path)
            if tag is None:
                return self.plain_map(value, path, depth)
            handler = self.tags.get(tag)
            if handler is None:
                raise _error(path, f"unknown tag {tag!r}; known tags: {', '.join(sorted(self.tags))}")
            return handler(value[tag], (path, tag), depth)
        if value is None:
            raise _error(path, 'null is not a term (write an atom as {"$atom": "undefined"})')
        raise _error(path, f"{_describe(value)} is not a JSON value")

    def child_depth(self, path: _Path, depth: int) -> int:
        if depth >= self.max_depth:
            raise _error(path, f"nested deeper than {self.max_depth} levels")
        return depth + 1

    def items(self, values: Any, path: _Path, depth: int) -> list[Term]:
        if type(values) is not list:
            raise _error(path, f"expected an array, got {_describe(values)}")
        depth = self.child_depth(path, depth)
        result = []
        for index, item in enumerate(values):  # a loop, not a comprehension: one stack frame less per level
            result.append(self.decode(item, (path, index), depth))
        return result

    def pairs(self, values: Any, path: _Path, depth: int) -> list[tuple[Term, Term]]:
        if type(values) is not list:
            raise _error(path, f"expected an array of [key, value] pairs, got {_describe(values)}")
        depth = self.child_depth(path, depth)
        result = []
        for index, pair in enumerate(values):
            here = (path, index)
            if type(pair) is not list or len(pair) != 2:
                raise _error(here, f"expected a [key, value] pair, got {_describe(pair)}")
            key = freeze(self.decode(pair[0], (here, 0), depth))  # hashable: see freeze()
            result.append((key, self.decode(pair[1], (here, 1), depth)))
        return result

    def plain_map(self, value: dict[str, Any], path: _Path, depth: int) -> Term:
        depth = self.child_depth(path, depth)
        result = {}
        for key, item in value.items():
            result[_utf8(key, (path, key))] = self.decode(item, (path, key), depth)
        return result

    # -- tags ----------------------------------------------------------------

    def tag_int(self, value: Any, path: _Path, depth: int) -> Term:
        return _parse_int(value, path)

    def tag_float(self, value: Any, path: _Path, depth: int) -> Term:
        if type(value) in (int, float):
            try:
                return _finite(float(value), path)
            except OverflowError:
                raise _error(path, "integer too large for a float") from None
        if type(value) is not str or not _FLOAT_TEXT.fullmatch(value):
            raise _error(path, f'expected a decimal float like "2.0", got {_shown(value)}')
        return _finite(float(value), path)

    def tag_atom(self, value: Any, path: _Path, depth: int) -> Term:
        return _atom(value, path)

    def tag_bin(self, value: Any, path: _Path, depth: int) -> Term:
        return _unbase64(value, path)

    def tag_bits(self, value: Any, path: _Path, depth: int) -> Term:
        fields = _fields(value, path, ("data", "bits"))
        data = _unbase64(fields["data"], (path, "data"))
        bits = _bounded_int(fields["bits"], (path, "bits"), 1, 8)
        if not data:
            raise _error((path, "data"), "a bit string needs at least one byte")
        return BitString(data, bits)

    def tag_tuple(self, value: Any, path: _Path, depth: int) -> Term:
        return tuple(self.items(value, path, depth))

    def tag_improper(self, value: Any, path: _Path, depth: int) -> Term:
        fields = _fields(value, path, ("items", "tail"))
        items = self.items(fields["items"], (path, "items"), depth)
        tail = self.decode(fields["tail"], (path, "tail"), self.child_depth(path, depth))
        _check_improper(items, tail, path)
        return ImproperList(items, tail)

    def tag_map(self, value: Any, path: _Path, depth: int) -> Term:
        return _erlang_map(self.pairs(value, path, depth), path)

    def tag_flist(self, value: Any, path: _Path, depth: int) -> Term:
        return FrozenList(freeze(item) for item in self.items(value, path, depth))

    def tag_fmap(self, value: Any, path: _Path, depth: int) -> Term:
        return FrozenMap((key, freeze(item)) for key, item in self.pairs(value, path, depth))

    def tag_strict(self, value: Any, path: _Path, depth: int) -> Term:
        inner = self.decode(value, path, self.child_depth(path, depth))
        return StrictKey(freeze(inner))

    def tag_pid(self, value: Any, path: _Path, depth: int) -> Term:
        fields = _fields(value, path, ("node", "id", "serial", "creation"))
        node = _atom(fields["node"], (path, "node"))
        id_, serial, creation = (
            _bounded_int(fields[n], (path, n), 0, _U32) for n in ("id", "serial", "creation")
        )
        return Pid(node, id_, serial, creation)

    def tag_port(self, value: Any, path: _Path, depth: int) -> Term:
        fields = _fields(value, path, ("node", "id", "creation"))
        node = _atom(fields["node"], (path, "node"))
        return Port(
            node,
            _bounded_int(fields["id"], (path, "id"), 0, _U64),
            _bounded_int(fields["creation"], (path, "creation"), 0, _U32),
        )

    def tag_ref(self, value: Any, path: _Path, depth: int) -> Term:
        fields = _fields(value, path, ("node", "creation", "ids"))
        node = _atom(fields["node"], (path, "node"))
        creation = _bounded_int(fields["creation"], (path, "creation"), 0, _U32)
        ids = fields["ids"]
        if type(ids) is not list or not 1 <= len(ids) <= _MAX_REF_WORDS:
            raise _error((path, "ids"), f"expected an array of 1 to {_MAX_REF_WORDS} integers")
        words = tuple(_bounded_int(word, ((path, "ids"), i), 0, _U32) for i, word in enumerate(ids))
        return Ref(node, creation, words)

    def tag_fun(self, value: Any, path: _Path, depth: int) -> Term:
        names = ("module", "arity", "index", "uniq", "old_index", "old_uniq", "pid", "free_vars")
        fields = _fields(value, path, names)
        uniq = fields["uniq"]
        if type(uniq) is not str or not _HEX_UNIQ.fullmatch(uniq):
            raise _error((path, "uniq"), f"expected 32 hexadecimal digits, got {_shown(uniq)}")
        pid = self.decode(fields["pid"], (path, "pid"), self.child_depth(path, depth))
        if type(pid) is not Pid:
            raise _error((path, "pid"), 'expected a pid ({"$pid": {...}})')
        return Fun(
            arity=_bounded_int(fields["arity"], (path, "arity"), 0, 255),
            uniq=bytes.fromhex(uniq),
            index=_bounded_int(fields["index"], (path, "index"), 0, _U32),
            module=_atom(fields["module"], (path, "module")),
            old_index=_bounded_int(fields["old_index"], (path, "old_index"), 0, _U32),
            old_uniq=_bounded_int(fields["old_uniq"], (path, "old_uniq"), 0, _U32),
            pid=pid,
            free_vars=self.items(fields["free_vars"], (path, "free_vars"), depth),
        )

    def tag_export(self, value: Any, path: _Path, depth: int) -> Term:
        fields = _fields(value, path, ("module", "function", "arity"))
        return Export(
            _atom(fields["module"], (path, "module")),
            _atom(fields["function"], (path, "function")),
            _bounded_int(fields["arity"], (path, "arity"), 0, 255),
        )


def _tag_of(value: dict[Any, Any], path: _Path) -> str | None:
    """The tag of a tagged object, or ``None`` for a plain map; refuses objects that mix the two."""
    tag = None
    for key in value:
        if type(key) is not str:
            raise _error(path, f"object keys must be strings, got {_describe(key)}")
        if key.startswith("$"):
            tag = key
    if tag is not None and len(value) != 1:
        raise _error(
            path,
            f"a key starting with '$' is a tag and must be alone in its object"
            f" (keys: {_shown(sorted(value))}); write a map with such keys as"
            ' {"$map": [[key, value], ...]}',
        )
    return tag


def _shown(value: Any) -> str:
    """A JSON value in an error message, cut short: the input may be huge."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = _describe(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _utf8(text: str, path: _Path) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise _error(path, "string holds a lone surrogate (\\ud800-\\udfff), which is not UTF-8") from None


def _finite(value: float, path: _Path) -> float:
    if not math.isfinite(value):
        raise _error(path, f"{value!r} is not an Erlang float: Erlang has no NaN or infinity")
    return value


def _parse_int(value: Any, path: _Path) -> int:
    """The payload of ``$int``: a JSON integer, or a decimal (or ``0x`` hexadecimal) string."""
    if type(value) is int:
        return value
    if type(value) is str:
        if _HEX_INT.fullmatch(value):
            return int(value, 16)
        if _DECIMAL_INT.fullmatch(value):
            digits = len(value.lstrip("-"))
            limit = sys.get_int_max_str_digits()
            if limit and digits > limit:  # Python's guard against quadratic-time parsing
                raise _error(path, f"integer has {digits} digits; write more than {limit} in hexadecimal")
            return int(value)
    raise _error(path, f'expected an integer or a decimal string like "123", got {_shown(value)}')


def _int_field(value: Any, path: _Path) -> int:
    """An integer field of a pid, port, ref, fun or export: a JSON integer or ``{"$int": ...}``."""
    if type(value) is dict and len(value) == 1 and "$int" in value:
        return _parse_int(value["$int"], (path, "$int"))
    if type(value) is int:
        return value
    raise _error(path, f'expected an integer or {{"$int": "..."}}, got {_shown(value)}')


def _bounded_int(value: Any, path: _Path, low: int, high: int) -> int:
    number = _int_field(value, path)
    if not low <= number <= high:
        raise _error(path, f"{number} is out of range {low}..{high}")
    return number


def _atom(value: Any, path: _Path) -> Atom:
    if type(value) is not str:
        raise _error(path, f"expected an atom name (a string), got {_shown(value)}")
    _utf8(value, path)
    if len(value) > _MAX_ATOM_CHARS:
        raise _error(path, f"atom name has {len(value)} characters; Erlang allows {_MAX_ATOM_CHARS}")
    return Atom(value)


def _unbase64(value: Any, path: _Path) -> bytes:
    if type(value) is not str:
        raise _error(path, f"expected base64 text, got {_shown(value)}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _error(path, "not valid base64") from None


def _fields(value: Any, path: _Path, names: tuple[str, ...]) -> dict[str, Any]:
    """The payload object of a tag, which must have exactly ``names`` as keys."""
    if type(value) is not dict:
        raise _error(path, f"expected an object with fields {', '.join(names)}; got {_describe(value)}")
    missing = [name for name in names if name not in value]
    unknown = sorted(str(key) for key in value if key not in names)
    if missing or unknown:
        problems = [f"missing {', '.join(missing)}"] if missing else []
        problems += [f"unknown {', '.join(unknown)}"] if unknown else []
        raise _error(path, f"fields must be exactly {', '.join(names)}: {'; '.join(problems)}")
    return value


def _erlang_map(pairs: list[tuple[Term, Term]], path: _Path) -> dict[Term, Term]:
    """A dict for the pairs, keeping apart keys Erlang keeps apart (as the ETF decoder does)."""
    result = dict(pairs)
    if len(result) == len(pairs):
        return result
    result = {}
    for index, (key, value) in enumerate(pairs):
        strict = StrictKey(key) if type(key) in (int, float, bool) else key
        if strict in result:
            raise _error(((path, index), 0), "map holds this key twice")
        result[strict] = value
    return result


# ---------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------


def dumps(term: Term, *, max_depth: int = DEFAULT_MAX_DEPTH, indent: int | None = None) -> str:
    """``term`` as tagged JSON text (compact unless ``indent`` is given)."""
    separators = (",", ":") if indent is None else None
    return json.dumps(
        to_json(term, max_depth=max_depth),
        ensure_ascii=False,
        allow_nan=False,
        indent=indent,
        separators=separators,
    )


def loads(text: str | bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Term:
    """The term tagged JSON text describes. Raises :class:`TaggedJSONError` for bad input.

    Stricter than ``json.loads``: ``NaN`` / ``Infinity`` literals and duplicate
    object keys (which ``json.loads`` silently resolves) are refused.
    """
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constants)
    except TaggedJSONError:
        raise
    except json.JSONDecodeError as exc:
        raise TaggedJSONError("$", f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise TaggedJSONError("$", "nested too deeply to parse") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise TaggedJSONError("$", f"not JSON: {exc}") from None
    return from_json(value, max_depth=max_depth)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise TaggedJSONError("$", f"an object has the key {key!r} twice")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise TaggedJSONError("$", f"{name} is not JSON, and Erlang floats have no NaN or infinity")
