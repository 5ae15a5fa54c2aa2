"""WebSocket server connections: the ``websockets`` sans-I/O ``ServerProtocol`` driven by a Trio stream.

The protocol does the RFC 6455 work (handshake checks, framing, pongs, the closing handshake); this module
moves bytes between it and the stream, at half trio-websocket's CPU per message (DESIGN.md, "OCPP transport").
Plain text frames, nearly all of OCPP-J, are read and written by ``csms.ocpp.wsframes`` instead.

- One helper, :meth:`WebSocket._flush`, writes everything the protocol queues, under the send lock: frames
  never interleave, and a reader that owes a pong waits behind a pending send. That wait is the backpressure.
- Stream failures and EOF become :class:`ConnectionClosed`: an exception escaping a handler under
  ``trio.serve_tcp`` would take down the whole listener.
- No extensions: per-message compression costs more CPU than OCPP's small frames save.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from typing import TYPE_CHECKING, Final

import trio
from websockets.exceptions import ProtocolError
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from csms.ocpp.wsframes import take_text_frames, text_frame

if TYPE_CHECKING:
    from collections.abc import Iterable

    from websockets.protocol import Event
    from websockets.server import ServerProtocol
    from websockets.typing import BytesLike

# fmt: off
__all__ = [
    "ABNORMAL_CLOSURE", "GOING_AWAY", "INTERNAL_ERROR", "INVALID_DATA", "MESSAGE_TOO_BIG", "NORMAL_CLOSURE",
    "POLICY_VIOLATION", "PROTOCOL_ERROR", "UNSUPPORTED_DATA", "ConnectionClosed", "WebSocket",
]
# fmt: on

# Close codes (RFC 6455 §7.4.1).
NORMAL_CLOSURE: Final = 1000
GOING_AWAY: Final = 1001  # server shutdown
PROTOCOL_ERROR: Final = 1002
UNSUPPORTED_DATA: Final = 1003  # a binary frame: OCPP-J is text only
ABNORMAL_CLOSURE: Final = 1006  # never sent: the connection ended without a close frame
INVALID_DATA: Final = 1007  # a text frame that is not UTF-8
POLICY_VIOLATION: Final = 1008
MESSAGE_TOO_BIG: Final = 1009
INTERNAL_ERROR: Final = 1011

RECEIVE_BYTES: Final = 65536


class ConnectionClosed(Exception):
    """The WebSocket connection is over; raised by every operation after that.

    ``code`` is the peer's close code if it sent a close frame, else ours (1009 for a message too big), else
    1006 (the stream broke or ended without one); ``reason`` goes with it.
    """

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"WebSocket closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


class WebSocket:
    """One open server-side WebSocket connection carrying text messages.

    Whoever calls :meth:`receive_text` (the gateway's reader task) drives reading, and so delivers the pongs
    :meth:`ping` waits for. :meth:`close` reads by itself when no task is reading.

    Args:
        stream: the upgraded connection; owned by this object from now on.
        protocol: the ServerProtocol that completed the handshake.
        events: frames already parsed with the handshake request.
        close_timeout_s: bound on :meth:`close`.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        protocol: ServerProtocol,
        events: Iterable[Event] = (),
        *,
        close_timeout_s: float = 5,
    ) -> None:
        self._stream = stream
        self._protocol = protocol
        self._close_timeout_s = close_timeout_s
        self.subprotocol: str | None = protocol.subprotocol
        self._send_lock = trio.Lock()
        # Plain TCP sockets get the direct-write fast path of _flush; TLS streams go through Trio.
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else None
        self._protocol_leftover: list[bytes] = []  # taken from the protocol by the fast path, not sent yet
        self._messages: deque[str] = deque()
        self._fragments: list[BytesLike] | None = None  # parts of a fragmented text message
        self._pings: dict[bytes, trio.Event] = {}
        self._ping_ids = itertools.count()
        self._reading = False
        limits = (protocol.max_message_size, protocol.max_fragment_size)  # no extensions: nothing else limits
        self._max_size = min((n for n in limits if n is not None), default=None)
        self._read_done: trio.Event | None = None  # for tasks waiting on a reader: set after its read
        self._closed: ConnectionClosed | None = None
        #: trio.current_time() of the last bytes from the peer (any frame, pongs included).
        self.last_received = trio.current_time()
        self._close_started = False
        self._handle_frames(events)

    async def receive_text(self) -> str:
        """Return the next text message, answering pings and close frames on the way.

        Returns:
            The message, decoded from UTF-8.

        Raises:
            ConnectionClosed: the peer closed, the stream broke or ended, or the connection failed (a
                binary frame closes with 1003, an oversized message with 1009, invalid UTF-8 with 1007).
        """
        while not self._messages:
            if self._closed is not None:
                raise self._closed
            await self._pump()
        return self._messages.popleft()

    async def send_text(self, text: str) -> None:
        """Send one text message; returns once it is handed to the stream.

        Raises:
            ConnectionClosed: the connection is closing or closed, or the stream broke.
        """
        self._check_open()
        # Queued where the protocol queues its own frames (pongs, close), so the order holds.
        self._protocol.writes.append(text_frame(text.encode()))
        await self._flush()

    def ping_nowait(self) -> None:
        """Queue a ping and write it now if the socket takes it without waiting, else with the next write.

        Raises:
            ConnectionClosed: the connection is closing or closed, or the stream broke.
        """
        self._check_open()
        self._protocol.send_ping(next(self._ping_ids).to_bytes(8, "big"))
        if self._fd is not None and not self._send_lock.locked():
            chunks = self._protocol_leftover + self._protocol.data_to_send()
            if chunks and chunks[-1]:
                unsent = self._write_now(b"".join(chunks))
                chunks = [unsent] if unsent else []
            self._protocol_leftover = chunks  # what is left goes first with the next _flush

    async def ping(self, timeout_s: float) -> bool:
        """Send a ping and wait up to ``timeout_s`` for its pong, which a task in :meth:`receive_text` reads.

        Returns:
            True when the pong came back in time, False on timeout or if the connection ended meanwhile.

        Raises:
            ConnectionClosed: the connection was already closing or closed.
        """
        self._check_open()
        payload = next(self._ping_ids).to_bytes(8, "big")
        event = self._pings[payload] = trio.Event()
        try:
            self._protocol.send_ping(payload)
            await self._flush()
            with trio.move_on_after(timeout_s):
                await event.wait()
            # The reader removes a ping when its pong arrives; _finish only wakes the waiters.
            return payload not in self._pings
        finally:
            self._pings.pop(payload, None)

    async def close(self, code: int = NORMAL_CLOSURE, reason: str = "", *, timeout_s: float | None = None) -> None:
        """Run the closing handshake, then close the stream. Idempotent; never raises.

        The wait for the peer's close frame is bounded by ``close_timeout_s`` and shielded from
        cancellation, so a handler cancelled at shutdown still tells its charger why (1001).

        Args:
            code: the close code to send, e.g. :data:`GOING_AWAY`.
            reason: a short reason (at most 123 bytes in UTF-8).
            timeout_s: overrides ``close_timeout_s``; short for a peer already known to be unresponsive.
        """
        if self._close_started:
            return
        self._close_started = True
        with trio.CancelScope(shield=True):
            with trio.move_on_after(self._close_timeout_s if timeout_s is None else timeout_s):
                try:
                    if self._protocol.state is State.OPEN:
                        self._send_close(code, reason)
                        await self._flush()
                    while self._closed is None:
                        await self._pump()
                except ConnectionClosed:
                    pass
            if self._closed is None:
                self._finish(ConnectionClosed(code, reason))
            # No direct read or write after this: once closed, the number may name another socket.
            self._fd = None
            await trio.aclose_forcefully(self._stream)

    def _send_close(self, code: int, reason: str) -> None:
        """Queue a close frame; a reason is cut to fit the frame, an invalid code becomes 1011."""
        reason = reason.encode()[:123].decode(errors="ignore")
        try:
            self._protocol.send_close(code, reason)
        except ProtocolError:  # raised before the protocol changes state, so a second try is safe
            self._protocol.send_close(INTERNAL_ERROR, reason)

    async def _pump(self) -> None:
        """Read and process one chunk, or wait for the task already reading; failures go to ``_closed``."""
        if self._reading:
            if self._read_done is None:
                self._read_done = trio.Event()
            await self._read_done.wait()
            return
        self._reading = True
        try:
            data = await self._receive_some()
            self.last_received = trio.current_time()
            if not data:
                self._protocol.receive_eof()
            elif self._between_frames():
                messages, used = take_text_frames(data, self._max_size)
                self._messages.extend(messages)
                data = data[used:]  # anything else is the protocol's
            if data:
                self._protocol.receive_data(data)
            self._handle_frames(self._protocol.events_received())
            await self._flush()
            if self._protocol.eof_sent or self._protocol.state is State.CLOSED:
                self._finish(self._closed_exception())
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._finish(ConnectionClosed(ABNORMAL_CLOSURE, type(exc).__name__))
        except ConnectionClosed:
            pass  # _flush already recorded it
        finally:
            self._reading = False
            done, self._read_done = self._read_done, None
            if done is not None:
                done.set()

    async def _receive_some(self) -> bytes:
        """The next bytes from the peer (b"" at EOF).

        A plain TCP socket is read directly, without Trio's wrappers: each is a coroutine object per read
        that lives while the charger is quiet, which with thousands of chargers kept the GC's young
        generation large and its pauses long (hundreds of milliseconds). It waits first, then reads: a
        charger has one CALL in flight, so right after csms answered (when this is called) its next bytes
        are rarely there yet, and trying first cost a failed read and an exception per message. The wait
        is the checkpoint (cancellation and a yield).
        """
        if self._fd is None:
            return bytes(await self._stream.receive_some(RECEIVE_BYTES))
        while True:
            # self._fd is read again after every wait: close() clears it before closing the socket, and
            # nothing runs between this check and the read, so the number never names another socket.
            fd = self._fd
            if fd is None:
                raise trio.ClosedResourceError("the connection was closed")
            await trio.lowlevel.wait_readable(fd)
            fd = self._fd
            if fd is None:
                raise trio.ClosedResourceError("the connection was closed")
            try:
                return os.read(fd, RECEIVE_BYTES)
            except BlockingIOError:
                pass  # woken without data: wait again (outside this block, so no exception stays alive)
            except OSError as exc:  # reset by the peer, and the like
                raise trio.BrokenResourceError(type(exc).__name__) from None

    def _between_frames(self) -> bool:
        """Whether the protocol waits for a new frame with nothing buffered (``csms.ocpp.wsframes``)."""
        protocol = self._protocol
        return (protocol.state is State.OPEN and not protocol.reader.buffer and protocol.current_size is None
                and self._fragments is None)

    def _handle_frames(self, events: Iterable[Event]) -> None:
        """Queue text messages and match pongs; pings and close frames are answered by the protocol."""
        for frame in events:
            if not isinstance(frame, Frame) or self._protocol.eof_sent:
                return  # after a failure, frames parsed in the same chunk are dropped, as RFC 6455 asks
            opcode = frame.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.CONT:
                self._text_part(frame)
            elif opcode is Opcode.BINARY:
                self._protocol.fail(UNSUPPORTED_DATA, "OCPP-J uses text frames only")
            elif opcode is Opcode.PONG:
                event = self._pings.pop(bytes(frame.data), None)
                if event is not None:
                    event.set()

    def _text_part(self, frame: Frame) -> None:
        """Add a text frame or continuation; queue the message once its final fragment is in (the protocol
        has already failed the connection on a misplaced continuation frame)."""
        data = frame.data  # the common case: an unfragmented message
        if not frame.fin or self._fragments is not None:
            self._fragments = self._fragments or []
            self._fragments.append(frame.data)
            if not frame.fin:
                return
            data, self._fragments = b"".join(self._fragments), None
        try:
            self._messages.append(str(data, "utf-8"))
        except UnicodeDecodeError:
            self._protocol.fail(INVALID_DATA, "invalid UTF-8")

    async def _flush(self) -> None:
        """Write whatever the protocol queued, in order, under the send lock; ConnectionClosed if it breaks."""
        lock = self._send_lock
        if not self._protocol.writes and not self._protocol_leftover and not lock.locked():
            # Nothing queued (the common case after a read): skip the lock, which would cost a checkpoint.
            return
        unsent = b""
        if self._fd is not None and not lock.locked():
            # Fast path: nobody else is sending, so write straight to the socket without a turn of the
            # scheduler (send_all costs one, plus its wrappers: ~10% of csms's CPU under load). The
            # reader still yields at every receive, so a busy charger cannot starve the others.
            chunks = self._protocol_leftover + self._protocol.data_to_send()
            self._protocol_leftover = []
            if not chunks:
                return
            if chunks[-1]:  # no end-of-stream marker (see below): the usual case
                unsent = self._write_now(b"".join(chunks))
                if not unsent:
                    return
                # The socket buffer is full: wait for room below, in order.
            else:
                self._protocol_leftover = chunks
        try:
            lock.acquire_nowait()  # uncontended: no extra checkpoint; send_all below is one
        except trio.WouldBlock:
            await lock.acquire()
        try:
            chunks = self._protocol_leftover + self._protocol.data_to_send()
            self._protocol_leftover = []
            if unsent:
                chunks = [unsent, *chunks] if chunks else [unsent]
            if not chunks:
                return
            try:
                # An empty chunk means "end of stream": send what precedes it, then half-close so the
                # peer still reads our close frame (a full close with unread input would reset it).
                payload = b"".join(chunks)
                if payload:
                    await self._stream.send_all(payload)
                if not chunks[-1] and isinstance(self._stream, trio.abc.HalfCloseableStream):
                    await self._stream.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._finish(ConnectionClosed(ABNORMAL_CLOSURE, type(exc).__name__))
                assert self._closed is not None
                raise self._closed from None
        finally:
            lock.release()

    def _write_now(self, payload: bytes) -> bytes:
        """Write what the socket takes without waiting (the caller holds no lock, but nobody else writes);
        returns the rest."""
        assert self._fd is not None
        try:
            written = os.write(self._fd, payload)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            self._finish(ConnectionClosed(ABNORMAL_CLOSURE, type(exc).__name__))
            assert self._closed is not None
            raise self._closed from None
        return payload[written:]

    def _check_open(self) -> None:
        """Raise ConnectionClosed unless messages can still be sent."""
        if self._closed is not None:
            raise self._closed
        if self._protocol.state is not State.OPEN:
            raise self._closed_exception()

    def _closed_exception(self) -> ConnectionClosed:
        """Describe how the protocol ended: the peer's close frame, else ours, else abnormal closure."""
        close = self._protocol.close_rcvd or self._protocol.close_sent
        if close is None:
            return ConnectionClosed(ABNORMAL_CLOSURE, "connection ended without a close frame")
        return ConnectionClosed(int(close.code), close.reason)

    def _finish(self, closed: ConnectionClosed) -> None:
        """Record the end of the connection once, and wake every ping waiting for a pong."""
        if self._closed is None:
            self._closed = closed
        for event in self._pings.values():
            event.set()
