"""Trace patterns: text (Erlang or Elixir flavour) → MFA + match spec.

Exact expected terms for many patterns of both flavours, errors with their positions,
property tests (grammar-built patterns always parse; random text only ever raises
TracePatternError), and a real node's ``erlang:match_spec_test/3`` agreeing with what the
patterns say about matching and non-matching calls.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import arsenal
from arsenal.dist import Atom, ImproperList, RpcError, term_to_binary
from arsenal.ops.safeterm import to_wire
from arsenal.ops.trace_patterns import (
    MAX_ARGS,
    MAX_DEPTH,
    MAX_GUARD_TERMS,
    MAX_TEXT,
    MAX_VARIABLES,
    TracePattern,
    TracePatternError,
    parse_pattern,
)

A = Atom
ANY = A("_")
V1, V2, V3, V4, V5 = (A(f"${n}") for n in range(1, 6))
RETURN = [(A("return_trace"),), (A("exception_trace"),)]
CALLER = [(A("message"), (A("caller"),))]


def const(term: Any) -> tuple[Atom, Any]:
    return (A("const"), term)


def op(name: str, *args: Any) -> tuple[Any, ...]:
    return (A(name), *args)


def tuple_size(term: Any) -> tuple[Any, ...]:
    """tuple_size/1 is no match-spec function before OTP 26: size/1 of a term checked to be a tuple."""
    return op("size", op("andalso", op("is_tuple", term), term))


# ------------------------------------------------------------------------------ exact results

# (text, module, function, arity, match_spec, actions)
ERLANG_CASES = [
    ("lists:map/2", "lists", "map", 2, [(ANY, [], [])], set()),
    ("mod:fun/_", "mod", "fun", None, [(ANY, [], [])], set()),
    ("mod:fun", "mod", "fun", None, [(ANY, [], [])], set()),
    ("mod:_", "mod", None, None, [(ANY, [], [])], set()),
    ("mod", "mod", None, None, [(ANY, [], [])], set()),
    ("mod:_/_ -> return", "mod", None, None, [(ANY, [], RETURN)], {"return"}),
    ("'Quoted mod':'fun'/1", "Quoted mod", "fun", 1, [(ANY, [], [])], set()),
    ("'Elixir.Foo':bar/0", "Elixir.Foo", "bar", 0, [(ANY, [], [])], set()),
    ("m:f() -> return", "m", "f", 0, [([], [], RETURN)], {"return"}),
    (
        'mod:fun(1, _, X, {ok, Y}, [H|T], "str", <<"bin">>, Z) when X > 10, is_integer(Y) -> return',
        "mod",
        "fun",
        8,
        [
            (
                [1, ANY, V1, (A("ok"), V2), ImproperList([V3], V4), [115, 116, 114], b"bin", V5],
                [op(">", V1, 10), op("is_integer", V2)],
                RETURN,
            )
        ],
        {"return"},
    ),
    (
        "m:f(-1, 2.5, $a, 16#ff, 1_000, \"\", [], {}, 'hello world', true, false, -0.5e3)",
        "m",
        "f",
        12,
        [([-1, 2.5, 97, 255, 1000, [], [], (), A("hello world"), True, False, -500.0], [], [])],
        set(),
    ),
    ("m:f(X, X, _Y, _Y)", "m", "f", 4, [([V1, V1, ANY, ANY], [], [])], set()),
    ("m:f(_, [a, b | T])", "m", "f", 2, [([ANY, ImproperList([A("a"), A("b")], V1)], [], [])], set()),
    ("m:f([a | [b]], [X | []])", "m", "f", 2, [([[A("a"), A("b")], [V1]], [], [])], set()),
    (
        'm:f(#{a := X, <<"k">> := [1], {t} := _})',
        "m",
        "f",
        1,
        [([{A("a"): V1, b"k": [1], (A("t"),): ANY}], [], [])],
        set(),
    ),
    ("m:f(#{})", "m", "f", 1, [([{}], [], [])], set()),
    ('m:f(<<>>, <<1, 2, "ab">>, "a" "b")', "m", "f", 3, [([b"", b"\x01\x02ab", [97, 98]], [], [])], set()),
    (
        'm:f("\\n\\x41\\101\\x{1F600}")',
        "m",
        "f",
        1,
        [([[10, 65, 65, 0x1F600]], [], [])],
        set(),
    ),
    (
        "m:f(X) when X > 1; is_atom(X)",
        "m",
        "f",
        1,
        [([V1], [op(">", V1, 1)], []), ([V1], [op("is_atom", V1)], [])],
        set(),
    ),
    (
        'm:f(X) when X == {ok, 1}; X =:= [a], X =/= "s" -> caller',
        "m",
        "f",
        1,
        [
            ([V1], [op("==", V1, const((A("ok"), 1)))], CALLER),
            ([V1], [op("=:=", V1, const([A("a")])), op("=/=", V1, const([115]))], CALLER),
        ],
        {"caller"},
    ),
    (
        "m:f(X, Y) when X == {ok, Y}, Y == [X | Y], #{k => X} == Y",
        "m",
        "f",
        2,
        [
            (
                [V1, V2],
                [
                    op("==", V1, ((A("ok"), V2),)),
                    op("==", V2, ImproperList([V1], V2)),
                    op("==", {A("k"): V1}, V2),
                ],
                [],
            )
        ],
        set(),
    ),
    (
        "m:f(X) when X > 1 andalso (X < 5 orelse not is_atom(X))",
        "m",
        "f",
        1,
        [
            (
                [V1],
                [op("andalso", op(">", V1, 1), op("orelse", op("<", V1, 5), op("not", op("is_atom", V1))))],
                [],
            )
        ],
        set(),
    ),
    (
        "m:f(X) when X and true or false",
        "m",
        "f",
        1,
        [([V1], [op("or", op("and", V1, True), False)], [])],
        set(),
    ),
    (
        "m:f(X) when length(X) >= 2, hd(X) =/= tl(X), element(1, X) == a, "
        "byte_size(X) > tuple_size(X) + map_size(X)",
        "m",
        "f",
        1,
        [
            (
                [V1],
                [
                    op(">=", op("length", V1), 2),
                    op("=/=", op("hd", V1), op("tl", V1)),
                    op("==", op("element", 1, V1), A("a")),
                    op(">", op("byte_size", V1), op("+", tuple_size(V1), op("map_size", V1))),
                ],
                [],
            )
        ],
        set(),
    ),
    (
        "m:f(X, Y) when X rem 2 == 0, Y div 3 =< -X * 2 - -1",
        "m",
        "f",
        2,
        [
            (
                [V1, V2],
                [
                    op("==", op("rem", V1, 2), 0),
                    op("=<", op("div", V2, 3), op("-", op("*", op("-", V1), 2), -1)),
                ],
                [],
            )
        ],
        set(),
    ),
    (
        "m:f(X) when is_integer(X) orelse is_float(X) orelse is_number(X)",
        "m",
        "f",
        1,
        [
            (
                [V1],
                [op("orelse", op("is_integer", V1), op("orelse", op("is_float", V1), op("is_number", V1)))],
                [],
            )
        ],
        set(),
    ),
    (
        "m:f(X) when X == '_', X /= '$1', X == 'ok'",
        "m",
        "f",
        1,
        [([V1], [op("==", V1, const(ANY)), op("/=", V1, const(A("$1"))), op("==", V1, A("ok"))], [])],
        set(),
    ),
    (
        "m:f(X) when erlang:is_binary(X), is_list(X), is_tuple(X), is_map(X), is_pid(X)",
        "m",
        "f",
        1,
        [([V1], [op(f"is_{t}", V1) for t in ("binary", "list", "tuple", "map", "pid")], [])],
        set(),
    ),
    ("m:f(X) -> return; caller.", "m", "f", 1, [([V1], [], CALLER + RETURN)], {"return", "caller"}),
    ("  m:f/1 -> caller, return, caller  ", "m", "f", 1, [(ANY, [], CALLER + RETURN)], {"return", "caller"}),
]

ELIXIR_CASES = [
    ("Mod.fun/2", "Elixir.Mod", "fun", 2, [(ANY, [], [])], set()),
    (":ets.lookup/2", "ets", "lookup", 2, [(ANY, [], [])], set()),
    ("MyApp.Worker.handle_call/3", "Elixir.MyApp.Worker", "handle_call", 3, [(ANY, [], [])], set()),
    # Elixir.Foo is Foo, as in Elixir: the prefix written out is not doubled.
    ("Elixir.MyApp.Worker.handle_call/3", "Elixir.MyApp.Worker", "handle_call", 3, [(ANY, [], [])], set()),
    ("Enum.map(_, _)", "Elixir.Enum", "map", 2, [([ANY, ANY], [], [])], set()),
    ("Mod", "Elixir.Mod", None, None, [(ANY, [], [])], set()),
    ("Mod._ -> return", "Elixir.Mod", None, None, [(ANY, [], RETURN)], {"return"}),
    ("String.valid?/1", "Elixir.String", "valid?", 1, [(ANY, [], [])], set()),
    (':"Elixir.Foo".bar/_', "Elixir.Foo", "bar", None, [(ANY, [], [])], set()),
    (':erlang."=:="/2', "erlang", "=:=", 2, [(ANY, [], [])], set()),
    ("Kernel.not/1", "Elixir.Kernel", "not", 1, [(ANY, [], [])], set()),
    (
        "Mod.fun(x, %{a: 1}) when x > 10 -> return",
        "Elixir.Mod",
        "fun",
        2,
        [([V1, {A("a"): 1}], [op(">", V1, 10)], RETURN)],
        {"return"},
    ),
    (
        'Mod.f(:ok, nil, true, false, "bin", \'cl\', ~c"cl", ?a, 0x1F, 0b101, 1_000, -2, 1.5, Foo.Bar)',
        "Elixir.Mod",
        "f",
        14,
        [
            (
                [
                    A("ok"),
                    A("nil"),
                    True,
                    False,
                    b"bin",
                    [99, 108],
                    [99, 108],
                    97,
                    31,
                    5,
                    1000,
                    -2,
                    1.5,
                    A("Elixir.Foo.Bar"),
                ],
                [],
                [],
            )
        ],
        set(),
    ),
    (
        'Mod.f({x, _y}, [h | t], %{"k" => v, :ok => _}, [a: 1, b: x], %Foo{n: 1}, "é", <<"é", 0>>)',
        "Elixir.Mod",
        "f",
        7,
        [
            (
                [
                    (V1, ANY),
                    ImproperList([V2], V3),
                    {b"k": V4, A("ok"): ANY},
                    [(A("a"), 1), (A("b"), V1)],
                    {A("__struct__"): A("Elixir.Foo"), A("n"): 1},
                    "é".encode(),
                    "é".encode() + b"\0",
                ],
                [],
                [],
            )
        ],
        set(),
    ),
    (
        "Mod.f(x, y) when x != y and (x === 1 or y !== 2) -> caller",
        "Elixir.Mod",
        "f",
        2,
        [
            (
                [V1, V2],
                [op("andalso", op("/=", V1, V2), op("orelse", op("=:=", V1, 1), op("=/=", V2, 2)))],
                CALLER,
            )
        ],
        {"caller"},
    ),
    ("Mod.f(x, a: 1, b: y)", "Elixir.Mod", "f", 2, [([V1, [(A("a"), 1), (A("b"), V2)]], [], [])], set()),
    ("Mod.f(x, y) when x!=y", "Elixir.Mod", "f", 2, [([V1, V2], [op("/=", V1, V2)], [])], set()),
    (
        "Mod.f(x, y) when x <= y && y >= 0 || is_nil(x)",
        "Elixir.Mod",
        "f",
        2,
        [
            (
                [V1, V2],
                [op("orelse", op("andalso", op("=<", V1, V2), op(">=", V2, 0)), op("=:=", V1, A("nil")))],
                [],
            )
        ],
        set(),
    ),
    (
        "Mod.f(t) when elem(t, 0) == :ok and tuple_size(t) == 2",
        "Elixir.Mod",
        "f",
        1,
        [
            (
                [V1],
                [op("andalso", op("==", op("element", 1, V1), A("ok")), op("==", tuple_size(V1), 2))],
                [],
            )
        ],
        set(),
    ),
    (
        "Mod.f(t, i) when elem(t, i) == :ok",
        "Elixir.Mod",
        "f",
        2,
        [([V1, V2], [op("==", op("element", op("+", V2, 1), V1), A("ok"))], [])],
        set(),
    ),
    (
        "Mod.f(x) when div(x, 2) == rem(x, 3), not is_atom(x), x > -1",
        "Elixir.Mod",
        "f",
        1,
        [
            (
                [V1],
                [op("==", op("div", V1, 2), op("rem", V1, 3)), op("not", op("is_atom", V1)), op(">", V1, -1)],
                [],
            )
        ],
        set(),
    ),
    (
        'Mod.f(x) when x == %{a: x} or x == {:ok, "s"} or x == [k: 1]',
        "Elixir.Mod",
        "f",
        1,
        [
            (
                [V1],
                [
                    op(
                        "orelse",
                        op(
                            "orelse",
                            op("==", V1, {A("a"): V1}),
                            op("==", V1, const((A("ok"), b"s"))),
                        ),
                        op("==", V1, const([(A("k"), 1)])),
                    )
                ],
                [],
            )
        ],
        set(),
    ),
]


@pytest.mark.parametrize(
    ("text", "module", "function", "arity", "match_spec", "actions"),
    ERLANG_CASES + ELIXIR_CASES,
    ids=[case[0][:60] for case in ERLANG_CASES + ELIXIR_CASES],
)
def test_parse_exact(
    text: str, module: str, function: str | None, arity: int | None, match_spec: list, actions: set
) -> None:
    pattern = parse_pattern(text)
    assert pattern == TracePattern(module, function, arity, match_spec, frozenset(actions), text)
    assert _strict(pattern.match_spec) == _strict(match_spec)  # == alone says 1 == 1.0 == True
    term_to_binary(pattern.match_spec)  # every spec is something the codec can send


def _strict(term: Any) -> Any:
    """``term`` with every leaf tagged by its type, so comparisons tell True from 1 and Atom from str."""
    if type(term) in (list, tuple):
        return (type(term).__name__, [_strict(item) for item in term])
    if type(term) is dict:
        return ("dict", sorted((repr(_strict(k)), _strict(v)) for k, v in term.items()))
    if type(term) is ImproperList:
        return ("improper", _strict(term.items), _strict(term.tail))
    return (type(term).__name__, term)


def test_atoms_lists_everything_the_spec_would_send() -> None:
    pattern = parse_pattern("m:f(X, {ok, _}) when X == '$1', X > nope -> return, caller")
    assert pattern.atoms() == {
        "m",
        "f",
        "$1",
        "ok",
        "_",
        "==",
        "const",
        ">",
        "nope",
        "return_trace",
        "exception_trace",
        "message",
        "caller",
    }
    assert parse_pattern("Foo.Bar.baz/1").atoms() == {"Elixir.Foo.Bar", "baz", "_"}
    assert parse_pattern("m:f(true)").atoms() == {"m", "f", "true"}
    assert parse_pattern("Mod.f(%Foo{}) when is_nil(1)").atoms() >= {"__struct__", "Elixir.Foo", "nil", "=:="}


def test_mfa_for_trace_pattern() -> None:
    assert parse_pattern("lists:map/2").mfa == (A("lists"), A("map"), 2)
    assert parse_pattern("lists:map").mfa == (A("lists"), A("map"), ANY)
    assert parse_pattern("Enum").mfa == (A("Elixir.Enum"), ANY, ANY)


# ------------------------------------------------------------------------------ errors

# (text, column, words the message must contain)
ERRORS = [
    ("", 1, "expected a pattern"),
    ("   ", 1, "found nothing"),
    ("m:f(X", 6, "to close the '(' at column 4"),
    ("m:f({a, b)", 10, "to close the '{' at column 5"),
    ("m:f([a, b)", 10, "to close the '[' at column 5"),
    ("m:f(#{a := 1)", 13, "to close the '#' at column 5"),
    ("m:f(X))", 7, "expected the end of the pattern"),
    ("m:f(X) when (X > 1", 19, "to close the '(' at column 13"),
    ("m:f(A)/2", 8, "arity /2 does not match the 1 argument"),
    ("Mod.f(a, b)/1", 13, "arity /1 does not match the 2 argument"),
    ("m:f(A)/_", 8, "contradicts"),
    ("m:f/256", 5, "arity is 0..255"),
    ("m:f/x", 5, "expected an arity"),
    ("m:f/1.5", 5, "expected an arity"),
    ("m:_/2", 5, "the arity must be _ too"),
    ("m:_(X)", 4, "needs a function name"),
    ("_:f/1", 1, "tracing every module is not allowed"),
    ("M:f/1", 1, "M looks like an Erlang variable"),
    ("Foo.Bar:f/1", 1, "looks like an Erlang variable"),
    ("m:X/1", 3, "expected a function name"),
    ("lists.map/2", 6, "lists:map"),
    ("m:f(X) when foo(X)", 13, "guard function foo/1 is not supported"),
    ("m:f(X) when self()", 13, "guard function self/0 is not supported"),
    ("Mod.f(x) when String.length(x) > 1", 15, "remote calls are not allowed"),
    ("m:f(X) when lists:member(X, [])", 13, "remote calls are not allowed"),
    ("m:f(X) when is_integer(X, 1)", 13, "is_integer takes 1 argument(s), not 2"),
    ("m:f(X) when element(X)", 13, "element takes 2"),
    ("Mod.f(x) when element(1, x)", 15, "guard function element/2 is not supported"),
    ("m:f(X) when Y > 1", 13, "the variable Y is not bound"),
    ("Mod.f(x) when y > 1", 15, "the variable y is not bound"),
    ("m:f(_X) when _X > 1", 14, "_X is an ignored variable"),
    ("m:f(X) when X(1)", 13, "X is a variable"),
    ("m:f(X) -> stack", 11, "'stack' action is not supported"),
    ("m:f(X) -> return, stack", 19, "'stack' action is not supported"),
    ("m:f(X) -> banana", 11, "unknown action 'banana'"),
    ("m:f(X) ->", 10, "expected an action"),
    ("x" * (MAX_TEXT + 1), 1, f"at most {MAX_TEXT}"),
    ("m:f(" + "[" * (MAX_DEPTH + 5), 4 + MAX_DEPTH + 1, f"deeper than {MAX_DEPTH}"),
    ("m:f(X) when " + "(" * (MAX_DEPTH + 5), 13 + MAX_DEPTH, f"deeper than {MAX_DEPTH}"),
    ("m:f(X) when " + "- " * (MAX_DEPTH + 5) + "X", 13 + 2 * MAX_DEPTH, f"deeper than {MAX_DEPTH}"),
    ("m:f(" + ", ".join(["_"] * (MAX_ARGS + 1)) + ")", 5 + 3 * MAX_ARGS, f"at most {MAX_ARGS}"),
    ("m:f(X) when " + " + ".join(["X"] * 60), 13 + 4 * 49 + 2, f"at most {MAX_GUARD_TERMS} terms"),
    (
        "m:f({" + ", ".join(f"V{n}" for n in range(MAX_VARIABLES + 1)) + "})",
        6 + 5 * MAX_VARIABLES - 10,
        f"too many variables: at most {MAX_VARIABLES}",
    ),
    ("m:f(X) when X > 1 and X < 5", 25, "comparisons cannot be chained"),
    ("m:f(X) when X / 2 > 1", 15, "operator '/' is not supported"),
    ("m:f(X) when X ++ [1]", 15, "operator '++' is not supported"),
    ("m:f(X) when X band 1", 15, "operator 'band' is not supported"),
    ("m:f(X) when bnot X", 13, "operator 'bnot' is not supported"),
    ("Mod.f(x) when !x", 15, "operator '!' is not supported"),
    ("Mod.f(x) when x in [1]", 17, "operator 'in' is not supported"),
    ("Mod.f(x) when x > 1; x < 0", 20, "use 'or'"),
    ("Mod.f(^x)", 7, "pin operator"),
    ("m:f(#{a => X})", 9, "write key := Value"),
    ("m:f(#{X := 1})", 7, "must be constants"),
    ("m:f(#{a := 1, a := 2})", 15, "given twice"),
    ("m:f(X) when X == #{a := 1}", 22, "build a map with key => Value"),
    ("m:f(#rec{a = 1})", 6, "records are not supported"),
    ("m:f(<<X>>)", 7, "binary segments must be strings or integers"),
    ("m:f(<<256>>)", 7, "binary segments must be strings or integers"),
    ('m:f(<<"é€">>)', 7, "need /utf8"),
    ('m:f(<<"a"/utf8>>)', 10, "to close the '<<' at column 5"),
    ("m:f('$1')", 5, "looks like a match-spec variable"),
    ("m:f('_')", 5, "looks like a match-spec variable"),
    ('m:f("abc)', 5, 'unterminated "'),
    ("m:f('abc)", 5, "unterminated '"),
    ('Mod.f("#{x}")', 8, "interpolation"),
    ("Mod.f(~r/x/)", 7, "only the ~c sigil"),
    ("m:f/2 when true", 7, "a guard needs an argument list"),
    ("m:f(X) when X >", 16, "expected a guard expression"),
    ("m:f(X) @", 8, "unexpected character '@'"),
    ("m:f(1.0e999)", 5, "out of range"),
    ("m:f(37#1)", 5, "base of 37#1 must be 2..36"),
    ("m:f(2#102)", 5, "'2#102' is not a valid number"),
    ("m:f(-a)", 6, "expected a number after '-'"),
    ("m:f(when)", 5, "expected an argument pattern"),
    ("Mod.f(when)", 7, "expected an argument pattern"),
    ("m:f(" + "'" + "a" * 256 + "')", 5, "at most 255 characters"),
    ("Mod.f(x) -> :stack", 13, "'stack' action is not supported"),
    ("Mod.", 5, "expected a function name"),
    ("%{}", 1, "expected a module name"),
    ("  (m:f)", 3, "expected a module name"),
]


@pytest.mark.parametrize(("text", "column", "words"), ERRORS, ids=[e[0][:40] for e in ERRORS])
def test_errors_say_what_and_where(text: str, column: int, words: str) -> None:
    with pytest.raises(TracePatternError) as caught:
        parse_pattern(text)
    error = caught.value
    assert words in error.message, error.message
    assert error.position == column, (error.position, error.message)
    assert str(error) == f"at column {column}: {error.message}"
    assert isinstance(error, ValueError)


def test_patterns_at_the_limits_still_fit_the_wire_encoder() -> None:
    """The parser's limits keep every spec within what Arsenal sends (safeterm: depth 100, 1 MiB)."""
    deepest_tuple = "{" * (MAX_DEPTH - 2) + "X" + "}" * (MAX_DEPTH - 2)
    chain = " andalso ".join(["X"] * 30)
    texts = [
        f"m:f(X) when {chain} andalso {deepest_tuple} == X",
        "m:f(" + ", ".join(["[" * (MAX_DEPTH - 1) + "V" + "]" * (MAX_DEPTH - 1)] * 10 + ["_"] * 40) + ")",
        "m:f(X) when " + " + ".join(["X"] * (MAX_GUARD_TERMS // 2)),
    ]
    for text in texts:
        pattern = parse_pattern(text)
        to_wire(pattern.match_spec, what="match spec")


def test_not_text_is_an_error() -> None:
    with pytest.raises(TracePatternError):
        parse_pattern(b"lists:map/2")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ properties

ERLANG_ATOMS = st.sampled_from(["ok", "error", "a_b", "x@y", "'Hello World'", "'it\\'s'", "true", "nil"])
ELIXIR_ATOMS = st.sampled_from([":ok", ":error", ':"Hello World"', "nil", "true", "false", "Foo.Bar"])
VAR_NAMES = ["A", "B", "C", "D", "E", "F"]


def _erlang_term(variables: list[str]) -> st.SearchStrategy[str]:
    leaf = st.one_of(
        st.integers(-(10**20), 10**20).map(str),
        st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr).filter(lambda s: "e" not in s),
        ERLANG_ATOMS,
        st.sampled_from([*variables, "_", "_Ignored"]),
        st.text('xyz \\"', max_size=5).map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'),
        st.lists(st.integers(0, 255), max_size=3).map(lambda bs: "<<" + ", ".join(map(str, bs)) + ">>"),
    )
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3).map(lambda xs: "{" + ", ".join(xs) + "}"),
            st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
            st.tuples(st.lists(inner, min_size=1, max_size=2), inner).map(
                lambda p: "[" + ", ".join(p[0]) + " | " + p[1] + "]"
            ),
            st.lists(st.tuples(ERLANG_ATOMS, inner), max_size=2, unique_by=lambda kv: kv[0]).map(
                lambda kvs: "#{" + ", ".join(f"{k} := {v}" for k, v in kvs) + "}"
            ),
        ),
        max_leaves=8,
    )


