"""Read literal Erlang or Elixir terms as people type them: the reverse of :func:`render`.

``parse_term('#{count => 3, <<"k">> => [1, 2.5, "str"]}', "erlang")`` and
``parse_term('%{count: 3, "k" => [1, 2.5]}', "elixir")`` give :mod:`arsenal.dist` terms,
so a state shown by Arsenal can be edited as text and sent back. For every term made of
numbers, atoms, binaries, bit strings, tuples, lists, improper lists, maps and external
funs, ``parse_term(render(t, lang), lang) == t``.

Only literals: no variables, calls, operators (except unary minus), records, ranges,
interpolation or heredocs. Pids, ports, refs and local funs have no literal syntax a
node would accept (``<0.1.0>`` names a connection-local index), so they are refused
with a pointer to tagged JSON, which carries them losslessly.

The parser builds :class:`~arsenal.dist.Atom` values from the text: callers must check
:func:`atoms` against the node (``binary_to_existing_atom``) before sending a parsed
term, so that typing a term never creates atoms there.

Decisions worth knowing:

* ``true``/``false`` become Python booleans and ``nil`` the atom ``nil``, as the ETF
  decoder gives them.
* Elixir ``Foo.Bar`` is the atom ``Elixir.Foo.Bar``; ``%Foo{a: 1}`` is the map
  ``%{__struct__: Foo, a: 1}`` with exactly the fields written: the struct's defaults are
  not filled in (that needs the module, which lives on the node).
* A map that names the same key twice is an error (the languages keep the last one, which
  in an edited state is almost always a mistake). Keys that Python would merge but Erlang
  keeps apart (``1`` and ``1.0``) are wrapped in :class:`~arsenal.dist.terms.StrictKey`,
  as the ETF decoder does; list and map keys are frozen.
* Binary segments are integers with an optional size in bits (Erlang ``V:Size``, Elixir
  ``V::size(Size)`` or ``V::Size``) and strings (Erlang bytes per character, or UTF-8
  with ``/utf8``; Elixir always UTF-8). A value that does not fit its size is an error
  rather than silently truncated, as the languages would do.
* Erlang accepts a trailing ``.``, adjacent strings concatenate (``"a" "b"``), and ``%``
  comments; Elixir accepts ``#`` comments.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

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
from arsenal.terms.render import _ELIXIR_OPERATORS, _ELIXIR_REMOTE_OPERATORS, _ERLANG_RESERVED

__all__ = ["MAX_ATOM", "MAX_DEPTH", "MAX_ITEMS", "MAX_TEXT", "TermSourceError", "atoms", "parse_term"]

Language = Literal["erlang", "elixir"]

MAX_TEXT = 1024 * 1024
"""Longest text accepted, in bytes of UTF-8."""
MAX_DEPTH = 100
"""Deepest nesting of tuples, lists, maps and binaries."""
MAX_ITEMS = 200_000
"""Most terms (every element, key and value counts) in one text."""
MAX_ATOM = 255
"""Erlang's own limit on an atom's length, in characters."""
MAX_BITS = 8 * MAX_TEXT
"""Largest binary a text may build, in bits (``<<0:99999999>>`` is short text but huge)."""

_TAGGED_JSON_HINT = "send the term as tagged JSON instead, which carries pids, ports, refs and funs"


class TermSourceError(ValueError):
    """The text is not a literal term; ``line`` and ``column`` (1-based) say where."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.message = message
        self.line = line
        self.column = column


def parse_term(text: str, language: Language) -> Term:
    """The term ``text`` writes in ``language``; raises :class:`TermSourceError` saying where and why."""
    if language not in ("erlang", "elixir"):
        raise ValueError(f"unknown language {language!r}: use 'erlang' or 'elixir'")
    if not isinstance(text, str):
        raise TermSourceError("a term is text, such as {ok, 1} or %{a: 1}", 1, 1)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_TEXT:
        raise TermSourceError(f"the text is {size} bytes long; at most {MAX_TEXT} are allowed", 1, 1)
    tokens = _Lexer(text, language).tokens()
    return _Parser(text, language, tokens).parse()


def atoms(term: Term) -> set[str]:
    """The name of every atom in ``term`` (booleans included): check them on the node before sending."""
    found: set[str] = set()
    for item in _walk(term):
        kind = type(item)
        if kind is Atom:
            found.add(str(item))
        elif kind is bool:
            found.add("true" if item else "false")
        elif kind is Export:
            found.update((str(item.module), str(item.function)))
        elif kind in (Pid, Port, Ref):
            found.add(str(item.node))
        elif kind is Fun:
            found.update((str(item.module), str(item.pid.node)))
    return found


