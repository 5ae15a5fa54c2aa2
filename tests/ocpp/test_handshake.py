"""OCPP-J handshake against a running node: unknown stations, Basic auth, subprotocol negotiation."""

from __future__ import annotations

import base64

import trio
import trio_websocket

from tests.conftest import Node, add_station, charger, node_settings, running_node


async def _http_status(node: Node, path: str, headers: dict[str, str] | None = None,
                       protocols: str = "ocpp1.6", read_close: bool = False) -> tuple[int, bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", node.ready.ocpp_port)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: {protocols}\r\n{extra}\r\n"
    )
    async with stream:
        await stream.send_all(request.encode())
        data = b""
        with trio.fail_after(5):
            while b"\r\n\r\n" not in data or (read_close and len(data.partition(b"\r\n\r\n")[2]) < 4):
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_unknown_station_gets_404(node: Node) -> None:
    status, _ = await _http_status(node, "/ocpp/NOPE-1")
    assert status == 404


async def test_wrong_path_gets_404(node: Node) -> None:
    await add_station(node, "CP-1")
    status, _ = await _http_status(node, "/elsewhere/CP-1")
    assert status == 404


async def test_accept_unknown_mode_registers_station(db_url: str) -> None:
    async with running_node(node_settings(db_url, accept_unknown_stations=True)) as node:
        async with charger(node, "NEW-7") as cp:
            assert cp.boot_response is not None
            assert cp.boot_response["status"] == "Accepted"
        row = await node.db.run(lambda c: c.execute("SELECT vendor FROM stations WHERE id = 'NEW-7'").fetchone())
        assert row == ("csms-sim",)


async def test_password_required_and_checked(node: Node) -> None:
    await add_station(node, "SEC-1", password="s3cret-pass")
    assert (await _http_status(node, "/ocpp/SEC-1"))[0] == 401
    status, raw = await _http_status(node, "/ocpp/SEC-1", _basic("SEC-1", "wrong"))
    assert status == 401
    assert b"WWW-Authenticate: Basic" in raw
    # The username must be the station's own identity.
    assert (await _http_status(node, "/ocpp/SEC-1", _basic("OTHER", "s3cret-pass")))[0] == 401
    assert (await _http_status(node, "/ocpp/SEC-1", _basic("SEC-1", "s3cret-pass")))[0] == 101
    async with charger(node, "SEC-1", password="s3cret-pass") as cp:
        assert cp.boot_response is not None


async def test_subprotocol_negotiation_picks_ocpp16(node: Node) -> None:
    await add_station(node, "CP-2")
    async with trio_websocket.open_websocket_url(
        node.ocpp_url + "CP-2", subprotocols=["ocpp0.1", "ocpp1.6"]
    ) as ws:
        assert ws.subprotocol == "ocpp1.6"


async def test_unsupported_subprotocol_handshake_then_close(node: Node) -> None:
    # Raw socket: the handshake must complete *without* Sec-WebSocket-Protocol, then the server closes.
    await add_station(node, "CP-3")
    status, raw = await _http_status(node, "/ocpp/CP-3", protocols="ocpp2.0.1", read_close=True)
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert status == 101
    assert b"sec-websocket-protocol" not in head.lower()
    # An unmasked close frame from the server: 0x88, length, then the 2-byte code.
    assert rest[0] == 0x88
    assert int.from_bytes(rest[2:4], "big") == 1002


async def test_second_connection_replaces_first(node: Node) -> None:
    await add_station(node, "CP-4")
    first = await trio.open_tcp_stream("127.0.0.1", node.ready.ocpp_port)
    async with first:
        await first.send_all(
            b"GET /ocpp/CP-4 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n")
        with trio.fail_after(5):
            assert b" 101 " in await first.receive_some(4096)
        async with trio_websocket.open_websocket_url(node.ocpp_url + "CP-4", subprotocols=["ocpp1.6"]) as second:
            # The first connection gets a close frame (code 1000) from the server.
            with trio.fail_after(5):
                frame = await first.receive_some(4096)
            assert frame[0] == 0x88
            assert int.from_bytes(frame[2:4], "big") == 1000
            await second.send_message('[2,"1","Heartbeat",{}]')
            with trio.fail_after(5):
                answer = await second.get_message()
            assert answer.startswith('[3,"1",{"currentTime"')
            assert node.csms.gateway is not None
            assert node.csms.gateway.connected_ids == ["CP-4"]
