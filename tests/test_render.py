"""Rendering terms as Erlang and Elixir source.

Concrete expectations for every kind of term in both languages, then (where ``erl``
and ``elixir`` are installed) differential checks: thousands of floats and a few
hundred random terms are rendered here, read back by the real Erlang and Elixir
parsers, and printed by the real shells; the texts must be identical.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

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
from arsenal.terms import render
from arsenal.terms.render import Dialect, elixir_float, erlang_float

from .strategies import terms

A = Atom
NODE = "app@host"
PID = Pid(A(NODE), 123, 4, 1)
FUN = Fun(1, bytes(16), 3, A("Elixir.MyApp.Worker"), 3, 82901029, PID, [])


def erl(term: Any, **limits: Any) -> str:
    return render(term, "erlang", local_node=NODE, **limits)


def ex(term: Any, **limits: Any) -> str:
    return render(term, "elixir", local_node=NODE, **limits)


# ---------------------------------------------------------------------------
# Every kind of term, both languages
# ---------------------------------------------------------------------------

KINDS = [
    # term, Erlang, Elixir
    (42, "42", "42"),
    (-7, "-7", "-7"),
    (2**70, "1180591620717411303424", "1180591620717411303424"),
    (1.0, "1.0", "1.0"),
    (-0.0, "-0.0", "-0.0"),
    (0.1, "0.1", "0.1"),
    (1.0e10, "1.0e10", "10000000000.0"),
    (1.0e-10, "1.0e-10", "1.0e-10"),
    (2.0**53, "9.007199254740992e15", "9007199254740992.0"),
    (True, "true", "true"),
    (False, "false", "false"),
    (A("hello"), "hello", ":hello"),
    (A("nil"), "nil", "nil"),
    (A("Elixir.Foo.Bar"), "'Elixir.Foo.Bar'", "Foo.Bar"),
    (b"text", '<<"text">>', '"text"'),
    ("text", '<<"text">>', '"text"'),
    ("héllo".encode(), '<<"héllo"/utf8>>', '"héllo"'),
    ("日本".encode(), '<<"日本"/utf8>>', '"日本"'),
    (b"\xe9", '<<"é">>', "<<233>>"),
    (b"\x01\x02\x03", "<<1,2,3>>", "<<1, 2, 3>>"),
    (b"", "<<>>", '""'),
    (b'a\n"\\\x1b', '<<"a\\n\\"\\\\\\e">>', '"a\\n\\"\\\\\\e"'),
    (b"#{x}", '<<"#{x}">>', '"\\#{x}"'),
    (b"\x07\x7f", "<<7,127>>", '"\\a\\d"'),
    (BitString(b"\x01\xa0", 3), "<<1,5:3>>", "<<1, 5::size(3)>>"),
    (BitString(b"\x80", 1), "<<1:1>>", "<<1::size(1)>>"),
    ((A("ok"), 1), "{ok,1}", "{:ok, 1}"),
    ((), "{}", "{}"),
    ([1, 2], "[1,2]", "[1, 2]"),
    ([], "[]", "[]"),
    ([97, 98, 99], '"abc"', '~c"abc"'),
    ([104, 105, 10], '"hi\\n"', '~c"hi\\n"'),
    ([233], '"é"', "[233]"),
    ([256], "[256]", "[256]"),
    ([7], "[7]", '~c"\\a"'),
    ([39, 34], "\"'\\\"\"", '~c"\'\\""'),
    (ImproperList([1, 2], A("c")), "[1,2|c]", "[1, 2 | :c]"),
    ({A("a"): 1, A("b"): [1]}, "#{a => 1,b => [1]}", "%{a: 1, b: [1]}"),
    ({A("a"): 1, b"b": 2}, '#{a => 1,<<"b">> => 2}', '%{:a => 1, "b" => 2}'),
    ({A("hello world"): 1, True: 2}, "#{'hello world' => 1,true => 2}", '%{"hello world": 1, true: 2}'),
    ({A("Elixir.Foo"): 1}, "#{'Elixir.Foo' => 1}", "%{Foo => 1}"),
    ({}, "#{}", "%{}"),
    (FrozenList([1]), "[1]", "[1]"),
    (FrozenMap(((A("k"), 1),)), "#{k => 1}", "%{k: 1}"),
    ({StrictKey(1): 1, StrictKey(1.0): 2}, "#{1 => 1,1.0 => 2}", "%{1 => 1, 1.0 => 2}"),
    (PID, "<0.123.4>", "#PID<0.123.4>"),
    (Pid(A("other@host"), 5, 0, 1), "<other@host.5.0>", "#PID<other@host.5.0>"),
    (Port(A(NODE), 5, 1), "#Port<0.5>", "#Port<0.5>"),
    (Port(A("b@h"), 5, 1), "#Port<b@h.5>", "#Port<b@h.5>"),
    (Ref(A(NODE), 1, (40163, 359399425, 819874531)), "#Ref<0.819874531.359399425.40163>",
     "#Reference<0.819874531.359399425.40163>"),
    (FUN, "#Fun<Elixir.MyApp.Worker.3.82901029>", "#Function<3.82901029/1 in MyApp.Worker>"),
    (Fun(0, bytes(16), 0, A("erl_eval"), 44, 79398840, PID, [1]), "#Fun<erl_eval.44.79398840>",
     "#Function<44.79398840/0 in :erl_eval>"),
    (Export(A("lists"), A("map"), 2), "fun lists:map/2", "&:lists.map/2"),
    (Export(A("Elixir.Enum"), A("map"), 2), "fun 'Elixir.Enum':map/2", "&Enum.map/2"),
    (Export(A("erlang"), A("+"), 2), "fun erlang:'+'/2", "&:erlang.+/2"),
    (Export(A("m"), A("foo bar"), 0), "fun m:'foo bar'/0", '&:m."foo bar"/0'),
    (Export(A("m"), A("Foo"), 0), "fun m:'Foo'/0", '&:m."Foo"/0'),
]  # fmt: skip


@pytest.mark.parametrize(("term", "erlang", "elixir"), KINDS, ids=[e for _, e, _ in KINDS])
def test_each_kind(term: Any, erlang: str, elixir: str) -> None:
    assert erl(term) == erlang
    assert ex(term) == elixir


def test_erlang_is_the_default_language() -> None:
    assert render((A("ok"), [1])) == "{ok,[1]}"


def test_pids_without_a_local_node_all_name_their_node() -> None:
    assert render(PID) == "<app@host.123.4>"
    assert render(PID, "elixir") == "#PID<app@host.123.4>"


def test_huge_integers_print_in_hex_instead_of_failing() -> None:
    n = 16**5000
    assert erl(n) == "16#1" + "0" * 5000
    assert ex(-n) == "-0x1" + "0" * 5000


# ---------------------------------------------------------------------------
# Atoms
# ---------------------------------------------------------------------------

ERLANG_ATOMS = [
    ("hello", "hello"),
    ("Hello world", "'Hello world'"),
    ("A", "'A'"),
    ("", "''"),
    ("a@b", "a@b"),
    ("a_1", "a_1"),
    ("_a", "'_a'"),
    ("1a", "'1a'"),
    ("a.b", "'a.b'"),
    ("é", "é"),
    ("ça", "ça"),
    ("a÷", "'a÷'"),
    ("Éa", "'Éa'"),
    ("日本", "'日本'"),
    ("it's", "'it\\'s'"),
    ('a"b\\c', "'a\"b\\\\c'"),
    ("a\nb\tc", "'a\\nb\\tc'"),
    ("\x00\x012", "'\\000\\0012'"),
    ("a\x7f\x9f", "'a\\d\\237'"),
    ("else", "'else'"),
    ("maybe", "'maybe'"),
    ("receive", "'receive'"),
    ("andalso", "'andalso'"),
    ("orelse", "'orelse'"),
    ("ok", "ok"),
]


@pytest.mark.parametrize(("name", "expected"), ERLANG_ATOMS)
def test_erlang_atom_quoting(name: str, expected: str) -> None:
    assert erl(A(name)) == expected


ELIXIR_ATOMS = [
    # name, as an atom, as a keyword key (None: not keyword-able), as a remote function name
    ("hello", ":hello", "hello:", "hello"),
    ("hello world", ':"hello world"', '"hello world":', '"hello world"'),
    ("nil", "nil", "nil:", "nil"),
    ("true", "true", "true:", "true"),
    ("Foo", ":Foo", "Foo:", '"Foo"'),
    ("Elixir.Foo.Bar", "Foo.Bar", None, '"Elixir.Foo.Bar"'),
    ("Elixir", "Elixir", '"Elixir":', '"Elixir"'),
    ("Elixir.foo", ':"Elixir.foo"', None, '"Elixir.foo"'),
    ("Elixir.Foo-Bar", ':"Elixir.Foo-Bar"', None, '"Elixir.Foo-Bar"'),
    ("é@", ":é@", "é@:", '"é@"'),
    ("aé?", ":aé?", "aé?:", "aé?"),
    ("valid?", ":valid?", "valid?:", "valid?"),
    ("save!", ":save!", "save!:", "save!"),
    ("a?b", ':"a?b"', '"a?b":', '"a?b"'),
    ("a@b", ":a@b", "a@b:", '"a@b"'),
    ("_", ":_", "_:", "_"),
    ("+", ":+", "+:", "+"),
    ("..", ":..", "..:", '".."'),
    ("%{}", ":%{}", "%{}:", '"%{}"'),
    ("::", ':"::"', '"::":', "::"),
    ("=>", ':"=>"', '"=>":', '"=>"'),
    ("|>", ":|>", "|>:", "|>"),
    ("\\\\", ":\\\\", "\\\\:", "\\\\"),
    ("é", ":é", "é:", "é"),
    ("日本", ":日本", "日本:", "日本"),
    ("Éa", ":Éa", "Éa:", '"Éa"'),
    ("a\u0301", ':"a\u0301"', '"a\u0301":', '"a\u0301"'),
    ("a\nb", ':"a\\nb"', '"a\\nb":', '"a\\nb"'),
    ("a\x01\x00\x9f", ':"a\\x01\\0\\x9F"', '"a\\x01\\0\\x9F":', '"a\\x01\\0\\x9F"'),
    ('a"b', ':"a\\"b"', '"a\\"b":', '"a\\"b"'),
    ("#{x}", ':"\\#{x}"', '"\\#{x}":', '"\\#{x}"'),
    ("", ':""', '"":', '""'),
]


@pytest.mark.parametrize(("name", "atom", "key", "function"), ELIXIR_ATOMS)
def test_elixir_atom_forms(name: str, atom: str, key: str | None, function: str) -> None:
    assert ex(A(name)) == atom
    keyword = [(A(name), 1)]
    assert ex(keyword) == (f"[{key} 1]" if key else f"[{{{atom}, 1}}]")
    assert ex({A(name): 1}) == (f"%{{{key} 1}}" if key else f"%{{{atom} => 1}}")
    assert ex(Export(A("m"), A(name), 1)) == f"&:m.{function}/1"


# ---------------------------------------------------------------------------
# Elixir structure: keyword lists, structs, charlists
# ---------------------------------------------------------------------------


def test_keyword_lists() -> None:
    assert ex([(A("a"), 1), (A("b"), [(A("c"), True)])]) == "[a: 1, b: [c: true]]"
    assert ex([(A("a"), 1), (b"b", 2)]) == '[{:a, 1}, {"b", 2}]'
    assert ex([(A("a"), 1), (A("Elixir.Foo"), 2)]) == "[{:a, 1}, {Foo, 2}]"
    assert ex([(A("a"), 1, 2)]) == "[{:a, 1, 2}]"
    assert ex(ImproperList([(A("a"), 1)], A("b"))) == "[{:a, 1} | :b]"
    assert erl([(A("a"), 1)]) == "[{a,1}]"


def test_structs() -> None:
    uri = {A("__struct__"): A("Elixir.URI"), A("host"): b"x", A("port"): 80}
    assert ex(uri) == '%URI{host: "x", port: 80}'
    assert ex({A("__struct__"): A("Elixir.Empty")}) == "%Empty{}"
    assert erl(uri) == "#{'__struct__' => 'Elixir.URI',host => <<\"x\">>,port => 80}"
    # not a struct: the module is not an Elixir alias, or a key is not an atom
    assert ex({A("__struct__"): A("foo"), A("a"): 1}) == "%{__struct__: :foo, a: 1}"
    assert ex({A("__struct__"): A("Elixir.Foo"), b"a": 1}) == '%{:__struct__ => Foo, "a" => 1}'


def test_elixir_charlists_are_ascii_only() -> None:
    assert ex([104, 233]) == "[104, 233]"
    assert ex(list(b"a#{b}'\"")) == '~c"a\\#{b}\'\\""'
    assert erl(list(b"a#{b}'")) == '"a#{b}\'"'


@pytest.mark.parametrize(
    ("release", "abc", "quotes", "cut"),
    [
        ("1.14.0", "'abc'", "'a\"\\'\\#{'", "'abc' ++ ..."),
        ("1.15.0-rc.1", '~c"abc"', '~c"a\\"\'\\#{"', '~c"abc" ++ ...'),
        ("1.18.3", '~c"abc"', '~c"a\\"\'\\#{"', '~c"abc" ++ ...'),
        (None, '~c"abc"', '~c"a\\"\'\\#{"', '~c"abc" ++ ...'),
    ],
)
def test_elixir_charlists_as_the_nodes_release_prints_them(
    release: str | None, abc: str, quotes: str, cut: str
) -> None:
    """Elixir 1.15 prints charlists as ``~c"abc"``, 1.14 as ``'abc'``: a node's Dialect says which."""
    dialect = Dialect("elixir", release)
    assert dialect == "elixir" and str(dialect) == "elixir"
    assert render([97, 98, 99], dialect) == abc
    assert render([list(b"a\"'#{")], dialect) == f"[{quotes}]"
    assert render(list(b"abcdefgh"), dialect, max_items=3) == cut
    assert render(list(b"abc"), Dialect("erlang", release)) == '"abc"'