def _elixir_term(variables: list[str]) -> st.SearchStrategy[str]:
    leaf = st.one_of(
        st.integers(-(10**20), 10**20).map(str),
        ELIXIR_ATOMS,
        st.sampled_from([v.lower() for v in variables] + ["_", "_ignored"]),
        st.text("xyz ", max_size=5).map(lambda s: '"' + s + '"'),
        st.text("xyz ", max_size=5).map(lambda s: "'" + s + "'"),
    )
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3).map(lambda xs: "{" + ", ".join(xs) + "}"),
            st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
            st.tuples(st.lists(inner, min_size=1, max_size=2), inner).map(
                lambda p: "[" + ", ".join(p[0]) + " | " + p[1] + "]"
            ),
            st.lists(
                st.tuples(st.sampled_from(["a", "b", "c"]), inner), max_size=2, unique_by=lambda kv: kv[0]
            ).map(lambda kvs: "%{" + ", ".join(f"{k}: {v}" for k, v in kvs) + "}"),
            st.lists(st.tuples(st.sampled_from(["a", "b"]), inner), min_size=1, max_size=2).map(
                lambda kvs: "[" + ", ".join(f"{k}: {v}" for k, v in kvs) + "]"
            ),
        ),
        max_leaves=8,
    )


ERLANG_TERM = _erlang_term(VAR_NAMES)
ELIXIR_TERM = _elixir_term(VAR_NAMES)


