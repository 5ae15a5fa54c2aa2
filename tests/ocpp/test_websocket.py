"""Tests for csms.ocpp.websocket over real sockets.

The client is trio-websocket (independent of the server's transport), except where a test needs to misbehave
(fragments, a silent or vanishing peer, non-WebSocket HTTP): there it is raw bytes or the `websockets`
sans-I/O client protocol over a Trio TCP stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio_websocket
from websockets.client import ClientProtocol
from websockets.frames import Frame
from websockets.uri import parse_uri

from csms.ocpp.handshake import Accept, HandshakeRequest, Reject, accept_websocket
from csms.ocpp.websocket import ConnectionClosed, WebSocket

SUPPORTED = ("ocpp1.6",)
App = Callable[[WebSocket], Awaitable[None]]


async def ocpp_decide(request: HandshakeRequest) -> Accept | Reject:
    """Like the gateway: known path, Basic auth for CP2, first supported subprotocol."""
    if not request.path.startswith("/ocpp/"):
        return Reject(404, "unknown path\n")
    if request.path == "/ocpp/CP2" and request.headers.get("Authorization") != "Basic Q1AyOnNlY3JldA==":
        return Reject(401, "credentials required\n", [("WWW-Authenticate", 'Basic realm="csms"')])
    chosen = next((p for p in request.subprotocols if p in SUPPORTED), None)
    return Accept(chosen)


class Server:
    """Records what the server side saw."""

    def __init__(self) -> None:
        self.requests: list[HandshakeRequest] = []
        self.closed: list[ConnectionClosed] = []
        self.results: list[object] = []
        self.port = 0


@asynccontextmanager
async def serve(app: App, **options: float) -> AsyncIterator[Server]:
    """Run accept_websocket + app on 127.0.0.1 for the duration of the block."""
    server = Server()

    async def decide(request: HandshakeRequest) -> Accept | Reject:
        server.requests.append(request)
        return await ocpp_decide(request)

    async def handler(stream: trio.SocketStream) -> None:
        ws = await accept_websocket(stream, decide, **options)  # type: ignore[arg-type]
        if ws is None:
            return
        try:
            await app(ws)
        except ConnectionClosed as exc:
            server.closed.append(exc)
        finally:
            await ws.close()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        server.port = listeners[0].socket.getsockname()[1]
        yield server
        nursery.cancel_scope.cancel()


async def echo(ws: WebSocket) -> None:
    while True:
        await ws.send_text(await ws.receive_text())


@asynccontextmanager
async def connect(
    server: Server,
    path: str = "/ocpp/CP1",
    subprotocols: tuple[str, ...] = ("ocpp0.1", "ocpp1.6"),
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """A trio-websocket client connected to ``server``."""
    client: trio_websocket.WebSocketConnection | None = None
    try:
        async with trio_websocket.open_websocket(
            "127.0.0.1", server.port, path, use_ssl=False, subprotocols=subprotocols, extra_headers=extra_headers
        ) as client:
            yield client
    finally:
        # trio-websocket 0.12 never closes its TCP stream when the server starts the closing handshake (its
        # reader stops at EOF, then aclose() returns early), which pytest reports as an unclosed socket.
        if client is not None:
            await trio.aclose_forcefully(client._stream)


def close_of(error: trio_websocket.ConnectionClosed) -> tuple[int, str | None]:
    """The close code and reason a trio-websocket client saw."""
    assert error.reason is not None
    return error.reason.code, error.reason.reason


async def wait_for(condition: Callable[[], bool]) -> None:
    with trio.fail_after(5):
        while not condition():
            await trio.sleep(0.01)


async def test_accepts_with_the_supported_subprotocol_and_echoes_text() -> None:
    async with serve(echo) as server, connect(server) as client:
        assert client.subprotocol == "ocpp1.6"
        await client.send_message('[2,"1","Heartbeat",{}]')
        assert await client.get_message() == '[2,"1","Heartbeat",{}]'
        await client.send_message("ü€" * 100)
        assert await client.get_message() == "ü€" * 100
    request = server.requests[0]
    assert (request.path, request.subprotocols) == ("/ocpp/CP1", ["ocpp0.1", "ocpp1.6"])
    await wait_for(lambda: bool(server.closed))
    assert server.closed[0].code == 1000  # the client's close, seen by the reader


async def test_sends_larger_than_the_socket_buffer_arrive_whole_and_in_order() -> None:
    # The direct write takes what the socket buffer holds; the rest waits for room behind the send lock,
    # and messages sent meanwhile by other tasks queue after it.
    big = [f"{i}:" + "x" * 900_000 for i in range(12)]  # ~11 MB: more than the socket buffers hold

    async def send_many(ws: WebSocket) -> None:
        for i in range(0, len(big), 2):
            await ws.send_text(big[i])  # taken whole by the socket, or partly and the rest waits for room
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ws.send_text, big[i + 1])
        await ws.send_text("done")
        await ws.receive_text()

    async with serve(send_many) as server, connect(server) as client:
        await trio.sleep(0.3)  # not reading yet: the buffers fill up and the server must wait for room
        with trio.fail_after(10):
            got = [await client.get_message() for _ in range(len(big) + 1)]
        assert got == [*big, "done"]


async def test_without_a_supported_subprotocol_the_handshake_completes_without_one() -> None:
    async def close_if_unsupported(ws: WebSocket) -> None:
        assert ws.subprotocol is None
        await ws.close(1002, "no supported subprotocol")

    async with serve(close_if_unsupported) as server, connect(server, subprotocols=("ocpp2.0.1",)) as client:
        assert client.subprotocol is None
        with pytest.raises(trio_websocket.ConnectionClosed) as info:
            await client.get_message()
        assert close_of(info.value)[0] == 1002


def upgrade_request(path: str, *extra: str) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: ocpp1.6", *extra,
    ]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# Raw HTTP rather than trio-websocket: its ConnectionRejected path leaves the client socket unclosed.
@pytest.mark.parametrize(
    ("path", "status", "header"),
    [
        ("/elsewhere", b"404", None),
        ("/ocpp/CP2", b"401", b'\r\nWWW-Authenticate: Basic realm="csms"\r\n'),
    ],
)
async def test_rejects_before_upgrading(path: str, status: bytes, header: bytes | None) -> None:
    async with serve(echo) as server:
        response = await raw_exchange(server, upgrade_request(path))
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == status
    assert header is None or header in head + b"\r\n"
    assert body in (b"unknown path\n", b"credentials required\n")


async def test_accepts_basic_credentials() -> None:
    headers = [(b"Authorization", b"Basic Q1AyOnNlY3JldA==")]
    async with serve(echo) as server, connect(server, "/ocpp/CP2", extra_headers=headers) as client:
        assert client.subprotocol == "ocpp1.6"


async def raw_exchange(server: Server, request: bytes) -> bytes:
    """Send raw bytes, return everything the server answers until it closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.send_all(request)
        received = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some():
                received += chunk
    return received


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /ocpp/CP1 HTTP/1.1\r\nHost: x\r\n\r\n", b"426"),
        (b"\x16\x03\x01 tls hello\r\n\r\n", b"400"),
        (b"GET /ocpp/CP1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", b"400"),
    ],
)
async def test_invalid_upgrades_get_an_http_error(request_bytes: bytes, status: bytes) -> None:
    async with serve(echo) as server:
        response = await raw_exchange(server, request_bytes)
    assert response.split(b" ")[1] == status
    assert not server.requests  # decide never ran