# ---------------------------------------------------------------------------
# Bounds
# ---------------------------------------------------------------------------

TRUNCATED = [
    # term, limits, Erlang, Elixir
    (list(range(10)), {"max_items": 3}, "[0,1,2|...]", "[0, 1, 2, ...]"),
    (list(range(10)), {"max_items": 0}, "[...]", "[...]"),
    (list(range(3)), {"max_items": 3}, "[0,1,2]", "[0, 1, 2]"),
    (tuple(range(10)), {"max_items": 2}, "{0,1,...}", "{0, 1, ...}"),
    (ImproperList([1, 2, 3], 4), {"max_items": 2}, "[1,2|...]", "[1, 2, ...]"),
    ({A(k): 1 for k in "abcd"}, {"max_items": 2}, "#{a => 1,b => 1,...}", "%{a: 1, b: 1, ...}"),
    ({1: 1, 2: 2, 3: 3}, {"max_items": 1}, "#{1 => 1,...}", "%{1 => 1, ...}"),
    ([(A(k), 1) for k in "abcd"], {"max_items": 2}, "[{a,1},{b,1}|...]", "[a: 1, b: 1, ...]"),
    ({A("__struct__"): A("Elixir.S"), A("a"): 1, A("b"): 2}, {"max_items": 1},
     "#{'__struct__' => 'Elixir.S',...}", "%S{a: 1, ...}"),
    (list(b"abcdefgh"), {"max_items": 3}, '"abc"...', '~c"abc" ++ ...'),
    (b"abcdefgh", {"max_binary": 3}, '<<"abc"...>>', '"abc" <> ...'),
    ("héllo".encode(), {"max_binary": 2}, '<<"h"...>>', '"h" <> ...'),
    ("héllo".encode(), {"max_binary": 3}, '<<"hé"/utf8...>>', '"hé" <> ...'),
    (b"\x01\x02\x03\x04", {"max_binary": 2}, "<<1,2,...>>", "<<1, 2, ...>>"),
    (b"abc", {"max_binary": 0}, "<<...>>", "<<...>>"),
    (b"abc", {"max_binary": 3}, '<<"abc">>', '"abc"'),
    (BitString(b"\x01\x02\x80", 1), {"max_binary": 2}, "<<1,2,...>>", "<<1, 2, ...>>"),
    (BitString(b"\x01\x80", 1), {"max_binary": 2}, "<<1,1:1>>", "<<1, 1::size(1)>>"),
    ((1, (2, (3, (4,)))), {"max_depth": 2}, "{1,{2,...}}", "{1, {2, ...}}"),
    ([[[[A("a")]]]], {"max_depth": 3}, "[[[...]]]", "[[[...]]]"),
    ((1, (2,)), {"max_depth": 0}, "...", "..."),
    ({A("a"): {A("b"): {A("c"): 1}}}, {"max_depth": 2}, "#{a => #{b => ...}}", "%{a: %{b: ...}}"),
    # Elixir hides the keyword tuples but they still count as a level
    ([(A("a"), [(A("b"), [1])])], {"max_depth": 3}, "[{a,[...]}]", "[a: [b: ...]]"),
    (A("scalar"), {"max_depth": 0, "max_items": 0, "max_binary": 0}, "scalar", ":scalar"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("term", "limits", "erlang", "elixir"), TRUNCATED, ids=[e for _, _, e, _ in TRUNCATED]
)
def test_truncation_markers(term: Any, limits: dict[str, int], erlang: str, elixir: str) -> None:
    assert erl(term, **limits) == erlang
    assert ex(term, **limits) == elixir


def test_bounded_output_stays_small_for_huge_state() -> None:
    state = {
        A(f"k{i}"): [b"x" * 100_000, list(range(100_000)), (1, (2, (3, (4, (5,)))))] for i in range(1000)
    }
    for language in ("erlang", "elixir"):
        text = render(state, language, max_depth=3, max_items=5, max_binary=10)  # type: ignore[arg-type]
        assert len(text) < 600


@pytest.mark.parametrize("limit", ["max_depth", "max_items", "max_binary"])
@pytest.mark.parametrize("value", [-1, 1.5, True])
def test_limits_must_be_non_negative_ints(limit: str, value: Any) -> None:
    with pytest.raises(ValueError, match=limit):
        render([1], **{limit: value})


def test_unknown_language_and_non_terms_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown language"):
        render(1, "lfe")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="NoneType"):
        render([1, None])
    with pytest.raises(TypeError, match="set"):
        render({1, 2}, "elixir")


