"""Structural diffs (``arsenal.terms.diff``) and paths into terms (``arsenal.terms.paths``)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings

from arsenal.dist.terms import Atom, ImproperList, StrictKey
from arsenal.terms.diff import Change, diff_terms, same_term
from arsenal.terms.paths import PathError, deep_merge, format_path, get_in, parse_path, put_in
from arsenal.terms.source import parse_term

from .strategies import terms

A = Atom


def ex(text: str) -> Any:
    return parse_term(text, "elixir")


def changes(old: Any, new: Any, **kwargs: Any) -> list[tuple[list[Any], str, Any, Any]]:
    return [(c.path, c.kind, c.old, c.new) for c in diff_terms(old, new, **kwargs)]


# ------------------------------------------------------------------------------------- diff


def test_equal_terms_have_no_changes() -> None:
    state = ex('%{count: 3, items: [1, 2, {:a, "b"}], sub: %{x: 1.5}}')
    assert diff_terms(state, ex('%{sub: %{x: 1.5}, items: [1, 2, {:a, "b"}], count: 3}')) == []
    assert diff_terms(state, state).truncated is False


def test_maps_by_key() -> None:
    old = ex('%{count: 3, name: "a", gone: 1, sub: %{x: 1}}')
    new = ex('%{count: 4, name: "a", sub: %{x: 1, y: 2}, new: :yes}')
    assert changes(old, new) == [
        (["count"], "changed", 3, 4),
        (["gone"], "removed", 1, None),
        (["sub", "y"], "added", None, 2),
        (["new"], "added", None, A("yes")),
    ]


def test_tuples_and_lists_by_index() -> None:
    assert changes(ex("{:ok, [1, 2, 3]}"), ex("{:ok, [1, 5, 3, 4]}")) == [
        ([1, 1], "changed", 2, 5),
        ([1, 3], "added", None, 4),
    ]
    assert changes([1, 2, 3], [1]) == [([1], "removed", 2, None), ([2], "removed", 3, None)]
    assert changes((1, 2), (1, 2, 3)) == [([], "changed", (1, 2), (1, 2, 3))]


def test_kinds_and_exact_equality() -> None:
    assert changes(1, 1.0) == [([], "type", 1, 1.0)]
    assert changes({A("a"): 1}, [1]) == [([], "type", {A("a"): 1}, [1])]
    assert changes(True, A("other")) == [([], "changed", True, A("other"))]  # both atoms
    assert changes(0.0, -0.0) == [([], "changed", 0.0, -0.0)]
    assert changes([1], ImproperList([1], 2)) == [([], "type", [1], ImproperList([1], 2))]
    assert changes(ImproperList([1], 2), ImproperList([1], 3)) == [
        ([], "changed", ImproperList([1], 2), ImproperList([1], 3))
    ]
    assert changes({StrictKey(1): A("a"), StrictKey(1.0): A("b")}, {1: A("a")}) == [
        (["1.0"], "removed", A("b"), None)
    ]


def test_float_key_and_binary_key_paths() -> None:
    result = changes({1.5: 1, b"\xff": 2, (1, 2): 3}, {1.5: 9, b"\xff": 8, (1, 2): 7})
    assert [path for path, *_ in result] == [["1.5"], ['<<"ÿ">>'], ["{1,2}"]]
    assert changes({b"k": 1}, {b"k": 2}, language="elixir") == [(["k"], "changed", 1, 2)]


def test_structs_are_maps_unless_the_module_changes() -> None:
    old = ex("%Foo{a: 1, b: 2}")
    assert changes(old, ex("%Foo{a: 1, b: 3}")) == [(["b"], "changed", 2, 3)]
    assert changes(old, ex("%Bar{a: 1, b: 2}"))[0][1] == "type"


def test_bounded_by_max_changes_and_depth() -> None:
    old = {A(f"k{i}"): i for i in range(50)}
    new = {A(f"k{i}"): i + 1 for i in range(50)}
    result = diff_terms(old, new, max_changes=10)
    assert len(result) == 10 and result.truncated is True
    assert diff_terms(old, new).truncated is False and len(diff_terms(old, new)) == 50
    deep_old, deep_new = [[[1, 2]]], [[[1, 3]]]
    assert changes(deep_old, deep_new, max_depth=1) == [([0], "changed", [[1, 2]], [[1, 3]])]
    assert changes(deep_old, deep_new) == [([0, 0, 1], "changed", 2, 3)]
    with pytest.raises(ValueError, match="max_changes"):
        diff_terms(1, 2, max_changes=0)


def test_change_as_dict() -> None:
    change = Change(["a", 0], "changed", 1, 2)
    assert change.as_dict() == {"path": ["a", 0], "kind": "changed", "old": 1, "new": 2}


def test_diff_paths_read_back_with_get_in() -> None:
    old = ex('%{"users" => %{alice: %{count: 1}}, items: [%{name: "a"}, %{name: "b"}]}')
    new = ex('%{"users" => %{alice: %{count: 2}}, items: [%{name: "a"}, %{name: "c"}]}')
    for change in diff_terms(old, new):
        assert get_in(old, change.path) == change.old
        assert get_in(new, change.path) == change.new


@settings(max_examples=300, deadline=None)
@given(terms(max_leaves=15), terms(max_leaves=15))
def test_diff_of_a_term_with_itself_is_empty_and_of_two_terms_agrees_with_equality(a: Any, b: Any) -> None:
    assert diff_terms(a, a) == []
    assert (diff_terms(a, b, max_changes=1) == []) == same_term(a, b)


# ------------------------------------------------------------------------------------ paths


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("users.alice.count", ["users", "alice", "count"]),
        ("items[0].name", ["items", 0, "name"]),
        ("[2][0]", [2, 0]),
        ('config["a.b"].x', ["config", "a.b", "x"]),
        ("items.0", ["items", 0]),
        ("", []),
        (" a ", ["a"]),
        (["a", 0], ["a", 0]),
    ],
)
def test_parse_path(text: Any, path: list[Any]) -> None:
    assert parse_path(text) == path
    assert parse_path(format_path(path)) == path


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a..b", "expected a key after '.'"),
        ("a[-1]", "counts from 0"),
        ("a[x]", "unexpected '['"),
        ("a b", "unexpected"),
        (["a", 1.5], "a segment is a key"),
        (["a", -1], "counts from 0"),
        (["a", None], "a segment is a key"),
        (42, "a path is text"),
        ("a." * 200 + "a", "at most 100"),
        ("a" * 5000, "at most 4096"),
    ],
)
def test_bad_paths(text: Any, fragment: str) -> None:
    with pytest.raises(PathError) as caught:
        parse_path(text)
    assert fragment in str(caught.value)


STATE = ex('%{"users" => %{alice: %{count: 1}}, items: [{:a, 1}, {:b, 2}], n: %{1 => :one}, t: true}')


def test_get_in() -> None:
    assert get_in(STATE, "users.alice.count") == 1
    assert get_in(STATE, "items[1][0]") == A("b")
    assert get_in(STATE, ["n", 1]) == A("one")
    assert get_in(STATE, "") is STATE
    assert get_in({True: 1}, ["true"]) == 1


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("users.bob", "no key 'bob' in the map at users; its keys are: alice"),
        ("nothing", "its keys are: "),
        ("items[5]", "index 5 is out of range at items: the list has 2 elements"),
        ("items.x", "is a list of 2 elements: use an index [0]..[1], not the key 'x'"),
        ("items[0].x", "is a tuple of 2 elements"),
        ("users.alice.count.deeper", "is an integer, which has no keys"),
        ("t.x", "is an atom"),
        (["n", "1"], "no key '1'"),
    ],
)
def test_get_in_errors_name_the_segment_and_what_is_there(path: Any, fragment: str) -> None:
    with pytest.raises(PathError) as caught:
        get_in(STATE, path)
    assert fragment in str(caught.value)


def test_ambiguous_key() -> None:
    with pytest.raises(PathError, match="both an atom key and a binary key"):
        get_in({A("k"): 1, b"k": 2}, ["k"])


def test_error_lists_at_most_twenty_keys() -> None:
    big = {A(f"k{i:02}"): i for i in range(30)}
    with pytest.raises(PathError, match="and 10 more"):
        get_in(big, ["zz"])
    with pytest.raises(PathError, match=r"the map is empty"):
        get_in({}, ["a"])


def test_put_in_copies_and_never_adds_keys() -> None:
    updated = put_in(STATE, "users.alice.count", 5)
    assert get_in(updated, "users.alice.count") == 5
    assert get_in(STATE, "users.alice.count") == 1  # the original is untouched
    assert put_in(STATE, "items[0][1]", 9)[A("items")] == [(A("a"), 9), (A("b"), 2)]
    assert type(put_in((1, 2), [0], 0)) is tuple
    assert put_in(STATE, [], 7) == 7
    with pytest.raises(PathError, match="no key 'bob'"):
        put_in(STATE, "users.bob", 1)
    with pytest.raises(PathError, match="out of range"):
        put_in(STATE, "items[2]", 1)


def test_deep_merge() -> None:
    old = ex("%{a: 1, sub: %{x: 1, y: 2}, list: [1, 2]}")
    new = ex("%{sub: %{y: 3, z: 4}, list: [9], b: 2}")
    assert deep_merge(old, new) == ex("%{a: 1, sub: %{x: 1, y: 3, z: 4}, list: [9], b: 2}")
    assert deep_merge(old, 5) == 5
    assert deep_merge(5, {A("a"): 1}) == {A("a"): 1}
    struct = ex("%Foo{a: 1, b: %{c: 1}}")
    merged = deep_merge(struct, ex("%{b: %{d: 2}, __struct__: Bar}"))
    assert merged == ex("%Foo{a: 1, b: %{c: 1, d: 2}}")
    assert deep_merge({A("a"): {A("b"): 1}}, {A("a"): {A("c"): 2}}, max_depth=1) == {A("a"): {A("c"): 2}}