def _walk(term: Term) -> Iterator[Term]:
    """Every sub-term of ``term``, without recursion (terms from a node can nest deeply)."""
    stack = [term]
    while stack:
        item = stack.pop()
        yield item
        kind = type(item)
        if kind in (list, tuple, FrozenList):
            stack.extend(item)
        elif kind in (dict, FrozenMap):
            pairs = item.items() if kind is dict else item
            for key, value in pairs:
                stack.extend((key, value))
        elif kind is ImproperList:
            stack.extend(item.items)
            stack.append(item.tail)
        elif kind is StrictKey:
            stack.append(item.value)
        elif kind is Fun:
            stack.extend(item.free_vars)


def _position(text: str, pos: int) -> tuple[int, int]:
    """1-based line and column of ``pos`` in ``text``."""
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


# ---------------------------------------------------------------------------------------- lexer


@dataclass(frozen=True, slots=True)
class _Token:
    """Kinds: int, float, atom (value: name), string, charlist, alias (one segment), kw (Elixir
    ``key:``; value: name), name (a bare word: Erlang ``fun``, Elixir identifiers), punct, eof."""

    kind: str
    value: Any
    pos: int
    text: str


_ERLANG_PUNCT = sorted(("#{", *"{}[](),|/-.:#", "=>", ":=", "<<", ">>"), key=len, reverse=True)
_ELIXIR_PUNCT = sorted(
    {
        "%{",
        *"%{}[](),|/-.&",
        "=>",
        "<<",
        ">>",
        "::",
        *(op for op in _ELIXIR_OPERATORS if "{" not in op and "<<>" not in op),
    },
    key=len,
    reverse=True,
)
_ELIXIR_ATOM_OPERATORS = sorted(_ELIXIR_OPERATORS, key=len, reverse=True)

_ERLANG_NUMBER = re.compile(
    r"(?P<base>\d+)#(?P<digits>[0-9a-zA-Z]+(?:_[0-9a-zA-Z]+)*)"
    r"|(?P<float>\d+(?:_\d+)*\.\d+(?:_\d+)*(?:[eE][+-]?\d+)?)|(?P<int>\d+(?:_\d+)*)"
)
_ELIXIR_NUMBER = re.compile(
    r"0x(?P<hex>[0-9a-fA-F]+(?:_[0-9a-fA-F]+)*)|0b(?P<bin>[01]+(?:_[01]+)*)|0o(?P<oct>[0-7]+(?:_[0-7]+)*)"
    r"|(?P<float>\d+(?:_\d+)*\.\d+(?:_\d+)*(?:[eE][+-]?\d+)?)|(?P<int>\d+(?:_\d+)*)"
)
_LATIN1_WORD = "A-Za-z0-9_@\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff"
_ERLANG_NAME = re.compile(f"[a-z\u00df-\u00f6\u00f8-\u00ff][{_LATIN1_WORD}]*")
_ERLANG_VAR = re.compile(f"[A-Z_\u00c0-\u00d6\u00d8-\u00de][{_LATIN1_WORD}]*")
_ELIXIR_ALIAS = re.compile("[A-Z][A-Za-z0-9_]*")
_ERLANG_OPAQUE = re.compile(r"#(Port|Ref|Fun)<|<\d|#[a-z']")
_ELIXIR_OPAQUE = re.compile(r"#(PID|Port|Reference|Function)<")
_ESCAPES = {"b": "\b", "d": "\x7f", "e": "\x1b", "f": "\f", "n": "\n", "r": "\r", "s": " ", "t": "\t"}
_ESCAPES["v"] = "\v"
_ELIXIR_ESCAPES = {**_ESCAPES, "a": "\x07", "0": "\0"}
_MARKS = frozenset({"Mn", "Mc"})