# ---------------------------------------------------------------------------
# Deep input never touches Python's stack
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["erlang", "elixir"])
def test_deeply_nested_input_renders(language: Any) -> None:
    depth = 200_000
    term: Any = A("leaf")
    for index in range(depth):
        term = [term] if index % 3 == 0 else (term,) if index % 3 == 1 else {A("k"): term}
    text = render(term, language)
    assert text.count("leaf") == 1 and len(text) > 3 * depth
    assert len(render(term, language, max_depth=10)) < 100


@settings(max_examples=300)
@given(terms())
def test_any_term_renders_in_both_languages(term: Any) -> None:
    for language in ("erlang", "elixir"):
        assert render(term, language)  # type: ignore[arg-type]
        bounded = render(term, language, max_depth=2, max_items=2, max_binary=2)  # type: ignore[arg-type]
        assert len(bounded) < 2000


# ---------------------------------------------------------------------------
# Differential checks against the real shells
# ---------------------------------------------------------------------------

ERL = shutil.which("erl")
ELIXIR = shutil.which("elixir")

# Both shells print maps with their keys in term order, the order the test's maps are built in: from
# OTP 26 on a small map's own order is an internal one (OTP 25 and Elixir 1.14 ignore the options).
ERLANG_REPRINT = """
{ok, Bin} = file:read_file(In),
Lines = string:split(unicode:characters_to_list(Bin), "\\n", all),
Print = fun(Line) ->
    try
        {ok, Tokens, _} = erl_scan:string(Line ++ "."),
        {ok, Term} = erl_parse:parse_term(Tokens),
        io_lib_pretty:print(Term, [{encoding, unicode}, {line_length, 100000000}, {maps_order, ordered}])
    catch _:Reason -> io_lib:format("ERROR ~p", [Reason])
    end
end,
ok = file:write_file(Out, unicode:characters_to_binary(lists:join("\\n", [Print(L) || L <- Lines]))),
halt().
"""

