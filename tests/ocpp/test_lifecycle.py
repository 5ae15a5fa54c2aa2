"""Connection lifecycle: graceful shutdown closes chargers with 1001, dead peers are pinged out, TLS works."""

from __future__ import annotations

import ssl

import trio
import trio_websocket
import trustme

from csms.store.stations import add_station as store_add_station
from tests.conftest import node_settings, running_node

UPGRADE = (b"GET /ocpp/LIFE-1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
           b"Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n")


async def _raw_connect(port: int) -> trio.SocketStream:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(UPGRADE)
    with trio.fail_after(5):
        assert b" 101 " in await stream.receive_some(4096)
    return stream


async def test_shutdown_closes_chargers_with_going_away(db_url: str) -> None:
    async with running_node(node_settings(db_url)) as node:
        await node.db.run(store_add_station, "LIFE-1", None)
        stream = await _raw_connect(node.ready.ocpp_port)
        node.csms.stop()
        with trio.fail_after(5):
            frame = await stream.receive_some(4096)
        assert frame[0] == 0x88
        assert int.from_bytes(frame[2:4], "big") == 1001
        await stream.aclose()


async def test_peer_that_never_answers_pings_is_closed(db_url: str) -> None:
    async with running_node(node_settings(db_url, ping_interval_s=0.2)) as node:
        await node.db.run(store_add_station, "LIFE-1", None)
        stream = await _raw_connect(node.ready.ocpp_port)
        data = b""
        with trio.fail_after(5):
            while b"\x88" not in data:  # pings (0x89) arrive first, then the close frame
                chunk = await stream.receive_some(4096)
                assert chunk
                data += chunk
        assert data[0] == 0x89
        close = data[data.index(b"\x88"):]
        assert int.from_bytes(close[2:4], "big") == 1011
        assert node.csms.gateway is not None
        with trio.fail_after(5):
            while node.csms.gateway.connected_ids:
                await trio.sleep(0.02)
        await stream.aclose()


async def test_quiet_peer_that_answers_pings_stays_connected(db_url: str) -> None:
    async with running_node(node_settings(db_url, ping_interval_s=0.2)) as node:
        await node.db.run(store_add_station, "LIFE-2", None)
        url = f"ws://127.0.0.1:{node.ready.ocpp_port}/ocpp/LIFE-2"
        async with trio_websocket.open_websocket_url(url, subprotocols=["ocpp1.6"]) as ws:
            # trio-websocket answers pings while it reads; nothing else is sent for 5 ping intervals.
            with trio.move_on_after(1.0):
                await ws.get_message()
            assert node.csms.gateway is not None and node.csms.gateway.connected_ids == ["LIFE-2"]
            await ws.send_message('[2,"q1","Heartbeat",{}]')
            with trio.fail_after(5):
                assert '"q1"' in await ws.get_message()


async def test_tls_security_profile_2(db_url: str, tmp_path: object) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    from pathlib import Path

    folder = Path(str(tmp_path))
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    settings = node_settings(db_url, ocpp_tls_cert=str(folder / "cert.pem"), ocpp_tls_key=str(folder / "key.pem"))
    async with running_node(settings) as node:
        await node.db.run(store_add_station, "LIFE-1", None)
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
        url = f"wss://127.0.0.1:{node.ready.ocpp_port}/ocpp/LIFE-1"
        async with trio_websocket.open_websocket_url(url, ssl_context=client_ctx, subprotocols=["ocpp1.6"]) as ws:
            await ws.send_message('[2,"t1","Heartbeat",{}]')
            with trio.fail_after(5):
                assert (await ws.get_message()).startswith('[3,"t1"')
