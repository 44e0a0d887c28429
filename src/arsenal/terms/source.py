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

import re
import unicodedata
from collections.abc import Iterator
from typing import Any, NoReturn

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
from arsenal.terms import lexing
from arsenal.terms.lexing import MAX_ATOM, Lexer, Token, TokenCursor
from arsenal.terms.render import _ELIXIR_OPERATORS, _ELIXIR_REMOTE_OPERATORS, _ERLANG_RESERVED

__all__ = ["MAX_ATOM", "MAX_DEPTH", "MAX_ITEMS", "MAX_TEXT", "TermSourceError", "atoms", "parse_term"]

Language = lexing.Language

MAX_TEXT = 1024 * 1024
"""Longest text accepted, in bytes of UTF-8."""
MAX_DEPTH = 100
"""Deepest nesting of tuples, lists, maps and binaries."""
MAX_ITEMS = 200_000
"""Most terms (every element, key and value counts) in one text."""
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

_ERLANG_PUNCT = lexing.longest_first(("#{", *"{}[](),|/-.:#", "=>", ":=", "<<", ">>"))
_ELIXIR_PUNCT = lexing.longest_first(
    (
        "%{",
        *"%{}[](),|/-.&",
        "=>",
        "<<",
        ">>",
        "::",
        *(op for op in _ELIXIR_OPERATORS if "{" not in op and "<<>" not in op),
    )
)
_ELIXIR_ATOM_OPERATORS = lexing.longest_first(_ELIXIR_OPERATORS)
_ERLANG_OPAQUE = re.compile(r"#(Port|Ref|Fun)<|<\d|#[a-z']")
_ELIXIR_OPAQUE = re.compile(r"#(PID|Port|Reference|Function)<")
_MARKS = frozenset({"Mn", "Mc"})


class _Lexer(Lexer):
    """Turns the text into tokens; the language decides quotes, atoms, characters and punctuation.

    Kinds: int, float, atom (value: name), string, charlist, alias (one segment), kw (Elixir
    ``key:``; value: name), name (a bare word: Erlang ``fun``, Elixir identifiers), punct, eof.
    Comments are ``%`` in Erlang and ``#`` in Elixir (unless it opens ``#PID<``)."""

    def __init__(self, text: str, language: Language) -> None:
        erlang = language == "erlang"
        super().__init__(text, language, _ERLANG_PUNCT if erlang else _ELIXIR_PUNCT, "%" if erlang else "#")
        self.opaque = _ERLANG_OPAQUE if erlang else _ELIXIR_OPAQUE

    def fail(self, message: str, pos: int) -> NoReturn:
        raise TermSourceError(message, *_position(self.text, pos))

    def _comment_here(self) -> bool:
        return super()._comment_here() and not self.opaque.match(self.text, self.pos)

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
        self._opaque()
        start = self.pos
        if (literal := self._literal()) is not None:
            kind, value = literal
            return kind, (self._atom_name(value, start) if kind == "atom" else value)
        if (name := self._match(lexing.ERLANG_NAME)) is not None:
            return self._erlang_name(name)
        if (var := self._match(lexing.ERLANG_VAR)) is not None:
            self.fail(
                f"{var.group()} is a variable, and a literal term has none; "
                f"for the atom write '{var.group()}'",
                var.start(),
            )
        return self._symbol()

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
        if char == '"':
            if text.startswith('"""', self.pos):
                self.fail("heredocs are not supported; write the string on one line with \\n", self.pos)
            value = self._quoted('"')
            if self._keyword_colon():
                return "kw", self._atom_name(value, self.pos)
            return "string", value
        if (literal := self._literal()) is not None:
            return literal
        if char == "_" or char.isalpha():
            return self._elixir_word()
        if char == ":" and not text.startswith("::", self.pos):
            return self._elixir_atom()
        if char == "~":
            return self._sigil()
        if (key := self._operator_key()) is not None:
            return "kw", key
        return self._symbol()

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
        if (alias := lexing.ELIXIR_ALIAS.fullmatch(word)) is not None:
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


# --------------------------------------------------------------------------------------- parser

_WHAT = "a term (a number, atom, string, tuple, list, map or binary)"


class _Parser(TokenCursor):
    """Recursive descent over the tokens, bounded by :data:`MAX_DEPTH` and :data:`MAX_ITEMS`."""

    def __init__(self, text: str, language: Language, tokens: list[Token]) -> None:
        super().__init__(text, tokens)
        self.erlang = language == "erlang"
        self.items = 0

    def fail(self, message: str, token: Token | None = None) -> NoReturn:
        raise TermSourceError(message, *_position(self.text, (token or self.tok).pos))

    def where(self, pos: int) -> str:
        line, column = _position(self.text, pos)
        return f"line {line}, column {column}"

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

    def name_error(self, token: Token) -> NoReturn:
        word = token.value
        if word[0].isupper():
            self.fail(f"{word} is not an alias (aliases are ASCII); for the atom write :{word}", token)
        if self.peek().text == "(":
            self.fail(f"{word}(...) is a call, and a literal term has none", token)
        self.fail(f"{word} is a variable, and a literal term has none; for the atom write :{word}", token)

    def scalar(self, token: Token) -> Term:
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
        atom = self.elixir_alias()
        if self.at("punct", ".") and self.peek().kind in ("name", "atom", "kw"):
            self.fail("calls are not allowed in a literal term", self.peek())
        return atom

    # -- collections ------------------------------------------------------------------------

    def collection(self, token: Token, depth: int) -> Term:
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

    def items_until(self, closer: str, opener: Token, depth: int) -> list[Term]:
        items: list[Term] = []
        if self.accept("punct", closer):
            return items
        while True:
            items.append(self.term(depth))
            if self.accept("punct", ","):
                continue
            self.close(closer, opener, "','")
            return items

    def list_(self, opener: Token, depth: int) -> Term:
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
        pairs: list[tuple[Token, Term, Term]] = []
        if opener.value == "%":
            if not self.at("alias"):
                self.expected("'{' or a struct name after '%'")
            name_token = self.tok
            pairs.append((name_token, Atom("__struct__"), self.alias()))
            if not self.accept("punct", "{"):
                self.expected("'{' after the struct name")
        return self.map_(opener, depth, pairs)

    def map_(self, opener: Token, depth: int, pairs: list[tuple[Token, Term, Term]]) -> dict[Term, Term]:
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

    def build_map(self, pairs: list[tuple[Token, Term, Term]]) -> dict[Term, Term]:
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

    def binary(self, opener: Token, depth: int) -> bytes | BitString:
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

    def string_bytes(self, text: str, token: Token) -> bytes:
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
            module = self.elixir_alias(before_function=True)
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
        return Export(module, self.atom(name, token), self.arity())

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

    def add_int(self, value: int, size: int, parser: _Parser, token: Token) -> None:
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
