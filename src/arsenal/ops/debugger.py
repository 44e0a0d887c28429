"""The interactive debugger: hold a sys-compliant process at a breakpoint, step, look back.

A :class:`DebugSession` drives one ``arsenal_agent_debug`` session on the node (see that
module's doc for how the VM is used: a ``sys`` debug function that the target calls before
each message it handles, which waits for the session's answer). This side parses breakpoint
patterns, sends commands, receives the session's events in a Python process's mailbox (the
session's Owner: when it closes or the connection drops, the node ends the session, releases
the target and removes the debug function), and keeps the history of the states it has seen
(the last :data:`MAX_HISTORY`) for back/forward and watch expressions.

The WebSocket (``api/debug.py``) and the CLI (``arsenal debug``) are presentations of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ..beam import Node
from ..dist import Atom, Pid, Process, Term
from ..dist.process import DOWN
from ..terms import paths
from ..terms.render import render
from ..terms.tagged_json import to_json
from ..terms.truncation import cut_of
from .base import Context, Principal
from .errors import ErrorCode, OperationError
from .plain import pid_or_none
from .safeterm import check_decoded, to_wire
from .safety import ensure_not_protected
from .targets import check_target, is_agent_error, process_ref

__all__ = [
    "DEBUG_MODULE",
    "Breakpoint",
    "MAX_HISTORY",
    "DebugEvent",
    "DebugSession",
    "HistoryEntry",
    "get_in",
    "message_pattern",
]

DEBUG_MODULE = "arsenal_agent_debug"
TAG = Atom("arsenal_debug")
MAX_HISTORY = 1000
MAX_QUEUE = 10_000
MAX_WATCHES = 16
DEFAULT_HOLD_MS = 300_000
TRUNCATED = Atom("$arsenal_truncated")


# ---------------------------------------------------------------------------------------- patterns


def message_pattern(text: str, language: str) -> list[Any]:
    """A match spec over ``[Message]`` from pattern text like ``{:increment, n} when n > 5``.

    The message-pattern parser of interception rules does the work (same syntax, guards and
    limits); its clauses match ``{Message}``, and the debug function tests ``[Message]``. Atoms
    are checked on the node when the spec is decoded there (an unknown one is refused, none is
    created)."""
    from .trace_patterns import TracePatternError, parse_message_pattern

    if not isinstance(text, str) or not text.strip():
        raise OperationError(
            ErrorCode.validation_error, "a breakpoint needs a pattern, such as {:increment, _}"
        )
    try:
        pattern = parse_message_pattern(text, "elixir" if language == "elixir" else "erlang")
    except TracePatternError as exc:
        raise OperationError(
            ErrorCode.validation_error,
            f"pattern {text!r}: at column {exc.position}: {exc.message}",
            {"pattern": text},
        ) from None
    return [([head[0]], guards, [True]) for head, guards, _body in pattern.match_spec]


# ---------------------------------------------------------------------------------------- paths


def get_in(term: Term, path: str) -> Term:
    """The value at ``path`` (``counter``, ``history.0.op``, see :mod:`arsenal.terms.paths`) inside
    ``term``; :class:`~arsenal.terms.paths.PathError` (a ValueError) when it is not there."""
    return paths.get_in(term, paths.parse_path(path))


# ---------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class DebugEvent:
    """What the session reports. ``type``: ``in`` (a message arrived: ``held`` says whether the
    process is held before handling it), ``state`` (the state after a message), ``released``
    (``reason``: continue, step, timeout), ``ended`` (``reason``: detached, owner_down,
    target_down: EXIT_REASON, session_down, node_down)."""

    type: str
    step: int = 0
    kind: str | None = None
    sender: str | None = None
    message: Term = None
    state: Term = None
    held: bool = False
    breakpoint: int | None = None
    reason: str | None = None
    dropped: int = 0


@dataclass
class HistoryEntry:
    """One state the session saw: after message ``step`` (0 is the state read on attach)."""

    step: int
    state: Term
    kind: str | None = None
    message: Term = None


@dataclass
class Breakpoint:
    id: int
    pattern: str
    when: str | None


@dataclass
class DebugSession:
    """One debugger attached to one process; use :meth:`start`, then commands, then :meth:`detach`."""

    node: Node
    target: str
    pid: Pid
    session: Pid
    process: Process
    hold_ms: int
    history: deque[HistoryEntry] = field(default_factory=lambda: deque(maxlen=MAX_HISTORY))
    breakpoints: dict[int, Breakpoint] = field(default_factory=dict)
    watches: list[str] = field(default_factory=list)
    held: DebugEvent | None = None
    ended: DebugEvent | None = None
    cursor: int | None = None
    dropped: int = 0
    # The Arsenal's services (its store), for loading recordings; set by whoever starts the session.
    services: Any = None
    _queue: asyncio.Queue[DebugEvent] = field(default_factory=lambda: asyncio.Queue(MAX_QUEUE))
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _reader: asyncio.Task[None] | None = None
    _ended: asyncio.Event = field(default_factory=asyncio.Event)
    _session_ref: Any = None

    # ------------------------------------------------------------------ lifetime

    @classmethod
    async def start(
        cls,
        node: Node,
        target: str,
        *,
        principal: Principal | None = None,
        force: bool = False,
        hold_ms: int = DEFAULT_HOLD_MS,
        timeout: float = 15.0,
    ) -> DebugSession:
        """Attach to ``target`` (pid text or registered name): refuses read-only nodes, the VM's
        own processes (unless an admin forces it) and processes that are not sys-compliant."""
        node.ensure_writable("holding a process in the debugger")
        ctx = Context(pool=None, node=node, principal=principal or Principal())  # type: ignore[arg-type]
        await ensure_not_protected(ctx, target, force=force, action="debugging")
        process = node.spawn_process(mailbox_size=MAX_QUEUE)
        options = {Atom("hold_ms"): int(hold_ms)}
        try:
            reply = await node.agent_call(
                "start",
                [process_ref(target), process.pid, to_wire(options, what="options")],
                timeout,
                module=DEBUG_MODULE,
            )
            info = _started(reply, target, node)
        except BaseException:
            await process.close()
            raise
        session = cls(node, target, info["pid"], info["session"], process, int(info.get("hold_ms", hold_ms)))
        session.history.append(HistoryEntry(0, info.get("state")))
        session._session_ref = await process.monitor(session.session)
        session._reader = asyncio.get_running_loop().create_task(session._read())
        return session

    async def detach(self, timeout: float = 10.0) -> None:
        """Release the process if held, remove the debug function, end the session."""
        if self.ended is None and self.node.connected:
            with contextlib.suppress(Exception):
                await self.node.agent_call(
                    "command", [self.session, Atom("detach")], timeout, module=DEBUG_MODULE
                )
        await self.close()

    async def close(self) -> None:
        """Forget the session here; closing the owner process ends it on the node too."""
        if self.ended is None:
            self._end(DebugEvent("ended", reason="detached"))
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        await self.process.close()

    async def __aenter__(self) -> DebugSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.detach()

    @property
    def language(self) -> str:
        return self.node.language

    # ------------------------------------------------------------------ commands

    async def break_on(self, pattern: str, when: str | None = None) -> Breakpoint:
        """Hold the process before it handles a message matching ``pattern`` (the call request,
        the cast or the plain message), when the last state matches ``when`` if given."""
        spec = message_pattern(pattern, self.language)
        cond: Term = message_pattern(when, self.language) if when else Atom("undefined")
        number = next(self._ids)
        command = (Atom("break"), number, spec, cond)
        await self._command(to_wire(command, what="breakpoint"), "breakpoint")
        self.breakpoints[number] = Breakpoint(number, pattern, when)
        return self.breakpoints[number]

    async def clear(self, number: int) -> None:
        if number not in self.breakpoints:
            raise OperationError(ErrorCode.not_found, f"there is no breakpoint {number}; see the list")
        await self._command((Atom("clear"), number), "clear")
        del self.breakpoints[number]

    async def continue_(self) -> bool:
        """Release a held process and run to the next breakpoint; whether one was held."""
        return await self._release("continue")

    async def step(self) -> bool:
        """Release a held process for exactly one message: it is held again at the next one."""
        return await self._release("step")

    async def current_state(self) -> tuple[int, Term]:
        """The last state the session saw (no call into a held process): (step, state)."""
        reply = await self._command(Atom("state"), "state")
        info = {str(k): v for k, v in reply[1].items()}
        return int(info["step"]), info["state"]

    def load_recording(self, states: list[tuple[int, str, Term, Term]]) -> HistoryEntry:
        """Put a recording's states before the ones seen live, and go to its first: ``back`` and
        ``forward`` then walk through the recording (and on into what the session saw)."""
        recorded = [HistoryEntry(step, state, kind, message) for step, kind, message, state in states]
        live = list(self.history)
        self.history = deque(recorded + live, maxlen=MAX_HISTORY)
        self.cursor = 0
        return self.history[0]

    def open_recording(self, recording_id: str) -> HistoryEntry:
        """Load what recording ``recording_id`` holds of this process (see :meth:`load_recording`)."""
        from .recording import recorded_states

        if self.services is None:
            raise OperationError(
                ErrorCode.validation_error, "this debugger has no store to load recordings from"
            )
        return self.load_recording(
            recorded_states(self.services, recording_id, self.target, self.node.language)
        )

    def back(self) -> HistoryEntry:
        """One state back in the history of seen states (stays at the oldest)."""
        index = (len(self.history) - 1 if self.cursor is None else self.cursor) - 1
        self.cursor = max(0, index)
        return self.history[self.cursor]

    def forward(self) -> HistoryEntry:
        """One state forward; past the newest, back to following the live process."""
        if self.cursor is None or self.cursor + 1 >= len(self.history) - 1:
            self.cursor = None
            return self.history[-1]
        self.cursor += 1
        return self.history[self.cursor]

    def watch(self, path: str) -> list[tuple[int, Term | None, bool]]:
        """Add a watch on ``path``; its values over the history: (step, value, found)."""
        try:
            paths.parse_path(path)
        except ValueError as exc:
            raise OperationError(ErrorCode.validation_error, f"watch {path!r}: {exc}") from None
        if path not in self.watches:
            if len(self.watches) >= MAX_WATCHES:
                raise OperationError(ErrorCode.limit_exceeded, f"at most {MAX_WATCHES} watches; remove one")
            self.watches.append(path)
        return [self.watch_value(path, entry) for entry in self.history]

    @staticmethod
    def watch_value(path: str, entry: HistoryEntry) -> tuple[int, Term | None, bool]:
        try:
            return entry.step, get_in(entry.state, path), True
        except (KeyError, IndexError, TypeError, ValueError):  # PathError: not there in this state
            return entry.step, None, False

    # ------------------------------------------------------------------ events

    async def events(self) -> AsyncIterator[DebugEvent]:
        """Events as they come, until (and including) the end."""
        while True:
            event = await self._queue.get()
            yield event
            if event.type == "ended":
                return

    async def wait_ended(self) -> DebugEvent:
        """Until the session ends; its end event."""
        await self._ended.wait()
        assert self.ended is not None
        return self.ended

    async def next_event(self, timeout: float) -> DebugEvent:
        return await asyncio.wait_for(self._queue.get(), timeout)

    async def wait_for(self, kind: str, timeout: float) -> DebugEvent:
        """The next event of type ``kind`` (others are skipped); TimeoutError if none comes."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self._queue.get()
                if event.type == kind or event.type == "ended":
                    return event

    # ------------------------------------------------------------------ internals

    async def _release(self, how: str) -> bool:
        reply = await self._command(Atom(how), how)
        was_held = bool(reply[1])
        if was_held and self.held is not None:
            self._push(DebugEvent("released", step=self.held.step, reason=how))
        self.held = None
        return was_held

    async def _command(self, command: Term, what: str) -> Any:
        if self.ended is not None:
            raise OperationError(
                ErrorCode.conflict, f"the debug session has ended ({self.ended.reason}); start another"
            )
        reply = await self.node.agent_call("command", [self.session, command], 10.0, module=DEBUG_MODULE)
        check_decoded(reply, what=what)
        if is_agent_error(reply):
            if reply[1] in (Atom("no_session"), Atom("ending")):
                raise OperationError(
                    ErrorCode.conflict, "the debug session has ended on the node; start another"
                )
            if reply[1] == Atom("not_found"):
                raise OperationError(ErrorCode.not_found, f"{what}: no such breakpoint on the node")
            raise OperationError(ErrorCode.validation_error, f"{what} refused by the node: {reply[1]}")
        return reply

    async def _read(self) -> None:
        while self.ended is None:
            message = await self.process.receive()
            event = self._decode(message)
            if event is not None:
                self._apply(event)

    def _decode(self, message: Term) -> DebugEvent | None:
        if isinstance(message, tuple) and len(message) == 5 and message[0] == DOWN:
            if message[1] == self._session_ref:
                reason = "node_down" if message[4] == Atom("noconnection") else "session_down"
                return DebugEvent("ended", reason=reason)
            return None
        if not (isinstance(message, tuple) and len(message) == 4 and message[0] == TAG):
            return None
        _, _, raw, dropped = message
        self.dropped = int(dropped) if isinstance(dropped, int) else self.dropped
        if isinstance(raw, tuple) and len(raw) == 2:
            kind, data = raw
            info = {str(k): v for k, v in data.items()} if isinstance(data, dict) else {}
            return _event(str(kind), info, self.dropped)
        return None

    def _apply(self, event: DebugEvent) -> None:
        if event.type == "in":
            if event.held:
                self.held = event
        elif event.type == "state":
            self.history.append(HistoryEntry(event.step, event.state))
        elif event.type == "released":
            self.held = None
        elif event.type == "ended":
            self._end(event)
            return
        self._push(event)

    def _end(self, event: DebugEvent) -> None:
        if self.ended is None:
            self.ended = event
            self.held = None
            self._ended.set()
            self._push(event)

    def _push(self, event: DebugEvent) -> None:
        if self._queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
        self._queue.put_nowait(event)

    def render(self, term: Term, *, max_items: int = 50) -> str:
        """``term`` as the node's language writes it (bounded)."""
        if isinstance(term, tuple) and len(term) == 2 and term[0] == TRUNCATED:
            return f"<truncated: {term[1]} bytes>"
        return render(term, self.language, max_items=max_items, max_depth=12, local_node=self.node.name)

    def term_json(self, term: Term) -> dict[str, Any]:
        """A term for JSON clients: source text and lossless tagged JSON."""
        try:
            data: Any = None if cut_of(term) is not None else to_json(term)
        except Exception:  # a term tagged JSON cannot carry; the text still shows it
            data = None
        return {"text": self.render(term), "json": data}

    def describe(self, event: DebugEvent) -> dict[str, Any]:
        """An event as a JSON-ready dict (``type`` as the WebSocket names it)."""
        kind = {"in": "held" if event.held else "event"}.get(event.type, event.type)
        out: dict[str, Any] = {"type": kind, "step": event.step}
        if event.type == "in":
            out |= {
                "kind": event.kind,
                "from": event.sender,
                "message": self.term_json(event.message),
                "breakpoint": event.breakpoint,
            }
            if event.held:
                out["state"] = self.term_json(self.history[-1].state)
        elif event.type == "state":
            out["state"] = self.term_json(event.state)
        else:
            out["reason"] = event.reason
        if event.dropped:
            out["dropped"] = event.dropped
        return out


