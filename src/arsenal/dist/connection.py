"""One distribution connection: framing, ticks, control messages and remote calls.

A single reader task per connection decodes frames in order and hands each to
its destination without awaiting anything, so messages keep the order the node
sent them in and a slow consumer cannot stall the connection. Writes are single
``transport.write`` calls per frame, so concurrent senders never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._format import brief
from .errors import DistTimeout, NodeDown, ProtocolError, RpcError
from .etf import DecodeError, decode_term, encode_into, encode_term
from .flags import DFlag
from .terms import Atom, Pid, Ref, Term
from .transport import DistProtocol, FrameTooLarge

if TYPE_CHECKING:
    from .node import LocalNode

__all__ = ["Connection", "ConnectionStats"]

log = logging.getLogger("arsenal.dist")

TICK_INTERVAL = 15.0
"""Seconds between our ticks (a node with the default net_ticktime expects one within 60 s)."""
SILENCE_LIMIT = 75.0
"""Seconds of silence from the peer after which the connection is declared dead."""

# Control message operations (erl_dist_protocol).
LINK, SEND, EXIT, UNLINK, NODE_LINK, REG_SEND, GROUP_LEADER, EXIT2 = 1, 2, 3, 4, 5, 6, 7, 8
SEND_TT, EXIT_TT, REG_SEND_TT, EXIT2_TT = 12, 13, 16, 18
MONITOR_P, DEMONITOR_P, MONITOR_P_EXIT = 19, 20, 21
SEND_SENDER, SEND_SENDER_TT = 22, 23
PAYLOAD_EXIT, PAYLOAD_EXIT_TT, PAYLOAD_EXIT2, PAYLOAD_EXIT2_TT = 24, 25, 26, 27
PAYLOAD_MONITOR_P_EXIT = 28
SPAWN_REQUEST, SPAWN_REQUEST_TT, SPAWN_REPLY, SPAWN_REPLY_TT = 29, 30, 31, 32
ALIAS_SEND, ALIAS_SEND_TT = 33, 34
UNLINK_ID, UNLINK_ID_ACK = 35, 36

PASS_THROUGH = 112  # 'p': a frame without an atom-cache header

_EMPTY = Atom("")
_REX = Atom("rex")
_GEN_CALL = Atom("$gen_call")
_CALL = Atom("call")
_USER = Atom("user")
_BADRPC = Atom("badrpc")
_ERPC = Atom("erpc")
_EXECUTE_CALL = Atom("execute_call")
_MONITOR = Atom("monitor")
_RETURN = Atom("return")
_KILL = Atom("kill")
_IO_REQUEST = Atom("io_request")
_IO_REPLY = Atom("io_reply")
_NOTSUP = Atom("notsup")
_OK = Atom("ok")
_ERROR = Atom("error")
_ENOTSUP = Atom("enotsup")

_TICK = b"\x00\x00\x00\x00"
_pack_len = struct.Struct(">I").pack_into


@dataclass
class ConnectionStats:
    """Counters a caller can read to see what the connection has been doing."""

    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    ticks_in: int = 0
    unknown_control: int = 0
    remote_output: list[str] = field(default_factory=list)


@dataclass
class _ErpcCall:
    future: asyncio.Future[Any]
    mfa: str
    pid: Pid | None = None
    abandoned: bool = False


class Connection:
    """A live connection to one node. Made by :meth:`LocalNode.connect`."""

    def __init__(
        self,
        local: LocalNode,
        peer: Atom,
        peer_flags: DFlag,
        peer_creation: int,
        protocol: DistProtocol,
    ) -> None:
        self.local = local
        self.peer = peer
        self.peer_flags = peer_flags
        self.peer_creation = peer_creation
        self.stats = ConnectionStats()
        self.closed = False
        self.close_reason: NodeDown | None = None
        self._proto = protocol
        self._last_in = time.monotonic()
        # One internal pid per connection receives rpc replies, spawn replies and io requests.
        self._rpc_pid = local.new_pid()
        local.register_handler(self._rpc_pid, self._on_rpc_message)
        self._rex_calls: dict[Ref, asyncio.Future[Any]] = {}
        self._erpc_calls: dict[Ref, _ErpcCall] = {}
        self._unlink_id = 0
        self._closed_event = asyncio.Event()
        self._prebuild_frames()
        self._tick_task = asyncio.create_task(self._tick_loop(), name=f"dist-ticker:{peer}")
        protocol.start_frames(self._handle_frame, self._on_tick, self._on_lost)

    def _prebuild_frames(self) -> None:
        """Encode once the parts of rpc frames that never change on this connection."""
        pid = bytearray()
        encode_into(self._rpc_pid, pid)
        rex = bytearray(b"\x00\x00\x00\x00p")
        encode_term((REG_SEND, self._rpc_pid, _EMPTY, _REX), rex)
        rex += b"\x83h\x03"
        encode_into(_GEN_CALL, rex)
        rex += b"h\x02" + pid
        self._rex_prefix = bytes(rex)
        tail = bytearray(pid + pid)
        encode_into((_ERPC, _EXECUTE_CALL, 4), tail)
        encode_into([_MONITOR], tail)
        self._erpc_control_tail = bytes(tail)

    def __repr__(self) -> str:
        return f"<Connection {self.peer}{' closed' if self.closed else ''}>"

    @property
    def has_spawn(self) -> bool:
        return bool(self.peer_flags & DFlag.SPAWN)

    # ------------------------------------------------------------------ writing

    def _frame(self, control: tuple[Any, ...], payload: Any = _EMPTY, has_payload: bool = False) -> bytes:
        out = bytearray(b"\x00\x00\x00\x00p")
        encode_term(control, out)
        if has_payload:
            encode_term(payload, out)
        _pack_len(out, 0, len(out) - 4)
        return bytes(out)

    async def _write(self, frame: bytes) -> None:
        if self.closed:
            raise self.close_reason or NodeDown(f"not connected to {self.peer}")
        self._proto.write(frame)
        self.stats.frames_out += 1
        if self._proto.write_buffer_size > 256 * 1024:
            try:
                await self._proto.drain()
            except ConnectionError as exc:
                self._fail(NodeDown(f"connection to {self.peer} broke while sending ({exc})"))
                raise self.close_reason from None  # type: ignore[misc]

    async def send(self, to: Pid, message: Term, sender: Pid | None = None) -> None:
        if sender is not None and self.peer_flags & DFlag.SEND_SENDER:
            await self._write(self._frame((SEND_SENDER, sender, to), message, True))
        else:
            await self._write(self._frame((SEND, _EMPTY, to), message, True))

    async def send_registered(self, sender: Pid, name: Atom, message: Term) -> None:
        await self._write(self._frame((REG_SEND, sender, _EMPTY, name), message, True))

    async def send_alias(self, sender: Pid, alias: Ref, message: Term) -> None:
        await self._write(self._frame((ALIAS_SEND, sender, alias), message, True))

    async def send_link(self, sender: Pid, to: Pid) -> None:
        await self._write(self._frame((LINK, sender, to)))

    async def send_unlink(self, sender: Pid, to: Pid) -> None:
        self._unlink_id += 1
        await self._write(self._frame((UNLINK_ID, self._unlink_id, sender, to)))

    async def send_exit(self, sender: Pid, to: Pid, reason: Term) -> None:
        """The exit of a linked process (``EXIT``)."""
        if self.peer_flags & DFlag.EXIT_PAYLOAD:
            await self._write(self._frame((PAYLOAD_EXIT, sender, to), reason, True))
        else:
            await self._write(self._frame((EXIT, sender, to, reason)))

    async def send_exit2(self, sender: Pid, to: Pid, reason: Term) -> None:
        """An exit signal sent with ``exit(Pid, Reason)`` (``EXIT2``)."""
        if self.peer_flags & DFlag.EXIT_PAYLOAD:
            await self._write(self._frame((PAYLOAD_EXIT2, sender, to), reason, True))
        else:
            await self._write(self._frame((EXIT2, sender, to, reason)))

    async def send_monitor(self, sender: Pid, target: Pid | tuple[Atom, Atom], ref: Ref) -> None:
        what = target if isinstance(target, Pid) else target[0]
        await self._write(self._frame((MONITOR_P, sender, what, ref)))

    async def send_demonitor(self, sender: Pid, target: Pid | tuple[Atom, Atom], ref: Ref) -> None:
        what = target if isinstance(target, Pid) else target[0]
        await self._write(self._frame((DEMONITOR_P, sender, what, ref)))

    async def send_monitor_exit(self, sender: Pid, watcher: Pid, ref: Ref, reason: Term) -> None:
        if self.peer_flags & DFlag.EXIT_PAYLOAD:
            await self._write(self._frame((PAYLOAD_MONITOR_P_EXIT, sender, watcher, ref), reason, True))
        else:
            await self._write(self._frame((MONITOR_P_EXIT, sender, watcher, ref, reason)))

    # ------------------------------------------------------------------ remote calls

    async def rpc(
        self,
        module: str,
        function: str,
        args: Sequence[Term] = (),
        timeout: float = 5.0,
        *,
        via: str = "auto",
    ) -> Term:
        """Call ``module:function(args...)`` on the node and return its result.

        ``via="erpc"`` spawns the call with a spawn request (the process is killed
        if the call times out, so abandoned work does not keep running);
        ``via="rex"`` goes through the ``rex`` server, which every OTP release has.
        ``auto`` picks erpc when the node supports spawn requests. Module and
        function names become atoms: pass only names your code chose.
        """
        if via == "rex" or (via == "auto" and not self.has_spawn):
            return await self.rpc_rex(module, function, args, timeout)
        return await self.rpc_erpc(module, function, args, timeout)

    async def rpc_rex(self, module: str, function: str, args: Sequence[Term], timeout: float) -> Term:
        ref = self.local.make_ref()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._rex_calls[ref] = future
        mfa = f"{module}:{function}/{len(args)}"
        out = bytearray(self._rex_prefix)
        encode_into(ref, out)
        encode_into((_CALL, Atom(module), Atom(function), list(args), _USER), out)
        _pack_len(out, 0, len(out) - 4)
        try:
            await self._write(out)
            result = await _await_reply(future, timeout)
        except TimeoutError:
            raise DistTimeout(f"{mfa} on {self.peer} did not answer within {timeout:g}s") from None
        finally:
            self._rex_calls.pop(ref, None)
        if type(result) is tuple and len(result) == 2 and result[0] == _BADRPC:
            raise _rex_error(result[1], mfa)
        return result

    async def rpc_erpc(self, module: str, function: str, args: Sequence[Term], timeout: float) -> Term:
        req = self.local.make_ref()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        mfa = f"{module}:{function}/{len(args)}"
        call = _ErpcCall(future, mfa)
        self._erpc_calls[req] = call
        # {SPAWN_REQUEST, Req, From, GroupLeader, {erpc, execute_call, 4}, [monitor]}; the group
        # leader is our rpc pid, so io from the call comes back to us, is answered and logged.
        out = bytearray(b"\x00\x00\x00\x00p\x83h\x06a\x1d")
        encode_into(req, out)
        out += self._erpc_control_tail
        out += b"\x83l\x00\x00\x00\x04"
        encode_into(req, out)
        encode_into(Atom(module), out)
        encode_into(Atom(function), out)
        encode_into(list(args), out)
        out.append(106)
        _pack_len(out, 0, len(out) - 4)
        try:
            await self._write(out)
            return await _await_reply(future, timeout)
        except TimeoutError:
            await self._abandon(req, call)
            raise DistTimeout(
                f"{mfa} on {self.peer} did not answer within {timeout:g}s; the call was stopped"
            ) from None
        except asyncio.CancelledError:
            await self._abandon(req, call)
            raise
        finally:
            if call.pid is not None or call.future.done():
                self._erpc_calls.pop(req, None)

    async def _abandon(self, req: Ref, call: _ErpcCall) -> None:
        call.abandoned = True
        if call.pid is not None and not self.closed:
            self._erpc_calls.pop(req, None)
            await self.send_exit2(self._rpc_pid, call.pid, _KILL)

    def _on_rpc_message(self, message: Term) -> None:
        if type(message) is tuple:
            if len(message) == 2 and type(message[0]) is Ref:
                future = self._rex_calls.pop(message[0], None)
                if future is not None and not future.done():
                    future.set_result(message[1])
                return
            if len(message) == 4 and message[0] == _IO_REQUEST:
                self._answer_io(message)
                return
        log.debug("unexpected message for the rpc process of %s: %s", self.peer, brief(message))

    def _answer_io(self, message: tuple[Any, ...]) -> None:
        _, sender, reply_as, request = message
        text = _io_text(request)
        if text is not None:
            if len(self.stats.remote_output) < 100:
                self.stats.remote_output.append(text[:2000])
            log.info("output from a call on %s: %s", self.peer, text[:2000])
            reply: Term = _OK
        else:
            reply = (_ERROR, _ENOTSUP)
        if type(sender) is Pid:
            frame = self._frame((SEND, _EMPTY, sender), (_IO_REPLY, reply_as, reply), True)
            self._proto.write(frame)

    def _spawn_replied(self, req: Ref, result: Term) -> None:
        call = self._erpc_calls.get(req)
        if call is None:
            if type(result) is Pid:  # a call we gave up on before it started
                self._proto.write(self._frame((EXIT2, self._rpc_pid, result, _KILL)))
            return
        if type(result) is Pid:
            call.pid = result
            if call.abandoned:
                self._erpc_calls.pop(req, None)
                self._proto.write(self._frame((EXIT2, self._rpc_pid, result, _KILL)))
            return
        self._erpc_calls.pop(req, None)
        if not call.future.done():
            call.future.set_exception(
                RpcError("error", result, mfa=call.mfa)
                if result != _NOTSUP
                else RpcError("badrpc", result, mfa=call.mfa)
            )

    def _on_erpc_down(self, req: Ref, reason: Term) -> bool:
        call = self._erpc_calls.pop(req, None)
        if call is None:
            return False
        if call.future.done():
            return True
        if type(reason) is tuple and len(reason) >= 3 and reason[0] == req:
            kind = reason[1]
            if kind == _RETURN:
                call.future.set_result(reason[2])
            else:
                stack = reason[3] if len(reason) > 3 else None
                call.future.set_exception(RpcError(str(kind), reason[2], stack, mfa=call.mfa))
        else:
            call.future.set_exception(RpcError("exit", reason, mfa=call.mfa))
        return True

    # ------------------------------------------------------------------ reading

    def _on_tick(self) -> None:
        self._last_in = time.monotonic()
        self.stats.ticks_in += 1
        self._proto.write(_TICK)

    def _on_lost(self, exc: BaseException | None) -> None:
        if isinstance(exc, ProtocolError):
            log.warning("closing connection to %s: %s", self.peer, exc)
            self._fail(NodeDown(f"connection to {self.peer} closed: {exc}"))
        elif isinstance(exc, FrameTooLarge):
            self._fail(NodeDown(f"connection to {self.peer} closed: it announced a {exc} byte frame"))
        elif exc is None:
            self._fail(NodeDown(f"{self.peer} closed the connection (the node stopped or dropped us)"))
        elif isinstance(exc, Exception) and not isinstance(exc, OSError):
            log.error("connection to %s failed", self.peer, exc_info=exc)
            self._fail(NodeDown(f"connection to {self.peer} closed after an internal error: {exc!r}"))
        else:
            self._fail(NodeDown(f"connection to {self.peer} was lost ({exc})"))

    def _handle_frame(self, frame: bytes) -> None:
        self._last_in = time.monotonic()
        self.stats.frames_in += 1
        self.stats.bytes_in += len(frame)
        if frame[0] != PASS_THROUGH:
            raise ProtocolError(
                f"{self.peer} sent a frame of type {frame[0]} (atom cache or fragments were not offered)"
            )
        try:
            control, pos = decode_term(frame, 1)
            payload = None
            has_payload = pos < len(frame)
            if has_payload:
                payload, pos = decode_term(frame, pos)
            if pos != len(frame):
                raise ProtocolError(f"{self.peer} sent {len(frame) - pos} stray bytes after a message")
        except DecodeError as exc:
            raise ProtocolError(f"{self.peer} sent a malformed message: {exc}") from None
        if type(control) is not tuple or not control or type(control[0]) is not int:
            raise ProtocolError(f"{self.peer} sent a control message that is not a tuple: {brief(control)}")
        op = control[0]
        handler = _HANDLERS.get(op)
        if handler is None:
            self.stats.unknown_control += 1
            log.warning("ignoring unknown control message %s from %s", brief(op, 40), self.peer)
            return
        if (op in _WITH_PAYLOAD) != has_payload:
            wrong = "carries a payload it must not have" if has_payload else "lacks the message it must carry"
            raise ProtocolError(f"{self.peer} sent a malformed control message {op}: it {wrong}")
        try:
            handler(self, control, payload)
        except (IndexError, TypeError, ValueError, AttributeError) as exc:
            raise ProtocolError(
                f"{self.peer} sent a malformed control message {brief(control)}: {exc}"
            ) from None

    def _on_send(self, control: tuple[Any, ...], payload: Term) -> None:
        self.local.deliver(control[2], payload)

    def _on_send_sender(self, control: tuple[Any, ...], payload: Term) -> None:
        self.local.deliver(control[2], payload)

    def _on_reg_send(self, control: tuple[Any, ...], payload: Term) -> None:
        self.local.deliver_registered(control[3], payload)

    def _on_alias_send(self, control: tuple[Any, ...], payload: Term) -> None:
        self.local.deliver_alias(control[2], payload)

    def _on_link(self, control: tuple[Any, ...], payload: Term) -> None:
        proc = self.local.process(control[2])
        if proc is None:  # linking to a pid that is gone: answer as Erlang does
            self._proto.write(self._frame((EXIT, control[2], control[1], Atom("noproc"))))
            return
        proc.on_link(control[1])

    def _on_unlink_id(self, control: tuple[Any, ...], payload: Term) -> None:
        _, unlink_id, sender, to = control
        proc = self.local.process(to)
        if proc is not None:
            proc.on_unlink(sender)
        # The ACK must precede any other signal to the sender; we send it right away.
        self._proto.write(self._frame((UNLINK_ID_ACK, unlink_id, to, sender)))

    def _on_unlink_ack(self, control: tuple[Any, ...], payload: Term) -> None:
        return None

    def _on_exit(self, control: tuple[Any, ...], payload: Term) -> None:
        op = control[0]
        # Without a payload the reason is last (after the trace token in the *_TT forms).
        reason = (
            payload if op in (PAYLOAD_EXIT, PAYLOAD_EXIT_TT, PAYLOAD_EXIT2, PAYLOAD_EXIT2_TT) else control[-1]
        )
        linked = op in (EXIT, EXIT_TT, PAYLOAD_EXIT, PAYLOAD_EXIT_TT)
        proc = self.local.process(control[2])
        if proc is not None:
            proc.on_exit(control[1], reason, linked=linked)

    def _on_monitor(self, control: tuple[Any, ...], payload: Term) -> None:
        _, watcher, target, ref = control
        if target == self._rpc_pid:  # io monitors our group leader; it lives as long as we do
            return
        proc = self.local.process(target) if type(target) is Pid else self.local.registered(target)
        if proc is None:
            self._proto.write(self._frame((MONITOR_P_EXIT, target, watcher, ref, Atom("noproc"))))
            return
        proc.monitored_by[ref] = watcher

    def _on_demonitor(self, control: tuple[Any, ...], payload: Term) -> None:
        _, _watcher, target, ref = control
        proc = self.local.process(target) if type(target) is Pid else self.local.registered(target)
        if proc is not None:
            proc.monitored_by.pop(ref, None)

    def _on_monitor_exit(self, control: tuple[Any, ...], payload: Term) -> None:
        if control[0] == PAYLOAD_MONITOR_P_EXIT:
            _, who, to, ref = control
            reason = payload
        else:
            _, who, to, ref, reason = control
        if to == self._rpc_pid and self._on_erpc_down(ref, reason):
            return
        proc = self.local.process(to)
        if proc is not None:
            if type(who) is not Pid:  # a monitored registered name comes back as {Name, Node}
                who = (who, self.peer)
            proc.on_down(ref, who, reason)

    def _on_spawn_request(self, control: tuple[Any, ...], payload: Term) -> None:
        # Python processes cannot run Erlang code: refuse as a node without the feature would.
        req, sender = control[1], control[2]
        self._proto.write(self._frame((SPAWN_REPLY, req, sender, 0, _NOTSUP)))

    def _on_spawn_reply(self, control: tuple[Any, ...], payload: Term) -> None:
        _, req, to, _flags, result = control[:5]
        if to == self._rpc_pid:
            self._spawn_replied(req, result)

    def _on_group_leader(self, control: tuple[Any, ...], payload: Term) -> None:
        return None

    # ------------------------------------------------------------------ liveness

    async def _tick_loop(self) -> None:
        try:
            while not self.closed:
                await asyncio.sleep(TICK_INTERVAL)
                if time.monotonic() - self._last_in > SILENCE_LIMIT:
                    self._fail(
                        NodeDown(f"{self.peer} has sent nothing for {SILENCE_LIMIT:g}s (net tick timeout)")
                    )
                    return
                self._proto.write(_TICK)
        except asyncio.CancelledError:
            pass

    def _fail(self, reason: NodeDown) -> None:
        """Close the connection and fail everything that waits on it, at once."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        for future in self._rex_calls.values():
            if not future.done():
                future.set_exception(NodeDown(str(reason)))
        for call in self._erpc_calls.values():
            if not call.future.done():
                call.future.set_exception(NodeDown(str(reason)))
        self._rex_calls.clear()
        self._erpc_calls.clear()
        self._tick_task.cancel()
        self._proto.stop_frames()
        self._proto.close()
        self.local.connection_lost(self)
        self._closed_event.set()

    async def close(self) -> None:
        """Disconnect; pending calls fail with :class:`NodeDown`."""
        self._fail(NodeDown(f"connection to {self.peer} was closed"))
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._tick_task
        await self._proto.wait_lost()

    async def wait_closed(self) -> None:
        await self._closed_event.wait()


