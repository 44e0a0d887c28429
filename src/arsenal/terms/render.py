"""Render Erlang terms as Erlang or Elixir source text, for people to read.

``render(term)`` prints what the Erlang shell prints for the term (``~p`` on one
line); ``render(term, "elixir")`` prints what IEx's ``inspect/1`` prints. Elixir's
``inspect`` changed between releases: 1.15 and later print a charlist as ``~c"abc"``,
1.14 as ``'abc'``. A plain ``"elixir"`` prints as current releases do (``~c"abc"``
also reads back on 1.14); ``Dialect("elixir", "1.14.0")``, which is what an attached
node's ``language`` is, prints as that node's own release does. The output is meant
for screens and logs, so it follows the shells as closely as sensible, and where the
text is valid source it reads back as the same term.

Choices that differ from the shells, and why:

* **Pids, ports and refs.** The shells print another node's pid as ``<N.ID.SERIAL>``
  where ``N`` is an index into their own connection table, which means nothing
  outside that node. Here a pid of ``local_node`` (the node being looked at)
  renders as ``<0.ID.SERIAL>``, as that node's shell would print it, and any other
  pid renders with its node name, ``<node@host.ID.SERIAL>``. With ``local_node``
  unset, every pid shows its node name, so nothing is ambiguous. Ports and refs
  follow the same rule.
* **Binaries** show as text when they are printable UTF-8 (what ``erl +pc unicode``
  prints; the default shell shows non-latin1 text as bytes), because binaries are
  usually text. **Charlists** show as strings only in the latin1 range in Erlang
  (the shell default) and in the ASCII range in Elixir (its ``inspect``), because
  lists of larger integers are rarely text.
* **Atoms** ``'maybe'`` and ``'else'`` are quoted in Erlang: they are reserved words
  since OTP 27, and quoting is valid in every release.
* **Funs** carry no function name on the wire, so Elixir's
  ``#Function<0.123/1 in Mod.fun/1>`` becomes ``#Function<0.123/1 in Mod>``.
* **Structs** (a map whose ``__struct__`` is an ``Elixir.`` module) render as
  ``%Mod{field: value}`` whether or not that module exists here; Elixir would fall
  back to a plain map for unknown modules, and uses custom ``Inspect`` output
  (``MapSet.new([...])``, ``~U[...]``) for some structs, which this does not know.
* **Map keys** keep the order the node sent them (its own iteration order).
* **Integers** too long for Python's decimal conversion limit print in hexadecimal
  (``16#...`` / ``0x...``) instead of failing.
* **Non-ASCII Elixir atoms** follow a simplified version of Elixir's identifier
  rules; in the rare cases where they differ, this quotes an atom Elixir would not
  (``:"Ź"``), which is still valid and reads back the same.
* **Floats** use the shells' exact algorithms (shortest digits that read back;
  Erlang switches to ``1.0e10`` notation where it is shorter, Elixir prints integral
  floats below ``1.0e16`` in full), checked against both shells on random floats.

``max_depth``, ``max_items`` and ``max_binary`` bound the output so a huge process
state never produces huge text: what is cut is shown as ``...`` in the style of the
language (``[1,2|...]``, ``<<"abc"...>>``, ``[1, 2, ...]``, ``"abc" <> ...``). The
walk is iterative, so any nesting depth renders without touching Python's stack.
"""

from __future__ import annotations

import codecs
import math
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from functools import lru_cache
from itertools import islice
from typing import Any, ClassVar, Literal, TypeAlias

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
)

from .truncation import Cut, cut_of, is_cut_key, list_cut, map_cut, note

__all__ = [
    "ELLIPSIS",
    "Dialect",
    "Language",
    "elixir_atom",
    "elixir_float",
    "erlang_atom",
    "erlang_float",
    "render",
]

Language = Literal["erlang", "elixir"]
ELLIPSIS = "..."
"""The marker both languages use for what was left out."""


class Dialect(str):
    """A language name that also says which Elixir release prints the terms.

    It equals its plain name (``Dialect("elixir", "1.14.0") == "elixir"``), so code that only
    asks which language a node speaks keeps working, while ``render`` prints as that release's
    ``inspect`` does. ``elixir_version`` is ``None`` when unknown: current Elixir's syntax.
    """

    elixir_version: tuple[int, int] | None

    def __new__(cls, name: str, elixir_version: str | None = None) -> Dialect:
        self = super().__new__(cls, name)
        self.elixir_version = _major_minor(elixir_version)
        return self

    def __repr__(self) -> str:
        if self.elixir_version is None:
            return f"Dialect({str(self)!r})"
        return f"Dialect({str(self)!r}, '{self.elixir_version[0]}.{self.elixir_version[1]}')"


