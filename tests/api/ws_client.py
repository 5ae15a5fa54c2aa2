"""A small graphql-transport-ws test client over a real socket, and a live API to point it at.

The client is the ``websockets`` package's sans-I/O ``ClientProtocol`` over a Trio TCP stream, so tests
control every frame (binary frames, bad JSON, no subprotocol) and see the server's close codes exactly.
trio-websocket's client is avoided: it leaks its socket when the server closes first.
"""

from __future__ import annotations

import json
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import trio
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from csms.api.app import create_app
from csms.api.context import ApiServices
from csms.api.server import serve_api
from csms.config import Settings
from csms.services.events import EventHub
from tests.conftest import TEST_SIGNER

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from csms.store.db import Conn, Database

PROTOCOL = "graphql-transport-ws"


class Closed(Exception):
    """The server closed the WebSocket."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code} {reason!r}")
        self.code = code
        self.reason = reason


class WsClient:
    """One WebSocket connection, frame by frame."""

    def __init__(self, stream: trio.SocketStream, protocol: ClientProtocol) -> None:
        self.stream = stream
        self.protocol = protocol
        self._frames: deque[Any] = deque()

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str, subprotocols: list[str] | None = None,
                      headers: dict[str, str] | None = None) -> AsyncIterator[WsClient]:
        """Open ``url`` (``ws://host:port/path``) offering ``subprotocols`` (graphql-transport-ws by default)."""
        uri = parse_uri(url)
        offered = [PROTOCOL] if subprotocols is None else subprotocols
        protocol = ClientProtocol(uri, subprotocols=[Subprotocol(p) for p in offered] or None)
        stream = await trio.open_tcp_stream(uri.host, uri.port)
        client = cls(stream, protocol)
        try:
            request = protocol.connect()
            for name, value in (headers or {}).items():
                request.headers[name] = value
            protocol.send_request(request)
            await client._flush()
            while True:
                event = await client._next_event()
                if isinstance(event, Response):
                    break
            if protocol.handshake_exc is not None:
                raise protocol.handshake_exc
            yield client
        finally:
            await client.aclose()

    @property
    def subprotocol(self) -> str | None:
        """What the server chose."""
        return self.protocol.subprotocol

    async def _flush(self) -> None:
        for chunk in self.protocol.data_to_send():
            if chunk:
                await self.stream.send_all(chunk)

    async def _next_event(self) -> Any:
        while not self._frames:
            if self.protocol.state is State.CLOSED:
                rcvd = self.protocol.close_rcvd
                raise Closed(rcvd.code if rcvd else None, rcvd.reason if rcvd else "")
            data = await self.stream.receive_some(65536)
            if data:
                self.protocol.receive_data(data)
            else:
                self.protocol.receive_eof()
            self._frames.extend(self.protocol.events_received())
            await self._flush()
        return self._frames.popleft()

    async def send_text(self, text: str) -> None:
        """One text frame."""
        self.protocol.send_text(text.encode())
        await self._flush()

    async def send_binary(self, data: bytes) -> None:
        """One binary frame."""
        self.protocol.send_binary(data)
        await self._flush()

    async def send_json(self, message: dict[str, Any]) -> None:
        """One protocol message."""
        await self.send_text(json.dumps(message))

    async def receive(self) -> str | bytes:
        """The next data message; raises :class:`Closed` when the server closes."""
        while True:
            frame = await self._next_event()
            if frame.opcode is Opcode.TEXT:
                return bytes(frame.data).decode()
            if frame.opcode is Opcode.BINARY:
                return bytes(frame.data)
            if frame.opcode is Opcode.CLOSE:
                rcvd = self.protocol.close_rcvd
                raise Closed(rcvd.code if rcvd else None, rcvd.reason if rcvd else "")

    async def receive_json(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next protocol message, within ``timeout`` seconds."""
        with trio.fail_after(timeout):
            raw = await self.receive()
        message: dict[str, Any] = json.loads(raw)
        return message

    async def wait_closed(self, timeout: float = 5.0) -> tuple[int | None, str]:
        """Read until the server closes; returns its code and reason."""
        with trio.fail_after(timeout):
            while True:
                try:
                    await self.receive()
                except Closed as closed:
                    return closed.code, closed.reason

    async def aclose(self) -> None:
        """Close politely if still open, then drop the socket."""
        try:
            if self.protocol.state is State.OPEN:
                self.protocol.send_close(1000)
                with trio.move_on_after(1):
                    await self._flush()
        except trio.BrokenResourceError:
            pass
        finally:
            await trio.aclose_forcefully(self.stream)

    # -- graphql-transport-ws helpers ----------------------------------------------------------

    async def init(self, payload: dict[str, Any] | None = None) -> None:
        """connection_init, and expect connection_ack."""
        await self.send_json({"type": "connection_init", "payload": payload or {}})
        ack = await self.receive_json()
        assert ack == {"type": "connection_ack"}, ack

    async def subscribe(self, op_id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        """Start operation ``op_id``."""
        await self.send_json({"id": op_id, "type": "subscribe",
                              "payload": {"query": query, "variables": variables or {}}})

    async def next_data(self, op_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """The data of the next ``next`` message, which must be for ``op_id`` and error-free."""
        message = await self.receive_json(timeout)
        assert message.get("id") == op_id and message["type"] == "next", message
        assert "errors" not in message["payload"], message
        data: dict[str, Any] = message["payload"]["data"]
        return data


def error_codes(message: dict[str, Any]) -> list[str]:
    """The ``extensions.code`` of every error in an ``error`` (or ``next``) message."""
    errors = message["payload"] if message["type"] == "error" else message["payload"].get("errors", [])
    return [e.get("extensions", {}).get("code") for e in errors]


@dataclass
class LiveApi:
    """A running API with its events service."""

    url: str
    hub: EventHub
    settings: Settings

    @property
    def ws_url(self) -> str:
        """The GraphQL WebSocket endpoint."""
        return self.url.replace("http://", "ws://") + "/graphql"


async def start_live_api(db: Database, nursery: trio.Nursery, **overrides: Any) -> LiveApi:
    """Serve the app with an events hub LISTENing on the test database, in ``nursery``."""
    settings = replace(Settings(http_host="127.0.0.1", http_port=0, shutdown_grace_s=1.0), **overrides)
    hub: EventHub = await nursery.start(EventHub(db.dsn, capacity=settings.events_buffer).run)
    services = ApiServices(db=db, settings=settings, signer=TEST_SIGNER, events=hub)
    binds: list[str] = await nursery.start(serve_api, create_app(services), settings)
    return LiveApi(binds[0], hub, settings)


def on_the_map(conn: Conn, station_id: str) -> None:
    """Put a station in a location of its own: anyone may watch it then (unlisted ones: admins only)."""
    conn.execute("INSERT INTO locations (name) VALUES (%s) ON CONFLICT (name) DO NOTHING", (f"Map {station_id}",))
    conn.execute("UPDATE stations SET location_id = (SELECT id FROM locations WHERE name = %s) WHERE id = %s",
                 (f"Map {station_id}", station_id))


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    """Poll ``predicate()`` until it is true."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)
