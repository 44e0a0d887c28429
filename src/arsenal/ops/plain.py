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
from ..terms.truncation import Cut, cut_of, is_cut_key, list_cut, map_cut, note

__all__ = ["frame_lines", "mfa_text", "name_text", "pid_or_none", "pid_text", "plain", "stacktrace"]


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
    if kind in (list, tuple, dict):
        shown = _cut_view(term, language, local_node, depth)
        if shown is not None:
            return shown
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


def stacktrace(frames: Term, language: str, *, local_node: str | None = None) -> Any:
    """A stacktrace as plain JSON: each frame ``[module, function, arity or args, location]`` as
    :func:`plain` gives it, but with the file a string (``"gen_server.erl"``), not character codes."""
    if not isinstance(frames, list):
        return plain(frames, language, local_node=local_node)
    return [plain(_text_file(frame), language, local_node=local_node) for frame in frames]


def frame_lines(frames: Term, language: str) -> list[str]:
    """A stacktrace as lines a person reads: ``gen_server:loop/7 (gen_server.erl:871)``."""
    if not isinstance(frames, list):
        return [render(frames, language, max_items=20)]
    return [_frame_line(frame, language) for frame in frames]


def _frame_line(frame: Term, language: str) -> str:
    if not (isinstance(frame, tuple) and len(frame) == 4):
        return render(frame, language, max_items=20)
    module, function, arity, location = _text_file(frame)
    count = len(arity) if isinstance(arity, list) else arity
    where = dict(item for item in location if isinstance(item, tuple) and len(item) == 2)
    file, line = where.get(Atom("file")), where.get(Atom("line"))
    shown = file.decode(errors="replace") if isinstance(file, bytes) else None
    place = f" ({shown}{f':{line}' if line is not None else ''})" if shown is not None else ""
    return f"{mfa_text((module, function, count), language) or render(frame, language)}{place}"


def _text_file(frame: Term) -> Term:
    """A frame with ``{file, Charlist}`` in its location as ``{file, <<"name">>}``."""
    if not (isinstance(frame, tuple) and len(frame) == 4 and isinstance(frame[3], list)):
        return frame
    location = [_file_text(item) for item in frame[3]]
    return (*frame[:3], location)


def _file_text(item: Term) -> Term:
    if not (isinstance(item, tuple) and len(item) == 2 and item[0] == Atom("file")):
        return item
    name = item[1]
    if isinstance(name, list) and all(type(code) is int and 0 <= code < 0x110000 for code in name):
        return (item[0], "".join(map(chr, name)).encode("utf-8", "surrogatepass"))
    return item


def _cut_view(term: Any, language: str, local_node: str | None, depth: int) -> Any:
    """What the agent cut (see :mod:`arsenal.terms.truncation`), with ``…(N more)`` where the rest
    was; None for a term that is not cut."""

    def each(items: Any) -> list[Any]:
        return [plain(item, language, local_node=local_node, depth=depth + 1) for item in items]

    if type(term) is list:
        return [*each(term[:-1]), note(None)] if list_cut(term) else None
    if type(term) is dict:
        size = map_cut(term)
        if size is None:
            return None
        kept = {key: value for key, value in term.items() if not is_cut_key(key)}
        return {**plain(kept, language, local_node=local_node, depth=depth), "…": note(size - len(kept))}
    found = cut_of(term)
    return None if found is None else _cut_value(found, each)


def _cut_value(cut: Cut, each: Any) -> Any:
    if cut.kind == "binary":
        return cut.kept.decode(errors="replace") + note((cut.total or 0) - len(cut.kept), "bytes")
    if cut.kind == "tuple":
        return [*each(cut.kept), note((cut.total or 0) - len(cut.kept))]
    if cut.kind == "tagged":
        return [*each([cut.kept]), "…"]
    if cut.kind == "preview":
        return f"{cut.kept}{cut.text}"
    return cut.text


def _key_text(key: Term, language: str) -> str:
    if type(key) is Atom:
        return str(key)
    if type(key) is bytes:
        try:
            return key.decode()
        except UnicodeDecodeError:
            pass
    return render(key, language, max_items=20)
