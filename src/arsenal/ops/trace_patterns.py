"""Trace patterns: the text people type to say what to trace, parsed into an MFA and a match spec.

Users of redbug and recon_trace write ``lists:map/2`` or ``mod:fun(X, {ok, Y}) when X > 10 ->
return``; Elixir users write ``Enum.map/2`` or ``MyApp.Worker.handle_call(msg, _, %{n: n})
when n > 10``. :func:`parse_pattern` accepts both flavours (told apart by the first character:
``:`` or an uppercase alias is Elixir, anything else is Erlang) and returns a
:class:`TracePattern` whose ``match_spec`` is built from :mod:`arsenal.dist` terms, ready for
``erlang:trace_pattern/3``.

Parsing is pure Python and bounded (text length, arguments, nesting, guard size), and it never
touches a node. It does build :class:`~arsenal.dist.Atom` values from the user's text, so
before anything is sent the caller must check :meth:`TracePattern.atoms` against the node
(``binary_to_existing_atom``): a pattern that names an atom the node does not know cannot
match anything there anyway, and sending it would create it.

Decisions worth knowing:

* ``;`` between Erlang guard groups becomes one match-spec clause per group (same head and
  body), which keeps Erlang's semantics: a group that raises only fails that group.
* ``return`` adds ``{return_trace}`` and ``{exception_trace}`` (the VM merges them into one
  return frame that reports values and exceptions); ``caller`` adds ``{message, {caller}}``.
* Variables whose name starts with ``_`` are "don't care" (``'_'``) in both flavours.
* Constants in guards that the match-spec evaluator would otherwise interpret (tuples, lists,
  maps, atoms such as ``'$1'`` or ``'_'``) are wrapped in ``{const, Term}``.
* Elixir ``elem(t, i)`` is 0-based: it becomes ``element(i + 1, T)``; ``is_nil(x)`` is
  ``x =:= nil``.
* ``tuple_size/1`` is no match-spec function before OTP 26, so ``tuple_size(T)`` becomes
  ``size(T andalso-checked to be a tuple)``: the same value, and the guard fails on a non-tuple.
* At most 50 distinct variables (``'$1'``..``'$50'``); a plain node has only a few of those
  atoms until Arsenal's agent (which names all fifty) is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from ..dist.terms import Atom, ImproperList, StrictKey, Term, freeze
from ..terms import lexing
from ..terms.lexing import Lexer, Token, TokenCursor
from ..terms.source import atoms as term_atoms

__all__ = [
    "MAX_ARGS",
    "MAX_DEPTH",
    "MAX_GUARD_TERMS",
    "MAX_TEXT",
    "MAX_VARIABLES",
    "MessagePattern",
    "TracePattern",
    "TracePatternError",
    "parse_message_pattern",
    "parse_pattern",
]

MAX_TEXT = 2000
"""Longest pattern text accepted, in characters."""
MAX_ARGS = 50
"""Most argument patterns in one pattern."""
MAX_DEPTH = 20
"""Deepest nesting of brackets, calls and unary operators, in arguments and guards."""
MAX_GUARD_TERMS = 100
"""Most nodes (operators, calls, variables, constants) in all guards together."""
MAX_VARIABLES = 50
"""Most distinct variables (``'$1'`` .. ``'$50'``: the agent makes sure those atoms exist on a node)."""
MAX_SPEC_DEPTH = 90
"""Deepest nesting of the resulting match spec (Arsenal's wire encoder refuses deeper than 100)."""

Flavour = lexing.Language

_ACTIONS = ("return", "caller")


class TracePatternError(ValueError):
    """The pattern text is not valid; ``position`` is the 1-based column the message is about."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"at column {position}: {message}")
        self.message = message
        self.position = position


@dataclass(frozen=True)
class TracePattern:
    """What to trace (module, function, arity) and how (match spec, actions), from ``source``."""

    module: str
    function: str | None
    arity: int | None
    match_spec: list[Any]
    actions: frozenset[str]
    source: str

    def atoms(self) -> set[str]:
        """Every atom the pattern would send, as text: check they all exist on the node first."""
        found = term_atoms(self.match_spec) | {self.module}
        if self.function is not None:
            found.add(self.function)
        return found

    @property
    def mfa(self) -> tuple[Atom, Atom, int | Atom]:
        """The ``{Module, Function, Arity}`` for ``erlang:trace_pattern/3`` (``'_'`` wildcards)."""
        return (
            Atom(self.module),
            Atom("_" if self.function is None else self.function),
            Atom("_") if self.arity is None else self.arity,
        )


def parse_pattern(text: str) -> TracePattern:
    """Parse an Erlang or Elixir trace pattern; raises :class:`TracePatternError` saying where and why."""
    if not isinstance(text, str):
        raise TracePatternError("a trace pattern is text, such as lists:map/2 or Enum.map/2", 1)
    if len(text) > MAX_TEXT:
        raise TracePatternError(
            f"the pattern is {len(text)} characters long; at most {MAX_TEXT} are allowed", 1
        )
    flavour = _flavour(text)
    return _Parser(text, flavour, _Lexer(text, flavour).tokens()).parse()


@dataclass(frozen=True)
class MessagePattern:
    """A pattern over whole messages (interception rules), as an ``ets`` (table) match spec.

    ``match_spec`` is ``[{{Pattern}, Guards, [true]}]`` (one clause per ``;`` guard group): it is
    run against ``{Message}``, the message wrapped in a 1-tuple, so that any term (not only
    tuples) can be matched with ``ets:match_spec_run/2``.
    """

    match_spec: list[Any]
    source: str

    def atoms(self) -> set[str]:
        """Every atom the pattern would send, as text: check they all exist on the node first."""
        return term_atoms(self.match_spec)


_WRAPPERS = {"call": "$gen_call", "cast": "$gen_cast"}


def parse_message_pattern(text: str, flavour: Flavour) -> MessagePattern:
    """Parse a message pattern (a term pattern with variables and an optional ``when`` guard) in
    the node's syntax: ``{inc, N} when N > 5`` (Erlang), ``{:inc, n} when n > 5`` (Elixir).

    ``call PATTERN`` and ``cast PATTERN`` are short for ``{'$gen_call', _, PATTERN}`` and
    ``{'$gen_cast', PATTERN}``: what ``gen_server:call/cast`` (``GenServer.call/cast``) send.
    Unlike in trace patterns, atoms such as ``'$gen_call'`` may be matched literally (only
    ``'$1'``-style variables, ``'$_'``, ``'$$'`` and ``'_'`` are refused).
    """
    if not isinstance(text, str):
        raise TracePatternError("a message pattern is text, such as {inc, N} or {:inc, n}", 1)
    if len(text) > MAX_TEXT:
        raise TracePatternError(
            f"the pattern is {len(text)} characters long; at most {MAX_TEXT} are allowed", 1
        )
    if not text.strip():
        raise TracePatternError("expected a message pattern such as {inc, N} or {:inc, n}, found nothing", 1)
    parser = _Parser(text, flavour, _Lexer(text, flavour).tokens())
    parser.messages = True
    return parser.parse_message()


def _flavour(text: str) -> Flavour:
    """Elixir patterns start with ``:erlang_mod`` or an alias; Erlang modules are lowercase or quoted."""
    stripped = text.lstrip()
    if not stripped:
        raise TracePatternError("expected a pattern such as lists:map/2 or Enum.map/2, found nothing", 1)
    first = stripped[0]
    if not (first.isalpha() or first in "'_:"):
        column = len(text) - len(stripped) + 1
        raise TracePatternError(f"expected a module name such as lists or Enum, found {first!r}", column)
    return "elixir" if first == ":" or "A" <= first <= "Z" else "erlang"


def _depth(term: Term) -> int:
    """How deeply ``term`` nests (a leaf is 1), without recursion."""
    deepest = 0
    stack = [(term, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        kind = type(item)
        if kind in (list, tuple):
            stack.extend((child, level + 1) for child in item)
        elif kind is dict:
            stack.extend((child, level + 1) for pair in item.items() for child in pair)
        elif kind is ImproperList:
            stack.extend((child, level + 1) for child in (*item.items, item.tail))
    return deepest


# ---------------------------------------------------------------------------------------- lexer


def _words(text: str) -> list[str]:
    return text.split()


_ERLANG_OPS = lexing.longest_first(
    _words("=:= =/= -> := => == /= =< >= << >> || ++ -- < > ( ) { } [ ] , ; | : / # + - * . = !")
)
_ELIXIR_OPS = lexing.longest_first(
    _words(
        "=== !== -> => == != =~ <= >= << >> && || ++ -- <> |> < > ( ) { } [ ] , ; | / % + - * . = ! ^ : \\"
    )
)
_MATCH_VARIABLE = re.compile(r"^(?:_|\$\d+|\$_|\$\$)$")
_ELIXIR_IDENT = re.compile(r"[a-z_][A-Za-z0-9_]*(?:[?!](?!=))?")  # x!=y is x != y
_ELIXIR_ATOM = re.compile(r"[A-Za-z_][A-Za-z0-9_@]*[?!]?")


class _Lexer(Lexer):
    """Turns the text into tokens; the flavour decides quotes, atoms, characters and operators.

    Kinds: name (bare lowercase word), atom (quoted or ``:atom``), var (Erlang variable), alias
    (Elixir ``Foo``), kw (Elixir ``key:``), int, float, string, charlist, op, eof."""

    symbol_kind = "op"
    what = "a trace pattern"

    def __init__(self, text: str, flavour: Flavour) -> None:
        super().__init__(text, flavour, _ERLANG_OPS if flavour == "erlang" else _ELIXIR_OPS)

    def fail(self, message: str, pos: int) -> NoReturn:
        raise TracePatternError(message, pos + 1)

    def _erlang(self) -> tuple[str, Any]:
        if (literal := self._literal()) is not None:
            return literal
        if (name := self._match(lexing.ERLANG_NAME)) is not None:
            return "name", name.group()
        if (var := self._match(lexing.ERLANG_VAR)) is not None:
            return "var", var.group()
        return self._symbol()

    def _elixir(self) -> tuple[str, Any]:
        text, char = self.text, self.text[self.pos]
        if (literal := self._literal()) is not None:
            return literal
        if (ident := self._match(_ELIXIR_IDENT)) is not None:
            after = self.pos
            if text.startswith(":", after) and not text.startswith("::", after):
                self.pos += 1
                return "kw", ident.group()
            return "name", ident.group()
        if (alias := self._match(lexing.ELIXIR_ALIAS)) is not None:
            return "alias", alias.group()
        if char == ":" and text.startswith('"', self.pos + 1):
            self.pos += 1
            return "atom", self._quoted('"')
        if char == ":" and (atom := _ELIXIR_ATOM.match(text, self.pos + 1)) is not None:
            self.pos = atom.end()
            return "atom", atom.group()
        if char == "~":
            if text.startswith(('~c"', "~c'"), self.pos):
                self.pos += 2
                return "charlist", self._quoted(text[self.pos])
            self.fail("only the ~c sigil (a charlist) is supported in trace patterns", self.pos)
        return self._symbol()


# --------------------------------------------------------------------------------------- parser


class _Lit:
    """A guard operand that is a constant (no variables): emitted raw or as ``{const, T}``."""

    __slots__ = ("term",)

    def __init__(self, term: Term) -> None:
        self.term = term


class _Expr:
    """A guard operand that is already a match-spec expression."""

    __slots__ = ("term",)

    def __init__(self, term: Term) -> None:
        self.term = term


_Guard = _Lit | _Expr


def _emit(node: _Guard) -> Term:
    """The match-spec form of a guard operand; constants the evaluator would interpret are quoted."""
    if type(node) is _Expr:
        return node.term
    term = node.term
    if type(term) in (int, float, bool, bytes):
        return term
    if type(term) is Atom and not (term.startswith("$") or term == "_"):
        return term
    return (Atom("const"), term)


@dataclass(frozen=True, slots=True)
class _Op:
    """A binary operator: precedence, associativity and its match-spec name (None: unsupported)."""

    prec: int
    assoc: Literal["left", "right", "non"]
    ms: str | None


def _ops(table: dict[str, tuple[int, str, str | None]]) -> dict[str, _Op]:
    return {name: _Op(prec, assoc, ms) for name, (prec, assoc, ms) in table.items()}  # type: ignore[arg-type]


_COMPARE = 3
_ERLANG_BINARY = _ops(
    {
        "orelse": (1, "right", "orelse"),
        "andalso": (2, "right", "andalso"),
        **{op: (_COMPARE, "non", op) for op in ("==", "/=", "=<", "<", ">=", ">", "=:=", "=/=")},
        "++": (4, "right", None),
        "--": (4, "right", None),
        "+": (5, "left", "+"),
        "-": (5, "left", "-"),
        "or": (5, "left", "or"),
        **{op: (5, "left", None) for op in ("xor", "bor", "bxor", "bsl", "bsr")},
        "*": (6, "left", "*"),
        "/": (6, "left", None),
        "div": (6, "left", "div"),
        "rem": (6, "left", "rem"),
        "and": (6, "left", "and"),
        "band": (6, "left", None),
    }
)
_ELIXIR_BINARY = _ops(
    {
        "||": (1, "left", "orelse"),
        "or": (1, "left", "orelse"),
        "&&": (2, "left", "andalso"),
        "and": (2, "left", "andalso"),
        "==": (_COMPARE, "left", "=="),
        "!=": (_COMPARE, "left", "/="),
        "===": (_COMPARE, "left", "=:="),
        "!==": (_COMPARE, "left", "=/="),
        "=~": (_COMPARE, "left", None),
        "<": (4, "left", "<"),
        ">": (4, "left", ">"),
        "<=": (4, "left", "=<"),
        ">=": (4, "left", ">="),
        "|>": (5, "left", None),
        "in": (6, "left", None),
        "++": (7, "right", None),
        "--": (7, "right", None),
        "<>": (7, "right", None),
        "+": (8, "left", "+"),
        "-": (8, "left", "-"),
        "*": (9, "left", "*"),
        "/": (9, "left", None),
    }
)
_ERLANG_UNARY = {"-": "-", "+": "+", "not": "not", "bnot": None}
_ELIXIR_UNARY = {"-": "-", "+": "+", "not": "not", "!": None, "^": None}

_TYPE_TESTS = (
    "is_integer",
    "is_atom",
    "is_binary",
    "is_list",
    "is_tuple",
    "is_map",
    "is_pid",
    "is_float",
    "is_number",
)
_COMMON_FUNCTIONS = {
    **dict.fromkeys(_TYPE_TESTS, 1),
    **dict.fromkeys(("length", "hd", "tl", "map_size", "byte_size", "tuple_size"), 1),
}
_ERLANG_FUNCTIONS = {**_COMMON_FUNCTIONS, "element": 2}
_ELIXIR_FUNCTIONS = {**_COMMON_FUNCTIONS, "elem": 2, "div": 2, "rem": 2, "is_nil": 1}

_ERLANG_RESERVED = frozenset(
    _words(
        "after and andalso band begin bnot bor bsl bsr bxor case catch cond div end fun if let maybe "
        "else not of or orelse receive rem try when xor"
    )
)
_ELIXIR_RESERVED = frozenset(_words("when and or not in fn do end catch rescue after else"))

_WHAT_ARGUMENT = "an argument pattern (a variable, atom, number, string, tuple, list or map)"


class _Parser(TokenCursor):
    """Recursive descent over the tokens; builds match-spec terms as it goes."""

    symbol_kind = "op"
    end_name = "the end of the pattern"

    def __init__(self, text: str, flavour: Flavour, tokens: list[Token]) -> None:
        super().__init__(text, tokens)
        self.erlang = flavour == "erlang"
        self.variables: dict[str, Atom] = {}
        self.guard_terms = 0
        self.binary = _ERLANG_BINARY if self.erlang else _ELIXIR_BINARY
        self.unary = _ERLANG_UNARY if self.erlang else _ELIXIR_UNARY
        self.functions = _ERLANG_FUNCTIONS if self.erlang else _ELIXIR_FUNCTIONS
        self.reserved = _ERLANG_RESERVED if self.erlang else _ELIXIR_RESERVED
        self.messages = False

    def fail(self, message: str, token: Token | None = None) -> NoReturn:
        raise TracePatternError(message, (token or self.tok).pos + 1)

    # ---------------------------------------------------------------- the pattern

    def parse(self) -> TracePattern:
        module, function = self._mfa()
        args: list[Term] | None = None
        args_token = self.tok
        if self.at("op", "("):
            args = self._args()
        arity = self._arity(function, args)
        if function is None and args is not None:
            self.fail("an argument list needs a function name, not '_'", args_token)
        groups: list[list[Term]] = []
        if self.at("name", "when"):
            when = self.advance()
            if args is None:
                self.fail("a guard needs an argument list to refer to: write mod:fun(X) when ...", when)
            groups = self._guard_sequence()
        actions: frozenset[str] = frozenset()
        if self.accept("op", "->"):
            actions = self._actions()
        if self.erlang:
            self.accept("op", ".")
        if not self.at("eof"):
            self.expected(
                "the end of the pattern (after the function come optional (args), /arity, "
                "'when' guards and '-> actions')"
            )
        head: Term = Atom("_") if args is None else args
        body = _body(actions)
        match_spec = [(head, guards, body) for guards in groups] or [(head, [], body)]
        if _depth(match_spec) > MAX_SPEC_DEPTH:
            raise TracePatternError(
                f"the pattern nests too deeply (its match spec is over {MAX_SPEC_DEPTH} levels)", 1
            )
        return TracePattern(module, function, arity, match_spec, actions, self.text)

    def parse_message(self) -> MessagePattern:
        """A whole-message pattern: [call | cast] PATTERN [when GUARDS]."""
        wrapper = None
        token = self.tok
        after = self.peek()
        if (
            token.kind == "name"
            and token.value in _WRAPPERS
            and after.kind != "eof"
            and not (after.kind == "name" and after.value == "when")
        ):
            wrapper = self.advance().value
        head = self._pattern(1)
        if wrapper == "call":
            head = (Atom("$gen_call"), Atom("_"), head)
        elif wrapper == "cast":
            head = (Atom("$gen_cast"), head)
        groups: list[list[Term]] = []
        if self.at("name", "when"):
            self.advance()
            groups = self._guard_sequence()
        if self.erlang:
            self.accept("op", ".")
        if not self.at("eof"):
            self.expected("the end of the pattern (after the message pattern comes an optional 'when' guard)")
        match_spec = [((head,), guards, [True]) for guards in groups] or [((head,), [], [True])]
        if _depth(match_spec) > MAX_SPEC_DEPTH:
            raise TracePatternError(
                f"the pattern nests too deeply (its match spec is over {MAX_SPEC_DEPTH} levels)", 1
            )
        return MessagePattern(match_spec, self.text)

    def _mfa(self) -> tuple[str, str | None]:
        return self._erlang_mfa() if self.erlang else self._elixir_mfa()

    def _erlang_mfa(self) -> tuple[str, str | None]:
        token = self.tok
        if token.kind == "var":
            if token.value == "_":
                self.fail("tracing every module is not allowed: name a module, as in lists:map/2", token)
            self.fail(f"{token.text} is a variable; a module name is an atom: lowercase or 'quoted'", token)
        if token.kind not in ("name", "atom"):
            self.expected("a module name such as lists or 'Elixir.Foo'")
        module = str(self.atom(self.advance().value, token))
        if self.at("op", ".") and self.peek().kind in ("name", "atom"):
            self.fail(
                f"Erlang separates module and function with ':' ({module}:{self.peek().value}); "
                f"in Elixir syntax write :{module}.{self.peek().value}"
            )
        if not self.accept("op", ":"):
            return module, None
        token = self.tok
        if token.kind == "var" and token.value == "_":
            self.advance()
            return module, None
        if token.kind not in ("name", "atom"):  # reserved words too: users type mod:fun, not mod:'fun'
            self.expected("a function name (an atom) or _ after ':'")
        return module, str(self.atom(self.advance().value, token))

    def _elixir_mfa(self) -> tuple[str, str | None]:
        token = self.tok
        if token.kind == "atom":
            module = str(self.atom(self.advance().value, token))
        elif token.kind == "alias":
            module = str(self.elixir_alias())
            after = self.tok
            if (
                after.kind == "atom"
                and after.text.startswith(":")
                and _adjacent(self.tokens[self.index - 1], after)
            ):
                self.fail(
                    f"{token.text} looks like an Erlang variable: an Erlang module is lowercase or quoted "
                    f"('{module[7:]}'{after.text}); in Elixir syntax write {module[7:]}.{after.value}",
                    token,
                )
        else:
            self.expected("a module: an alias such as Enum or an atom such as :ets")
        if not self.accept("op", "."):
            return module, None
        token = self.tok
        if token.kind == "name" and token.value == "_":
            self.advance()
            return module, None
        if token.kind in ("name", "string"):  # Kernel.not/1, Kernel.in/2: reserved words are names here
            return module, str(self.atom(self.advance().value, token))
        self.expected("a function name or _ after '.'")

    def _args(self) -> list[Term]:
        opener = self.advance()
        args: list[Term] = []
        if self.accept("op", ")"):
            return args
        while True:
            if len(args) == MAX_ARGS:
                self.fail(f"too many arguments: at most {MAX_ARGS} are allowed")
            if not self.erlang and self.at("kw"):  # f(a: 1) is f([a: 1]): keywords go last
                args.append([self._pair(k, v) for _, k, v in self._keywords(2, self._pattern)])
                self.close(")", opener, "','")
                return args
            args.append(self._pattern(1))
            if self.accept("op", ","):
                continue
            self.close(")", opener, "','")
            return args

    def _arity(self, function: str | None, args: list[Term] | None) -> int | None:
        if not self.at("op", "/"):
            return None if args is None else len(args)
        self.advance()
        token = self.tok
        wildcard = token.kind == ("var" if self.erlang else "name") and token.value == "_"
        if wildcard:
            self.advance()
            if args is not None:
                self.fail(f"the arity /_ contradicts the {len(args)} argument(s) given; drop the /_", token)
            return None
        if token.kind != "int":
            self.expected("an arity: an integer or _")
        arity = self.advance().value
        if not 0 <= arity <= 255:
            self.fail(f"an arity is 0..255, not {arity}", token)
        if function is None:
            self.fail("with the function _ (every function) the arity must be _ too", token)
        if args is not None and arity != len(args):
            self.fail(f"the arity /{arity} does not match the {len(args)} argument(s) given", token)
        return arity

    def _actions(self) -> frozenset[str]:
        actions: set[str] = set()
        while True:
            token = self.tok
            if token.kind not in ("name", "atom"):
                self.expected("an action: return or caller")
            if token.value == "stack":
                self.fail(
                    "the 'stack' action is not supported (a stack dump on every call is too heavy "
                    "for a live node); use 'caller' to see who called, or 'return'",
                    token,
                )
            if token.value not in _ACTIONS:
                self.fail(f"unknown action {token.value!r}: expected return or caller", token)
            actions.add(self.advance().value)
            if not (self.accept("op", ",") or self.accept("op", ";")):
                return frozenset(actions)

    # ---------------------------------------------------------------- argument patterns

    def _pattern(self, depth: int, *, literal: bool = False) -> Term:
        """One argument pattern; ``literal`` (map keys) refuses variables."""
        if depth > MAX_DEPTH:
            self.fail(f"the pattern nests deeper than {MAX_DEPTH} levels")
        token = self.tok
        if token.kind in ("int", "float") or (token.kind == "op" and token.value in ("-", "+")):
            return self._number()
        scalar = self._erlang_scalar(token) if self.erlang else self._elixir_scalar(token)
        if scalar is not _NOTHING:
            if literal and type(scalar) is Atom and (scalar.startswith("$") or scalar == "_"):
                self.fail("map keys in a pattern must be constants, not variables", token)
            return scalar
        if token.kind == "op" and token.value in ("{", "[", "<<", "#", "%"):
            item = lambda d: self._pattern(d, literal=literal)  # noqa: E731
            return self._head_collection(depth, item)
        self.expected(_WHAT_ARGUMENT)

    def _number(self) -> int | float:
        sign = self.tok
        negative = False
        if sign.kind == "op":
            negative = self.advance().value == "-"
            if not (self.at("int") or self.at("float")):
                self.expected(f"a number after {sign.text!r}")
        value = self.advance().value
        return -value if negative else value

    def _erlang_scalar(self, token: Token) -> Term:
        if token.kind == "var":
            self.advance()
            return self._head_variable(token)
        if token.kind == "name":
            if token.value in self.reserved:
                self.expected(_WHAT_ARGUMENT)
            self.advance()
            return _atom_or_bool(self.atom(token.value, token))
        if token.kind == "atom":
            self.advance()
            return self._literal_atom(token)
        if token.kind == "string":
            return _charlist(self._strings())
        return _NOTHING

    def _elixir_scalar(self, token: Token) -> Term:
        if token.kind == "name":
            if token.value in self.reserved:
                self.expected(_WHAT_ARGUMENT)
            self.advance()
            if token.value in ("nil", "true", "false"):
                return _atom_or_bool(Atom(token.value))
            return self._head_variable(token)
        if token.kind == "atom":
            self.advance()
            return self._literal_atom(token)
        if token.kind == "alias":
            return self.elixir_alias()
        if token.kind == "string":
            return self._strings().encode()
        if token.kind == "charlist":
            return _charlist(self.advance().value)
        if token.kind == "op" and token.value == "^":
            self.fail("the pin operator ^ is not supported in trace patterns; match a value directly")
        return _NOTHING

    def _literal_atom(self, token: Token) -> Term:
        atom = self.atom(token.value, token)
        if self.messages and not _MATCH_VARIABLE.match(atom):
            return _atom_or_bool(atom)
        if atom == "_" or atom.startswith("$"):
            self.fail(
                f"the atom {token.text} looks like a match-spec variable and cannot be matched "
                "literally; use a guard such as X =:= ...",
                token,
            )
        return _atom_or_bool(atom)

    def _strings(self) -> str:
        """A string literal; Erlang concatenates adjacent ones (``"a" "b"``)."""
        parts = [self.advance().value]
        while self.erlang and self.at("string"):
            parts.append(self.advance().value)
        return "".join(parts)

    def _head_variable(self, token: Token) -> Atom:
        name = token.value
        if name.startswith("_"):
            return Atom("_")
        if name not in self.variables:
            if len(self.variables) == MAX_VARIABLES:
                self.fail(
                    f"too many variables: at most {MAX_VARIABLES}; use _ where the value does not matter",
                    token,
                )
            self.variables[name] = Atom(f"${len(self.variables) + 1}")
        return self.variables[name]

    def _head_collection(self, depth: int, item: Callable[[int], Term]) -> Term:
        kind, parts = self._collection(depth, item, lambda d: self._pattern(d, literal=True))
        if kind == "tuple":
            return tuple(parts)
        if kind == "list":
            items, tail = parts
            return _cons(items, [] if tail is None else tail)
        if kind == "binary":
            return self._binary(parts)
        return self._map(parts)

    # ---------------------------------------------------------------- collections (shared)

    def _collection(
        self, depth: int, item: Callable[[int], Any], key: Callable[[int], Any]
    ) -> tuple[str, Any]:
        """Tuples, lists, binaries and maps of either flavour, with ``item`` parsing each element.

        Returns ``(kind, parts)``: tuple → items; list → (items, tail or None);
        binary → [(token, item)]; map → [(key token, key, value)] (struct name included)."""
        if depth > MAX_DEPTH:
            self.fail(f"the pattern nests deeper than {MAX_DEPTH} levels")
        opener = self.advance()
        inner = depth + 1
        if opener.value == "{":
            return "tuple", self._items("}", opener, inner, item)
        if opener.value == "[":
            return "list", self._list(opener, inner, item)
        if opener.value == "<<":
            segments: list[tuple[Token, Any]] = []
            if self.accept("op", ">>"):
                return "binary", segments
            while True:
                segments.append((self.tok, item(inner)))
                if self.accept("op", ","):
                    continue
                self.close(">>", opener, "','")
                return "binary", segments
        return "map", self._map_pairs(opener, inner, item, key)

    def _items(self, closer: str, opener: Token, depth: int, item: Callable[[int], Any]) -> list[Any]:
        items: list[Any] = []
        if self.accept("op", closer):
            return items
        while True:
            items.append(item(depth))
            if self.accept("op", ","):
                continue
            self.close(closer, opener, "','")
            return items

    def _list(self, opener: Token, depth: int, item: Callable[[int], Any]) -> tuple[list[Any], Any]:
        items: list[Any] = []
        if self.accept("op", "]"):
            return items, None
        while True:
            if not self.erlang and self.at("kw"):
                items.extend(self._pair(key, value) for _, key, value in self._keywords(depth, item))
                self.close("]", opener, "','")
                return items, None
            items.append(item(depth))
            if self.accept("op", ","):
                continue
            if self.accept("op", "|"):
                tail = item(depth)
                self.close("]", opener, "the end of the list")
                return items, tail
            self.close("]", opener, "',', '|'")
            return items, None

    def _pair(self, key: _Lit, value: Any) -> Any:
        """A keyword-list element ``{key, value}``: a term in a pattern, a guard node in a guard."""
        if self.pattern_mode:
            return (key.term, value)
        if type(value) is _Lit:
            return _Lit((key.term, value.term))
        return _Expr(((_emit(key), _emit(value)),))

    def _keywords(self, depth: int, item: Callable[[int], Any]) -> list[Any]:
        """Elixir ``key: value, ...`` (in lists and maps): ``{key, value}`` pairs."""
        pairs: list[Any] = []
        while True:
            token = self.tok
            if token.kind != "kw":
                self.expected("a keyword such as key: (keywords go last)")
            self.advance()
            pairs.append((token, _Lit(self.atom(token.value, token)), item(depth)))
            if not self.accept("op", ","):
                return pairs

    def _map_pairs(
        self, opener: Token, depth: int, item: Callable[[int], Any], key: Callable[[int], Any]
    ) -> list[tuple[Token, Any, Any]]:
        pairs: list[tuple[Token, Any, Any]] = []
        if self.erlang:
            if not self.at("op", "{"):
                self.fail("records are not supported in trace patterns; write the record as a tuple")
            self.advance()
        else:
            if self.at("alias"):
                struct_token = self.tok
                pairs.append((struct_token, _Lit(Atom("__struct__")), _Lit(self.elixir_alias())))
            if not self.at("op", "{"):
                self.expected("'{' after '%'")
            self.advance()
        if self.accept("op", "}"):
            return pairs
        while True:
            if not self.erlang and self.at("kw"):
                for token, k, v in self._keywords(depth, item):
                    pairs.append((token, k, v))
                self.close("}", opener, "','")
                return pairs
            key_token = self.tok
            map_key = key(depth)
            arrow = self.tok
            if self.erlang and self.pattern_mode and arrow.text == "=>":
                self.fail("in an Erlang map pattern, write key := Value (=> builds a map)", arrow)
            if self.erlang and not self.pattern_mode and arrow.text == ":=":
                self.fail("in a guard, build a map with key => Value", arrow)
            if arrow.text not in ("=>", ":="):
                self.expected(
                    "':=' after the map key"
                    if self.erlang and self.pattern_mode
                    else "'=>' after the map key"
                )
            self.advance()
            pairs.append((key_token, map_key, item(depth)))
            if self.accept("op", ","):
                continue
            self.close("}", opener, "','")
            return pairs

    pattern_mode = True
    """True while parsing argument patterns, False in guards (Erlang map arrows differ)."""

    def _binary(self, segments: list[tuple[Token, Any]]) -> bytes:
        out = bytearray()
        for token, value in segments:
            term = value.term if isinstance(value, _Lit | _Expr) else value
            if type(value) is _Expr:
                self.fail("binary segments must be constants (strings or bytes 0..255)", token)
            if type(term) is int and 0 <= term <= 255:
                out.append(term)
            elif type(term) is bytes:
                out += term
            elif type(term) is list and token.kind == "string" and all(type(c) is int for c in term):
                if any(c > 255 for c in term):
                    self.fail(
                        "characters above 255 in an Erlang binary need /utf8, which trace patterns "
                        "do not support; write the bytes, or use Elixir syntax",
                        token,
                    )
                out += bytes(term)
            else:
                self.fail(
                    "binary segments must be strings or integers 0..255; match specs cannot "
                    "match binaries with variables",
                    token,
                )
        return bytes(out)

    def _map(self, pairs: list[tuple[Token, Any, Any]]) -> dict[Term, Term]:
        keys: list[Term] = []
        values: list[Term] = []
        for token, key, value in pairs:
            key_term = key.term if isinstance(key, _Lit) else key
            if isinstance(key, _Expr):
                self.fail("map keys must be constants, not expressions with variables", token)
            value_term = _emit(value) if isinstance(value, _Lit | _Expr) else value
            keys.append(freeze(key_term))
            values.append(value_term)
        result: dict[Term, Term] = {}
        for (token, _, _), key, value in zip(pairs, keys, values, strict=True):
            for other in result:
                if other == key and type(other) is type(key):
                    self.fail("this map key is given twice", token)
            result[key] = value
        if len(result) != len(keys):  # keys Python merges but Erlang keeps apart: 1, 1.0, true
            result = {
                (StrictKey(k) if type(k) in (int, float, bool) else k): v
                for k, v in zip(keys, values, strict=True)
            }
        return result

    # ---------------------------------------------------------------- guards

    def _guard_sequence(self) -> list[list[Term]]:
        self.pattern_mode = False
        groups = [self._guard_group()]
        while self.at("op", ";"):
            if not self.erlang:
                self.fail("';' does not separate guards in Elixir; use 'or'")
            self.advance()
            groups.append(self._guard_group())
        return groups

    def _guard_group(self) -> list[Term]:
        tests = [_emit(self._expr(0, 1))]
        while self.accept("op", ","):
            tests.append(_emit(self._expr(0, 1)))
        return tests

    def _count(self, token: Token) -> None:
        self.guard_terms += 1
        if self.guard_terms > MAX_GUARD_TERMS:
            self.fail(f"the guard is too large: at most {MAX_GUARD_TERMS} terms", token)

    def _binary_op(self, token: Token) -> _Op | None:
        if token.kind == "op" or (token.kind == "name" and token.value in self.binary):
            return self.binary.get(token.value)
        return None

    def _expr(self, min_prec: int, depth: int) -> _Guard:
        left = self._unary(depth)
        while True:
            token = self.tok
            op = self._binary_op(token)
            if op is None or op.prec < min_prec:
                return left
            if op.ms is None:
                self.fail(
                    f"the operator {token.text!r} is not supported in trace guards; use comparisons, "
                    "+ - * div rem, and boolean operators",
                    token,
                )
            self.advance()
            right = self._expr(op.prec if op.assoc == "right" else op.prec + 1, depth)
            self._count(token)
            left = _Expr((Atom(op.ms), _emit(left), _emit(right)))
            if op.assoc == "non":
                after = self._binary_op(self.tok)
                if after is not None and after.prec == op.prec:
                    self.fail(
                        "comparisons cannot be chained; add parentheses (in Erlang 'and'/'or' bind "
                        "tighter than comparisons: use 'andalso'/'orelse')"
                    )

    def _unary(self, depth: int) -> _Guard:
        if depth > MAX_DEPTH:
            self.fail(f"the guard nests deeper than {MAX_DEPTH} levels")
        token = self.tok
        if (token.kind == "op" or token.kind == "name") and token.value in self.unary:
            ms = self.unary[token.value]
            if ms is None:
                self.fail(f"the operator {token.text!r} is not supported in trace guards", token)
            self.advance()
            operand = self._unary(depth + 1)
            self._count(token)
            if ms == "-" and type(operand) is _Lit and type(operand.term) in (int, float):
                return _Lit(-operand.term)
            if ms == "+" and type(operand) is _Lit and type(operand.term) in (int, float):
                return operand
            return _Expr((Atom(ms), _emit(operand)))
        return self._primary(depth)

    def _primary(self, depth: int) -> _Guard:
        token = self.tok
        if token.kind == "op" and token.value == "(":
            self.advance()
            inner = self._expr(0, depth + 1)
            self.close(")", token, "an operator")
            return inner
        if token.kind in ("int", "float"):
            self._count(token)
            return _Lit(self.advance().value)
        if token.kind == "op" and token.value in ("{", "[", "<<", "#", "%"):
            return self._guard_collection(depth)
        if self.erlang:
            return self._erlang_primary(token, depth)
        return self._elixir_primary(token, depth)

    def _erlang_primary(self, token: Token, depth: int) -> _Guard:
        if token.kind == "var":
            self.advance()
            if self.at("op", "("):
                self.fail(
                    f"{token.text} is a variable; guard functions are lowercase, like is_integer(X)", token
                )
            return self._guard_variable(token)
        if token.kind == "name" and token.value == "erlang" and self.peek().text == ":":
            self.advance()
            self.advance()
            token = self.tok
            if token.kind != "name" or self.peek().text != "(":
                self.expected("a guard function after erlang:")
            return self._call(depth)
        if token.kind == "name" and self.peek().text == "(":
            return self._call(depth)
        if token.kind == "name" and token.value not in self.reserved:
            self._count(token)
            self.advance()
            if self.at("op", ":"):
                self.fail(
                    "remote calls are not allowed in guards; only guard BIFs such as is_integer(X)", token
                )
            return _Lit(_atom_or_bool(self.atom(token.value, token)))
        if token.kind == "atom":
            self._count(token)
            self.advance()
            return _Lit(_atom_or_bool(self.atom(token.value, token)))
        if token.kind == "string":
            self._count(token)
            return _Lit(_charlist(self._strings()))
        self.expected("a guard expression (a variable, constant, guard function or comparison)")

    def _elixir_primary(self, token: Token, depth: int) -> _Guard:
        if token.kind == "name" and self.peek().text == "(":
            return self._call(depth)
        if token.kind == "name" and token.value not in self.reserved:
            self.advance()
            if token.value in ("nil", "true", "false"):
                self._count(token)
                return _Lit(_atom_or_bool(Atom(token.value)))
            return self._guard_variable(token)
        if token.kind == "atom":
            self._count(token)
            self.advance()
            return _Lit(_atom_or_bool(self.atom(token.value, token)))
        if token.kind == "alias":
            self._count(token)
            alias = self.elixir_alias()
            if self.at("op", "."):
                self.fail(
                    "remote calls are not allowed in guards; only guard functions such as is_integer(x)",
                    token,
                )
            return _Lit(alias)
        if token.kind == "string":
            self._count(token)
            return _Lit(self._strings().encode())
        if token.kind == "charlist":
            self._count(token)
            return _Lit(_charlist(self.advance().value))
        self.expected("a guard expression (a variable, constant, guard function or comparison)")

    def _guard_variable(self, token: Token) -> _Guard:
        name = token.value
        if name.startswith("_"):
            self.fail(
                f"{name} is an ignored variable (it starts with _); rename it to use it in a guard", token
            )
        if name not in self.variables:
            self.fail(
                f"the variable {name} is not bound: a guard can only use variables from the "
                "argument patterns",
                token,
            )
        self._count(token)
        return _Expr(self.variables[name])

    def _call(self, depth: int) -> _Guard:
        name_token = self.tok
        name = name_token.value
        if name not in self.functions:
            allowed = ", ".join(sorted(self.functions))
            self.fail(
                f"the guard function {name}/{self._call_arity()} is not supported; use one of: {allowed}",
                name_token,
            )
        self.advance()
        opener = self.advance()
        args = self._items(")", opener, depth + 1, lambda d: self._expr(0, d))
        if len(args) != self.functions[name]:
            self.fail(f"{name} takes {self.functions[name]} argument(s), not {len(args)}", name_token)
        self._count(name_token)
        return _call(name, args)

    def _call_arity(self) -> str:
        """The number of arguments of the call at the cursor, for messages (cheap: counts commas)."""
        depth, commas, index = 0, 0, self.index + 1
        while index < len(self.tokens) and self.tokens[index].kind != "eof":
            text = self.tokens[index].text if self.tokens[index].kind == "op" else ""
            if text in ("(", "{", "[", "<<", "%{", "#{"):
                depth += 1
            elif text in (")", "}", "]", ">>"):
                depth -= 1
                if depth == 0:
                    return str(commas + (self.tokens[index - 1].text != "("))
            elif text == "," and depth == 1:
                commas += 1
            index += 1
        return "?"

    def _guard_collection(self, depth: int) -> _Guard:
        token = self.tok
        self._count(token)
        kind, parts = self._collection(depth, lambda d: self._expr(0, d), lambda d: self._expr(0, d))
        if kind == "tuple":
            if all(type(p) is _Lit for p in parts):
                return _Lit(tuple(p.term for p in parts))
            return _Expr((tuple(_emit(p) for p in parts),))
        if kind == "list":
            items, tail = parts
            every = [*items, *([] if tail is None else [tail])]
            if all(type(p) is _Lit for p in every):
                return _Lit(_cons([p.term for p in items], [] if tail is None else tail.term))
            return _Expr(_cons([_emit(p) for p in items], [] if tail is None else _emit(tail)))
        if kind == "binary":
            return _Lit(self._binary(parts))
        constant = all(type(value) is _Lit for _, _, value in parts)
        built = self._map(parts)
        if constant:
            return _Lit({key: value.term for (_, _, value), key in zip(parts, built, strict=True)})
        return _Expr(built)


_NOTHING: Any = object()


def _call(name: str, args: list[_Guard]) -> _Guard:
    """A guard BIF call in match-spec form; Elixir's ``elem``/``is_nil`` mapped onto Erlang's."""
    if name == "elem":
        tuple_arg, index = args
        if type(index) is _Lit and type(index.term) is int:
            position: Term = index.term + 1
        else:
            position = (Atom("+"), _emit(index), 1)
        return _Expr((Atom("element"), position, _emit(tuple_arg)))
    if name == "tuple_size":  # not a match-spec function before OTP 26; size/1 of a checked tuple is
        (value,) = args  # the same, and size(false) fails the guard just as tuple_size(non_tuple) does
        return _Expr((Atom("size"), (Atom("andalso"), (Atom("is_tuple"), _emit(value)), _emit(value))))
    if name == "is_nil":
        return _Expr((Atom("=:="), _emit(args[0]), Atom("nil")))
    return _Expr((Atom(name), *(_emit(arg) for arg in args)))


def _body(actions: frozenset[str]) -> list[Term]:
    body: list[Term] = []
    if "caller" in actions:
        body.append((Atom("message"), (Atom("caller"),)))
    if "return" in actions:
        body.extend([(Atom("return_trace"),), (Atom("exception_trace"),)])
    return body


def _adjacent(first: Token, second: Token) -> bool:
    return second.pos == first.pos + len(first.text)


def _atom_or_bool(atom: Atom) -> Term:
    """``true``/``false`` are Python booleans in :mod:`arsenal.dist`, as the decoder gives them."""
    if atom == "true":
        return True
    if atom == "false":
        return False
    return atom


def _charlist(text: str) -> list[int]:
    return [ord(char) for char in text]


def _cons(items: list[Term], tail: Term) -> Term:
    """``[items | tail]`` as a proper list when the tail is a list, else an improper list."""
    if type(tail) is list:
        return [*items, *tail]
    if not items:
        return tail
    if type(tail) is ImproperList:
        return ImproperList([*items, *tail.items], tail.tail)
    return ImproperList(items, tail)
