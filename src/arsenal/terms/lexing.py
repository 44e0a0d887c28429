"""The term-level lexing that literal terms and trace patterns share.

:mod:`arsenal.terms.source` (literal terms to send) and :mod:`arsenal.ops.trace_patterns`
(patterns and guards to trace with) read the same Erlang and Elixir literals: quoted atoms,
strings and charlists with their escapes, ``$a``/``?a`` characters, and numbers with bases and
underscores. :class:`Lexer` reads those once, the way each language does; a subclass says what
else a token can be (names, variables, sigils, operators), how an error is raised (each caller
has its own error class and way of saying where), and what the text is called in messages.

Number rules: ``1_000``, ``16#ff_ff`` (Erlang) and ``0xFF``, ``0b101``, ``0o17`` (Elixir);
an underscore stands only between two digits, and a malformed number (``1__0``, ``1_``,
``2#102``, ``37#1``) is one error naming the whole number rather than a number followed by a
confusing variable. Escapes are the language's own: Erlang has ``\\^a`` and octal ``\\101``
but no ``\\a`` or ``\\u``; Elixir has ``\\a``, ``\\0`` and ``\\u0041``/``\\u{41}``.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NoReturn

from arsenal.dist.terms import Atom

__all__ = [
    "ELIXIR_ALIAS",
    "ELIXIR_ESCAPES",
    "ERLANG_ESCAPES",
    "ERLANG_NAME",
    "ERLANG_VAR",
    "MAX_ATOM",
    "Language",
    "Lexer",
    "Token",
    "TokenCursor",
    "atom_too_long",
    "longest_first",
]

Language = Literal["erlang", "elixir"]

MAX_ATOM = 255
"""Erlang's own limit on an atom's length, in characters."""


def atom_too_long(name: str) -> str | None:
    """The message for an atom name longer than :data:`MAX_ATOM`; None if it fits."""
    if len(name) > MAX_ATOM:
        return f"an atom is at most {MAX_ATOM} characters; this one has {len(name)}"
    return None


@dataclass(frozen=True, slots=True)
class Token:
    """One lexical token: its ``kind`` (each lexer documents its kinds; ``eof`` ends every list),
    its ``value`` (a name, a number, the characters of a string), where it starts in the text
    (``pos``, 0-based) and the ``text`` it was read from."""

    kind: str
    value: Any
    pos: int
    text: str


def longest_first(symbols: Iterable[str]) -> list[str]:
    """Punctuation to try in order, longest first, so that ``=:=`` wins over ``=``."""
    return sorted(set(symbols), key=lambda symbol: (-len(symbol), symbol))


_LATIN1_WORD = "A-Za-z0-9_@\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff"
ERLANG_NAME = re.compile(f"[a-z\u00df-\u00f6\u00f8-\u00ff][{_LATIN1_WORD}]*")
"""An unquoted Erlang atom (Latin-1 letters, as ``erl_scan`` reads them)."""
ERLANG_VAR = re.compile(f"[A-Z_\u00c0-\u00d6\u00d8-\u00de][{_LATIN1_WORD}]*")
"""An Erlang variable."""
ELIXIR_ALIAS = re.compile("[A-Z][A-Za-z0-9_]*")
"""One segment of an Elixir alias (``Foo`` in ``Foo.Bar``): ASCII only, as in Elixir."""

# Loose on purpose: the conversion checks the underscores, so `1__0` is one bad number.
_FLOAT = r"(?P<float>[0-9][0-9_]*\.[0-9][0-9_]*(?:[eE][+-]?[0-9]+)?)|(?P<int>[0-9][0-9_]*)"
ERLANG_NUMBER = re.compile(r"(?P<base>[0-9][0-9_]*)#(?P<digits>[0-9a-zA-Z_]+)|" + _FLOAT)
ELIXIR_NUMBER = re.compile(r"0x(?P<hex>[0-9a-fA-F_]+)|0b(?P<bin>[01_]+)|0o(?P<oct>[0-7_]+)|" + _FLOAT)

ERLANG_ESCAPES = {"b": "\b", "d": "\x7f", "e": "\x1b", "f": "\f", "n": "\n", "r": "\r", "s": " ", "t": "\t"}
ERLANG_ESCAPES["v"] = "\v"
ELIXIR_ESCAPES = {**ERLANG_ESCAPES, "a": "\x07", "0": "\0"}
_PYTHON_PREFIXES = {2: "0b", 8: "0o", 16: "0x"}  # int("0x1f", 16) is 31 in Python, not in Erlang


class Lexer(ABC):
    """Reads the literals both languages share; a subclass reads the rest.

    Subclasses implement :meth:`fail` (raise their own error for a 0-based position) and
    ``_erlang``/``_elixir`` (one token at ``self.pos``, as ``(kind, value)``, usually trying
    :meth:`_literal` first), pass their ``symbols`` (punctuation, longest first) and ``comment``
    marker, and may set :attr:`symbol_kind` and :attr:`what`.
    """

    symbol_kind: ClassVar[str] = "punct"
    """The token kind of punctuation and operators."""
    what: ClassVar[str] = "a literal term"
    """What the text is, for messages (``interpolation ... is not allowed in a literal term``)."""

    def __init__(self, text: str, language: Language, symbols: list[str], comment: str | None = None) -> None:
        self.text = text
        self.erlang = language == "erlang"
        self.symbols = symbols
        self.comment = comment
        self.pos = 0

    @abstractmethod
    def fail(self, message: str, pos: int) -> NoReturn:
        """Raise the subclass's own error at ``pos`` (each parser reports in its own terms)."""

    @abstractmethod
    def _erlang(self) -> tuple[str, Any]:
        """One Erlang token at ``self.pos``."""

    @abstractmethod
    def _elixir(self) -> tuple[str, Any]:
        """One Elixir token at ``self.pos``."""

    def _literal(self) -> tuple[str, Any] | None:
        """A number, a ``$a``/``?a`` character or quoted text at ``self.pos``; None if none starts here.

        ``'...'`` is an atom in Erlang and a charlist in Elixir; ``"..."`` is a string in both."""
        char = self.text[self.pos]
        if char.isascii() and char.isdigit():
            return self._number()
        if char == ("$" if self.erlang else "?"):
            return "int", self._char_literal()
        if char == "'":
            return ("atom" if self.erlang else "charlist"), self._quoted("'")
        if char == '"':
            return "string", self._quoted('"')
        return None

    def tokens(self) -> list[Token]:
        """Every token of the text, ending with an ``eof`` token."""
        out: list[Token] = []
        while True:
            self._skip_blank()
            if self.pos >= len(self.text):
                out.append(Token("eof", None, self.pos, ""))
                return out
            start = self.pos
            kind, value = self._erlang() if self.erlang else self._elixir()
            out.append(Token(kind, value, start, self.text[start : self.pos]))

    def _skip_blank(self) -> None:
        """Whitespace and comments (to the end of the line)."""
        text = self.text
        while self.pos < len(text):
            if text[self.pos].isspace():
                self.pos += 1
            elif self._comment_here():
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            else:
                return

    def _comment_here(self) -> bool:
        return self.comment is not None and self.text.startswith(self.comment, self.pos)

    def _atom_name(self, name: str, pos: int) -> str:
        """``name``, if it fits in an atom."""
        if (problem := atom_too_long(name)) is not None:
            self.fail(problem, pos)
        return name

    def _match(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        found = pattern.match(self.text, self.pos)
        if found:
            self.pos = found.end()
        return found

    def _symbol(self) -> tuple[str, Any]:
        """Punctuation or an operator from :attr:`symbols`; anything else is unexpected."""
        for symbol in self.symbols:
            if self.text.startswith(symbol, self.pos):
                self.pos += len(symbol)
                return self.symbol_kind, symbol
        self.fail(f"unexpected character {self.text[self.pos]!r}", self.pos)

    # -- numbers ----------------------------------------------------------------------------

    def _number(self) -> tuple[str, int | float]:
        """A number at ``self.pos`` (an ASCII digit): ``("int" | "float", value)``."""
        start = self.pos
        found = self._match(ERLANG_NUMBER if self.erlang else ELIXIR_NUMBER)
        assert found is not None  # called on a digit, which always matches
        number = found.group()
        try:
            kind, value = _number_value(found.groupdict())
        except _BadBase:
            self.fail(f"{number!r} is not a valid number: the base of {number} must be 2..36", start)
        except ValueError:
            why = "digits beyond its base, a misplaced _, or too long"
            self.fail(f"{number!r} is not a valid number ({why})", start)
        if kind == "float" and not math.isfinite(value):
            self.fail(f"the float {number} is out of range", start)
        return kind, value

    # -- characters, quotes and escapes ------------------------------------------------------

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
                message = f"interpolation #{{...}} is not allowed in {self.what}; escape it as \\#{{"
                self.fail(message, self.pos)
            chars.append(char)
            self.pos += 1

    def _escape(self, start: int) -> str:
        """A backslash escape at ``self.pos``, in the language's own forms."""
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
        table = ERLANG_ESCAPES if self.erlang else ELIXIR_ESCAPES
        if char in table:
            return table[char]
        if char == "x" or (char == "u" and not self.erlang):
            return self._hex_escape(char)
        return char

    def _hex_escape(self, char: str) -> str:
        """``\\xHH``, ``\\uHHHH`` or ``\\x{H...}``/``\\u{H...}``, after the letter."""
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


class _BadBase(ValueError):
    """An Erlang base outside 2..36 (``37#1``)."""


def _number_value(groups: dict[str, Any]) -> tuple[str, int | float]:
    """The value of a matched number; ``ValueError`` if it is malformed (``2#102``, ``1__0``).

    Python's ``int``/``float`` accept underscores exactly where Erlang and Elixir do (between
    digits), so they do the checking; only their ``0x``-style prefixes need refusing."""
    if groups.get("float"):
        return "float", float(groups["float"])
    if groups.get("base"):
        base, digits = int(groups["base"]), groups["digits"]
        if not 2 <= base <= 36:
            raise _BadBase(base)
        if digits[:2].lower() == _PYTHON_PREFIXES.get(base):
            raise ValueError(digits)
        return "int", int(digits, base)
    for name, base in (("hex", 16), ("bin", 2), ("oct", 8)):
        if groups.get(name):
            return "int", int(groups[name], base)
    return "int", int(groups["int"])


class TokenCursor(ABC):
    """A parser's position in a token list, with the helpers every recursive descent here uses.

    Subclasses implement :meth:`fail` (raise their own error at a token) and may change
    :meth:`where` (how a position is named), :attr:`symbol_kind` and :attr:`end_name`."""

    symbol_kind: ClassVar[str] = "punct"
    """The token kind of punctuation, as the lexer names it."""
    end_name: ClassVar[str] = "the end of the text"
    """What the ``eof`` token is called in messages."""

    def __init__(self, text: str, tokens: list[Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.index = 0

    @abstractmethod
    def fail(self, message: str, token: Token | None = None) -> NoReturn:
        """Raise the caller's error about ``token`` (the current one if None)."""

    def where(self, pos: int) -> str:
        """A 0-based position as messages name it."""
        return f"column {pos + 1}"

    @property
    def tok(self) -> Token:
        return self.tokens[self.index]

    def peek(self, ahead: int = 1) -> Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != "eof":
            self.index += 1
        return token

    def at(self, kind: str, value: Any = None) -> bool:
        token = self.tok
        return token.kind == kind and (value is None or token.value == value)

    def accept(self, kind: str, value: Any = None) -> Token | None:
        return self.advance() if self.at(kind, value) else None

    def expected(self, what: str, token: Token | None = None) -> NoReturn:
        token = token or self.tok
        found = self.end_name if token.kind == "eof" else repr(token.text)
        self.fail(f"expected {what}, found {found}", token)

    def close(self, closer: str, opener: Token, what: str) -> None:
        """Consume ``closer`` or fail naming the unbalanced ``opener``."""
        if not self.accept(self.symbol_kind, closer):
            self.expected(f"{what} or {closer!r} to close the {opener.text!r} at {self.where(opener.pos)}")

    def atom(self, name: str, token: Token) -> Atom:
        """The atom ``name``, if it fits in one (``token`` is where it was written)."""
        if (problem := atom_too_long(name)) is not None:
            self.fail(problem, token)
        return Atom(name)

    def elixir_alias(self, before_function: bool = False) -> Atom:
        """The alias at the cursor (``Foo.Bar``) as its atom ``Elixir.Foo.Bar``.

        ``Elixir.Foo`` is ``Foo`` and ``Elixir`` alone is the atom ``Elixir``, as in Elixir
        itself. ``before_function`` leaves the last ``.`` of ``&Foo.Bar.fun/1`` to the caller
        even when the function name is capitalised (``&Foo.Bar/1`` is ``Foo`` and ``Bar/1``)."""
        token = self.tok
        parts = [self.advance().value]
        while self.at(self.symbol_kind, ".") and self.peek().kind == "alias":
            if before_function and self.peek(2).text == "/":
                break
            self.advance()
            parts.append(self.advance().value)
        if parts[0] == "Elixir" and len(parts) > 1:
            parts = parts[1:]
        elif parts == ["Elixir"]:
            return self.atom("Elixir", token)
        return self.atom("Elixir." + ".".join(parts), token)