def _started(reply: Term, target: str, node: Node) -> dict[str, Any]:
    check_target(reply, target, node)
    check_decoded(reply, what="options")
    if is_agent_error(reply):
        reason = reply[1]
        name = str(reason[0] if isinstance(reason, tuple) else reason)
        if name == "not_alive":
            raise OperationError(ErrorCode.not_found, f"{target} is not alive on {node.name}")
        if name == "not_sys_compliant":
            raise OperationError(
                ErrorCode.validation_error,
                f"{target} is not a sys-compliant process: the debugger holds a process through sys "
                "debug hooks, which only gen_server, gen_statem, gen_event and proc_lib special "
                "processes have (a plain spawn has none)",
                {"reason": "not_sys_compliant"},
            )
        if name == "attach_timeout":
            raise OperationError(ErrorCode.timeout, f"{target} did not let the debugger in; try again")
        raise OperationError(ErrorCode.validation_error, f"cannot debug {target}: {reason}")
    return {str(k): v for k, v in reply[1].items()}


def _event(kind: str, info: dict[str, Any], dropped: int) -> DebugEvent:
    step = int(info.get("step", 0))
    if kind == "in":
        breakpoint_id = info.get("breakpoint")
        return DebugEvent(
            "in",
            step=step,
            kind=str(info.get("kind")),
            sender=pid_or_none(info.get("from")),
            message=info.get("message"),
            held=bool(info.get("held")),
            breakpoint=breakpoint_id if isinstance(breakpoint_id, int) else None,
            dropped=dropped,
        )
    if kind == "state":
        return DebugEvent("state", step=step, state=info.get("state"), dropped=dropped)
    if kind == "released":
        return DebugEvent("released", step=step, reason=str(info.get("reason")), dropped=dropped)
    if kind == "ended":
        return DebugEvent("ended", step=step, reason=_reason(info.get("reason")), dropped=dropped)
    return DebugEvent(kind, step=step, dropped=dropped)


def _reason(reason: Term) -> str:
    if isinstance(reason, tuple) and len(reason) == 2 and reason[0] == Atom("target_down"):
        return f"target_down: {render(reason[1], 'erlang', max_items=20, max_depth=6)}"
    return str(reason)