async def _await_reply(future: asyncio.Future[Any], timeout: float) -> Any:
    """Wait for a reply future; a bare timer on the future is cheaper than ``asyncio.timeout``."""
    timer = asyncio.get_running_loop().call_later(timeout, _expire, future)
    try:
        return await future
    finally:
        timer.cancel()


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


def _rex_error(reason: Term, mfa: str) -> RpcError:
    # rex wraps crashes as {'EXIT', {Reason, Stack}}; show the reason, keep the stack.
    if type(reason) is tuple and len(reason) == 2 and reason[0] == Atom("EXIT"):
        inner = reason[1]
        if type(inner) is tuple and len(inner) == 2 and type(inner[1]) is list:
            return RpcError("badrpc", inner[0], inner[1], mfa=mfa)
        return RpcError("badrpc", inner, mfa=mfa)
    return RpcError("badrpc", reason, mfa=mfa)


def _io_text(request: Term) -> str | None:
    """The text of an io ``put_chars`` request, or None for requests we do not serve."""
    if type(request) is not tuple or not request:
        return None
    if request[0] == Atom("put_chars"):
        chars = request[-1] if len(request) in (2, 3) else None
        if len(request) == 5:  # {put_chars, Enc, M, F, A}
            return f"{request[2]}:{request[3]}({brief(request[4], 500)})"
        return _chars(chars)
    if request[0] == Atom("requests") and len(request) == 2 and type(request[1]) is list:
        parts = [_io_text(r) for r in request[1]]
        return "".join(p for p in parts if p) if all(p is not None for p in parts) else None
    return None