async def test_handshake_is_bounded_in_time() -> None:
    async with serve(echo, handshake_timeout_s=0.2) as server:
        assert await raw_exchange(server, b"GET /ocpp/CP1 HTTP/1.1\r\n") == b""


async def test_pings_both_ways() -> None:
    async def ping_while_reading(ws: WebSocket) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo, ws)
            server.results.append(await ws.ping(5))
            await trio.sleep_forever()

    async with serve(ping_while_reading) as server, connect(server) as client:
        await client.ping(b"client")  # answered by the server's reader
        await wait_for(lambda: bool(server.results))
    assert server.results == [True]


async def test_ping_times_out_when_nobody_reads_the_pong() -> None:
    async def ping_without_reading(ws: WebSocket) -> None:
        server.results.append(await ws.ping(0.2))

    async with serve(ping_without_reading) as server, connect(server):
        await wait_for(lambda: bool(server.results))
    assert server.results == [False]


async def test_too_large_a_message_closes_with_1009() -> None:
    async with serve(echo, max_frame_bytes=1024) as server, connect(server) as client:
        await client.send_message("x" * 1024)
        assert len(await client.get_message()) == 1024
        await client.send_message("x" * 1025)
        with pytest.raises(trio_websocket.ConnectionClosed) as info:
            await client.get_message()
        assert close_of(info.value)[0] == 1009
    assert server.closed[0].code == 1009