ELIXIR_REPRINT = """
[input, output] = System.argv()
print = fn line ->
  try do
    {term, _} = Code.eval_string(line)
    inspect(term, limit: :infinity, printable_limit: :infinity, custom_options: [sort_maps: true])
  rescue
    e -> "ERROR " <> String.replace(Exception.message(e), "\n", " ")
  end
end
File.write!(output, File.read!(input) |> String.split("\\n") |> Enum.map(print) |> Enum.join("\\n"))
"""


def reprint_with_erlang(texts: list[str], tmp_path: Path) -> list[str]:
    source, result = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text("\n".join(texts), encoding="utf-8")
    code = f'In = "{source}", Out = "{result}", ' + ERLANG_REPRINT
    command = [ERL, "-noshell", "+pc", "unicode", "-eval", code]  # binaries: see render's docstring
    subprocess.run(command, check=True, timeout=120, capture_output=True)  # type: ignore[list-item]
    return result.read_text(encoding="utf-8").split("\n")


def reprint_with_elixir(texts: list[str], tmp_path: Path) -> list[str]:
    source, result, script = tmp_path / "in.txt", tmp_path / "out.txt", tmp_path / "reprint.exs"
    source.write_text("\n".join(texts), encoding="utf-8")
    script.write_text(ELIXIR_REPRINT, encoding="utf-8")
    command = [ELIXIR, str(script), str(source), str(result)]
    subprocess.run(command, check=True, timeout=120, capture_output=True)  # type: ignore[list-item]
    return result.read_text(encoding="utf-8").split("\n")


