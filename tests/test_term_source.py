"""Reading literal Erlang and Elixir terms (``arsenal.terms.source``), the reverse of ``render``.

Concrete inputs in both languages, every kind of bad input with the line/column it is reported
at, the bounds, and a property: ``parse_term(render(t, lang), lang)`` is ``t`` for every term that
has a literal syntax (no pids, ports, refs or local funs).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arsenal.dist.terms import Atom, BitString, Export, FrozenList, ImproperList, Pid, StrictKey, freeze
from arsenal.terms.render import render
from arsenal.terms.source import MAX_DEPTH, MAX_ITEMS, MAX_TEXT, TermSourceError, atoms, parse_term

from .strategies import atoms as atom_terms
from .strategies import binaries, bitstrings, erlang_map, exports, floats, integers, same_term

A = Atom


def _same(text: str, language: Any, expected: Any) -> None:
    parsed = parse_term(text, language)
    assert same_term(parsed, expected), f"{text!r} parsed as {parsed!r}, expected {expected!r}"


# ----------------------------------------------------------------------------------- Erlang


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '#{count => 3, <<"k">> => [1, 2.5, "str"], {a, \'B c\'} => x}',
            {A("count"): 3, b"k": [1, 2.5, [115, 116, 114]], (A("a"), A("B c")): A("x")},
        ),
        ('"abc"', [97, 98, 99]),
        ('"a" "b"', [97, 98]),
        ('""', []),
        ('<<"x">>', b"x"),
        ("<<1,2>>", b"\x01\x02"),
        ("<<>>", b""),
        ('<<"é"/utf8>>', "é".encode()),
        ('<<"é">>', b"\xe9"),
        ('<<"ab", 1, "c">>', b"ab\x01c"),
        ("<<1,15:4>>", BitString(b"\x01\xf0", 4)),
        ("<<1:1>>", BitString(b"\x80", 1)),
        ("<<-1>>", b"\xff"),
        ("<<1:16>>", b"\x00\x01"),
        ("-5", -5),
        ("- 2.5", -2.5),
        ("-0.0", -0.0),
        ("[1,2|3]", ImproperList([1, 2], 3)),
        ("[1|[2,3]]", [1, 2, 3]),
        ("[a|[b|c]]", ImproperList([A("a"), A("b")], A("c"))),
        ("[]", []),
        ("{}", ()),
        ("#{}", {}),
        ("{ok, 16#FF, 2#101, $a, $\\n, 1_000}", (A("ok"), 255, 5, 97, 10, 1000)),
        ("1.0e10", 1.0e10),
        ("2.5E-3", 2.5e-3),
        ("{true, false, nil, undefined}", (True, False, A("nil"), A("undefined"))),
        ("'hello world'", A("hello world")),
        ("'\\'q\\\\'", A("'q\\")),
        ("'\\000\\d\\e\\x{1F600}'", A("\x00\x7f\x1b\U0001f600")),
        ("'Elixir.Foo'", A("Elixir.Foo")),
        ("'case'", A("case")),
        ("ünïcode", A("ünïcode")),
        ("a@b", A("a@b")),
        ("fun lists:map/2", Export(A("lists"), A("map"), 2)),
        ("fun erlang:'+'/2", Export(A("erlang"), A("+"), 2)),
        ("{a, 1}.", (A("a"), 1)),
        ("% a comment\n{a, % another\n 1}", (A("a"), 1)),
        ("#{[1] => a, #{k => v} => b}", {FrozenList([1]): A("a"), freeze({A("k"): A("v")}): A("b")}),
        ("#{1 => a, 1.0 => b}", {StrictKey(1): A("a"), StrictKey(1.0): A("b")}),
        ("#{1 => a, true => b}", {StrictKey(1): A("a"), StrictKey(True): A("b")}),
        ("  \n {a}  \n", (A("a"),)),
    ],
)
def test_erlang_literals(text: str, expected: Any) -> None:
    _same(text, "erlang", expected)


# ----------------------------------------------------------------------------------- Elixir


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('%{count: 3, "k" => [1, 2.5]}', {A("count"): 3, b"k": [1, 2.5]}),
        ('%{"k" => 1, a: 2}', {b"k": 1, A("a"): 2}),
        ("[a: 1, b: :two]", [(A("a"), 1), (A("b"), A("two"))]),
        ("[1, a: 2]", [1, (A("a"), 2)]),
        (":ok", A("ok")),
        (':"with space"', A("with space")),
        (":'single'", A("single")),
        (":foo?", A("foo?")),
        (":Foo", A("Foo")),
        (":é", A("é")),
        (":+", A("+")),
        (":%{}", A("%{}")),
        (":..", A("..")),
        ("Foo.Bar", A("Elixir.Foo.Bar")),
        ("Elixir.Foo", A("Elixir.Foo")),
        ("Elixir", A("Elixir")),
        ("[true, false, nil]", [True, False, A("nil")]),
        ('"string"', b"string"),
        ('"é\\n\\x{1F600}\\u00e9\\#{x}"', "é\n\U0001f600é#{x}".encode()),
        ("'abc'", [97, 98, 99]),
        ('~c"abc"', [97, 98, 99]),
        ("~c'a\"b'", [97, 34, 98]),
        ('~s"abc"', b"abc"),
        ("{:ok, {1, 2}}", (A("ok"), (1, 2))),
        ("%Mod{a: 1}", {A("__struct__"): A("Elixir.Mod"), A("a"): 1}),
        ("%Foo.Bar{}", {A("__struct__"): A("Elixir.Foo.Bar")}),
        ("<<1, 2>>", b"\x01\x02"),
        ('<<"ab", 0>>', b"ab\x00"),
        ("<<1, 15::size(4)>>", BitString(b"\x01\xf0", 4)),
        ("<<3::2>>", BitString(b"\xc0", 2)),
        ('<<"é"::binary>>', "é".encode()),
        ("{-1, -2.5, ?a, ?\\s, 0xFF, 0b101, 0o17, 1_000_000}", (-1, -2.5, 97, 32, 255, 5, 15, 1000000)),
        ("[1, 2 | 3]", ImproperList([1, 2], 3)),
        ("[1 | [2]]", [1, 2]),
        ('["a b": 1, "Elixir.Foo": 2]', [(A("a b"), 1), (A("Elixir.Foo"), 2)]),
        ("[+: 1, %{}: 2, nil: 3, true: 4]", [(A("+"), 1), (A("%{}"), 2), (A("nil"), 3), (True, 4)]),
        ("%{Foo: 1, é: 2}", {A("Foo"): 1, A("é"): 2}),
        ("&Enum.map/2", Export(A("Elixir.Enum"), A("map"), 2)),
        ("&:erlang.+/2", Export(A("erlang"), A("+"), 2)),
        ('&Foo."a b"/0', Export(A("Elixir.Foo"), A("a b"), 0)),
        ("# comment\n{:a, # more\n 1}", (A("a"), 1)),
    ],
)
def test_elixir_literals(text: str, expected: Any) -> None:
    _same(text, "elixir", expected)


# -------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("text", "language", "line", "column", "fragment"),
    [
        ("X", "erlang", 1, 1, "X is a variable"),
        ("{a,\n  Var}", "erlang", 2, 3, "Var is a variable"),
        ("x", "elixir", 1, 1, "x is a variable"),
        ("foo(1)", "elixir", 1, 1, "is a call"),
        ("Foo.bar()", "elixir", 1, 5, "calls are not allowed"),
        ("lists:map(1)", "erlang", 1, 6, "expected the end of the text"),
        ("{1,", "erlang", 1, 4, "found the end of the text"),
        ("[1, 2", "elixir", 1, 6, "to close the '['"),
        ("{1 2}", "erlang", 1, 4, "to close the '{'"),
        ("1 + 2", "erlang", 1, 3, "unexpected character '+'"),
        ("1 + 2", "elixir", 1, 3, "expected the end of the text"),
        ("1 - 2", "erlang", 1, 3, "expected the end of the text"),
        ("-a", "erlang", 1, 2, "a number after '-'"),
        ("<0.1.0>", "erlang", 1, 1, "tagged JSON"),
        ("#PID<0.1.0>", "elixir", 1, 1, "tagged JSON"),
        ("#Ref<0.1.2.3>", "erlang", 1, 1, "tagged JSON"),
        ("#Function<1.2/0 in Foo>", "elixir", 1, 1, "tagged JSON"),
        ("#rec{a = 1}", "erlang", 1, 1, "records are not supported"),
        ('"a#{b}"', "elixir", 1, 3, "interpolation"),
        ("'a#{b}'", "elixir", 1, 3, "interpolation"),
        ('"""\nx\n"""', "elixir", 1, 1, "heredocs"),
        ("#{a => 1, a => 2}", "erlang", 1, 11, "appears twice"),
        ("%{a: 1, a: 2}", "elixir", 1, 9, "appears twice"),
        ("#{a := 1}", "erlang", 1, 5, "':='"),
        ("#{a}", "erlang", 1, 4, "'=>' after the map key"),
        ("<<256>>", "erlang", 1, 3, "does not fit in 8 bits"),
        ("<<2::1>>", "elixir", 1, 3, "does not fit in 1 bits"),
        ("<<1.5>>", "erlang", 1, 3, "not a float"),
        ("<<a>>", "erlang", 1, 3, "a binary segment"),
        ('<<"日">>', "erlang", 1, 3, "need /utf8"),
        ("<<1/float>>", "erlang", 1, 4, "'>>'"),
        ("<<1::float>>", "elixir", 1, 6, "a size"),
        ("", "erlang", 1, 1, "expected a term"),
        ("   ", "elixir", 1, 4, "expected a term"),
        ("[a: 1, 2]", "elixir", 1, 8, "keywords go last"),
        ("{a: 1}", "elixir", 1, 2, "can only appear in a list or map"),
        ("case", "erlang", 1, 1, "reserved word"),
        ('"abc', "erlang", 1, 1, "unterminated"),
        ("'abc", "elixir", 1, 1, "unterminated"),
        ("1.5e999", "elixir", 1, 1, "out of range"),
        ("2#102", "erlang", 1, 1, "not a valid number"),
        ("37#1", "erlang", 1, 1, "not a valid number"),
        ("~w(a b)", "elixir", 1, 1, "only the sigils"),
        ("%{a => 1}", "elixir", 1, 3, "a is a variable"),
        ("%", "elixir", 1, 2, "struct name"),
        ("fun 1", "erlang", 1, 5, "a module name after 'fun'"),
        ("fun foo/1", "erlang", 1, 1, "only external funs"),
        ("fun lists:map", "erlang", 1, 14, "'/' and the arity"),
        ("fun lists:map/300", "erlang", 1, 15, "arity 0..255"),
        ("&map/2", "elixir", 1, 2, "a module after '&'"),
        ("'\\x{110000}'", "erlang", 1, 2, "beyond the last Unicode code point"),
        (":" + "a" * 256, "elixir", 1, 1, "at most 255 characters"),
        ("a" * 256, "erlang", 1, 1, "at most 255 characters"),
        ("ÿ" * 300, "erlang", 1, 1, "at most 255 characters"),
    ],
)
def test_bad_input_says_where_and_why(
    text: str, language: Any, line: int, column: int, fragment: str
) -> None:
    with pytest.raises(TermSourceError) as caught:
        parse_term(text, language)
    error = caught.value
    assert fragment in error.message, error.message
    assert (error.line, error.column) == (line, column), str(error)
    assert str(error).startswith(f"line {line}, column {column}: ")
    assert isinstance(error, ValueError)


def test_bounds() -> None:
    with pytest.raises(TermSourceError, match="at most 1048576"):
        parse_term("[" + "1," * (MAX_TEXT // 2) + "1]", "erlang")
    nested = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    with pytest.raises(TermSourceError, match="deeper than 100"):
        parse_term(nested, "elixir")
    ok = "{" * MAX_DEPTH + "}" * MAX_DEPTH
    assert parse_term(ok, "erlang") is not None
    with pytest.raises(TermSourceError, match=f"more than {MAX_ITEMS} elements"):
        parse_term("[" + "1," * MAX_ITEMS + "1]", "erlang")
    with pytest.raises(TermSourceError, match="at most 8388608 bits"):
        parse_term("<<0:99999999>>", "erlang")
    with pytest.raises(TermSourceError, match="larger than"):
        parse_term("<<" + ",".join(["0:8000000"] * 2) + ">>", "erlang")


def test_wrong_arguments() -> None:
    with pytest.raises(ValueError, match="unknown language"):
        parse_term("1", "python")  # type: ignore[arg-type]
    with pytest.raises(TermSourceError, match="a term is text"):
        parse_term(b"1", "erlang")  # type: ignore[arg-type]


def test_atoms_lists_every_atom() -> None:
    term = parse_term(
        "%{count: 3, list: [:a, {:b, true}], Foo => nil, 1 => [:x, :y | :z], f: &:m.f/1}", "elixir"
    )
    assert atoms(term) == {"count", "list", "a", "b", "true", "Elixir.Foo", "nil", "x", "y", "z", "f", "m"}
    assert atoms(parse_term('{1, <<"bin">>, "str", 2.5}', "erlang")) == set()
    keys = {StrictKey(1): A("one"), StrictKey(True): 2, FrozenList([A("k")]): 3}
    assert atoms(keys) == {"one", "true", "k"}
    assert atoms(Pid(A("n@h"), 1, 2, 3)) == {"n@h"}


def test_booleans_and_nil_match_the_decoder() -> None:
    assert parse_term("true", "erlang") is True
    assert parse_term("false", "elixir") is False
    assert type(parse_term("nil", "elixir")) is Atom


# ----------------------------------------------------------------------------- round trips


def _literal_scalars() -> st.SearchStrategy[Any]:
    return st.one_of(integers(), floats(), st.booleans(), atom_terms(), binaries(), bitstrings(), exports())


def _improper(items_and_tail: tuple[list[Any], Any]) -> ImproperList:
    return ImproperList(*items_and_tail)


def _literal_containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    pairs = st.lists(st.tuples(children, children), max_size=5)
    tails = st.one_of(_literal_scalars(), st.lists(children, max_size=3).map(tuple), pairs.map(erlang_map))
    keyword = st.lists(st.tuples(atom_terms(), children), min_size=1, max_size=4)
    return st.one_of(
        st.lists(children, max_size=5),
        st.lists(children, max_size=5).map(tuple),
        st.tuples(st.lists(children, min_size=1, max_size=4), tails).map(_improper),
        pairs.map(erlang_map),
        st.dictionaries(binaries(), children, max_size=4),
        st.dictionaries(atom_terms(), children, max_size=4),
        keyword,
        st.tuples(st.sampled_from(["Elixir.Foo", "Elixir.A.B"]), st.dictionaries(atom_terms(), children)).map(
            _struct
        ),
        st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=8),  # charlists
    )


def _struct(pair: tuple[str, dict[Any, Any]]) -> dict[Any, Any]:
    """A struct map, ``__struct__`` first as the parser builds it (order matters in map keys' FrozenMap)."""
    module, fields = pair
    return {A("__struct__"): A(module), **{k: v for k, v in fields.items() if k != "__struct__"}}


def literal_terms() -> st.SearchStrategy[Any]:
    """Every term that has a literal syntax: no pids, ports, refs or local funs."""
    return st.recursive(_literal_scalars(), _literal_containers, max_leaves=20)


@settings(max_examples=600, deadline=None)
@given(literal_terms())
def test_erlang_round_trip(term: Any) -> None:
    text = render(term, "erlang")
    assert same_term(parse_term(text, "erlang"), term), text


@settings(max_examples=600, deadline=None)
@given(literal_terms())
def test_elixir_round_trip(term: Any) -> None:
    text = render(term, "elixir")
    assert same_term(parse_term(text, "elixir"), term), text
