"""The byte stream under a connection: an ``asyncio.Protocol`` for TCP or TLS.

During the handshake it behaves like a stream (``readexactly``); afterwards it
cuts 4-byte-length frames out of the incoming bytes inside ``data_received`` and
hands each to a callback, with no task switch per message. That callback is
where replies resolve their futures, which keeps round trips short.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

__all__ = ["DistProtocol", "FrameTooLarge"]

_u32 = struct.Struct(">I").unpack_from


class FrameTooLarge(Exception):
    """The peer announced a frame larger than the limit."""


class DistProtocol(asyncio.Protocol):
    """Buffering protocol with a stream phase (handshake) and a frame phase."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[None] | None = None
        self._on_frame: Callable[[bytes], None] | None = None
        self._on_tick: Callable[[], None] | None = None
        self._on_lost: Callable[[BaseException | None], None] | None = None
        self._lost = False
        self._lost_exc: BaseException | None = None
        self.error: BaseException | None = None
        self._lost_event: asyncio.Event | None = None
        self._paused = False
        self._pending = 0  # bytes the frame being received needs in all (0: unknown)
        self._drain_waiters: list[asyncio.Future[None]] = []

    # ------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._on_frame is None:
            self._buffer += data
            self._wake()
            return
        if self._buffer:
            self._buffer += data
            if len(self._buffer) < self._pending:  # still inside a frame: no copy until it is whole
                return
            data = bytes(self._buffer)
            self._buffer.clear()
        self._guarded_cut(data)

    def _guarded_cut(self, data: bytes) -> None:
        try:
            self._cut_frames(data)
        except Exception as exc:  # a hostile frame: stop reading, fail now, drop the socket
            self.error = exc
            self._on_frame = None
            self._buffer.clear()
            if self._on_lost is not None:
                self._on_lost(exc)
            # abort, not close: a TLS close would wait for the peer's close_notify.
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._lost = True
        self._lost_exc = exc
        if self._lost_event is not None:
            self._lost_event.set()
        self._wake()
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()
        if self._on_lost is not None:
            self._on_lost(self.error or exc)

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost reports it

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    # ------------------------------------------------------------------ stream phase

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def readexactly(self, count: int) -> bytes:
        """Read ``count`` bytes; ``asyncio.IncompleteReadError`` if the peer closes first."""
        while len(self._buffer) < count:
            if self._lost:
                if self._lost_exc is not None:
                    raise self._lost_exc  # e.g. ssl.SSLError: the reason the TLS peer gave
                raise asyncio.IncompleteReadError(bytes(self._buffer), count)
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    # ------------------------------------------------------------------ frame phase

    def start_frames(
        self,
        on_frame: Callable[[bytes], None],
        on_tick: Callable[[], None],
        on_lost: Callable[[BaseException | None], None],
    ) -> None:
        """Switch to frame mode; bytes already buffered are framed at once."""
        self._on_frame = on_frame
        self._on_tick = on_tick
        self._on_lost = on_lost
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            self._guarded_cut(data)
        if self._lost:
            on_lost(self.error or self._lost_exc)

    def _cut_frames(self, data: bytes) -> None:
        pos = 0
        end = len(data)
        on_frame = self._on_frame
        self._pending = 0
        while end - pos >= 4:
            (length,) = _u32(data, pos)
            if length == 0:
                pos += 4
                self._on_tick()  # type: ignore[misc]
                continue
            if length > self.max_frame:
                self._buffer.clear()
                raise FrameTooLarge(length)
            if end - pos - 4 < length:
                self._pending = 4 + length
                break
            start = pos + 4
            pos = start + length
            on_frame(data[start:pos])  # type: ignore[misc]
            if self._on_frame is None:  # the connection closed while handling the frame
                return
        if pos < end:
            self._buffer += data[pos:] if pos else data

    def stop_frames(self) -> None:
        self._on_frame = None

    # ------------------------------------------------------------------ writing

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self._lost:
            self.transport.write(data)

    async def drain(self) -> None:
        if self._lost:
            raise ConnectionResetError("connection lost")
        if not self._paused:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(waiter)
        await waiter
        if self._lost:
            raise ConnectionResetError("connection lost")

    @property
    def write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def wait_lost(self, timeout: float = 5.0) -> None:
        """Wait until the transport has really closed (so no socket is left behind)."""
        if self._lost:
            return
        self._lost_event = self._lost_event or asyncio.Event()
        try:
            async with asyncio.timeout(timeout):
                await self._lost_event.wait()
        except TimeoutError:
            if self.transport is not None:
                self.transport.abort()
