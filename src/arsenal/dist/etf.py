"""The Erlang external term format: a fast, hostile-input-safe decoder and an encoder.

Decoding walks the input by offset (one dispatch-table lookup per term, no copy of
the remaining input) and checks every declared size against what is left before
it allocates anything, so a forged length can neither allocate gigabytes nor read
past the end. Nesting depth and the declared size of compressed terms are capped.
Any malformed input raises :class:`DecodeError`; nothing else escapes.

The encoder produces what ``term_to_binary/1`` produces for the same term (except
for the key order of maps larger than 32 keys, which Erlang does not fix either).
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable
from typing import Any

from ._format import brief
from .terms import (
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

__all__ = [
    "DecodeError",
    "EncodeError",
    "MAX_DEPTH",
    "MAX_DECOMPRESSED",
    "binary_to_term",
    "decode_term",
    "encode_into",
    "encode_term",
    "term_to_binary",
]

VERSION = 131
MAX_DEPTH = 400
"""Deepest nesting decoded (Python's own stack is the limit behind it)."""
MAX_DECOMPRESSED = 64 * 1024 * 1024
"""Largest declared size of a compressed term that will be inflated."""

NEW_FLOAT_EXT = 70
BIT_BINARY_EXT = 77
COMPRESSED = 80
ATOM_CACHE_REF = 82
NEW_PID_EXT = 88
NEW_PORT_EXT = 89
NEWER_REFERENCE_EXT = 90
SMALL_INTEGER_EXT = 97
INTEGER_EXT = 98
FLOAT_EXT = 99
ATOM_EXT = 100
REFERENCE_EXT = 101
PORT_EXT = 102
PID_EXT = 103
SMALL_TUPLE_EXT = 104
LARGE_TUPLE_EXT = 105
NIL_EXT = 106
STRING_EXT = 107
LIST_EXT = 108
BINARY_EXT = 109
SMALL_BIG_EXT = 110
LARGE_BIG_EXT = 111
NEW_FUN_EXT = 112
EXPORT_EXT = 113
NEW_REFERENCE_EXT = 114
SMALL_ATOM_EXT = 115
MAP_EXT = 116
FUN_EXT = 117
ATOM_UTF8_EXT = 118
SMALL_ATOM_UTF8_EXT = 119
V4_PORT_EXT = 120
LOCAL_EXT = 121


class DecodeError(ValueError):
    """The bytes are not a valid external term (truncated, malformed or over a limit)."""


class EncodeError(TypeError):
    """The Python value has no Erlang term equivalent."""


_u16 = struct.Struct(">H").unpack_from
_u32 = struct.Struct(">I").unpack_from
_i32 = struct.Struct(">i").unpack_from
_f64 = struct.Struct(">d").unpack_from
_u32x3 = struct.Struct(">III").unpack_from
_u32x2 = struct.Struct(">II").unpack_from
_u64u32 = struct.Struct(">QI").unpack_from

# Atoms repeat constantly (node names, module names, tags); caching them saves the
# UTF-8 decode and the allocation. Bounded so a hostile peer cannot grow it forever.
_ATOM_CACHE_MAX = 1 << 16
_atom_cache: dict[bytes, Any] = {b"true": True, b"false": False}

# Pids repeat as much as atoms in traces and process lists; they are immutable values,
# so equal wire bytes can share one object. Bounded; cleared when full.
_PID_CACHE_MAX = 1 << 14
_pid_cache: dict[bytes, Pid] = {}

_Decoder = Callable[[bytes, int, int], tuple[Any, int]]


MAX_ATOM_CHARS = 255


def _atom_from(raw: bytes, latin1: bool) -> Any:
    atom = _atom_cache.get(raw)
    if atom is None:
        if len(raw) > MAX_ATOM_CHARS * (1 if latin1 else 4):
            raise DecodeError(
                f"atom of {len(raw)} bytes: Erlang atoms have at most {MAX_ATOM_CHARS} characters"
            )
        try:
            text = raw.decode("latin-1" if latin1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"atom is not valid UTF-8: {raw[:40]!r}") from exc
        if len(text) > MAX_ATOM_CHARS:
            raise DecodeError(f"atom of {len(text)} characters: Erlang atoms have at most {MAX_ATOM_CHARS}")
        atom = True if text == "true" else False if text == "false" else Atom(text)
        if len(_atom_cache) < _ATOM_CACHE_MAX:
            _atom_cache[raw] = atom
    return atom


def _need(data: bytes, end: int) -> None:
    if end > len(data):
        raise DecodeError(f"term truncated: needs {end} bytes, has {len(data)}")


def _small_int(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    return data[pos], pos + 1


def _int(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    return _i32(data, pos)[0], pos + 4


def _new_float(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    return _f64(data, pos)[0], pos + 8


def _old_float(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    _need(data, pos + 31)
    text = data[pos : pos + 31].split(b"\0", 1)[0]
    try:
        return float(text), pos + 31
    except ValueError as exc:
        raise DecodeError(f"FLOAT_EXT is not a float: {text!r}") from exc


def _small_atom_utf8(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    end = pos + 1 + data[pos]
    if end > len(data):
        raise DecodeError("term truncated inside an atom")
    raw = data[pos + 1 : end]
    atom = _atom_cache.get(raw)
    return (_atom_from(raw, False) if atom is None else atom), end


def _atom_utf8(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    end = pos + 2 + _u16(data, pos)[0]
    _need(data, end)
    return _atom_from(data[pos + 2 : end], False), end


def _small_atom_latin1(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    end = pos + 1 + data[pos]
    _need(data, end)
    return _atom_from(data[pos + 1 : end], True), end


def _atom_latin1(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    end = pos + 2 + _u16(data, pos)[0]
    _need(data, end)
    return _atom_from(data[pos + 2 : end], True), end


def _node_atom(data: bytes, pos: int) -> tuple[Atom, int]:
    if data[pos] == SMALL_ATOM_UTF8_EXT:
        end = pos + 2 + data[pos + 1]
        node = _atom_cache.get(data[pos + 2 : end]) if end <= len(data) else None
        if type(node) is Atom:
            return node, end
    node, pos = _DISPATCH[data[pos]](data, pos + 1, 0)
    if type(node) is not Atom:
        raise DecodeError(f"node name must be an atom, got {brief(node, 60)}")
    return node, pos


def _new_pid(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    if data[pos] == SMALL_ATOM_UTF8_EXT:
        end = pos + 14 + data[pos + 1]
        if end <= len(data):
            raw = data[pos:end]
            pid = _pid_cache.get(raw)
            if pid is None:
                node, at = _node_atom(data, pos)
                pid = Pid(node, *_u32x3(data, at))
                if len(_pid_cache) >= _PID_CACHE_MAX:
                    _pid_cache.clear()
                _pid_cache[raw] = pid
            return pid, end
    node, pos = _node_atom(data, pos)
    pid_id, serial, creation = _u32x3(data, pos)
    return Pid(node, pid_id, serial, creation), pos + 12


def _old_pid(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    node, pos = _node_atom(data, pos)
    pid_id, serial = _u32x2(data, pos)
    _need(data, pos + 9)
    return Pid(node, pid_id, serial, data[pos + 8]), pos + 9


def _new_port(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    node, pos = _node_atom(data, pos)
    port_id, creation = _u32x2(data, pos)
    return Port(node, port_id, creation), pos + 8


def _v4_port(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    node, pos = _node_atom(data, pos)
    port_id, creation = _u64u32(data, pos)
    return Port(node, port_id, creation), pos + 12


def _old_port(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    node, pos = _node_atom(data, pos)
    _need(data, pos + 5)
    return Port(node, _u32(data, pos)[0], data[pos + 4]), pos + 5


_REF_IDS = [struct.Struct(f">{count}I").unpack_from for count in range(6)]


def _ref_ids(data: bytes, pos: int, count: int) -> tuple[tuple[int, ...], int]:
    end = pos + 4 * count
    _need(data, end)
    return _REF_IDS[count](data, pos), end


def _newer_ref(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    count = _u16(data, pos)[0]
    if count > 5:
        raise DecodeError(f"reference with {count} id words (at most 5 exist)")
    node, pos = _node_atom(data, pos + 2)
    creation = _u32(data, pos)[0]
    ids, pos = _ref_ids(data, pos + 4, count)
    return Ref(node, creation, ids), pos


def _new_ref(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    count = _u16(data, pos)[0]
    if count > 5:
        raise DecodeError(f"reference with {count} id words (at most 5 exist)")
    node, pos = _node_atom(data, pos + 2)
    _need(data, pos + 1)
    ids, end = _ref_ids(data, pos + 1, count)
    return Ref(node, data[pos], ids), end


def _old_ref(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    node, pos = _node_atom(data, pos)
    _need(data, pos + 5)
    return Ref(node, data[pos + 4], (_u32(data, pos)[0],)), pos + 5


def _items(data: bytes, pos: int, depth: int, count: int) -> tuple[list[Any], int]:
    """Decode ``count`` consecutive terms: the inner loop of every container.

    The commonest tags (small integers, UTF-8 atoms, binaries, ``[]``) are decoded
    inline here; a function call per element is what dominates pure-Python decoding.
    """
    if depth >= MAX_DEPTH:
        raise DecodeError(f"term nested deeper than {MAX_DEPTH} levels")
    depth += 1
    dispatch = _DISPATCH
    cache = _atom_cache
    size = len(data)
    items: list[Any] = []
    append = items.append
    for _ in range(count):
        tag = data[pos]
        if tag == SMALL_INTEGER_EXT:
            append(data[pos + 1])
            pos += 2
        elif tag == SMALL_ATOM_UTF8_EXT:
            end = pos + 2 + data[pos + 1]
            if end > size:  # before the cache: a truncated name could match a cached prefix
                raise DecodeError("term truncated inside an atom")
            raw = data[pos + 2 : end]
            atom = cache.get(raw)
            if atom is None:
                atom = _atom_from(raw, False)
            append(atom)
            pos = end
        elif tag == INTEGER_EXT:
            append(_i32(data, pos + 1)[0])
            pos += 5
        elif tag == NIL_EXT:
            append([])
            pos += 1
        elif tag == BINARY_EXT:
            start = pos + 5
            pos = start + _u32(data, pos + 1)[0]
            if pos > size:
                raise DecodeError("term truncated inside a binary")
            append(data[start:pos])
        else:
            item, pos = dispatch[tag](data, pos + 1, depth)
            append(item)
    return items, pos


def _tuple_items(data: bytes, pos: int, depth: int, arity: int) -> tuple[Any, int]:
    if arity > len(data) - pos:
        raise DecodeError(f"tuple declares {arity} elements but only {len(data) - pos} bytes remain")
    items, pos = _items(data, pos, depth, arity)
    return tuple(items), pos


def _small_tuple(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    arity = data[pos]
    if arity == 2:  # {Key, Value} pairs dominate real terms (proplists, process_info)
        if depth >= MAX_DEPTH:
            raise DecodeError(f"term nested deeper than {MAX_DEPTH} levels")
        depth += 1
        tag = data[pos + 1]
        if tag == SMALL_ATOM_UTF8_EXT:
            end = pos + 3 + data[pos + 2]
            first = _atom_cache.get(data[pos + 3 : end]) if end <= len(data) else None
            if first is None:
                first, end = _small_atom_utf8(data, pos + 2, depth)
        else:
            first, end = _DISPATCH[tag](data, pos + 2, depth)
        second, end = _DISPATCH[data[end]](data, end + 1, depth)
        return (first, second), end
    if 0 < arity <= 5:  # {M, F, A}, timestamps, trace messages: unrolled, no list in between
        if depth >= MAX_DEPTH:
            raise DecodeError(f"term nested deeper than {MAX_DEPTH} levels")
        depth += 1
        dispatch = _DISPATCH
        pos += 1
        first, pos = dispatch[data[pos]](data, pos + 1, depth)
        if arity == 1:
            return (first,), pos
        second, pos = dispatch[data[pos]](data, pos + 1, depth)
        third, pos = dispatch[data[pos]](data, pos + 1, depth)
        if arity == 3:
            return (first, second, third), pos
        fourth, pos = dispatch[data[pos]](data, pos + 1, depth)
        if arity == 4:
            return (first, second, third, fourth), pos
        fifth, pos = dispatch[data[pos]](data, pos + 1, depth)
        return (first, second, third, fourth, fifth), pos
    items, pos = _items(data, pos + 1, depth, arity)
    return tuple(items), pos


def _large_tuple(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    return _tuple_items(data, pos + 4, depth, _u32(data, pos)[0])


def _nil(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    return [], pos


def _string(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    end = pos + 2 + _u16(data, pos)[0]
    if end > len(data):
        raise DecodeError("term truncated inside a string")
    return list(data[pos + 2 : end]), end


def _list(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    count = _u32(data, pos)[0]
    pos += 4
    if count + 1 > len(data) - pos:
        raise DecodeError(f"list declares {count} elements but only {len(data) - pos} bytes remain")
    items, pos = _items(data, pos, depth, count)
    if data[pos] == NIL_EXT:
        return items, pos + 1
    tail, pos = _DISPATCH[data[pos]](data, pos + 1, depth + 1)
    if type(tail) is ImproperList:  # [a | [b | c]] written with nested LIST_EXT
        return ImproperList(items + tail.items, tail.tail), pos
    if type(tail) is list:
        return items + tail, pos
    return ImproperList(items, tail), pos


def _binary(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    end = pos + 4 + _u32(data, pos)[0]
    if end > len(data):
        raise DecodeError("term truncated inside a binary")
    return data[pos + 4 : end], end


def _bit_binary(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    size = _u32(data, pos)[0]
    bits = data[pos + 4]
    end = pos + 5 + size
    _need(data, end)
    if size == 0:
        if bits != 0:
            raise DecodeError("empty bit string with trailing bits")
        return b"", end
    if not 1 <= bits <= 8:
        raise DecodeError(f"bit string with {bits} bits in its last byte")
    raw = data[pos + 5 : end]
    return (raw if bits == 8 else BitString(raw, bits)), end


def _big(data: bytes, pos: int, count: int) -> tuple[Any, int]:
    end = pos + 1 + count
    _need(data, end)
    value = int.from_bytes(data[pos + 1 : end], "little")
    return (-value if data[pos] else value), end


def _small_big(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    return _big(data, pos + 1, data[pos])


def _large_big(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    return _big(data, pos + 4, _u32(data, pos)[0])


def _map_key(key: Any) -> Any:
    kind = type(key)
    if kind is list:
        return FrozenList(_map_key(item) for item in key)
    if kind is dict:
        return FrozenMap((_map_key(k), _map_key(v)) for k, v in key.items())
    if kind is tuple:
        return tuple(_map_key(item) for item in key)
    if kind is ImproperList:
        return key  # hashable already
    return key


def _map(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    arity = _u32(data, pos)[0]
    pos += 4
    if 2 * arity > len(data) - pos:
        raise DecodeError(f"map declares {arity} pairs but only {len(data) - pos} bytes remain")
    flat, pos = _items(data, pos, depth, 2 * arity)
    pairs_of = iter(flat)
    try:
        result = dict(zip(pairs_of, pairs_of, strict=False))
    except TypeError:  # a list or map used as a key
        pairs_of = iter(flat)
        result = {_map_key(k): v for k, v in zip(pairs_of, pairs_of, strict=False)}
    if len(result) != arity:  # Python merged keys Erlang keeps apart (1 and 1.0, 1 and true)
        pairs_of = iter(flat)
        result = {
            (StrictKey(k) if type(k) in (int, float, bool) else _map_key(k)): v
            for k, v in zip(pairs_of, pairs_of, strict=False)
        }
        if len(result) != arity:
            raise DecodeError("map holds the same key twice")
    return result, pos


def _new_fun(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    size = _u32(data, pos)[0]
    end = pos + size
    if size < 29:
        raise DecodeError(f"NEW_FUN_EXT declares {size} bytes, fewer than its fixed fields")
    _need(data, end)
    arity = data[pos + 4]
    uniq = data[pos + 5 : pos + 21]
    index, num_free = _u32x2(data, pos + 21)
    if num_free > end - pos:
        raise DecodeError(f"fun declares {num_free} free variables in {size} bytes")
    if depth >= MAX_DEPTH:
        raise DecodeError(f"term nested deeper than {MAX_DEPTH} levels")
    depth += 1
    dispatch = _DISPATCH
    cur = pos + 29
    module, cur = dispatch[data[cur]](data, cur + 1, depth)
    old_index, cur = dispatch[data[cur]](data, cur + 1, depth)
    old_uniq, cur = dispatch[data[cur]](data, cur + 1, depth)
    pid, cur = dispatch[data[cur]](data, cur + 1, depth)
    free_vars = []
    for _ in range(num_free):
        item, cur = dispatch[data[cur]](data, cur + 1, depth)
        free_vars.append(item)
    if cur != end:
        raise DecodeError(f"NEW_FUN_EXT size {size} does not match its content ({cur - pos})")
    if type(module) is not Atom or type(pid) is not Pid:
        raise DecodeError("NEW_FUN_EXT with a malformed module or pid")
    return Fun(arity, uniq, index, module, old_index, old_uniq, pid, free_vars), end


def _export(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    dispatch = _DISPATCH
    module, pos = dispatch[data[pos]](data, pos + 1, depth)
    function, pos = dispatch[data[pos]](data, pos + 1, depth)
    arity, pos = dispatch[data[pos]](data, pos + 1, depth)
    if type(module) is not Atom or type(function) not in (Atom, bool) or type(arity) is not int:
        raise DecodeError("EXPORT_EXT with a malformed module, function or arity")
    return Export(module, Atom(str(function).lower()) if type(function) is bool else function, arity), pos


def _compressed(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    size = _u32(data, pos)[0]
    if size > MAX_DECOMPRESSED:
        raise DecodeError(f"compressed term declares {size} bytes, over the {MAX_DECOMPRESSED} limit")
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data[pos + 4 :], size + 1)
    except zlib.error as exc:
        raise DecodeError(f"compressed term is not valid zlib data: {exc}") from exc
    if len(raw) != size:
        raise DecodeError(f"compressed term inflates to {len(raw)} bytes, declared {size}")
    if not inflater.eof:
        raise DecodeError("compressed term is longer than declared")
    term, used = _DISPATCH[raw[0]](raw, 1, depth)
    if used != size:
        raise DecodeError("compressed term has trailing bytes")
    return term, len(data) - len(inflater.unused_data)


def _unsupported(name: str) -> _Decoder:
    def fail(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
        raise DecodeError(f"{name} is not supported (Arsenal never asks a node to send it)")

    return fail


def _unknown_tag(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    raise DecodeError(f"unknown term tag {data[pos - 1]} at offset {pos - 1}")


_DISPATCH: list[_Decoder] = [_unknown_tag] * 256
for _tag, _fn in {
    NEW_FLOAT_EXT: _new_float,
    BIT_BINARY_EXT: _bit_binary,
    ATOM_CACHE_REF: _unsupported("ATOM_CACHE_REF"),
    NEW_PID_EXT: _new_pid,
    NEW_PORT_EXT: _new_port,
    NEWER_REFERENCE_EXT: _newer_ref,
    SMALL_INTEGER_EXT: _small_int,
    INTEGER_EXT: _int,
    FLOAT_EXT: _old_float,
    ATOM_EXT: _atom_latin1,
    REFERENCE_EXT: _old_ref,
    PORT_EXT: _old_port,
    PID_EXT: _old_pid,
    SMALL_TUPLE_EXT: _small_tuple,
    LARGE_TUPLE_EXT: _large_tuple,
    NIL_EXT: _nil,
    STRING_EXT: _string,
    LIST_EXT: _list,
    BINARY_EXT: _binary,
    SMALL_BIG_EXT: _small_big,
    LARGE_BIG_EXT: _large_big,
    NEW_FUN_EXT: _new_fun,
    EXPORT_EXT: _export,
    NEW_REFERENCE_EXT: _new_ref,
    SMALL_ATOM_EXT: _small_atom_latin1,
    MAP_EXT: _map,
    FUN_EXT: _unsupported("FUN_EXT (pre-OTP 23 funs)"),
    ATOM_UTF8_EXT: _atom_utf8,
    SMALL_ATOM_UTF8_EXT: _small_atom_utf8,
    V4_PORT_EXT: _v4_port,
    LOCAL_EXT: _unsupported("LOCAL_EXT"),
}.items():
    _DISPATCH[_tag] = _fn


def decode_term(data: bytes, pos: int = 0) -> tuple[Term, int]:
    """Decode one versioned term (``131`` first) at ``pos``; return it and the offset after it."""
    try:
        if data[pos] != VERSION:
            raise DecodeError(f"expected version byte 131 at offset {pos}, found {data[pos]}")
        tag = data[pos + 1]
        if tag == COMPRESSED:
            return _compressed(data, pos + 2, 0)
        return _DISPATCH[tag](data, pos + 2, 0)
    except DecodeError:
        raise
    except (IndexError, struct.error) as exc:
        raise DecodeError(f"term truncated ({exc})") from None
    except RecursionError:
        raise DecodeError("term nested too deeply for this Python stack") from None
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:
        raise DecodeError(f"malformed term: {exc}") from None


def binary_to_term(data: bytes) -> Term:
    """Decode exactly one term; trailing bytes are an error (like ``binary_to_term/1``)."""
    if not isinstance(data, bytes):
        data = bytes(data)
    term, end = decode_term(data)
    if end != len(data):
        raise DecodeError(f"{len(data) - end} bytes left after the term")
    return term


# --------------------------------------------------------------------------- encoder

_pack_u16 = struct.Struct(">H").pack
_pack_u32 = struct.Struct(">I").pack
_pack_i32 = struct.Struct(">i").pack
_pack_f64 = struct.Struct(">d").pack
_pack_u32x3 = struct.Struct(">III").pack
_pack_u32x2 = struct.Struct(">II").pack


def _enc_atom_text(text: str, out: bytearray) -> None:
    raw = text.encode()
    if len(raw) < 256:
        out += bytes((SMALL_ATOM_UTF8_EXT, len(raw)))
    else:
        if len(text) > 255:
            raise EncodeError(f"atom longer than 255 characters: {text[:40]!r}…")
        out.append(ATOM_UTF8_EXT)
        out += _pack_u16(len(raw))
    out += raw


_atom_bytes_cache: dict[str, bytes] = {}


def _enc_atom(term: Any, out: bytearray) -> None:
    cached = _atom_bytes_cache.get(term)
    if cached is None:
        buf = bytearray()
        _enc_atom_text(term, buf)
        cached = bytes(buf)
        if len(_atom_bytes_cache) < _ATOM_CACHE_MAX:
            _atom_bytes_cache[term] = cached
    out += cached


def _enc_bool(term: bool, out: bytearray) -> None:
    out += b"\x77\x04true" if term else b"\x77\x05false"


def _enc_int(term: int, out: bytearray) -> None:
    if 0 <= term <= 255:
        out += bytes((SMALL_INTEGER_EXT, term))
    elif -(1 << 31) <= term < (1 << 31):
        out.append(INTEGER_EXT)
        out += _pack_i32(term)
    else:
        magnitude = -term if term < 0 else term
        digits = magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "little")
        if len(digits) < 256:
            out += bytes((SMALL_BIG_EXT, len(digits), term < 0))
        else:
            out.append(LARGE_BIG_EXT)
            out += _pack_u32(len(digits))
            out.append(term < 0)
        out += digits


def _enc_float(term: float, out: bytearray) -> None:
    if not math.isfinite(term):
        raise EncodeError(f"Erlang has no float {term!r}")
    out.append(NEW_FLOAT_EXT)
    out += _pack_f64(term)


def _enc_binary(term: Any, out: bytearray) -> None:
    out.append(BINARY_EXT)
    out += _pack_u32(len(term))
    out += term


def _enc_str(term: str, out: bytearray) -> None:
    _enc_binary(term.encode(), out)


def _enc_bitstring(term: BitString, out: bytearray) -> None:
    out.append(BIT_BINARY_EXT)
    out += _pack_u32(len(term.data))
    out.append(term.bits)
    out += term.data


def _enc_tuple(term: tuple[Any, ...], out: bytearray) -> None:
    if len(term) < 256:
        out += bytes((SMALL_TUPLE_EXT, len(term)))
    else:
        out.append(LARGE_TUPLE_EXT)
        out += _pack_u32(len(term))
    for item in term:
        _encode(item, out)


def _is_byte_list(term: Any) -> bool:
    return len(term) < 65536 and all(type(i) is int and 0 <= i <= 255 for i in term)


def _enc_list(term: Any, out: bytearray) -> None:
    if not term:
        out.append(NIL_EXT)
        return
    if _is_byte_list(term):
        out.append(STRING_EXT)
        out += _pack_u16(len(term))
        out += bytes(term)
        return
    out.append(LIST_EXT)
    out += _pack_u32(len(term))
    for item in term:
        _encode(item, out)
    out.append(NIL_EXT)


def _enc_improper(term: ImproperList, out: bytearray) -> None:
    if not term.items:
        raise EncodeError("an improper list needs at least one element before its tail")
    if type(term.tail) in (list, FrozenList):
        _enc_list([*term.items, *term.tail], out)
        return
    out.append(LIST_EXT)
    out += _pack_u32(len(term.items))
    for item in term.items:
        _encode(item, out)
    _encode(term.tail, out)


def _enc_map(term: Any, out: bytearray) -> None:
    pairs = term.items() if type(term) is dict else term
    out.append(MAP_EXT)
    out += _pack_u32(len(pairs))
    for key, value in pairs:
        _encode(key, out)
        _encode(value, out)


def _enc_pid(term: Pid, out: bytearray) -> None:
    out.append(NEW_PID_EXT)
    _enc_atom(term.node, out)
    out += _pack_u32x3(term.id, term.serial, term.creation)


def _enc_port(term: Port, out: bytearray) -> None:
    if term.id > 0xFFFFFFFF:
        out.append(V4_PORT_EXT)
        _enc_atom(term.node, out)
        out += struct.pack(">QI", term.id, term.creation)
    else:
        out.append(NEW_PORT_EXT)
        _enc_atom(term.node, out)
        out += _pack_u32x2(term.id, term.creation)


def _enc_ref(term: Ref, out: bytearray) -> None:
    out.append(NEWER_REFERENCE_EXT)
    out += _pack_u16(len(term.ids))
    _enc_atom(term.node, out)
    out += _pack_u32(term.creation)
    out += struct.pack(f">{len(term.ids)}I", *term.ids)


def _enc_fun(term: Fun, out: bytearray) -> None:
    body = bytearray()
    body.append(term.arity)
    body += term.uniq
    body += _pack_u32x2(term.index, len(term.free_vars))
    _enc_atom(term.module, body)
    _encode(term.old_index, body)
    _encode(term.old_uniq, body)
    _enc_pid(term.pid, body)
    for var in term.free_vars:
        _encode(var, body)
    out.append(NEW_FUN_EXT)
    out += _pack_u32(len(body) + 4)
    out += body


def _enc_export(term: Export, out: bytearray) -> None:
    out.append(EXPORT_EXT)
    _enc_atom(term.module, out)
    _enc_atom(term.function, out)
    out += bytes((SMALL_INTEGER_EXT, term.arity))


def _enc_strict_key(term: StrictKey, out: bytearray) -> None:
    _encode(term.value, out)


_ENCODERS: dict[type, Callable[[Any, bytearray], None]] = {
    Atom: _enc_atom,
    bool: _enc_bool,
    int: _enc_int,
    float: _enc_float,
    bytes: _enc_binary,
    bytearray: _enc_binary,
    memoryview: _enc_binary,
    str: _enc_str,
    BitString: _enc_bitstring,
    tuple: _enc_tuple,
    list: _enc_list,
    FrozenList: _enc_list,
    ImproperList: _enc_improper,
    dict: _enc_map,
    FrozenMap: _enc_map,
    Pid: _enc_pid,
    Port: _enc_port,
    Ref: _enc_ref,
    Fun: _enc_fun,
    Export: _enc_export,
    StrictKey: _enc_strict_key,
}


def _encode(term: Any, out: bytearray) -> None:
    encoder = _ENCODERS.get(type(term))
    if encoder is None:
        encoder = _encoder_for_subclass(term)
    encoder(term, out)


def _encoder_for_subclass(term: Any) -> Callable[[Any, bytearray], None]:
    for kind in (bool, int, float, Atom, str, bytes, tuple, list, dict):
        if isinstance(term, kind):
            return _ENCODERS[kind]
    raise EncodeError(
        f"cannot encode {type(term).__name__} as an Erlang term; use int, float, Atom, str, bytes, "
        "tuple, list, dict or the types in arsenal.dist.terms"
    )


def encode_term(term: Term, out: bytearray) -> None:
    """Append ``term`` with its version byte to ``out``."""
    out.append(VERSION)
    try:
        _encode(term, out)
    except RecursionError:
        raise EncodeError("term nested too deeply to encode") from None
    except struct.error as exc:
        raise EncodeError(f"a field is out of range: {exc}") from None


def encode_into(term: Term, out: bytearray) -> None:
    """Append ``term`` without a version byte (to build frames from pre-encoded parts)."""
    _encode(term, out)


def term_to_binary(term: Term) -> bytes:
    """Encode ``term`` as ``term_to_binary/1`` would."""
    out = bytearray()
    encode_term(term, out)
    return bytes(out)