@st.composite
def _guard(draw: st.DrawFn, bound: list[str], elixir: bool) -> str:
    names = bound or ["1"]
    operand = st.one_of(st.sampled_from(names), st.integers(-100, 100).map(str))
    compare = st.sampled_from(
        ["==", "!=", "===", "<", "<=", ">"] if elixir else ["==", "/=", "=:=", "<", "=<", ">"]
    )
    tests = st.one_of(
        st.builds(lambda a, o, b: f"{a} {o} {b}", operand, compare, operand),
        st.builds(lambda f, a: f"{f}({a})", st.sampled_from(["is_integer", "is_atom", "is_list"]), operand),
        st.builds(lambda a, b: f"{a} + {b} * 2 > 0", operand, operand),
    )
    joiner = st.sampled_from([" and ", " or ", ", "] if elixir else [" andalso ", " orelse ", ", ", "; "])
    parts = draw(st.lists(tests, min_size=1, max_size=4))
    text = parts[0]
    for part in parts[1:]:
        text += draw(joiner) + part
    return text


@st.composite
def _pattern(draw: st.DrawFn) -> tuple[str, int | None]:
    elixir = draw(st.booleans())
    variables = VAR_NAMES
    term = ELIXIR_TERM if elixir else ERLANG_TERM
    args = draw(st.none() | st.lists(term, max_size=5))
    text = draw(st.sampled_from(["Mod.Sub.fun", ":ets.lookup"] if elixir else ["lists:map", "'Quoted':'f'"]))
    if args is not None:
        text += "(" + ", ".join(args) + ")"
        names = [v.lower() for v in variables] if elixir else variables
        bound = [name for name in names if _mentions(args, name)]
        if draw(st.booleans()):
            text += f"/{len(args)}"
        if draw(st.booleans()):
            text += " when " + draw(_guard(bound, elixir))
    elif draw(st.booleans()):
        text += "/" + str(draw(st.integers(0, 255)))
    if draw(st.booleans()):
        text += " -> " + ", ".join(
            draw(st.lists(st.sampled_from(["return", "caller"]), min_size=1, max_size=3))
        )
    return text, (None if args is None else len(args))