async def test_binary_frames_close_with_1003() -> None:
    async with serve(echo) as server, connect(server) as client:
        await client.send_message(b"\x00\x01")
        with pytest.raises(trio_websocket.ConnectionClosed) as info:
            await client.get_message()
        assert close_of(info.value)[0] == 1003


async def test_close_from_another_task_is_seen_by_the_client() -> None:
    async def shut_down(ws: WebSocket) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo, ws)
            await trio.sleep(0.05)  # let the reader block in receive_some
            await ws.close(1001, "shutting down")
            nursery.cancel_scope.cancel()

    async with serve(shut_down) as server, connect(server) as client:
        with pytest.raises(trio_websocket.ConnectionClosed) as info:
            await client.get_message()
        assert close_of(info.value) == (1001, "shutting down")


@pytest.mark.parametrize(
    ("code", "reason", "seen"),
    [(1011, "é" * 100, (1011, "é" * 61)), (999, "bad code", (1011, "bad code"))],
)
async def test_close_fixes_what_a_close_frame_cannot_carry(code: int, reason: str, seen: tuple[int, str]) -> None:
    async def close(ws: WebSocket) -> None:
        await ws.close(code, reason)

    async with serve(close) as server, connect(server) as client:
        with pytest.raises(trio_websocket.ConnectionClosed) as info:
            await client.get_message()
        assert close_of(info.value) == seen


@asynccontextmanager
async def raw_client(server: Server) -> AsyncIterator[tuple[trio.SocketStream, ClientProtocol]]:
    """Handshake with the `websockets` sans-I/O client; the test then drives the protocol by hand."""
    protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{server.port}/ocpp/CP1"), subprotocols=["ocpp1.6"])  # type: ignore[list-item]
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        protocol.send_request(protocol.connect())
        await stream.send_all(b"".join(protocol.data_to_send()))
        while not protocol.events_received():
            protocol.receive_data(await stream.receive_some())
        yield stream, protocol


async def test_fragmented_text_is_reassembled() -> None:
    async with serve(echo) as server, raw_client(server) as (stream, protocol):
        protocol.send_text(b"[2,", fin=False)
        protocol.send_continuation(b'"1",', fin=False)
        protocol.send_continuation(b'"Heartbeat",{}]', fin=True)
        protocol.send_ping(b"between")
        await stream.send_all(b"".join(protocol.data_to_send()))
        frames: list[Frame] = []
        with trio.fail_after(5):
            while len(frames) < 2:
                protocol.receive_data(await stream.receive_some())
                frames += [event for event in protocol.events_received() if isinstance(event, Frame)]
    assert {(frame.opcode.name, bytes(frame.data)) for frame in frames} == {
        ("PONG", b"between"),
        ("TEXT", b'[2,"1","Heartbeat",{}]'),
    }


async def test_peer_vanishing_raises_connection_closed() -> None:
    async with serve(echo) as server:
        async with raw_client(server):
            pass  # TCP close without a close frame
        await wait_for(lambda: bool(server.closed))
    assert server.closed[0].code == 1006


async def test_operations_after_close_raise_and_close_is_idempotent() -> None:
    async def close_twice(ws: WebSocket) -> None:
        await ws.close(1000)
        await ws.close(1011)
        for operation in (ws.receive_text(), ws.send_text("x"), ws.ping(1)):
            with pytest.raises(ConnectionClosed):
                await operation
        server.results.append("done")

    async with serve(close_twice) as server, connect(server) as client:
        with pytest.raises(trio_websocket.ConnectionClosed):
            await client.get_message()
        await wait_for(lambda: bool(server.results))