def _chars(chars: Term) -> str:
    if type(chars) is bytes:
        return chars.decode(errors="replace")
    if type(chars) is list:
        return "".join(_chars(c) if type(c) is not int else chr(c) for c in chars)
    return ""


# Operations that carry a payload term after the control tuple, and only those.
_WITH_PAYLOAD = frozenset(
    {
        SEND,
        SEND_TT,
        REG_SEND,
        REG_SEND_TT,
        SEND_SENDER,
        SEND_SENDER_TT,
        ALIAS_SEND,
        ALIAS_SEND_TT,
        PAYLOAD_EXIT,
        PAYLOAD_EXIT_TT,
        PAYLOAD_EXIT2,
        PAYLOAD_EXIT2_TT,
        PAYLOAD_MONITOR_P_EXIT,
        SPAWN_REQUEST,
        SPAWN_REQUEST_TT,
    }
)

_HANDLERS = {
    SEND: Connection._on_send,
    SEND_TT: Connection._on_send,
    SEND_SENDER: Connection._on_send_sender,
    SEND_SENDER_TT: Connection._on_send_sender,
    REG_SEND: Connection._on_reg_send,
    REG_SEND_TT: Connection._on_reg_send,
    ALIAS_SEND: Connection._on_alias_send,
    ALIAS_SEND_TT: Connection._on_alias_send,
    LINK: Connection._on_link,
    UNLINK_ID: Connection._on_unlink_id,
    UNLINK_ID_ACK: Connection._on_unlink_ack,
    EXIT: Connection._on_exit,
    EXIT_TT: Connection._on_exit,
    EXIT2: Connection._on_exit,
    EXIT2_TT: Connection._on_exit,
    PAYLOAD_EXIT: Connection._on_exit,
    PAYLOAD_EXIT_TT: Connection._on_exit,
    PAYLOAD_EXIT2: Connection._on_exit,
    PAYLOAD_EXIT2_TT: Connection._on_exit,
    MONITOR_P: Connection._on_monitor,
    DEMONITOR_P: Connection._on_demonitor,
    MONITOR_P_EXIT: Connection._on_monitor_exit,
    PAYLOAD_MONITOR_P_EXIT: Connection._on_monitor_exit,
    SPAWN_REQUEST: Connection._on_spawn_request,
    SPAWN_REQUEST_TT: Connection._on_spawn_request,
    SPAWN_REPLY: Connection._on_spawn_reply,
    SPAWN_REPLY_TT: Connection._on_spawn_reply,
    GROUP_LEADER: Connection._on_group_leader,
}