def _mentions(args: list[str], name: str) -> bool:
    """Whether variable ``name`` occurs as a whole word in the argument texts (so a guard may use it);
    strings are drawn from other letters, so a match is a variable (or a keyword key, excluded)."""
    return any(re.search(rf"(?<![\w'\"$@:.]){re.escape(name)}(?![\w@:])", arg) for arg in args)


@pytest.mark.filterwarnings("ignore:Generating overly large repr")  # the grammar's strategies, harmless
@settings(max_examples=600, deadline=None)
@given(case=_pattern())
def test_grammar_built_patterns_parse(case: tuple[str, int | None]) -> None:
    text, arity = case
    pattern = parse_pattern(text)
    assert pattern.source == text
    if arity is not None:
        assert pattern.arity == arity
        for head, guards, body in pattern.match_spec:
            assert type(head) is list and len(head) == arity
            assert type(guards) is list and type(body) is list
    assert pattern.actions <= {"return", "caller"}
    assert pattern.module in pattern.atoms()
    term_to_binary(pattern.match_spec)


PATTERN_ALPHABET = "abmfXY_:.()[]{}<>#%,;|=/-+*!&^?$~\"' 0123456789\\ewhnotrc"


@settings(max_examples=3000, deadline=None)
@given(text=st.one_of(st.text(max_size=120), st.text(PATTERN_ALPHABET, max_size=80)))
def test_random_text_only_ever_raises_trace_pattern_error(text: str) -> None:
    try:
        pattern = parse_pattern(text)
    except TracePatternError as error:
        assert 1 <= error.position <= max(len(text), 0) + 1
        return
    term_to_binary(pattern.match_spec)


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.sampled_from(["m:f(X, Y) when ", "Mod.f(x, y) when "]),
    body=st.text("XYxy()+-*<>=/ ,;andortiseger_", max_size=300),
)
def test_random_guards_only_ever_raise_trace_pattern_error(prefix: str, body: str) -> None:
    try:
        pattern = parse_pattern(prefix + body)
    except TracePatternError as error:
        assert len(prefix) - 6 <= error.position <= len(prefix + body) + 1, error
        return
    assert len(pattern.match_spec) >= 1
    term_to_binary(pattern.match_spec)


