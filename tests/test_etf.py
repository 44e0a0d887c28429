"""The external term format: checked against a real node, by properties, and with hostile input."""

from __future__ import annotations

import contextlib
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arsenal.beam import Node
from arsenal.dist import (
    Atom,
    BitString,
    DecodeError,
    Export,
    FrozenList,
    Fun,
    ImproperList,
    Pid,
    Port,
    Ref,
    StrictKey,
)
from arsenal.dist.etf import MAX_DEPTH, binary_to_term, term_to_binary

from .strategies import terms

A = Atom

# Terms built by the node itself: every kind it can send, written as Erlang source.
NODE_CORPUS = """[
  0, 255, 256, -1, 2147483647, -2147483648, 2147483648, 1 bsl 64, -(1 bsl 64), 1 bsl 2100,
  0.0, -0.0, 1.5, 1.0e300, -2.5e-300,
  atom, '', 'with space', 'ünïcødé', true, false, undefined, nil,
  <<>>, <<"text">>, <<0, 255, 128>>, <<1:1>>, <<3:7>>, <<1, 2, 5:3>>,
  {}, {a}, list_to_tuple(lists:seq(1, 300)),
  [], "string", [1000, 2000], [a | b], [1, 2 | <<"tail">>], lists:seq(1, 70000),
  #{}, #{a => 1, <<"b">> => [2], {c} => #{d => e}},
  maps:from_list([{K, K * 2} || K <- lists:seq(1, 100)]),
  #{[1, 2] => list_key, #{x => y} => map_key, 1 => int, 1.0 => float},
  self(), make_ref(), alias(), hd(erlang:ports()),
  fun lists:map/2, fun(X) -> X + 1 end, fun() -> self() end
]"""


@pytest.fixture(scope="module")
async def node(erl, cookie):
    async with Node(erl.name, cookie=cookie, agent=False, reconnect=False) as attached:
        yield attached


async def _node_encode(node: Node, source: str) -> bytes:
    expr = f"term_to_binary({source}, [{{minor_version, 2}}])"
    return await node.call("arsenal_test_support", "eval", [expr.encode()])


@pytest.mark.timeout(60)
async def test_every_tag_a_node_sends_decodes_and_encodes_back_byte_for_byte(node: Node) -> None:
    data = await _node_encode(node, NODE_CORPUS)
    corpus = binary_to_term(data)
    by_index = dict(enumerate(corpus))
    # A port whose id fits 32 bits is written NEW_PORT_EXT, which every release reads; from OTP 26 on
    # the node writes every port as V4_PORT_EXT. Everything else comes back byte for byte.
    port = by_index[45]
    node_name = term_to_binary(port.node)[1:]
    v4_port = bytes([120]) + node_name + struct.pack(">QI", port.id, port.creation)
    new_port = bytes([89]) + node_name + struct.pack(">II", port.id, port.creation)
    assert data.count(v4_port) + data.count(new_port) == 1
    assert term_to_binary(corpus) == data.replace(v4_port, new_port)
    assert by_index[9] == 1 << 2100
    assert by_index[12] == 1.5 and by_index[14] == -2.5e-300
    assert by_index[18] == A("ünïcødé")
    assert by_index[19] is True and by_index[20] is False
    assert by_index[26] == BitString(b"\x80", 1)
    assert by_index[28] == BitString(b"\x01\x02\xa0", 3)
    assert by_index[35] == ImproperList([A("a")], A("b"))
    assert by_index[37] == list(range(1, 70001))
    weird = by_index[41]
    assert weird[StrictKey(1)] == A("int") and weird[StrictKey(1.0)] == A("float")
    assert isinstance(by_index[42], Pid) and isinstance(by_index[43], Ref) and isinstance(by_index[44], Ref)
    assert isinstance(by_index[45], Port)
    assert by_index[46] == Export(A("lists"), A("map"), 2)
    assert isinstance(by_index[47], Fun) and by_index[47].arity == 1


@pytest.mark.timeout(60)
async def test_compressed_terms_from_the_node(node: Node) -> None:
    data = await node.call(
        "arsenal_test_support", "eval", [b'term_to_binary(lists:duplicate(5000, <<"abc">>), [compressed])']
    )
    assert data[1] == 80
    assert binary_to_term(data) == [b"abc"] * 5000


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(term=terms(with_funs=False))
@pytest.mark.timeout(300)
async def test_terms_survive_a_round_trip_through_the_node(node: Node, term: object) -> None:
    # We encode, the node decodes and encodes again, we decode: both directions at once.
    echoed = await node.call("erlang", "term_to_binary", [term, [(A("minor_version"), 2)]])
    assert _same(binary_to_term(echoed), term)