def _major_minor(version: str | None) -> tuple[int, int] | None:
    """``"1.14.0"`` or ``"1.15.0-rc.1"`` as ``(1, 14)`` / ``(1, 15)``; None for anything else."""
    match = re.match(r"(\d+)\.(\d+)", version or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def _quotes_charlists(language: str) -> bool:
    """Whether Elixir prints charlists as ``'abc'`` (before 1.15) rather than ``~c"abc"``."""
    version = getattr(language, "elixir_version", None)
    return version is not None and version < (1, 15)


def render(
    term: Term,
    language: Language = "erlang",
    *,
    max_depth: int | None = None,
    max_items: int | None = None,
    max_binary: int | None = None,
    local_node: str | None = None,
) -> str:
    """Return ``term`` as Erlang or Elixir source text, on one line.

    ``max_depth`` is how many levels of nested containers (tuples, lists, maps) are
    shown; deeper ones become ``...``. ``max_items`` is how many elements of each
    list, tuple or map (and characters of each charlist) are shown. ``max_binary`` is
    how many bytes of each binary are shown. ``None`` means no limit. Pids, ports and
    refs of ``local_node`` render as the local ones (``<0.ID.SERIAL>``), others with
    their node name. Raises ``TypeError`` for a value that is not an Erlang term.
    """
    quoted_charlists = language == "elixir" and _quotes_charlists(language)
    return _syntax(str(language), quoted_charlists, max_depth, max_items, max_binary, local_node).render(term)


@lru_cache(maxsize=256)
def _syntax(
    language: str,
    quoted_charlists: bool,
    max_depth: int | None,
    max_items: int | None,
    max_binary: int | None,
    local_node: str | None,
) -> _Syntax:
    """A renderer for one language, set of limits and local node. They hold no state between calls,
    so one serves every call with the same settings (a trace renders many small terms)."""
    limits = _Limits(max_depth=max_depth, max_items=max_items, max_binary=max_binary)
    if language == "erlang":
        return _ErlangSyntax(limits, local_node)
    if language == "elixir":
        return (_Elixir114Syntax if quoted_charlists else _ElixirSyntax)(limits, local_node)
    raise ValueError(f"unknown language {language!r}: use 'erlang' or 'elixir'")


class _Limits:
    """The three output bounds, checked once so the walk can trust them."""

    __slots__ = ("max_binary", "max_depth", "max_items")

    def __init__(self, *, max_depth: int | None, max_items: int | None, max_binary: int | None) -> None:
        for name, value in (("max_depth", max_depth), ("max_items", max_items), ("max_binary", max_binary)):
            if value is not None and (type(value) is not int or value < 0):
                raise ValueError(f"{name} must be a non-negative int or None, not {value!r}")
        self.max_depth = max_depth
        self.max_items = max_items
        self.max_binary = max_binary


class _Child:
    """A term still to be rendered, with the number of containers around it."""

    __slots__ = ("depth", "term")

    def __init__(self, term: Term, depth: int) -> None:
        self.term = term
        self.depth = depth


_Part: TypeAlias = "str | _Child"
_Expansion: TypeAlias = "str | list[_Part]"


# ---------------------------------------------------------------------------
# Shared text helpers
# ---------------------------------------------------------------------------


def _utf8(data: bytes, *, final: bool) -> str | None:
    """Decode ``data`` as UTF-8, or ``None`` if it is not.

    With ``final=False`` the data is a cut prefix: a character cut at the end is
    dropped rather than treated as invalid.
    """
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(data, final=final)
    except UnicodeDecodeError:
        return None


def _shortest_digits(value: float) -> tuple[str, int]:
    """The shortest digits that read back as ``abs(value)`` and where the point goes.

    ``abs(value) == 0.DIGITS * 10 ** place``. Python's ``repr`` gives the shortest
    round-tripping digits, the same ones Erlang's ``float_to_list(F, [short])`` picks.
    """
    _sign, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    assert isinstance(exponent, int)  # finite by construction
    digits = "".join(map(str, digit_tuple))
    stripped = digits.rstrip("0")
    return stripped, len(digits) + exponent


def erlang_float(value: float) -> str:
    """Format a float as Erlang's ``~p`` (``io_lib_format:fwrite_g/1``) does.

    Plain notation unless scientific is strictly shorter; integral floats at or
    above 2**53 always use scientific notation, because their last digits are not
    meaningful. The result always has a ``.`` so it reads back as a float.
    """
    if value == 0.0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign = "-" if value < 0 else ""
    digits, place = _shortest_digits(value)
    scientific = f"{digits[0]}.{digits[1:] or '0'}e{place - 1}"
    if 0 < place < len(digits):
        return f"{sign}{digits[:place]}.{digits[place:]}"
    if place <= 0:
        plain = "0." + "0" * -place + digits
    elif abs(value) < 2.0**53:
        plain = digits + "0" * (place - len(digits)) + ".0"
    else:
        return sign + scientific
    return sign + (plain if len(plain) <= len(scientific) else scientific)


def elixir_float(value: float) -> str:
    """Format a float as Elixir 1.14's ``inspect`` does.

    Same as Erlang except that integral floats from 1.0 up to 1.0e16 print in full
    (``10000000000.0``, where Erlang prints ``1.0e10``).
    """
    if 1.0 <= abs(value) < 1.0e16 and value.is_integer():
        return f"{int(value)}.0"
    return erlang_float(value)


def _int_text(value: int, hex_prefix: str) -> str:
    """Decimal, or hexadecimal when the number is past Python's decimal conversion limit."""
    try:
        return str(value)
    except ValueError:
        sign = "-" if value < 0 else ""
        return f"{sign}{hex_prefix}{abs(value):X}"


def _range_class(ranges: Iterable[tuple[int, int]], extra: str) -> str:
    """A regex character class body for code point ranges plus some single characters."""
    body = "".join(f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in ranges)
    return body + "".join(re.escape(ch) for ch in extra)


_UNICODE_PRINTABLE_RANGES = ((0x20, 0x7E), (0xA0, 0xD7FF), (0xE000, 0xFFFD), (0x10000, 0x10FFFF))
_ERLANG_TEXT_CONTROLS = "\n\r\t\v\b\f\x1b"
_ERLANG_UNPRINTABLE = re.compile(f"[^{_range_class(_UNICODE_PRINTABLE_RANGES, _ERLANG_TEXT_CONTROLS)}]")
"""io_lib:printable_unicode_list/1: what Erlang shows inside a string."""
_LATIN1_UNPRINTABLE = re.compile(f"[^{_range_class(((0x20, 0x7E), (0xA0, 0xFF)), _ERLANG_TEXT_CONTROLS)}]")
"""io_lib:printable_latin1_list/1."""
_ELIXIR_TEXT_CONTROLS = "\n\r\t\v\b\f\x1b\x7f\x07"
_ELIXIR_UNPRINTABLE = re.compile(f"[^{_range_class(_UNICODE_PRINTABLE_RANGES, _ELIXIR_TEXT_CONTROLS)}]")
"""String.printable?/1 in Elixir 1.14."""

_ERLANG_CHARLIST_CODES = frozenset([*range(0x20, 0x7F), *range(0xA0, 0x100), 8, 9, 10, 11, 12, 13, 27])
_ELIXIR_CHARLIST_CODES = frozenset([*range(0x20, 0x7F), 7, 8, 9, 10, 11, 12, 13, 27])
"""List.ascii_printable?/1, which Elixir uses to print a list as ``~c"abc"`` (``'abc'`` before 1.15)."""


def _is_charlist(items: Sequence[Any], allowed: frozenset[int]) -> bool:
    return bool(items) and all(type(code) is int and code in allowed for code in items)


_ERLANG_NAMED_ESCAPES = {
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\b": "\\b",
    "\f": "\\f",
    "\x1b": "\\e",
}
_ERLANG_STRING_ESCAPES = str.maketrans({**_ERLANG_NAMED_ESCAPES, '"': '\\"'})
_ERLANG_ATOM_ESCAPES = str.maketrans(
    {
        **{chr(code): f"\\{code:03o}" for code in [*range(0x20), *range(0x80, 0xA0)]},
        **_ERLANG_NAMED_ESCAPES,
        "\x7f": "\\d",
        "'": "\\'",
    }
)

_ELIXIR_NAMED_ESCAPES = {
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\b": "\\b",
    "\f": "\\f",
    "\x1b": "\\e",
    "\x7f": "\\d",
    "\x07": "\\a",
}
_ELIXIR_STRING_ESCAPES = str.maketrans({**_ELIXIR_NAMED_ESCAPES, '"': '\\"'})
_ELIXIR_CHARLIST_ESCAPES = str.maketrans({**_ELIXIR_NAMED_ESCAPES, "'": "\\'"})


def _elixir_hex_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code == 0:
        return "\\0"
    return f"\\x{code:02X}" if code < 0x100 else f"\\x{{{code:X}}}"


def _elixir_quoted(text: str, table: dict[int, str]) -> str:
    """Escape text for an Elixir double- or single-quoted literal (``#{`` must not interpolate)."""
    escaped = text.translate(table)
    escaped = _ELIXIR_UNPRINTABLE.sub(_elixir_hex_escape, escaped)
    return escaped.replace("#{", "\\#{")


# ---------------------------------------------------------------------------
# Atoms
# ---------------------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_ERLANG_BARE_ATOM = re.compile(
    "[a-z\u00df-\u00f6\u00f8-\u00ff][A-Za-z0-9_@\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff]*"
)
_ERLANG_RESERVED = _words(
    r"after and andalso band begin bnot bor bsl bsr bxor case catch cond div else end fun if let "
    r"maybe not of or orelse receive rem try when xor"
)