class _Lexer:
    """Turns the text into tokens; the language decides quotes, atoms, characters and punctuation."""

    def __init__(self, text: str, language: Language) -> None:
        self.text = text
        self.erlang = language == "erlang"
        self.pos = 0
        self.punct = _ERLANG_PUNCT if self.erlang else _ELIXIR_PUNCT
        self.opaque = _ERLANG_OPAQUE if self.erlang else _ELIXIR_OPAQUE

    def fail(self, message: str, pos: int) -> NoReturn:
        raise TermSourceError(message, *_position(self.text, pos))

    def tokens(self) -> list[_Token]:
        out: list[_Token] = []
        while True:
            self._skip_blank()
            if self.pos >= len(self.text):
                out.append(_Token("eof", None, self.pos, ""))
                return out
            start = self.pos
            kind, value = self._erlang() if self.erlang else self._elixir()
            out.append(_Token(kind, value, start, self.text[start : self.pos]))

    def _skip_blank(self) -> None:
        """Whitespace and comments (``%`` in Erlang, ``#`` in Elixir, unless it opens ``#PID<``)."""
        text = self.text
        comment = "%" if self.erlang else "#"
        while self.pos < len(text):
            char = text[self.pos]
            if char.isspace():
                self.pos += 1
            elif char == comment and not self.opaque.match(text, self.pos):
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            else:
                return

    def _match(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        found = pattern.match(self.text, self.pos)
        if found:
            self.pos = found.end()
        return found

    def _opaque(self) -> None:
        """Refuse pids, ports, refs, funs and records with a message that says what to do."""
        found = self.opaque.match(self.text, self.pos)
        if found is None:
            return
        if found.group().startswith("#") and found.group(1) is None:
            self.fail("records are not supported; write the record as a tuple {name, Field1, ...}", self.pos)
        self.fail(
            f"pids, ports, refs and local funs cannot be written as literals; {_TAGGED_JSON_HINT}", self.pos
        )

    # -- Erlang -----------------------------------------------------------------------------

    def _erlang(self) -> tuple[str, Any]:
        char = self.text[self.pos]
        self._opaque()
        if char.isascii() and char.isdigit():
            return self._number(_ERLANG_NUMBER)
        if (name := self._match(_ERLANG_NAME)) is not None:
            return self._erlang_name(name)
        if (var := self._match(_ERLANG_VAR)) is not None:
            self.fail(
                f"{var.group()} is a variable, and a literal term has none; "
                f"for the atom write '{var.group()}'",
                var.start(),
            )
        if char == "'":
            return "atom", self._atom_name(self._quoted("'"), self.pos)
        if char == '"':
            return "string", self._quoted('"')
        if char == "$":
            return "int", self._char_literal()
        return self._punct()

    def _erlang_name(self, name: re.Match[str]) -> tuple[str, Any]:
        word = name.group()
        if word == "fun":
            return "name", word
        if word in _ERLANG_RESERVED:
            self.fail(f"{word} is a reserved word; write the atom quoted: '{word}'", name.start())
        return "atom", self._atom_name(word, name.start())

    # -- Elixir -----------------------------------------------------------------------------

    def _elixir(self) -> tuple[str, Any]:
        text, char = self.text, self.text[self.pos]
        self._opaque()
        if char.isascii() and char.isdigit():
            return self._number(_ELIXIR_NUMBER)
        if char == "_" or char.isalpha():
            return self._elixir_word()
        if char == ":" and not text.startswith("::", self.pos):
            return self._elixir_atom()
        if char == '"':
            if text.startswith('"""', self.pos):
                self.fail("heredocs are not supported; write the string on one line with \\n", self.pos)
            value = self._quoted('"')
            if self._keyword_colon():
                return "kw", self._atom_name(value, self.pos)
            return "string", value
        if char == "'":
            return "charlist", self._quoted("'")
        if char == "?":
            return "int", self._char_literal()
        if char == "~":
            return self._sigil()
        if (key := self._operator_key()) is not None:
            return "kw", key
        return self._punct()

    def _keyword_colon(self) -> bool:
        """Whether a ``key:`` colon (not ``::``) follows; consumes it."""
        text, pos = self.text, self.pos
        if text.startswith(":", pos) and not text.startswith("::", pos):
            self.pos += 1
            return True
        return False

    def _identifier_end(self, start: int) -> int:
        """End of an Elixir identifier-like word at ``start`` (letters, digits, _, @, marks; ?/!)."""
        text, pos = self.text, start
        while pos < len(text) and (
            text[pos].isalnum() or text[pos] in "_@\u00b7" or unicodedata.category(text[pos]) in _MARKS
        ):
            pos += 1
        if pos < len(text) and text[pos] in "?!" and not text.startswith("!=", pos):
            pos += 1
        return pos

    def _elixir_word(self) -> tuple[str, Any]:
        start = self.pos
        end = self._identifier_end(start)
        word = self.text[start:end]
        self.pos = end
        if self._keyword_colon():
            return "kw", self._atom_name(word, start)
        if (alias := _ELIXIR_ALIAS.fullmatch(word)) is not None:
            return "alias", alias.group()
        if word in ("nil", "true", "false"):
            return "atom", word
        return "name", word  # the parser refuses it where a term is expected, saying why

    def _elixir_atom(self) -> tuple[str, Any]:
        start = self.pos
        self.pos += 1
        text = self.text
        if self.pos < len(text) and text[self.pos] in "\"'":
            return "atom", self._atom_name(self._quoted(text[self.pos]), start)
        if self.pos < len(text) and (text[self.pos] == "_" or text[self.pos].isalpha()):
            end = self._identifier_end(self.pos)
            name = text[self.pos : end]
            self.pos = end
            return "atom", self._atom_name(name, start)
        for op in _ELIXIR_ATOM_OPERATORS:
            if text.startswith(op, self.pos):
                self.pos += len(op)
                return "atom", op
        self.fail("expected an atom after ':', such as :ok or :\"with space\"", start)

    def _operator_key(self) -> str | None:
        """An operator atom as a keyword key (``[+: 1]``, as Elixir prints ``[{:+, 1}]``)."""
        text = self.text
        for op in _ELIXIR_ATOM_OPERATORS:
            end = self.pos + len(op)
            if text.startswith(op, self.pos) and text.startswith(":", end) and not text.startswith("::", end):
                after = text[end + 1 : end + 2]
                if after == "" or after.isspace():
                    self.pos = end + 1
                    return op
        return None

    def _sigil(self) -> tuple[str, Any]:
        text, start = self.text, self.pos
        if text.startswith(('~c"', "~c'", '~s"', "~s'"), start):
            letter = text[start + 1]
            self.pos += 2
            value = self._quoted(text[self.pos])
            return ("charlist" if letter == "c" else "string"), value
        self.fail('only the sigils ~c"..." (a charlist) and ~s"..." (a string) are supported', start)

    # -- shared -----------------------------------------------------------------------------

    def _atom_name(self, name: str, pos: int) -> str:
        if len(name) > MAX_ATOM:
            self.fail(f"an atom is at most {MAX_ATOM} characters; this one has {len(name)}", pos)
        return name

    def _punct(self) -> tuple[str, Any]:
        for op in self.punct:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return "punct", op
        self.fail(f"unexpected character {self.text[self.pos]!r}", self.pos)

    def _number(self, pattern: re.Pattern[str]) -> tuple[str, Any]:
        start = self.pos
        found = self._match(pattern)
        assert found is not None  # called on a digit, which always matches
        groups = {k: (v.replace("_", "") if v else v) for k, v in found.groupdict().items()}
        try:
            kind, value = _number_value(groups)
        except ValueError:
            self.fail(f"{found.group()!r} is not a valid number (digits beyond its base, or too long)", start)
        if kind == "float" and not math.isfinite(value):
            self.fail(f"the float {found.group()} is out of range", start)
        return kind, value

    def _char_literal(self) -> int:
        """``$a`` (Erlang) or ``?a`` (Elixir): the character's code point."""
        start = self.pos
        self.pos += 1
        if self.pos >= len(self.text):
            self.fail("expected a character after " + self.text[start], start)
        if self.text[self.pos] == "\\":
            return ord(self._escape(start))
        self.pos += 1
        return ord(self.text[self.pos - 1])

    def _quoted(self, quote: str) -> str:
        """A quoted atom, string or charlist starting at ``self.pos`` (the opening quote)."""
        start = self.pos
        self.pos += 1
        chars: list[str] = []
        text = self.text
        while True:
            if self.pos >= len(text):
                self.fail(f"unterminated {quote}: expected a closing {quote} for the one here", start)
            char = text[self.pos]
            if char == quote:
                self.pos += 1
                return "".join(chars)
            if char == "\\":
                chars.append(self._escape(start))
                continue
            if not self.erlang and text.startswith("#{", self.pos):
                self.fail("interpolation #{...} is not allowed in a literal; escape it as \\#{", self.pos)
            chars.append(char)
            self.pos += 1

    def _escape(self, start: int) -> str:
        """A backslash escape at ``self.pos``: Erlang's or Elixir's forms."""
        text = self.text
        self.pos += 1
        if self.pos >= len(text):
            self.fail("unterminated escape sequence", start)
        char = text[self.pos]
        self.pos += 1
        if self.erlang and char in "01234567":
            digits = re.match(r"[0-7]{1,3}", text[self.pos - 1 :])
            assert digits is not None
            self.pos += len(digits.group()) - 1
            return chr(int(digits.group(), 8))
        if self.erlang and char == "^" and self.pos < len(text):
            self.pos += 1
            return chr(ord(text[self.pos - 1]) & 31)
        table = _ESCAPES if self.erlang else _ELIXIR_ESCAPES
        if char in table:
            return table[char]
        if char == "x" or (char == "u" and not self.erlang):
            return self._hex_escape(char)
        return char

    def _hex_escape(self, char: str) -> str:
        text = self.text
        braced = re.match(r"\{([0-9a-fA-F]{1,6})\}", text[self.pos :])
        fixed = re.match(r"[0-9a-fA-F]{2}" if char == "x" else r"[0-9a-fA-F]{4}", text[self.pos :])
        found = braced or fixed
        if found is None:
            self.fail(f"expected hexadecimal digits after \\{char}", self.pos - 2)
        code = int(found.group(1) if braced else found.group(), 16)
        if code > 0x10FFFF:
            self.fail(f"\\{char}{{{code:X}}} is beyond the last Unicode code point", self.pos - 2)
        self.pos += found.end()
        return chr(code)


def _number_value(groups: dict[str, Any]) -> tuple[str, int | float]:
    """The value of a matched number literal; ``ValueError`` if its digits are wrong (``2#102``)."""
    if groups.get("float"):
        return "float", float(groups["float"])
    if groups.get("base"):
        base = int(groups["base"])
        if not 2 <= base <= 36:
            raise ValueError(base)
        return "int", int(groups["digits"], base)
    for name, base in (("hex", 16), ("bin", 2), ("oct", 8)):
        if groups.get(name):
            return "int", int(groups[name], base)
    return "int", int(groups["int"])


# --------------------------------------------------------------------------------------- parser

_WHAT = "a term (a number, atom, string, tuple, list, map or binary)"


class _Parser:
    """Recursive descent over the tokens, bounded by :data:`MAX_DEPTH` and :data:`MAX_ITEMS`."""

    def __init__(self, text: str, language: Language, tokens: list[_Token]) -> None:
        self.text = text
        self.erlang = language == "erlang"
        self.tokens = tokens
        self.index = 0
        self.items = 0

    # -- token helpers ----------------------------------------------------------------------

    @property
    def tok(self) -> _Token:
        return self.tokens[self.index]

    def peek(self) -> _Token:
        return self.tokens[min(self.index + 1, len(self.tokens) - 1)]

    def after_next(self) -> _Token:
        return self.tokens[min(self.index + 2, len(self.tokens) - 1)]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "eof":
            self.index += 1
        return token

    def at(self, kind: str, value: Any = None) -> bool:
        return self.tok.kind == kind and (value is None or self.tok.value == value)

    def accept(self, kind: str, value: Any = None) -> _Token | None:
        return self.advance() if self.at(kind, value) else None

    def fail(self, message: str, token: _Token | None = None) -> NoReturn:
        raise TermSourceError(message, *_position(self.text, (token or self.tok).pos))

    def expected(self, what: str, token: _Token | None = None) -> NoReturn:
        token = token or self.tok
        found = "the end of the text" if token.kind == "eof" else repr(token.text)
        self.fail(f"expected {what}, found {found}", token)

    def close(self, closer: str, opener: _Token, what: str) -> None:
        """Consume ``closer`` or fail naming the unbalanced ``opener``."""
        if not self.accept("punct", closer):
            line, column = _position(self.text, opener.pos)
            self.expected(
                f"{what} or {closer!r} to close the {opener.text!r} at line {line}, column {column}"
            )

    # -- the text ---------------------------------------------------------------------------

    def parse(self) -> Term:
        if self.at("eof"):
            self.expected(_WHAT)
        term = self.term(0)
        if self.erlang:
            self.accept("punct", ".")
        if not self.at("eof"):
            self.expected("the end of the text (one term only; no operators or calls)")
        return term

    def term(self, depth: int) -> Term:
        self.items += 1
        if self.items > MAX_ITEMS:
            self.fail(f"the term has more than {MAX_ITEMS} elements")
        token = self.tok
        scalar = self.scalar(token)
        if scalar is not _NOTHING:
            return scalar
        if token.kind == "punct":
            return self.collection(token, depth)
        if token.kind == "name" and token.value == "fun" and self.erlang:
            return self.erlang_export()
        if token.kind == "name":
            self.name_error(token)
        if token.kind == "kw":
            self.fail("a keyword (key: value) can only appear in a list or map, after other elements")
        self.expected(_WHAT)

    def name_error(self, token: _Token) -> NoReturn:
        word = token.value
        if word[0].isupper():
            self.fail(f"{word} is not an alias (aliases are ASCII); for the atom write :{word}", token)
        if self.peek().text == "(":
            self.fail(f"{word}(...) is a call, and a literal term has none", token)
        self.fail(f"{word} is a variable, and a literal term has none; for the atom write :{word}", token)

    def scalar(self, token: _Token) -> Term:
        kind = token.kind
        if kind in ("int", "float"):
            return self.advance().value
        if kind == "punct" and token.value == "-":
            self.advance()
            if not (self.at("int") or self.at("float")):
                self.expected("a number after '-' (the only operator allowed is unary minus)")
            return -self.advance().value
        if kind == "atom":
            return _atom(self.advance().value)
        if kind == "string":
            return self.string()
        if kind == "charlist":
            return _charlist(self.advance().value)
        if kind == "alias":
            return self.alias()
        return _NOTHING

    def string(self) -> Term:
        """Erlang: a charlist (adjacent strings concatenate); Elixir: a UTF-8 binary."""
        parts = [self.advance().value]
        if not self.erlang:
            return _utf8(parts[0])
        while self.at("string"):
            parts.append(self.advance().value)
        return _charlist("".join(parts))

    def alias(self) -> Atom:
        token = self.tok
        parts = [self.advance().value]
        while self.at("punct", ".") and self.peek().kind == "alias":
            self.advance()
            parts.append(self.advance().value)
        if self.at("punct", ".") and self.peek().kind in ("name", "atom", "kw"):
            self.fail("calls are not allowed in a literal term", self.peek())
        if parts[0] == "Elixir" and len(parts) > 1:  # Elixir.Foo is Foo, as in Elixir itself
            parts = parts[1:]
        elif parts == ["Elixir"]:
            return Atom("Elixir")
        name = "Elixir." + ".".join(parts)
        if len(name) > MAX_ATOM:
            self.fail(f"an atom is at most {MAX_ATOM} characters; this one has {len(name)}", token)
        return Atom(name)

    # -- collections ------------------------------------------------------------------------

    def collection(self, token: _Token, depth: int) -> Term:
        """A container with ``depth`` containers around it."""
        if depth >= MAX_DEPTH and token.value in ("{", "[", "<<", "#{", "%{", "%"):
            self.fail(f"the term nests deeper than {MAX_DEPTH} levels")
        opener = token.value
        if opener == "{":
            self.advance()
            return tuple(self.items_until("}", token, depth + 1))
        if opener == "[":
            self.advance()
            return self.list_(token, depth + 1)
        if opener == "<<":
            self.advance()
            return self.binary(token, depth + 1)
        if opener == "#{" and self.erlang:
            self.advance()
            return self.map_(token, depth + 1, [])
        if opener in ("%{", "%") and not self.erlang:
            return self.elixir_map(depth + 1)
        if opener == "&" and not self.erlang:
            return self.elixir_export()
        self.expected(_WHAT)

    def items_until(self, closer: str, opener: _Token, depth: int) -> list[Term]:
        items: list[Term] = []
        if self.accept("punct", closer):
            return items
        while True:
            items.append(self.term(depth))
            if self.accept("punct", ","):
                continue
            self.close(closer, opener, "','")
            return items

    def list_(self, opener: _Token, depth: int) -> Term:
        items: list[Term] = []
        if self.accept("punct", "]"):
            return items
        while True:
            if self.at("kw"):
                items.extend(self.keywords(depth))
                self.close("]", opener, "','")
                return items
            items.append(self.term(depth))
            if self.accept("punct", ","):
                continue
            if self.accept("punct", "|"):
                tail = self.term(depth)
                self.close("]", opener, "the end of the list")
                return _cons(items, tail)
            self.close("]", opener, "',', '|'")
            return items

    def keywords(self, depth: int) -> list[tuple[Term, Term]]:
        """Elixir ``key: value, ...`` (keywords go last): ``{key, value}`` pairs."""
        pairs: list[tuple[Term, Term]] = []
        while True:
            if not self.at("kw"):
                self.expected("a keyword such as key: (keywords go last in a list or map)")
            key = _atom(self.advance().value)
            self.items += 1
            pairs.append((key, self.term(depth)))
            if not self.accept("punct", ","):
                return pairs

    def elixir_map(self, depth: int) -> dict[Term, Term]:
        opener = self.advance()
        pairs: list[tuple[_Token, Term, Term]] = []
        if opener.value == "%":
            if not self.at("alias"):
                self.expected("'{' or a struct name after '%'")
            name_token = self.tok
            pairs.append((name_token, Atom("__struct__"), self.alias()))
            if not self.accept("punct", "{"):
                self.expected("'{' after the struct name")
        return self.map_(opener, depth, pairs)

    def map_(self, opener: _Token, depth: int, pairs: list[tuple[_Token, Term, Term]]) -> dict[Term, Term]:
        """Pairs up to ``}``; Elixir ``key: value`` pairs may come anywhere (Elixir wants them last)."""
        if self.accept("punct", "}"):
            return self.build_map(pairs)
        while True:
            key_token = self.tok
            if not self.erlang and self.at("kw"):
                key = _atom(self.advance().value)
                self.items += 1
            else:
                key = self.term(depth)
                if self.at("punct", ":="):
                    self.fail("':=' matches a key in a pattern; a literal map is written key => value")
                if not self.accept("punct", "=>"):
                    self.expected("'=>' after the map key")
            pairs.append((key_token, key, self.term(depth)))
            if self.accept("punct", ","):
                continue
            self.close("}", opener, "','")
            return self.build_map(pairs)

    def build_map(self, pairs: list[tuple[_Token, Term, Term]]) -> dict[Term, Term]:
        """A dict as the ETF decoder builds it (frozen keys, StrictKey where Python merges keys)."""
        frozen = [(token, freeze(key), value) for token, key, value in pairs]
        result = {key: value for _, key, value in frozen}
        if len(result) == len(frozen):
            return result
        result = {}
        for token, key, value in frozen:
            strict = StrictKey(key) if type(key) in (int, float, bool) else key
            if strict in result:
                self.fail("this map key appears twice; write each key once", token)
            result[strict] = value
        return result

    # -- binaries ---------------------------------------------------------------------------

    def binary(self, opener: _Token, depth: int) -> bytes | BitString:
        bits = _Bits()
        if self.accept("punct", ">>"):
            return bits.value()
        while True:
            self.segment(bits, depth)
            if self.accept("punct", ","):
                continue
            self.close(">>", opener, "','")
            return bits.value()

    def segment(self, bits: _Bits, depth: int) -> None:
        """One segment: an integer with an optional size, or a string (``/utf8`` in Erlang)."""
        token = self.tok
        self.items += 1
        if token.kind == "string" or (token.kind == "charlist" and not self.erlang):
            text = self.advance().value
            if self.erlang:
                while self.at("string"):
                    text += self.advance().value
            bits.add_bytes(self.string_bytes(text, token), self)
            return
        if token.kind == "float":
            self.fail("a binary segment is an integer or a string, not a float", token)
        if token.kind == "int" or (token.kind == "punct" and token.value == "-"):
            value = self.scalar(token)
            if type(value) is not int:
                self.fail("a binary segment is an integer or a string, not a float", token)
            size = self.segment_size()
            if not -(2 ** (size - 1)) <= value < 2**size if size else value != 0:
                self.fail(f"{value} does not fit in {size} bits", token)
            bits.add_int(value, size, self, token)
            return
        self.expected("a binary segment: an integer (with an optional size) or a string", token)

    def string_bytes(self, text: str, token: _Token) -> bytes:
        """Elixir strings are UTF-8 (``::binary``/``::utf8`` allowed); Erlang's are bytes unless /utf8."""
        if not self.erlang:
            if self.accept("punct", "::"):
                self.segment_type(("binary", "utf8"))
            return _utf8(text)
        if self.accept("punct", "/"):
            self.segment_type(("utf8", "binary"))
            return _utf8(text)
        if any(ord(char) > 255 for char in text):
            self.fail('characters above 255 in an Erlang binary need /utf8: write <<"..."/utf8>>', token)
        return text.encode("latin-1")

    def segment_type(self, allowed: tuple[str, ...]) -> None:
        word = self.tok
        if word.kind not in ("atom", "name") or word.text not in allowed:
            self.expected(" or ".join(allowed) + " as the segment type", word)
        self.advance()

    def segment_size(self) -> int:
        """The size in bits after ``:`` (Erlang) or ``::`` (Elixir ``size(N)`` or ``N``); default 8."""
        if self.erlang:
            if not self.accept("punct", ":"):
                return 8
            size = self.size_number()
            if self.at("punct", "/"):
                self.fail("segment types are not supported on integers; give a size in bits instead")
            return size
        if not self.accept("punct", "::"):
            return 8
        if self.at("int"):
            return self.size_number()
        if not (self.at("name", "size") and self.peek().text == "("):
            self.expected("a size: size(N) or N")
        self.advance()
        opener = self.advance()
        size = self.size_number()
        self.close(")", opener, "the end of size(N)")
        return size

    def size_number(self) -> int:
        token = self.tok
        if not self.at("int"):
            self.expected("a size in bits (an integer)")
        size = self.advance().value
        if size > MAX_BITS:
            self.fail(f"a segment is at most {MAX_BITS} bits", token)
        return size

    # -- external funs ----------------------------------------------------------------------

    def erlang_export(self) -> Export:
        token = self.advance()
        module = self.export_atom("a module name after 'fun' (fun Module:Function/Arity)")
        if not self.accept("punct", ":"):
            self.fail("only external funs (fun Module:Function/Arity) can be written as literals", token)
        function = self.export_atom("a function name after ':'")
        return Export(module, function, self.arity())

    def export_atom(self, what: str) -> Atom:
        if not self.at("atom") or type(_atom(self.tok.value)) is not Atom:
            self.expected(what)
        return Atom(self.advance().value)

    def elixir_export(self) -> Export:
        self.advance()
        if self.at("alias"):
            module = self.alias_before_dot()
        else:
            module = self.export_atom("a module after '&' (&Module.function/arity)")
        if not self.accept("punct", "."):
            self.expected("'.' and a function name (&Module.function/arity)")
        token = self.tok
        if token.kind in ("atom", "name", "alias") and token.text[:1] != ":":
            name = self.advance().text
        elif token.kind == "string" or (token.kind == "punct" and token.value in _ELIXIR_REMOTE_OPERATORS):
            name = self.advance().value
        else:
            self.expected("a function name after '.'")
        if len(name) > MAX_ATOM:
            self.fail(f"an atom is at most {MAX_ATOM} characters; this one has {len(name)}", token)
        return Export(module, Atom(name), self.arity())

    def alias_before_dot(self) -> Atom:
        """``Foo.Bar`` in ``&Foo.Bar.fun/1``: alias segments, leaving the ``.`` before the function."""
        parts = [self.advance().value]
        while self.at("punct", ".") and self.peek().kind == "alias" and self.after_next().text != "/":
            self.advance()
            parts.append(self.advance().value)
        if parts[0] == "Elixir" and len(parts) > 1:
            parts = parts[1:]
        elif parts == ["Elixir"]:
            return Atom("Elixir")
        return Atom("Elixir." + ".".join(parts))

    def arity(self) -> int:
        if not self.accept("punct", "/"):
            self.expected("'/' and the arity")
        token = self.tok
        if not self.at("int") or not 0 <= token.value <= 255:
            self.expected("an arity 0..255")
        return self.advance().value


_NOTHING: Any = object()


class _Bits:
    """The bits of a binary under construction."""

    __slots__ = ("count", "number")

    def __init__(self) -> None:
        self.number = 0
        self.count = 0

    def add_int(self, value: int, size: int, parser: _Parser, token: _Token) -> None:
        if self.count + size > MAX_BITS:
            parser.fail(f"the binary is larger than {MAX_BITS // 8} bytes", token)
        self.number = (self.number << size) | (value & ((1 << size) - 1))
        self.count += size

    def add_bytes(self, data: bytes, parser: _Parser) -> None:
        if self.count + 8 * len(data) > MAX_BITS:
            parser.fail(f"the binary is larger than {MAX_BITS // 8} bytes")
        self.number = (self.number << (8 * len(data))) | int.from_bytes(data, "big")
        self.count += 8 * len(data)

    def value(self) -> bytes | BitString:
        whole, rest = divmod(self.count, 8)
        if rest == 0:
            return self.number.to_bytes(whole, "big")
        padded = (self.number << (8 - rest)).to_bytes(whole + 1, "big")
        return BitString(padded, rest)


def _atom(name: str) -> Term:
    """``true``/``false`` are Python booleans in :mod:`arsenal.dist`, as the decoder gives them."""
    if name == "true":
        return True
    if name == "false":
        return False
    return Atom(name)


def _charlist(text: str) -> list[int]:
    return [ord(char) for char in text]


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _cons(items: list[Term], tail: Term) -> Term:
    """``[items | tail]``: a proper list when the tail is a list, else an improper list."""
    if type(tail) is list:
        return [*items, *tail]
    if type(tail) is ImproperList:
        return ImproperList([*items, *tail.items], tail.tail)
    return ImproperList(items, tail)