def sample_floats() -> list[float]:
    rng = random.Random(1)
    floats = [0.0, -0.0, 5e-324, 1.7976931348623157e308, 0.1, 100.0, 1e5, 2.0**53, 2.0**53 - 1]
    floats += [struct.unpack(">d", rng.getrandbits(64).to_bytes(8, "big"))[0] for _ in range(3000)]
    floats += [
        float(f"{rng.randint(1, 10 ** rng.randint(1, 17))}e{rng.randint(-25, 25)}") for _ in range(3000)
    ]
    floats += [float(rng.randint(-(2**60), 2**60)) for _ in range(500)]
    floats += [float(f"1e{e}") for e in range(-30, 30)]
    return [x for x in floats if x == x and abs(x) != float("inf")]


def random_atom_name(rng: random.Random) -> str:
    alphabet = "abcxyzABCZ019_@?!.- '\"\\#{}\n\x01é"
    fixed = [
        "ok",
        "Elixir.Foo.Bar",
        "Elixir.Foo.bar",
        "Elixir",
        "nil",
        "true",
        "+",
        "..",
        "::",
        "=>",
        "a@b",
        "ça",
    ]
    if rng.random() < 0.3:
        return rng.choice(fixed)
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))


def random_term(rng: random.Random, depth: int) -> Any:
    """Terms on which the shells' conventions and ours agree (see the module docstring of render)."""
    scalars = [
        lambda: rng.randint(-(10**30), 10**30),
        lambda: rng.choice(sample_floats_small),
        lambda: rng.choice([True, False]),
        lambda: _atom_or_bool(random_atom_name(rng)),
        lambda: bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 4))),
        lambda: "".join(rng.choice('ab \n"\\#{}é\x7f') for _ in range(rng.randint(0, 5))).encode(),
        lambda: BitString(bytes([rng.randint(0, 255), rng.randint(0, 255) & 0xE0]), 3),
        lambda: [rng.choice(b"abc \n\\\"'") for _ in range(rng.randint(1, 4))],  # last: not a tail
    ]
    if depth <= 0:
        return rng.choice(scalars)()
    child = lambda: random_term(rng, depth - 1)  # noqa: E731
    containers = [
        lambda: tuple(child() for _ in range(rng.randint(0, 3))),
        lambda: [child() for _ in range(rng.randint(0, 3))],
        lambda: ImproperList([child() for _ in range(rng.randint(1, 2))], rng.choice(scalars[:-1])()),
        lambda: {A(random_atom_name(rng) or "k"): child()},
        lambda: {n: child() for n in range(rng.randint(0, 3))},
        lambda: [(_atom_or_bool(random_atom_name(rng)), child()) for _ in range(rng.randint(1, 3))],
    ]
    return rng.choice(scalars + containers)()