@lru_cache(maxsize=4096)  # atoms repeat constantly in real state
def erlang_atom(name: str) -> str:
    """An atom as Erlang writes it: bare when it reads back as the same atom, else quoted."""
    if _ERLANG_BARE_ATOM.fullmatch(name) and name not in _ERLANG_RESERVED:
        return str(name)  # a plain str, not the Atom passed in
    return "'" + name.translate(_ERLANG_ATOM_ESCAPES) + "'"


_ELIXIR_ALIAS_SEGMENT = re.compile("[A-Z][A-Za-z0-9_]*")
_ELIXIR_IDENTIFIER = re.compile("[a-z_][A-Za-z0-9_]*[?!]?")
_ELIXIR_UNQUOTED = re.compile("[A-Za-z_][A-Za-z0-9_@]*[?!]?")
_ELIXIR_OPERATORS = _words(
    r"+ - * / == != === !== < > <= >= && || ! <> ++ -- .. <- \\ -> | & ^ &&& ||| <<< >>> <<~ ~>> <~ "
    r"~> <~> |> =~ @ . % %{} {} <<>> ... ..// ** +++ --- ="
)
"""Operator atoms Elixir 1.14 prints without quotes (``:+``, ``:..``, ``:%{}``)."""
_ELIXIR_REMOTE_OPERATORS = _words(
    r"+ - * / == != === !== < > <= >= && || ! <> ++ -- <- \\ | & ^ ~~~ &&& ||| <<< >>> <<~ ~>> <~ "
    r"~> <~> <|> |> =~ @ :: ^^^ ** +++ --- ="
)
"""Operators that need no quotes as a remote function name (``&Kernel.+/2``)."""
_ELIXIR_SPECIAL_ATOMS = frozenset({"nil", "true", "false"})
_UNICODE_IDENTIFIER_CONTINUE = frozenset({"Ll", "Lu", "Lo", "Lm", "Mn", "Mc"})