# ------------------------------------------------------------------------------ a real node

# (pattern, [(args, matches?)]) — only atoms every node has; at most 4 variables ('$1'..'$4').
NODE_CASES: list[tuple[str, list[tuple[list[Any], bool]]]] = [
    ("lists:map/2", [([1, 2], True), ([], True)]),
    ("lists:map(X, _) when X > 10", [([11, 0], True), ([10, 0], False), ([A("ok"), 0], True)]),
    ("lists:map(X, X)", [([1, 1], True), ([1, 2], False), ([1, 1.0], False)]),
    (
        "lists:map({ok, X}, _) when is_integer(X) -> return",
        [([(A("ok"), 1), 0], True), ([(A("ok"), A("ok")), 0], False), ([(A("error"), 1), 0], False)],
    ),
    ("lists:map([H | _]) when H == 1", [([[1, 2]], True), ([[]], False), ([[2]], False)]),
    ("lists:map(X) when length(X) > 0; X == ok", [([[1]], True), ([A("ok")], True), ([A("error")], False)]),
    ("lists:map(X) when length(X) >= 2", [([[1, 2]], True), ([[1]], False), ([A("ok")], False)]),
    (
        "lists:map(#{ok := V}) when V =/= error",
        [([{A("ok"): 1, A("error"): 2}], True), ([{A("ok"): A("error")}], False), ([{A("error"): 1}], False)],
    ),
    ('lists:map("ab")', [([[97, 98]], True), ([b"ab"], False)]),
    ('lists:map(<<"ab", 0>>)', [([b"ab\0"], True), ([[97, 98, 0]], False)]),
    ("lists:map(X) when X == {ok, 1}", [([(A("ok"), 1)], True), ([(A("ok"), 2)], False)]),
    ("lists:map(X, Y) when X == {ok, Y}", [([(A("ok"), 1), 1], True), ([(A("ok"), 1), 2], False)]),
    (
        "lists:map(X) when element(2, X) == ok andalso tuple_size(X) == 2",
        [([(1, A("ok"))], True), ([(1, A("ok"), 3)], False), ([5], False)],
    ),
    (
        "lists:map(X, Y) when X rem 2 == 0, Y div 3 =< -X * 2",
        [([4, -30], True), ([4, 0], False), ([3, -30], False)],
    ),
    ("lists:map(X) when not is_atom(X) and (X > 1)", [([2], True), ([A("ok")], False), ([0], False)]),
    ("lists:map(X) when byte_size(X) > 2", [([b"abc"], True), ([b"ab"], False), ([[1, 2, 3]], False)]),
    ("lists:map(X) when X == '_'", [([A("_")], True), ([A("ok")], False)]),
    ("lists:map(X, Y) when Y == [1 | X]", [([[2], [1, 2]], True), ([[2], [2]], False), ([5, 5], False)]),
    ("lists:map([X | Y], Z) when Z == [X, X | Y]", [([[1, 2], [1, 1, 2]], True), ([[1, 2], [1, 2]], False)]),
    ("lists:map(X) when hd(X) == tl(X)", [([ImproperList([1], 1)], True), ([[1, 2]], False)]),
    ("lists:map(_) -> caller", [([1], True)]),
    (
        ":lists.map(x, y) when x != y and (x === 1 or y !== 2)",
        [([1, 2], True), ([2, 2], False), ([1.0, 2], False), ([1.0, 3], True)],
    ),
    (
        ":lists.map({:ok, x}, [h | t]) when elem({x, h}, 1) == 2 and is_list(t)",
        [([(A("ok"), 1), [2, 3]], True), ([(A("ok"), 1), [3]], False)],
    ),
    (
        ":lists.map(%{ok: x}) when map_size(%{ok: x}) == 1 and x > 0",
        [([{A("ok"): 1}], True), ([{A("ok"): 0}], False), ([{}], False)],
    ),
    (
        ":lists.map(\"ab\", 'ab', x) when tl(x) == []",
        [
            ([b"ab", [97, 98], [1]], True),
            ([b"ab", [97, 98], [1, 2]], False),
            ([[97, 98], [97, 98], [1]], False),
        ],
    ),
    (
        ":lists.map(t, i) when elem(t, i) == :ok",
        [([(A("ok"), A("error")), 0], True), ([(A("ok"), 1), 1], False)],
    ),
    (":lists.map(x) when x == [ok: 1] -> return", [([[(A("ok"), 1)]], True), ([[(A("ok"), 2)]], False)]),
]


