"""A lean ``graphql-transport-ws`` client for the live-subscription benchmark (:mod:`simulators.live_bench`).

The benchmark opens a thousand of these in one process, so each is the ``websockets`` package's sans-I/O
``ClientProtocol`` over a plain Trio TCP stream: no reader task or channel per connection beyond the one
loop that feeds received messages to a callback. Every message of one network read is stamped with the
time that read returned (``time.perf_counter``), before it is decoded, so the client's own parsing
does not inflate the measured latency more than it must.

trio-websocket's client is avoided on purpose: it leaks its socket when the server closes first.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import trio
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

if TYPE_CHECKING:
    from collections.abc import Callable

SUBPROTOCOL = "graphql-transport-ws"
READ_BYTES = 65536


class WsClosed(Exception):
    """The server closed the WebSocket (or the TCP connection went away)."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code} {reason!r}")
        self.code = code
        self.reason = reason


class GraphQLWsClient:
    """One ``graphql-transport-ws`` connection. Open it with :meth:`open`, close it with :meth:`aclose`.

    Args:
        url: ``ws://host:port/graphql``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._uri = parse_uri(url)
        self._protocol = ClientProtocol(self._uri, subprotocols=[Subprotocol(SUBPROTOCOL)])
        self._stream: trio.SocketStream | None = None
        self._queued: list[tuple[float, dict[str, Any]]] = []

    async def open(self, payload: dict[str, Any], timeout_s: float = 30.0) -> None:
        """Connect, hand shake, send ``connection_init`` with ``payload`` and wait for the ack.

        Raises:
            WsClosed: the server refused (its close code says why).
            trio.TooSlowError: no ack within ``timeout_s``.
        """
        with trio.fail_after(timeout_s):
            self._stream = await trio.open_tcp_stream(self._uri.host, self._uri.port)
            self._protocol.send_request(self._protocol.connect())
            await self._flush()
            while not any(isinstance(e, Response) for e in await self._read_events()):
                pass
            if self._protocol.handshake_exc is not None:
                raise self._protocol.handshake_exc
            await self.send({"type": "connection_init", "payload": payload})
            ack = await self.receive()
            if ack.get("type") != "connection_ack":
                raise WsClosed(None, f"expected connection_ack, got {ack.get('type')!r}")

    async def send(self, message: dict[str, Any]) -> None:
        """One protocol message as a text frame."""
        self._protocol.send_text(json.dumps(message).encode())
        await self._flush()

    async def subscribe(self, op_id: str, query: str, variables: dict[str, Any]) -> None:
        """Start operation ``op_id``."""
        await self.send({"id": op_id, "type": "subscribe", "payload": {"query": query, "variables": variables}})

    async def receive(self) -> dict[str, Any]:
        """The next protocol message (pings are answered on the way)."""
        while not self._queued:
            await self._read_messages()
        return self._queued.pop(0)[1]

    async def serve(self, on_message: Callable[[float, dict[str, Any]], None]) -> None:
        """Hand every message to ``on_message(received_at, message)`` until the connection closes.

        Raises:
            WsClosed: the server closed the connection.
        """
        while True:
            for at, message in self._queued:
                on_message(at, message)
            self._queued.clear()
            await self._read_messages()

    async def aclose(self) -> None:
        """Close politely if still open, then drop the socket."""
        if self._stream is None:
            return
        try:
            if self._protocol.state is State.OPEN:
                self._protocol.send_close(1000)
                with trio.move_on_after(1):
                    await self._flush()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(self._stream)

    async def _read_messages(self) -> None:
        events = await self._read_events()
        at = time.perf_counter()
        for frame in events:
            opcode = getattr(frame, "opcode", None)
            if opcode is Opcode.TEXT:
                message = json.loads(bytes(frame.data))
                if message.get("type") == "ping":
                    await self.send({"type": "pong"})
                    continue
                self._queued.append((at, message))
            elif opcode is Opcode.CLOSE:
                received = self._protocol.close_rcvd
                raise WsClosed(received.code if received else None, received.reason if received else "")

    async def _read_events(self) -> list[Any]:
        assert self._stream is not None
        if self._protocol.state is State.CLOSED:
            received = self._protocol.close_rcvd
            raise WsClosed(received.code if received else None, received.reason if received else "")
        data = await self._stream.receive_some(READ_BYTES)
        if data:
            self._protocol.receive_data(data)
        else:
            self._protocol.receive_eof()
        events = self._protocol.events_received()
        await self._flush()
        if not data and not events:
            raise WsClosed(None, "connection lost")
        return events

    async def _flush(self) -> None:
        assert self._stream is not None
        for chunk in self._protocol.data_to_send():
            if chunk:
                await self._stream.send_all(chunk)