def _elixir_unicode_kind(name: str) -> str:
    """Classify a non-ASCII atom name, a simplified version of Elixir's UAX #31 rules.

    Elixir also restricts mixing scripts; this does not, so a rare mixed-script
    atom may print bare where Elixir quotes it.
    """
    body = name[:-1] if name.endswith(("?", "!")) else name
    if not body or not unicodedata.is_normalized("NFC", name):
        return "quoted"
    first = unicodedata.category(body[0])
    if body[0] == "_" or first in ("Ll", "Lo", "Lm"):
        kind = "identifier"
    elif first == "Lu":
        kind = "unquoted"
    else:
        return "quoted"
    for char in body[1:]:
        if char == "@":
            kind = "unquoted"
        elif not (
            (char.isascii() and (char.isalnum() or char == "_"))
            or char == "\u00b7"
            or unicodedata.category(char) in _UNICODE_IDENTIFIER_CONTINUE
        ):
            return "quoted"
    return kind


def _elixir_atom_kind(name: str) -> str:
    """One of ``alias``, ``identifier``, ``unquoted``, ``operator`` or ``quoted``."""
    if name == "Elixir" or (
        name.startswith("Elixir.") and all(_ELIXIR_ALIAS_SEGMENT.fullmatch(s) for s in name[7:].split("."))
    ):
        return "alias"
    if not name.isascii():
        return _elixir_unicode_kind(name)
    if _ELIXIR_IDENTIFIER.fullmatch(name):
        return "identifier"
    if _ELIXIR_UNQUOTED.fullmatch(name):
        return "unquoted"
    return "operator" if name in _ELIXIR_OPERATORS else "quoted"


@lru_cache(maxsize=4096)  # atoms repeat constantly in real state
def elixir_atom(name: str) -> str:
    """An atom as Elixir's ``inspect`` writes it: ``:ok``, ``:"a b"``, ``nil``, ``Foo.Bar``."""
    if name in _ELIXIR_SPECIAL_ATOMS:
        return str(name)  # a plain str, not the Atom passed in
    kind = _elixir_atom_kind(name)
    if kind == "alias":
        return str(name[7:] if name != "Elixir" else name)
    if kind == "quoted":
        return ':"' + _elixir_quoted(name, _ELIXIR_STRING_ESCAPES) + '"'
    return ":" + name


@lru_cache(maxsize=4096)  # atoms repeat constantly in real state
def _elixir_key(name: str) -> str | None:
    """The ``key:`` shorthand for an atom key, or ``None`` where Elixir writes ``{key, value}``.

    Elixir does not use the shorthand for atoms that start with ``Elixir.`` (module names).
    """
    if name.startswith("Elixir."):
        return None
    if name in _ELIXIR_SPECIAL_ATOMS:
        return name + ":"
    if _elixir_atom_kind(name) in ("quoted", "alias"):
        return '"' + _elixir_quoted(name, _ELIXIR_STRING_ESCAPES) + '":'
    return name + ":"


@lru_cache(maxsize=4096)  # atoms repeat constantly in real state
def _elixir_remote_name(name: str) -> str:
    """A function name after ``Module.`` in a capture, quoted unless it is an identifier."""
    if _elixir_atom_kind(name) == "identifier" or name in _ELIXIR_REMOTE_OPERATORS:
        return str(name)
    return '"' + _elixir_quoted(name, _ELIXIR_STRING_ESCAPES) + '"'


def _atom_name(term: Term) -> str | None:
    """The atom name of ``term`` (booleans are atoms), or ``None`` for any other term."""
    if type(term) is StrictKey:
        term = term.value
    if type(term) is bool:
        return "true" if term else "false"
    if type(term) is Atom:
        return str(term)
    return None


# ---------------------------------------------------------------------------
# The walk
# ---------------------------------------------------------------------------


_SCALARS = frozenset({bool, int, float, Atom, bytes, str, BitString, Pid, Port, Ref, Fun, Export})
"""Python types of terms that hold no other term (a fun's free variables are not shown)."""