async def _require_atoms(node: Any, names: set[str]) -> None:
    """Fail (without creating anything) if the node lacks an atom: sending it would create it."""
    for name in sorted(names):
        try:
            await node.node.call("erlang", "binary_to_existing_atom", [name.encode(), A("utf8")])
        except RpcError:
            pytest.fail(f"the test pattern uses {name!r}, which the node does not have; pick another atom")


async def test_real_node_accepts_specs_and_matches_as_the_pattern_says(erl: Any, cookie: str) -> None:
    async with arsenal.attach(erl.name, cookie=cookie, reconnect=False) as node:
        for text, calls in NODE_CASES:
            pattern = parse_pattern(text)
            assert (pattern.module, pattern.function) == ("lists", "map")
            await _require_atoms(node, pattern.atoms())
            for args, matches in calls:
                result = await node.node.call(
                    "erlang", "match_spec_test", [args, pattern.match_spec, A("trace")]
                )
                assert type(result) is tuple and result[0] == A("ok"), (text, result)
                _, outcome, flags, warnings = result
                assert warnings == [], (text, warnings)
                assert (outcome is not False) is matches, (text, args, outcome)
                if matches and "return" in pattern.actions:
                    assert set(flags) == {A("return_trace"), A("exception_trace")}, (text, flags)
                if matches and "caller" in pattern.actions:
                    assert outcome == A("undefined"), (text, outcome)  # the caller: none in a test call


async def test_real_node_trace_pattern_accepts_parsed_specs(make_node: Any, cookie: str) -> None:
    """``erlang:trace_pattern/3`` itself takes the MFA and spec (on a throwaway node: patterns are global)."""
    throwaway = make_node("tp")
    async with arsenal.attach(throwaway.name, cookie=cookie, reconnect=False) as node:
        for text in ("lists:map(X, _) when length(X) > 2 -> return, caller", ":lists.map/2"):
            pattern = parse_pattern(text)
            await _require_atoms(node, pattern.atoms())
            try:
                set_count = await node.node.call(
                    "erlang", "trace_pattern", [pattern.mfa, pattern.match_spec, [A("local")]]
                )
                assert set_count == 1
            finally:
                await node.node.call("erlang", "trace_pattern", [pattern.mfa, False, [A("local")]])