sample_floats_small = [0.5, -2.0, 1e10, 1.5e-7, 123456.789, 2.0**60]


def _atom_or_bool(name: str) -> Any:
    return {"true": True, "false": False}.get(name, A(name))


def differential_terms() -> list[Any]:
    rng = random.Random(2)
    handpicked = [t for t, _, _ in KINDS if not isinstance(t, (Pid, Port, Ref, Fun, Export, str))]
    return handpicked + [random_term(rng, 3) for _ in range(400)]


@pytest.mark.skipif(ERL is None, reason="erl is not installed")
def test_erlang_floats_match_the_erlang_shell(tmp_path: Path) -> None:
    floats = sample_floats()
    # Our text must read back as the same float and print the same: Erlang prints a
    # different float differently, so equal texts mean equal values.
    rendered = [erlang_float(x) for x in floats]
    assert reprint_with_erlang(rendered, tmp_path) == rendered


@pytest.mark.skipif(ELIXIR is None, reason="elixir is not installed")
def test_elixir_floats_match_iex(tmp_path: Path) -> None:
    floats = sample_floats()
    rendered = [elixir_float(x) for x in floats]
    assert reprint_with_elixir(rendered, tmp_path) == rendered


@pytest.mark.skipif(ERL is None, reason="erl is not installed")
def test_erlang_rendering_reads_back_and_matches_the_shell(tmp_path: Path) -> None:
    # Our deliberate differences: 'maybe'/'else' quoted, charlists above 255 (a +pc unicode shell) as lists
    terms = [t for t in differential_terms() if not any(w in repr(t) for w in ("maybe", "else", "[256]"))]
    rendered = [render(t) for t in terms]
    assert reprint_with_erlang(rendered, tmp_path) == rendered


def installed_elixir_version() -> str:
    command = [ELIXIR, "-e", "IO.write(System.version())"]
    return subprocess.run(command, check=True, timeout=60, capture_output=True, text=True).stdout  # type: ignore[list-item]


@pytest.mark.skipif(ELIXIR is None, reason="elixir is not installed")
def test_elixir_rendering_reads_back_and_matches_iex(tmp_path: Path) -> None:
    dialect = Dialect("elixir", installed_elixir_version())
    rendered = [render(t, dialect) for t in differential_terms()]
    assert reprint_with_elixir(rendered, tmp_path) == rendered
    # Current Elixir's syntax reads back as the same terms on every release.
    modern = [render(t, "elixir") for t in differential_terms()]
    assert reprint_with_elixir(modern, tmp_path) == rendered


def test_output_is_a_plain_str() -> None:
    for language in ("erlang", "elixir"):
        assert type(render(A("ok"), language)) is str  # type: ignore[arg-type]
        assert type(render(A("nil"), language)) is str  # type: ignore[arg-type]