class _Syntax(ABC):
    """The language-independent walk; subclasses say how each kind of term looks.

    Each handler returns either finished text or a list of parts (text and
    children still to render). ``render`` keeps an explicit stack of parts instead
    of recursing, so the depth of the term never matters to Python.
    """

    item_separator = ","

    # Which method renders each kind of term, looked up once per class (not per call: a trace
    # renders hundreds of thousands of small terms, and building this table each time cost more
    # than the rendering).
    _handler_names: ClassVar[dict[type, str]] = {
        bool: "boolean",
        int: "integer",
        float: "float_",
        Atom: "atom",
        bytes: "binary",
        str: "text",
        BitString: "bitstring",
        tuple: "tuple_",
        list: "list_",
        FrozenList: "list_",
        ImproperList: "improper_list",
        dict: "dict_",
        FrozenMap: "frozen_map",
        StrictKey: "strict_key",
        Pid: "pid",
        Port: "port",
        Ref: "ref",
        Fun: "fun",
        Export: "export",
    }
    _handler_table: ClassVar[dict[type, Callable[..., _Expansion]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._handler_table = {kind: getattr(cls, name) for kind, name in cls._handler_names.items()}

    def __init__(self, limits: _Limits, local_node: str | None) -> None:
        self.limits = limits
        self.local_node = local_node

    def render(self, term: Term) -> str:
        out: list[str] = []
        stack: list[_Part] = [_Child(term, 0)]
        while stack:
            part = stack.pop()
            if type(part) is str:
                out.append(part)
                continue
            assert isinstance(part, _Child)
            expansion = self.expand(part.term, part.depth)
            if type(expansion) is str:
                out.append(expansion)
            else:
                stack.extend(reversed(expansion))
        return "".join(out)

    def child(self, term: Term, depth: int) -> _Part:
        """A part for a nested term: scalars are rendered at once, which keeps the stack short."""
        if type(term) in _SCALARS:
            if type(term) is Atom and cut_of(term) is not None:
                return "…"
            text = self._handler_table[type(term)](self, term, depth)
            assert type(text) is str
            return text
        return _Child(term, depth)

    def expand(self, term: Term, depth: int) -> _Expansion:
        handler = self._handler_table.get(type(term))
        if handler is None:
            raise TypeError(f"cannot render a {type(term).__name__}: it is not an Erlang term")
        if type(term) in (tuple, list, dict, Atom) and not self.too_deep(depth):
            shown = self.cut(term, depth)
            if shown is not None:
                return shown
        return handler(self, term, depth)

    # -- what the agent cut (see arsenal.terms.truncation) -------------------

    def cut(self, term: Term, depth: int) -> _Expansion | None:
        """A term with the agent's truncation marker, shown as what it means; None for any other."""
        if type(term) is list:
            return self.with_note(self.expand(term[:-1], depth), note(None)) if list_cut(term) else None
        if type(term) is dict:
            size = map_cut(term)
            return None if size is None else self.cut_map(term, size, depth)
        found = cut_of(term)
        return None if found is None else self.cut_value(found, depth)

    def cut_map(self, term: dict[Any, Any], size: int, depth: int) -> _Expansion:
        kept = {key: value for key, value in term.items() if not is_cut_key(key)}
        shown = len(kept) if self.limits.max_items is None else min(len(kept), self.limits.max_items)
        return self.with_note(self.expand(kept, depth), note(size - shown if size >= 0 else None))

    def cut_value(self, cut: Cut, depth: int) -> _Expansion:
        if cut.kind == "binary":
            return self.cut_binary(cut.kept, cut.total or 0)
        if cut.kind == "tuple":
            limit = self.limits.max_items
            shown = len(cut.kept) if limit is None else min(len(cut.kept), limit)
            return self.with_note(self.expand(cut.kept, depth), note((cut.total or 0) - shown))
        if cut.kind == "tagged":
            return ["{", self.child(cut.kept, depth + 1), self.item_separator + "…", "}"]
        if cut.kind == "preview":
            return f"{cut.kept}{cut.text}"
        return cut.text

    def cut_binary(self, head: bytes, total: int) -> str:
        """The bytes the agent kept (no more than ``max_binary``), then how many are missing."""
        shown, cut = self.take_bytes(head)
        if cut:  # end on a whole character, so text stays text
            text = _utf8(shown, final=False)
            shown = text.encode() if text is not None else shown
        rendered = self.binary(shown, 0)
        assert type(rendered) is str
        return rendered + note(total - len(shown), "bytes")

    def with_note(self, expansion: _Expansion, text: str) -> _Expansion:
        """``expansion`` (a container's rendering) with ``text`` where its left-out part was."""
        if type(expansion) is str:
            return expansion + text
        *body, close = expansion
        own_cut = {ELLIPSIS, self.item_separator + ELLIPSIS, "|" + ELLIPSIS, " | " + ELLIPSIS}
        if body and type(body[-1]) is str and body[-1] in own_cut:
            body.pop()  # the renderer's own "..." says less than the note
        opened = len(body) > 1
        return [*body, (self.item_separator if opened else "") + text, close]

    # -- limits ------------------------------------------------------------

    def too_deep(self, depth: int) -> bool:
        """Whether a container with ``depth`` containers around it is past ``max_depth``."""
        return self.limits.max_depth is not None and depth >= self.limits.max_depth

    def take(self, items: Sequence[Any]) -> tuple[Sequence[Any], bool]:
        """The items to show and whether some were left out."""
        limit = self.limits.max_items
        if limit is None or len(items) <= limit:
            return items, False
        return items[:limit], True

    def take_pairs(self, pairs: Iterable[tuple[Any, Any]], count: int) -> tuple[list[tuple[Any, Any]], bool]:
        limit = self.limits.max_items
        if limit is None or count <= limit:
            return list(pairs), False
        return list(islice(pairs, limit)), True

    def take_bytes(self, data: bytes) -> tuple[bytes, bool]:
        limit = self.limits.max_binary
        if limit is None or len(data) <= limit:
            return data, False
        return data[:limit], True

    def joined(self, items: Iterable[Any], depth: int) -> list[_Part]:
        """Children separated by the language's separator."""
        parts: list[_Part] = []
        for item in items:
            if parts:
                parts.append(self.item_separator)
            parts.append(self.child(item, depth))
        return parts

    def node_prefix(self, node: str) -> str:
        """``0`` for the node being viewed, else the node's name (see the module docstring)."""
        return "0" if self.local_node is not None and node == self.local_node else str(node)

    # -- kinds shared by both languages ------------------------------------

    def boolean(self, term: bool, depth: int) -> _Expansion:
        return "true" if term else "false"

    def text(self, term: str, depth: int) -> _Expansion:
        return self.binary(term.encode("utf-8", "surrogatepass"), depth)

    def strict_key(self, term: StrictKey, depth: int) -> _Expansion:
        return [self.child(term.value, depth)]

    def frozen_map(self, term: FrozenMap, depth: int) -> _Expansion:
        return self.map_pairs(term, len(term), depth)

    def dict_(self, term: dict[Any, Any], depth: int) -> _Expansion:
        return self.map_pairs(term.items(), len(term), depth)

    def bitstring(self, term: BitString, depth: int) -> _Expansion:
        limit = self.limits.max_binary
        if limit is not None and len(term.data) > limit:
            return self.byte_list(term.data[:limit], True, "")
        last = self.bits_suffix(term.data[-1] >> (8 - term.bits), term.bits)
        return self.byte_list(term.data[:-1], False, last)

    def byte_list(self, data: bytes, cut: bool, last: str) -> str:
        """``<<1,2,3>>``, with an optional partial last byte and the cut marker."""
        items = [str(byte) for byte in data]
        if last:
            items.append(last)
        if cut:
            items.append(ELLIPSIS)
        return "<<" + self.item_separator.join(items) + ">>"

    def sequence(
        self, open_: str, items: list[_Part], cut: bool, close: str, cut_joiner: str | None = None
    ) -> list[_Part]:
        """Bracket ``items``; if some were cut, end with the marker after its joiner.

        The joiner is the item separator except in Erlang lists, which end ``|...]``.
        """
        if cut:
            joiner = self.item_separator if cut_joiner is None else cut_joiner
            items = [*items, joiner + ELLIPSIS] if items else [ELLIPSIS]
        return [open_, *items, close]

    def ref_words(self, term: Ref) -> str:
        """Erlang prints the most significant word first; ``ids`` hold the least first."""
        return ".".join(str(word) for word in reversed(term.ids))

    # -- language specifics ------------------------------------------------

    @abstractmethod
    def integer(self, term: int, depth: int) -> _Expansion: ...

    @abstractmethod
    def float_(self, term: float, depth: int) -> _Expansion: ...

    @abstractmethod
    def atom(self, term: Atom, depth: int) -> _Expansion: ...

    @abstractmethod
    def binary(self, term: bytes, depth: int) -> _Expansion: ...

    @abstractmethod
    def bits_suffix(self, value: int, bits: int) -> str: ...

    @abstractmethod
    def tuple_(self, term: tuple[Any, ...], depth: int) -> _Expansion: ...

    @abstractmethod
    def list_(self, term: Sequence[Any], depth: int) -> _Expansion: ...

    @abstractmethod
    def improper_list(self, term: ImproperList, depth: int) -> _Expansion: ...

    @abstractmethod
    def map_pairs(self, pairs: Iterable[tuple[Any, Any]], count: int, depth: int) -> _Expansion: ...

    @abstractmethod
    def pid(self, term: Pid, depth: int) -> _Expansion: ...

    @abstractmethod
    def port(self, term: Port, depth: int) -> _Expansion: ...

    @abstractmethod
    def ref(self, term: Ref, depth: int) -> _Expansion: ...

    @abstractmethod
    def fun(self, term: Fun, depth: int) -> _Expansion: ...

    @abstractmethod
    def export(self, term: Export, depth: int) -> _Expansion: ...


def _shorthand_keys(keys: Iterable[Any]) -> list[str] | None:
    """The ``key:`` texts for keys that are all atoms Elixir writes that way, else ``None``."""
    texts = []
    for key in keys:
        name = _atom_name(key)
        text = _elixir_key(name) if name is not None else None
        if text is None:
            return None
        texts.append(text)
    return texts


def _struct_name(pairs: Sequence[tuple[Any, Any]]) -> str | None:
    """``Mod`` if the map (all of whose keys are atoms) is a struct of an Elixir module."""
    module = next((value for key, value in pairs if _atom_name(key) == "__struct__"), None)
    if type(module) is not Atom or module == "Elixir" or _elixir_atom_kind(module) != "alias":
        return None
    return elixir_atom(module)


class _ErlangSyntax(_Syntax):
    """Erlang shell syntax (``io_lib_pretty``), without line breaks."""

    item_separator = ","

    def integer(self, term: int, depth: int) -> _Expansion:
        return _int_text(term, "16#")

    def float_(self, term: float, depth: int) -> _Expansion:
        return erlang_float(term)

    def atom(self, term: Atom, depth: int) -> _Expansion:
        return erlang_atom(term)

    def binary(self, term: bytes, depth: int) -> _Expansion:
        shown, cut = self.take_bytes(term)
        more = ELLIPSIS if cut else ""
        text = _utf8(shown, final=not cut)
        if text and not _ERLANG_UNPRINTABLE.search(text):
            suffix = "" if text.isascii() else "/utf8"
            return f'<<"{text.translate(_ERLANG_STRING_ESCAPES)}"{suffix}{more}>>'
        latin1 = shown.decode("latin-1")
        if text is None and not _LATIN1_UNPRINTABLE.search(latin1):
            return f'<<"{latin1.translate(_ERLANG_STRING_ESCAPES)}"{more}>>'
        return self.byte_list(shown, cut, "")

    def bits_suffix(self, value: int, bits: int) -> str:
        return f"{value}:{bits}"

    def tuple_(self, term: tuple[Any, ...], depth: int) -> _Expansion:
        if self.too_deep(depth):
            return ELLIPSIS
        shown, cut = self.take(term)
        return self.sequence("{", self.joined(shown, depth + 1), cut, "}")

    def list_(self, term: Sequence[Any], depth: int) -> _Expansion:
        if self.too_deep(depth):
            return ELLIPSIS
        shown, cut = self.take(term)
        if _is_charlist(term, _ERLANG_CHARLIST_CODES):
            text = "".join(map(chr, shown)).translate(_ERLANG_STRING_ESCAPES)
            return f'"{text}"' + (ELLIPSIS if cut else "")
        return self.sequence("[", self.joined(shown, depth + 1), cut, "]", "|")

    def improper_list(self, term: ImproperList, depth: int) -> _Expansion:
        if self.too_deep(depth):
            return ELLIPSIS
        if not term.items:
            return [self.child(term.tail, depth)]
        shown, cut = self.take(term.items)
        items = self.joined(shown, depth + 1)
        if not cut:
            items += ["|", self.child(term.tail, depth + 1)]
        return self.sequence("[", items, cut, "]", "|")

    def map_pairs(self, pairs: Iterable[tuple[Any, Any]], count: int, depth: int) -> _Expansion:
        if self.too_deep(depth):
            return ELLIPSIS
        shown, cut = self.take_pairs(pairs, count)
        parts: list[_Part] = []
        for key, value in shown:
            if parts:
                parts.append(",")
            parts += [self.child(key, depth + 1), " => ", self.child(value, depth + 1)]
        return self.sequence("#{", parts, cut, "}")

    def pid(self, term: Pid, depth: int) -> _Expansion:
        return f"<{self.node_prefix(term.node)}.{term.id}.{term.serial}>"

    def port(self, term: Port, depth: int) -> _Expansion:
        return f"#Port<{self.node_prefix(term.node)}.{term.id}>"

    def ref(self, term: Ref, depth: int) -> _Expansion:
        return f"#Ref<{self.node_prefix(term.node)}.{self.ref_words(term)}>"

    def fun(self, term: Fun, depth: int) -> _Expansion:
        # erlang:fun_to_list/1 writes the module unquoted: #Fun<Elixir.Foo.0.1234>
        return f"#Fun<{term.module!s}.{term.old_index}.{term.old_uniq}>"

    def export(self, term: Export, depth: int) -> _Expansion:
        return f"fun {erlang_atom(term.module)}:{erlang_atom(term.function)}/{term.arity}"


class _ElixirSyntax(_Syntax):
    """IEx ``inspect/1`` syntax (Elixir 1.15 and later), without line breaks."""

    item_separator = ", "

    def integer(self, term: int, depth: int) -> _Expansion:
        return _int_text(term, "0x")

    def float_(self, term: float, depth: int) -> _Expansion:
        return elixir_float(term)

    def atom(self, term: Atom, depth: int) -> _Expansion:
        return elixir_atom(term)

    def binary(self, term: bytes, depth: int) -> _Expansion:
        shown, cut = self.take_bytes(term)
        text = _utf8(shown, final=not cut)
        if text is not None and (text or not cut) and not _ELIXIR_UNPRINTABLE.search(text):
            quoted = '"' + _elixir_quoted(text, _ELIXIR_STRING_ESCAPES) + '"'
            return quoted + (" <> " + ELLIPSIS if cut else "")
        return self.byte_list(shown, cut, "")

    def bits_suffix(self, value: int, bits: int) -> str:
        return f"{value}::size({bits})"

    def tuple_(self, term: tuple[Any, ...], depth: int) -> _Expansion:
        if self.too_deep(depth):
            return ELLIPSIS
        shown, cut = self.take(term)
        return self.sequence("{", self.joined(shown, depth + 1), cut, "}")

    def list_(self, term: Sequence[Any], depth: int) -> _Expansion:
        if self.too_deep(depth):
            return ELLIPSIS
        if _is_charlist(term, _ELIXIR_CHARLIST_CODES):
            shown, cut = self.take(term)
            return self.charlist("".join(map(chr, shown))) + (" ++ " + ELLIPSIS if cut else "")
        keys = self.keyword_keys(term)
        shown, cut = self.take(term)
        if keys is not None:
            pairs = [(key, item[1]) for key, item in zip(keys, shown, strict=False)]
            return self.sequence("[", self.keyword_parts(pairs, depth + 2), cut, "]")
        return self.sequence("[", self.joined(shown, depth + 1), cut, "]")

    def charlist(self, text: str) -> str:
        return '~c"' + _elixir_quoted(text, _ELIXIR_STRING_ESCAPES) + '"'

    def keyword_keys(self, items: Sequence[Any]) -> list[str] | None:
        """The ``key:`` texts if ``items`` is a keyword list (2-tuples with plain atom keys)."""
        if not items or not all(type(item) is tuple and len(item) == 2 for item in items):
            return None
        return _shorthand_keys(item[0] for item in items)

    def keyword_parts(self, pairs: Iterable[tuple[str, Any]], depth: int) -> list[_Part]:
        parts: list[_Part] = []
        for key, value in pairs:
            if parts:
                parts.append(", ")
            parts += [key + " ", self.child(value, depth)]
        return parts

    def improper_list(self, term: ImproperList, depth: int) -> _Expansion:
        if self.too_deep(depth):
            return ELLIPSIS
        if not term.items:
            return [self.child(term.tail, depth)]
        shown, cut = self.take(term.items)
        items = self.joined(shown, depth + 1)
        if not cut:
            items += [" | ", self.child(term.tail, depth + 1)]
        return self.sequence("[", items, cut, "]")

    def map_pairs(self, pairs: Iterable[tuple[Any, Any]], count: int, depth: int) -> _Expansion:
        if self.too_deep(depth):
            return ELLIPSIS
        pairs = pairs if isinstance(pairs, Sequence) else list(pairs)
        keys = _shorthand_keys(key for key, _ in pairs)
        if keys is not None:
            struct = _struct_name(pairs)
            if struct is not None:
                fields = [
                    (k, v) for k, v in zip(keys, pairs, strict=True) if _atom_name(v[0]) != "__struct__"
                ]
                return self.keyword_map("%" + struct + "{", fields, depth)
            return self.keyword_map("%{", list(zip(keys, pairs, strict=True)), depth)
        shown, cut = self.take_pairs(pairs, count)
        parts: list[_Part] = []
        for key, value in shown:
            if parts:
                parts.append(", ")
            parts += [self.child(key, depth + 1), " => ", self.child(value, depth + 1)]
        return self.sequence("%{", parts, cut, "}")

    def keyword_map(
        self, open_: str, fields: Sequence[tuple[str, tuple[Any, Any]]], depth: int
    ) -> _Expansion:
        """``%{a: 1}`` or ``%Mod{a: 1}``, from ``(shorthand, (key, value))`` pairs."""
        shown, cut = self.take(fields)
        named = [(shorthand, pair[1]) for shorthand, pair in shown]
        return self.sequence(open_, self.keyword_parts(named, depth + 1), cut, "}")

    def pid(self, term: Pid, depth: int) -> _Expansion:
        return f"#PID<{self.node_prefix(term.node)}.{term.id}.{term.serial}>"

    def port(self, term: Port, depth: int) -> _Expansion:
        return f"#Port<{self.node_prefix(term.node)}.{term.id}>"

    def ref(self, term: Ref, depth: int) -> _Expansion:
        return f"#Reference<{self.node_prefix(term.node)}.{self.ref_words(term)}>"

    def fun(self, term: Fun, depth: int) -> _Expansion:
        return f"#Function<{term.old_index}.{term.old_uniq}/{term.arity} in {elixir_atom(term.module)}>"

    def export(self, term: Export, depth: int) -> _Expansion:
        return f"&{elixir_atom(term.module)}.{_elixir_remote_name(term.function)}/{term.arity}"


class _Elixir114Syntax(_ElixirSyntax):
    """Elixir 1.14's ``inspect``: charlists in single quotes."""

    def charlist(self, text: str) -> str:
        return "'" + _elixir_quoted(text, _ELIXIR_CHARLIST_ESCAPES) + "'"
