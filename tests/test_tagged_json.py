"""Tagged JSON: exact round trips for every term, the documented scheme, and every refusal."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
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
)
from arsenal.terms import TaggedJSONError, dumps, from_json, loads, to_json
from arsenal.terms.tagged_json import DEFAULT_MAX_DEPTH, MAX_SAFE_INTEGER

from .strategies import erlang_map, floats, integers, same_term, terms

PID = Pid(Atom("app@host"), 80, 0, 3)
PID_JSON = {"$pid": {"node": "app@host", "id": 80, "serial": 0, "creation": 3}}
FUN = Fun(1, bytes(range(16)), 2, Atom("m"), 2, 1234, PID, [Atom("x")])


def through_text(term: Any) -> Any:
    """What a client that parses and re-serialises the JSON with a plain JSON library sends back."""
    return from_json(json.loads(json.dumps(to_json(term))))


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------


@settings(max_examples=400)
@given(terms())
def test_every_term_round_trips_exactly(term: Any) -> None:
    assert same_term(through_text(term), term)
    assert same_term(loads(dumps(term)), term)
    assert same_term(loads(dumps(term, indent=2)), term)


@given(terms())
def test_output_is_strict_json(term: Any) -> None:
    # allow_nan=False would raise on NaN/inf; the text must parse back to the same JSON value
    value = to_json(term)
    assert json.loads(json.dumps(value, allow_nan=False)) == value


@given(integers())
def test_integers_are_plain_numbers_only_where_javascript_is_exact(n: int) -> None:
    encoded = to_json(n)
    if abs(n) <= MAX_SAFE_INTEGER:
        assert type(encoded) is int and encoded == n
    else:
        assert encoded == {"$int": str(n)}


@given(floats())
def test_floats_are_tagged_only_when_javascript_would_read_an_integer(x: float) -> None:
    encoded = to_json(x)
    if x.is_integer():
        assert encoded == {"$float": repr(x)}
    else:
        assert type(encoded) is float and encoded == x
    assert same_term(from_json(json.loads(json.dumps(encoded))), x)


@given(st.lists(st.tuples(terms(max_leaves=4), terms(max_leaves=4)), max_size=6))
def test_maps_with_any_keys_round_trip(pairs: list[tuple[Any, Any]]) -> None:
    term = erlang_map(pairs)
    assert same_term(through_text(term), term)


# ---------------------------------------------------------------------------
# The scheme, kind by kind
# ---------------------------------------------------------------------------

SCHEME = [
    (42, 42),
    (-(2**53) + 1, -(2**53) + 1),
    (2**53, {"$int": "9007199254740992"}),
    (-(2**64), {"$int": "-18446744073709551616"}),
    (1.5, 1.5),
    (2.0, {"$float": "2.0"}),
    (-0.0, {"$float": "-0.0"}),
    (1e300, {"$float": "1e+300"}),
    (True, True),
    (False, False),
    (Atom("ok"), {"$atom": "ok"}),
    (Atom("true"), {"$atom": "true"}),
    (b"hello", "hello"),
    ("héllo".encode(), "héllo"),
    (b"\xff\x00", {"$bin": "/wA="}),
    (b"", ""),
    (BitString(b"\x01\xa0", 3), {"$bits": {"data": "AaA=", "bits": 3}}),
    ([1, 2], [1, 2]),
    ([], []),
    ((1, Atom("a")), {"$tuple": [1, {"$atom": "a"}]}),
    ((), {"$tuple": []}),
    (ImproperList([1, 2], Atom("t")), {"$improper": {"items": [1, 2], "tail": {"$atom": "t"}}}),
    ({b"name": b"web", b"port": 8080}, {"name": "web", "port": 8080}),
    ({}, {}),
    ({Atom("a"): 1}, {"$map": [[{"$atom": "a"}, 1]]}),
    ({b"$atom": b"x"}, {"$map": [["$atom", "x"]]}),
    ({b"\xff": 1}, {"$map": [[{"$bin": "/w=="}, 1]]}),
    ({FrozenList([1]): 2}, {"$map": [[{"$flist": [1]}, 2]]}),
    ({FrozenMap(((b"k", 1),)): 2}, {"$map": [[{"$fmap": [["k", 1]]}, 2]]}),
    (
        {StrictKey(1): 1, StrictKey(1.0): 2},
        {"$map": [[{"$strict": 1}, 1], [{"$strict": {"$float": "1.0"}}, 2]]},
    ),
    (PID, PID_JSON),
    (Port(Atom("a@h"), 2**60, 1), {"$port": {"node": "a@h", "id": {"$int": str(2**60)}, "creation": 1}}),
    (Ref(Atom("a@h"), 1, (3, 2, 1)), {"$ref": {"node": "a@h", "creation": 1, "ids": [3, 2, 1]}}),
    (Export(Atom("lists"), Atom("map"), 2), {"$export": {"module": "lists", "function": "map", "arity": 2}}),
    (
        FUN,
        {
            "$fun": {
                "module": "m",
                "arity": 1,
                "index": 2,
                "uniq": "000102030405060708090a0b0c0d0e0f",
                "old_index": 2,
                "old_uniq": 1234,
                "pid": PID_JSON,
                "free_vars": [{"$atom": "x"}],
            }
        },
    ),
]


@pytest.mark.parametrize(("term", "expected"), SCHEME, ids=[repr(t)[:40] for t, _ in SCHEME])
def test_scheme(term: Any, expected: Any) -> None:
    assert to_json(term) == expected
    assert same_term(from_json(expected), term)


def test_python_str_is_a_binary() -> None:
    assert to_json("héllo") == "héllo"
    assert to_json({"key": ["x"]}) == {"key": ["x"]}
    assert same_term(from_json(to_json("héllo")), "héllo".encode())


def test_dumps_is_compact_and_keeps_unicode() -> None:
    assert dumps((Atom("ok"), "日本")) == '{"$tuple":[{"$atom":"ok"},"日本"]}'
    assert dumps([1], indent=2) == "[\n  1\n]"


def test_atom_true_stays_an_atom_object() -> None:
    # Not canonical (the decoder gives True), but what was written is what comes back.
    back = from_json(to_json(Atom("true")))
    assert type(back) is Atom and back == "true"


# ---------------------------------------------------------------------------
# Lenient but unambiguous input from clients
# ---------------------------------------------------------------------------


def test_python_floats_and_ints_keep_their_type() -> None:
    assert same_term(from_json(2.0), 2.0)
    assert same_term(from_json(2), 2)
    assert same_term(from_json(10**30), 10**30)


def test_int_and_float_tags_accept_numbers_and_hex() -> None:
    assert same_term(from_json({"$int": 5}), 5)
    assert same_term(from_json({"$int": "-0x1f"}), -31)
    assert same_term(from_json({"$float": 3}), 3.0)
    assert same_term(from_json({"$float": 2.5}), 2.5)
    assert same_term(from_json({"$float": "1e3"}), 1000.0)


def test_huge_integers_use_hex_past_the_decimal_limit() -> None:
    n = -(7**20000)  # more digits than Python converts to decimal
    encoded = to_json(n)
    assert encoded["$int"].startswith("-0x")  # type: ignore[index]
    assert same_term(loads(dumps(n)), n)


def test_map_keys_from_clients_are_frozen_and_kept_apart() -> None:
    term = from_json({"$map": [[[1, {"$map": [[[2], 3]]}], 4]]})
    assert same_term(term, {FrozenList([1, FrozenMap(((FrozenList([2]), 3),))]): 4})
    colliding = from_json({"$map": [[1, "a"], [{"$float": "1.0"}, "b"], [True, "c"], ["x", "d"]]})
    assert same_term(colliding, {StrictKey(1): b"a", StrictKey(1.0): b"b", StrictKey(True): b"c", b"x": b"d"})


def test_bit_string_data_is_kept_as_sent() -> None:
    assert same_term(from_json({"$bits": {"data": "/w==", "bits": 8}}), BitString(b"\xff", 8))


# ---------------------------------------------------------------------------
# Refusals: encoding
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_encode_refuses_nan_and_infinity(bad: float) -> None:
    with pytest.raises(TaggedJSONError, match="Erlang has no NaN") as info:
        to_json((1, [bad]))
    assert info.value.path == "$.$tuple[1][0]"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("bad", [None, object(), bytearray(b"x"), 1j, {1, 2}])
def test_encode_refuses_non_terms(bad: Any) -> None:
    with pytest.raises(TypeError, match="not an Erlang term"):
        to_json([bad])


def test_encode_refuses_lone_surrogates() -> None:
    with pytest.raises(TaggedJSONError, match="surrogate"):
        to_json("\ud800")


def test_malformed_improper_lists_cannot_be_built() -> None:
    # The term model refuses them, so neither the codec nor JSON ever meets one.
    with pytest.raises(ValueError, match="improper list"):
        ImproperList([1], [2])
    with pytest.raises(ValueError, match="improper list"):
        ImproperList([], 2)


def test_encode_refuses_the_same_binary_key_twice() -> None:
    with pytest.raises(TaggedJSONError, match="same binary key twice"):
        to_json({b"a": 1, "a": 2})


def nested_lists(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_depth_limit_is_exact_both_ways() -> None:
    deepest = nested_lists(DEFAULT_MAX_DEPTH)
    assert same_term(from_json(to_json(deepest)), deepest)
    too_deep = nested_lists(DEFAULT_MAX_DEPTH + 1)
    with pytest.raises(TaggedJSONError, match="nested deeper than 200"):
        to_json(too_deep)
    with pytest.raises(TaggedJSONError, match="nested deeper than 200"):
        from_json(too_deep)
    assert same_term(from_json(too_deep, max_depth=201), too_deep)
    with pytest.raises(TaggedJSONError):
        from_json(nested_lists(3), max_depth=2)


def test_depth_counts_containers_inside_tags() -> None:
    term: Any = 1
    for _ in range(DEFAULT_MAX_DEPTH):
        term = (term,)
    assert same_term(loads(dumps(term)), term)  # 200 tuples, 400 JSON levels
    with pytest.raises(TaggedJSONError, match="nested deeper"):
        to_json((term,))


def test_max_depth_past_the_python_stack_is_an_error_not_a_crash() -> None:
    deep = nested_lists(5000)
    with pytest.raises(TaggedJSONError, match="Python's stack"):
        to_json(deep, max_depth=10**6)
    with pytest.raises(TaggedJSONError, match="Python's stack"):
        from_json(deep, max_depth=10**6)


# ---------------------------------------------------------------------------
# Refusals: decoding untrusted JSON, each naming where
# ---------------------------------------------------------------------------

PID_FIELDS = {"node": "a@h", "id": 1, "serial": 0, "creation": 1}
BAD_INPUT = [
    (None, "$", "null is not a term"),
    ((1, 2), "$", "not a JSON value"),
    (math.inf, "$", "no NaN or infinity"),
    ("\ud800", "$", "lone surrogate"),
    ({"a": [1, None]}, "$.a[1]", "null"),
    ({"a b": {"$nope": 1}}, '$["a b"]', "unknown tag '$nope'"),
    ({"$tuple": [1], "x": 2}, "$", "must be alone"),
    ({1: 2}, "$", "keys must be strings"),
    ({"$int": "12x"}, "$.$int", "decimal string"),
    ({"$int": True}, "$.$int", "decimal string"),
    ({"$int": "0123"}, "$.$int", "decimal string"),
    ({"$int": "9" * 5000}, "$.$int", "5000 digits"),
    ({"$float": "nan"}, "$.$float", "decimal float"),
    ({"$float": "1e999"}, "$.$float", "no NaN or infinity"),
    ({"$float": 10**400}, "$.$float", "too large"),
    ({"$float": None}, "$.$float", "decimal float"),
    ({"$atom": 1}, "$.$atom", "atom name"),
    ({"$atom": "a" * 256}, "$.$atom", "256 characters"),
    ({"$atom": "\udc00"}, "$.$atom", "lone surrogate"),
    ({"$bin": "***"}, "$.$bin", "base64"),
    ({"$bin": 5}, "$.$bin", "base64"),
    ({"$bits": {"data": "AQ=="}}, "$.$bits", "missing bits"),
    ({"$bits": {"data": "AQ==", "bits": 9}}, "$.$bits.bits", "out of range 1..8"),
    ({"$bits": {"data": "", "bits": 1}}, "$.$bits.data", "at least one byte"),
    ({"$bits": [1]}, "$.$bits", "expected an object"),
    ({"$tuple": {}}, "$.$tuple", "expected an array"),
    ({"$improper": {"items": [], "tail": 1}}, "$.$improper", "at least one item"),
    ({"$improper": {"items": [1], "tail": [2]}}, "$.$improper", "tail must not be a list"),
    ({"$improper": {"items": [1]}}, "$.$improper", "missing tail"),
    ({"$map": {"a": 1}}, "$.$map", "pairs"),
    ({"$map": [[1, 2, 3]]}, "$.$map[0]", "[key, value] pair"),
    ({"$map": [[1, 2], [1, 3]]}, "$.$map[1][0]", "twice"),
    ({"$map": [[[1], 2], [[1], 3]]}, "$.$map[1][0]", "twice"),
    ({"$fmap": [1]}, "$.$fmap[0]", "pair"),
    ({"$flist": "x"}, "$.$flist", "array"),
    ({"$strict": None}, "$.$strict", "null"),
    ({"$pid": {**PID_FIELDS, "extra": 1}}, "$.$pid", "unknown extra"),
    ({"$pid": {**PID_FIELDS, "id": -1}}, "$.$pid.id", "out of range"),
    ({"$pid": {**PID_FIELDS, "serial": 2**32}}, "$.$pid.serial", "out of range"),
    ({"$pid": {**PID_FIELDS, "node": 5}}, "$.$pid.node", "atom name"),
    ({"$port": {"node": "a@h", "id": "1", "creation": 1}}, "$.$port.id", "expected an integer"),
    ({"$port": {"node": "a@h", "id": {"$int": str(2**64)}, "creation": 1}}, "$.$port.id", "out of range"),
    ({"$port": {"node": "a@h", "id": {"$int": "x"}, "creation": 1}}, "$.$port.id.$int", "decimal string"),
    ({"$port": {"node": "a@h", "id": True, "creation": 1}}, "$.$port.id", "expected an integer"),
    ({"$ref": {"node": "a@h", "creation": 1, "ids": []}}, "$.$ref.ids", "1 to 5"),
    ({"$ref": {"node": "a@h", "creation": 1, "ids": [1, "x"]}}, "$.$ref.ids[1]", "expected an integer"),
    ({"$export": {"module": "m", "function": "f", "arity": 256}}, "$.$export.arity", "out of range"),
    ({"$fun": {**to_json(FUN)["$fun"], "uniq": "00"}}, "$.$fun.uniq", "32 hexadecimal"),  # type: ignore[index]
    ({"$fun": {**to_json(FUN)["$fun"], "pid": 1}}, "$.$fun.pid", "expected a pid"),  # type: ignore[index]
    ({"$fun": {**to_json(FUN)["$fun"], "free_vars": [None]}}, "$.$fun.free_vars[0]", "null"),  # type: ignore[index]
    (
        {"state": {"$tuple": [1, {"items": [0, 1, 2, {"$x": 1}]}]}},
        "$.state.$tuple[1].items[3]",
        "unknown tag",
    ),
]


@pytest.mark.parametrize(("value", "path", "reason"), BAD_INPUT, ids=[p + " " + r for _, p, r in BAD_INPUT])
def test_decode_refuses_bad_input_and_says_where(value: Any, path: str, reason: str) -> None:
    with pytest.raises(TaggedJSONError) as info:
        from_json(value)
    assert info.value.path == path
    assert reason in info.value.reason
    assert str(info.value) == f"{info.value.reason} (at {path})"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{", "not JSON"),
        ("[1, NaN]", "NaN is not JSON"),
        ("Infinity", "Infinity is not JSON"),
        ('{"a": 1, "a": 2}', "key 'a' twice"),
        ("1" * 5000, "not JSON"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("[" * 201 + "]" * 201, "nested deeper than 200"),
        (b"\xff", "not JSON"),
    ],
)
def test_loads_refuses_bad_text(text: str | bytes, reason: str) -> None:
    with pytest.raises(TaggedJSONError, match=reason):
        loads(text)