@settings(max_examples=500, deadline=None)
@given(term=terms())
def test_encode_decode_round_trip(term: object) -> None:
    assert _same(binary_to_term(term_to_binary(term)), term)


@settings(max_examples=3000, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_bytes_give_a_decode_error_or_a_term(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        binary_to_term(b"\x83" + data)


@settings(max_examples=1500, deadline=None)
@given(term=terms(), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4))
def test_corrupted_encodings_never_crash(term: object, flips: list[tuple[int, int]]) -> None:
    data = bytearray(term_to_binary(term))
    for where, value in flips:
        data[where % len(data)] = value
    with contextlib.suppress(DecodeError):
        binary_to_term(bytes(data))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x83l\x7f\xff\xff\xff", "list declares"),  # 2**31 elements in 6 bytes
        (b"\x83i\xff\xff\xff\xff", "tuple declares"),
        (b"\x83t\x7f\xff\xff\xff", "map declares"),
        (b"\x83m\x7f\xff\xff\xff" + b"x" * 10, "truncated"),
        (b"\x83P\x7f\xff\xff\xff" + zlib.compress(b"x"), "over the"),
        (b"\x83P\x00\x00\x00\x10" + zlib.compress(b"\x6a"), "inflates to"),
        (b"\x83" + b"h\x01" * (MAX_DEPTH + 10) + b"j", "nested deeper"),
        (b"\x83" + b"l\x00\x00\x00\x01" * (MAX_DEPTH + 10) + b"j", "nested deeper"),
        (b"\x83R\x00", "ATOM_CACHE_REF"),
        (b"\x83\xff", "unknown term tag"),
        (b"\x84j", "version byte"),
        (b"\x83jj", "bytes left"),
        (b"\x83w\x02\xff\xfe", "UTF-8"),
        (b"\x83Z\x00\x09", "id words"),
    ],
)
def test_hostile_input_is_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        binary_to_term(data)


def test_a_zip_bomb_is_not_inflated_past_its_declared_size() -> None:
    bomb = zlib.compress(b"\x00" * 50_000_000)
    with pytest.raises(DecodeError):
        binary_to_term(b"\x83P" + struct.pack(">I", 100) + bomb)


def test_python_values_without_an_erlang_twin_are_refused() -> None:
    from arsenal.dist import EncodeError

    for value in (None, object(), float("nan"), {1, 2}):
        with pytest.raises(EncodeError):
            term_to_binary(value)


def _same(left: object, right: object) -> bool:
    """Equality that also tells 1 from 1.0 from True, as Erlang's =:= does."""
    if type(left) is not type(right):
        if isinstance(left, (str, bytes)) and isinstance(right, str) and not isinstance(right, Atom):
            return left == right.encode()  # a Python str goes out as a binary
        if isinstance(left, list) and isinstance(right, tuple) and type(right).__name__ == "FrozenList":
            return all(_same(a, b) for a, b in zip(left, right, strict=True))
        return False
    if isinstance(left, (list, tuple)):
        return len(left) == len(right) and all(_same(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict):
        return len(left) == len(right) and all(k in right and _same(v, right[k]) for k, v in left.items())
    if isinstance(left, float):
        return struct.pack(">d", left) == struct.pack(">d", right)
    if isinstance(left, ImproperList):
        return _same(left.items, right.items) and _same(left.tail, right.tail)
    return left == right


async def test_a_map_keyed_by_both_an_empty_list_and_an_empty_tuple(node: Node) -> None:
    data = await _node_encode(node, "#{[] => list, {} => tuple, 0 => zero}")
    decoded = binary_to_term(data)
    assert len(decoded) == 3
    assert decoded[FrozenList([])] == A("list") and decoded[()] == A("tuple") and decoded[0] == A("zero")
    assert term_to_binary(decoded) == data


def test_zero_and_negative_zero_stay_apart_as_keys() -> None:
    # Distinct map keys since OTP 27; Python's == would merge them.
    data = b"\x83t\x00\x00\x00\x02F" + struct.pack(">d", 0.0) + b"a\x01F" + struct.pack(">d", -0.0) + b"a\x02"
    decoded = binary_to_term(data)
    assert decoded == {StrictKey(0.0): 1, StrictKey(-0.0): 2}
    assert term_to_binary(decoded) == data
