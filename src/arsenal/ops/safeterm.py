"""Sending user-supplied terms to a node without creating atoms there (safety rule 1).

A term from a request (tagged JSON, see :mod:`arsenal.terms.tagged_json`, or plain
JSON) may name any atom. Sent as it is, the node's distribution layer would
create every atom it does not know, and atoms are never garbage collected. So
before a term leaves Python, :func:`to_wire` replaces:

* every atom ``a`` with the marker ``{'$arsenal_atom', <<"a">>}``;
* every pid, port, reference and fun (which carry atoms: node and module names)
  with ``{'$arsenal_etf', <<external term format>>, [<<"atom">>, ...]}``.

The agent (``arsenal_agent_proc:decode/1``) rebuilds the term with
``binary_to_existing_atom/2`` and ``binary_to_term(_, [safe])``; an atom the node
does not know is an error that names it, and nothing was created. The marker
atoms themselves are literals of the agent module, so they exist once it is
loaded. ``true``/``false`` travel as themselves (they always exist). A real
tuple ``{'$arsenal_atom', X}`` in user data is no ambiguity: its atom is itself
replaced by a marker, so only markers reach the node with that bare atom.

Terms are bounded: at most :data:`MAX_DEPTH` levels and :data:`MAX_BYTES` bytes
encoded; more is ``limit_exceeded``.
"""

from __future__ import annotations

from typing import Any

from ..dist import Atom, FrozenList, FrozenMap, Pid, Port, Ref, StrictKey, Term
from ..dist.etf import EncodeError, term_to_binary
from ..dist.terms import Export, Fun, ImproperList, freeze
from ..terms.tagged_json import TaggedJSONError, from_json
from .errors import ErrorCode, OperationError
from .targets import is_agent_error

__all__ = ["ATOM_MARK", "ETF_MARK", "MAX_BYTES", "MAX_DEPTH", "check_decoded", "parse_term", "to_wire"]

ATOM_MARK = Atom("$arsenal_atom")
ETF_MARK = Atom("$arsenal_etf")
MAX_DEPTH = 100
MAX_BYTES = 1024 * 1024


def parse_term(value: Any, *, what: str = "message") -> Term:
    """A JSON value (tagged JSON; plain JSON is a subset of it) as a term, bounded."""
    try:
        return from_json(value, max_depth=MAX_DEPTH)
    except TaggedJSONError as exc:
        text = str(exc)
        code = ErrorCode.limit_exceeded if "deep" in text or "depth" in text else ErrorCode.validation_error
        raise OperationError(
            code, f"the {what} is not valid tagged JSON: {text}; see arsenal.terms.tagged_json"
        ) from None


def to_wire(term: Term, *, what: str = "message", max_bytes: int = MAX_BYTES) -> Term:
    """``term`` with its atoms (and atom-carrying values) replaced by markers, size-checked
    (``max_bytes``: a request's terms are small; a checkpoint put back may be larger)."""
    wire = _mark(term, 0, what)
    try:
        size = len(term_to_binary(wire))
    except EncodeError as exc:
        raise OperationError(ErrorCode.validation_error, f"the {what} cannot be encoded: {exc}") from None
    if size > max_bytes:
        raise OperationError(
            ErrorCode.limit_exceeded,
            f"the {what} is {size:,} bytes encoded; at most {max_bytes:,} are sent. Send a smaller term",
        )
    return wire


def _mark(term: Term, depth: int, what: str) -> Term:
    if depth > MAX_DEPTH:
        raise OperationError(
            ErrorCode.limit_exceeded, f"the {what} nests deeper than {MAX_DEPTH} levels; flatten it"
        )
    kind = type(term)
    if kind is bool or kind is int or kind is float or kind is bytes:
        return term
    if kind is Atom:
        return (ATOM_MARK, str(term).encode())
    if kind is str:
        return term.encode()
    if kind is tuple:
        return tuple(_mark(item, depth + 1, what) for item in term)
    if kind is list or kind is FrozenList:
        return [_mark(item, depth + 1, what) for item in term]
    if kind is dict or kind is FrozenMap:
        pairs = term.items() if kind is dict else term
        return {_key(k, depth + 1, what): _mark(v, depth + 1, what) for k, v in pairs}
    if kind is StrictKey:
        return _mark(term.value, depth, what)
    if kind is ImproperList:
        return ImproperList(
            [_mark(item, depth + 1, what) for item in term.items], _mark(term.tail, depth + 1, what)
        )
    if kind in (Pid, Port, Ref, Export, Fun):
        return (ETF_MARK, term_to_binary(term), [name.encode() for name in sorted(_atoms(term, 0))])
    if term is None:
        raise OperationError(ErrorCode.validation_error, f"the {what} holds null, which is no Erlang term")
    return term


def _key(key: Term, depth: int, what: str) -> Term:
    """A marked map key, hashable again; keys Python would merge (1, 1.0) stay apart."""
    if type(key) is StrictKey:
        return StrictKey(freeze(_mark(key.value, depth, what)))
    return freeze(_mark(key, depth, what))


def _atoms(term: Term, depth: int) -> set[str]:
    """Every atom name inside a pid/port/ref/fun (its node, module, function, free variables)."""
    if depth > MAX_DEPTH:
        return set()
    kind = type(term)
    if kind is Atom:
        return {str(term)}
    if kind in (Pid, Port, Ref):
        return {str(term.node)}
    if kind is Export:
        return {str(term.module), str(term.function)}
    if kind is Fun:
        found = {str(term.module), str(term.pid.node)}
        for item in term.free_vars:
            found |= _atoms(item, depth + 1)
        return found
    items: Any = ()
    if kind in (tuple, list, FrozenList):
        items = term
    elif kind is dict:
        items = [*term.keys(), *term.values()]
    elif kind is FrozenMap:
        items = [part for pair in term for part in pair]
    elif kind is ImproperList:
        items = [*term.items, term.tail]
    elif kind is StrictKey:
        items = [term.value]
    found: set[str] = set()
    for item in items:
        found |= _atoms(item, depth + 1)
    return found


def check_decoded(raw: Term, *, what: str = "message") -> None:
    """Raise the error an agent's ``{error, Reason}`` from ``decode/1`` means (others pass)."""
    if not is_agent_error(raw):
        return
    reason = raw[1]
    if isinstance(reason, tuple) and len(reason) == 2 and reason[0] == Atom("unknown_atom"):
        name = reason[1].decode(errors="replace") if isinstance(reason[1], bytes) else str(reason[1])
        raise OperationError(
            ErrorCode.validation_error,
            f"the atom '{name}' does not exist on the node; Arsenal never creates atoms from requests",
            {"atom": name},
        )
    if reason == Atom("too_deep"):
        raise OperationError(ErrorCode.limit_exceeded, f"the {what} nests deeper than {MAX_DEPTH} levels")
    if isinstance(reason, tuple) and len(reason) == 2 and reason[0] == Atom("unsafe_term"):
        raise OperationError(
            ErrorCode.validation_error,
            f"the {what} holds a pid, port, reference or fun the node refuses to decode (one of another "
            "node, or out of its ranges); send it as the node wrote it",
        )
