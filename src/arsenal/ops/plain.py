"""Terms as plain JSON values for operation results: what a person or a script expects to see.

Numbers stay numbers and text stays text; pids are written ``<0.N.S>`` (the form
requests use), atoms and module names as the node's language writes them, and
anything without a plain equivalent as its source text. Lossless round trips
use :mod:`arsenal.terms.tagged_json` instead.
"""

from __future__ import annotations

import functools
from typing import Any

from ..dist import Atom, FrozenList, FrozenMap, Pid, Port, Ref, StrictKey, Term
from ..terms.render import render

__all__ = ["mfa_text", "name_text", "pid_or_none", "pid_text", "plain"]


def pid_text(pid: Pid) -> str:
    return f"<0.{pid.id}.{pid.serial}>"


def pid_or_none(value: Term) -> str | None:
    """``<0.N.S>`` for a pid; None for anything else (``undefined``, a port, a restarting child)."""
    return pid_text(value) if isinstance(value, Pid) else None


def name_text(value: Term, language: str) -> str | None:
    """A registered name as the node's language writes it; None for ``undefined``/``[]``."""
    if value is None or value == [] or value == Atom("undefined"):
        return None
    return render(value, language)


def mfa_text(value: Term, language: str) -> str | None:
    """``{M, F, A}`` as ``m:f/a`` (Erlang) or ``M.f/a`` (Elixir)."""
    if not (isinstance(value, tuple) and len(value) == 3 and isinstance(value[0], Atom)):
        return None
    try:
        return _mfa_text(value, language)
    except TypeError:  # an unhashable arity: not a real MFA, written without the cache
        return _mfa_text.__wrapped__(value, language)


@functools.lru_cache(maxsize=4096)
def _mfa_text(value: tuple[Term, Term, Term], language: str) -> str:
    """Cached: the same few functions appear in every trace event and process listing."""
    module, function, arity = value
    if language == "elixir":
        return f"{render(module, 'elixir')}.{function}/{arity}"
    return f"{render(module)}:{render(function)}/{arity}"


def plain(term: Term, language: str, *, local_node: str | None = None, depth: int = 0) -> Any:
    """A JSON-ready view of ``term`` (see the module docstring)."""
    kind = type(term)
    if kind in (int, float, bool) or term is None:
        return term
    if kind is Atom:
        return render(term, language)
    if kind is bytes:
        try:
            return term.decode()
        except UnicodeDecodeError:
            return render(term, language)
    if kind is Pid:
        if local_node is None or term.node == local_node:
            return pid_text(term)
        return render(term, language)
    if kind in (Port, Ref) or depth > 32:
        return render(term, language, local_node=local_node, max_items=50)
    if kind in (list, tuple, FrozenList):
        return [plain(item, language, local_node=local_node, depth=depth + 1) for item in term]
    if kind in (dict, FrozenMap):
        pairs = term.items() if kind is dict else term
        return {
            _key_text(key, language): plain(value, language, local_node=local_node, depth=depth + 1)
            for key, value in pairs
        }
    if kind is StrictKey:
        return plain(term.value, language, local_node=local_node, depth=depth)
    return render(term, language, local_node=local_node, max_items=50)


def _key_text(key: Term, language: str) -> str:
    if type(key) is Atom:
        return str(key)
    if type(key) is bytes:
        try:
            return key.decode()
        except UnicodeDecodeError:
            pass
    return render(key, language, max_items=20)
