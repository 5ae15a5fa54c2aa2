"""The graphql-transport-ws server over a real socket: handshake, close codes, ping, operations."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio

from csms.api.app import create_app
from csms.api.context import ApiServices
from csms.api.server import serve_api
from csms.config import ConfigError, Settings
from csms.services.events import EventHub
from csms.store.db import open_database
from csms.store.events import notify
from tests.api.ws_client import LiveApi, WsClient, error_codes, on_the_map, start_live_api, wait_until
from tests.conftest import TEST_SIGNER, make_user

if TYPE_CHECKING:
    from csms.store.db import Conn, Database

STATUS = "subscription S($id: String!) { stationStatusChanged(stationId: $id) { connectorId status } }"


@pytest.fixture
async def api(db: Database, nursery: trio.Nursery) -> LiveApi:
    def seed(conn: Conn) -> None:
        conn.execute("INSERT INTO stations (id) VALUES ('WS-1')")
        conn.execute("INSERT INTO connectors (station_id, connector_id, status) VALUES ('WS-1', 1, 'Available')")
        on_the_map(conn, "WS-1")

    await db.run(seed)
    return await start_live_api(db, nursery, ws_init_timeout_s=0.3, ws_max_operations=3)


async def test_subprotocol_is_required(api: LiveApi) -> None:
    async with WsClient.connect(api.ws_url, subprotocols=[]) as ws:
        assert await ws.wait_closed() == (4406, "Subprotocol not acceptable")


async def test_chooses_graphql_transport_ws(api: LiveApi) -> None:
    async with WsClient.connect(api.ws_url, subprotocols=["graphql-ws", "graphql-transport-ws"]) as ws:
        assert ws.subprotocol == "graphql-transport-ws"
        await ws.init()


async def test_init_timeout(api: LiveApi) -> None:
    async with WsClient.connect(api.ws_url) as ws:
        start = trio.current_time()
        assert await ws.wait_closed() == (4408, "Connection initialisation timeout")
        assert trio.current_time() - start < 2


async def test_subscribe_before_ack_is_unauthorized(api: LiveApi) -> None:
    async with WsClient.connect(api.ws_url) as ws:
        await ws.subscribe("1", STATUS, {"id": "WS-1"})
        assert await ws.wait_closed() == (4401, "Unauthorized")


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("not json", "Invalid message: not JSON"),
        ("[1, 2]", "Invalid message: not an object"),
        ('{"type": "start", "id": "1"}', "Invalid message: unexpected type 'start'"),
        ('{"type": 5}', "Invalid message: 'type' must be a string"),
        ('{"type": "subscribe", "payload": {"query": "{ __typename }"}}',
         "Invalid message: 'id' must be a non-empty string"),
        ('{"type": "subscribe", "id": "1", "payload": {}}', "Invalid message: 'payload.query' must be a string"),
        ('{"type": "subscribe", "id": "1", "payload": {"query": "{ __typename }", "variables": [1]}}',
         "Invalid message: 'variables' must be an object"),
        (b"\x00binary", "Invalid message: binary frames are not supported"),
    ],
)
async def test_bad_message_closes_4400(api: LiveApi, frame: str | bytes, reason: str) -> None:
    async with WsClient.connect(api.ws_url) as ws:
        await ws.init()
        if isinstance(frame, bytes):
            await ws.send_binary(frame)
        else:
            await ws.send_text(frame)
        assert await ws.wait_closed() == (4400, reason)


async def test_bad_init_payload_closes_4400(api: LiveApi) -> None:
    async with WsClient.connect(api.ws_url) as ws:
        await ws.send_json({"type": "connection_init", "payload": {"token": 42}})
        assert await ws.wait_closed() == (4400, "Invalid message: 'token' must be a string")


async def test_second_init_closes_4429(api: LiveApi) -> None:
    async with WsClient.connect(api.ws_url) as ws:
        await ws.init()
        await ws.send_json({"type": "connection_init"})
        assert await ws.wait_closed() == (4429, "Too many initialisation requests")


async def test_ping_pong_before_and_after_ack(api: LiveApi) -> None:
    async with WsClient.connect(api.ws_url) as ws:
        await ws.send_json({"type": "ping"})
        assert await ws.receive_json() == {"type": "pong"}
        await ws.init()
        await ws.send_json({"type": "ping", "payload": {"t": 1}})
        assert await ws.receive_json() == {"type": "pong"}
        await ws.send_json({"type": "pong"})  # a client heartbeat: no answer
        await ws.send_json({"type": "ping"})
        assert await ws.receive_json() == {"type": "pong"}


@pytest.mark.parametrize(
    "payload",
    [{"Authorization": "Bearer csms_AAAAAAAA_" + "A" * 43}, {"token": "not-a-token"},
     {"authorization": "Basic dXNlcjpwYXNz"}],
)
async def test_bad_credential_closes_4403(api: LiveApi, payload: dict[str, str]) -> None:
    async with WsClient.connect(api.ws_url) as ws:
        await ws.send_json({"type": "connection_init", "payload": payload})
        assert await ws.wait_closed() == (4403, "Forbidden")


async def test_query_over_the_socket_with_api_key(api: LiveApi, token: str) -> None:
    async with WsClient.connect(api.ws_url) as ws:
        await ws.init({"Authorization": f"Bearer {token}"})
        await ws.subscribe("q", "{ stations { id connectors { status } } }")
        assert await ws.next_data("q") == {"stations": [{"id": "WS-1", "connectors": [{"status": "Available"}]}]}
        assert await ws.receive_json() == {"id": "q", "type": "complete"}


async def test_anonymous_query_gets_typed_error(api: LiveApi) -> None:
    async with WsClient.connect(api.ws_url) as ws:
        await ws.init()
        await ws.subscribe("q", "{ stations { id } }")
        message = await ws.receive_json()
        assert message["type"] == "error" and message["id"] == "q"
        assert error_codes(message) == ["UNAUTHENTICATED"]
        # The connection stays usable.
        await ws.subscribe("q", "{ __typename }")
        assert await ws.next_data("q") == {"__typename": "Query"}


async def test_invalid_document_is_an_error_message(api: LiveApi) -> None:
    async with WsClient.connect(api.ws_url) as ws:
        await ws.init()
        await ws.subscribe("1", "subscription { noSuchField }")
        message = await ws.receive_json()
        assert message["type"] == "error" and message["id"] == "1"
        assert "noSuchField" in message["payload"][0]["message"]


async def test_user_token_by_token_key(api: LiveApi, db: Database) -> None:
    _, access = await make_user(db)
    async with WsClient.connect(api.ws_url) as ws:
        await ws.init({"token": access})
        await ws.subscribe("b", "subscription { balanceChanged { availableTyiyn heldTyiyn } }")
        assert await ws.next_data("b") == {"balanceChanged": {"availableTyiyn": 0, "heldTyiyn": 0}}


async def test_expired_token_closes_4403(api: LiveApi, db: Database) -> None:
    user_id, _ = await make_user(db)
    # Expiry is whole seconds after a whole-second issue time: valid for 1 to 2 s from now.
    short = TEST_SIGNER.issue(user_id, "driver", ttl_s=2)
    async with WsClient.connect(api.ws_url) as ws:
        await ws.init({"Authorization": f"Bearer {short}"})
        assert await ws.wait_closed(timeout=6) == (4403, "Forbidden: the access token expired")


async def test_duplicate_id_closes_4409(api: LiveApi) -> None:
    async with WsClient.connect(api.ws_url) as ws:
        await ws.init()
        await ws.subscribe("s", STATUS, {"id": "WS-1"})
        assert await ws.next_data("s") == {"stationStatusChanged": {"connectorId": 1, "status": "Available"}}
        await ws.subscribe("s", STATUS, {"id": "WS-1"})
        assert await ws.wait_closed() == (4409, "Subscriber for s already exists")
    await wait_until(lambda: api.hub.subscriber_count == 0)


async def test_complete_cancels_the_operation(api: LiveApi, db: Database) -> None:
    async with WsClient.connect(api.ws_url) as ws:
        await ws.init()
        await ws.subscribe("s", STATUS, {"id": "WS-1"})
        await ws.next_data("s")
        assert api.hub.subscriber_count == 1
        await ws.send_json({"id": "s", "type": "complete"})
        await wait_until(lambda: api.hub.subscriber_count == 0)
        await db.run(notify, "station_status", station_id="WS-1", connector_id=1, status="Charging",
                     error_code="NoError")
        # Nothing more for "s": the next message is the answer to this ping.
        await ws.send_json({"type": "ping"})
        assert await ws.receive_json() == {"type": "pong"}
        # The id may be used again once completed.
        await ws.subscribe("s", STATUS, {"id": "WS-1"})
        assert await ws.next_data("s") == {"stationStatusChanged": {"connectorId": 1, "status": "Available"}}


async def test_operations_per_connection_are_limited(api: LiveApi) -> None:
    async with WsClient.connect(api.ws_url) as ws:
        await ws.init()
        for op in ("1", "2", "3"):
            await ws.subscribe(op, STATUS, {"id": "WS-1"})
            await ws.next_data(op)
        await ws.subscribe("4", STATUS, {"id": "WS-1"})
        message = await ws.receive_json()
        assert message["type"] == "error" and message["id"] == "4"
        assert error_codes(message) == ["TOO_MANY_OPERATIONS"]


async def test_events_service_stopping_closes_1001(db: Database, nursery: trio.Nursery) -> None:
    async with trio.open_nursery() as inner:
        api = await start_live_api(db, inner)
        async with WsClient.connect(api.ws_url) as ws:
            await ws.init()
            inner.cancel_scope.cancel()
            assert await ws.wait_closed() == (1001, "Server shutting down")


async def test_authentication_failure_inside_csms_closes_1011(db_url: str, nursery: trio.Nursery, token: str) -> None:
    async with open_database(db_url, size=1) as broken:
        await trio.to_thread.run_sync(broken.pool.close)  # the API key cannot be looked up
        settings = Settings(http_host="127.0.0.1", http_port=0, shutdown_grace_s=1.0)
        services = ApiServices(db=broken, settings=settings, signer=TEST_SIGNER, events=EventHub(None))
        binds = await nursery.start(serve_api, create_app(services), settings)
        async with WsClient.connect(binds[0].replace("http://", "ws://") + "/graphql") as ws:
            await ws.send_json({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
            assert await ws.wait_closed() == (1011, "Internal error")


def test_live_update_settings_from_env() -> None:
    settings = Settings.from_env({"CSMS_WS_INIT_TIMEOUT": "2.5", "CSMS_WS_MAX_OPERATIONS": "7", "CSMS_EVENTS_BUFFER": "9"})
    assert (settings.ws_init_timeout_s, settings.ws_max_operations, settings.events_buffer) == (2.5, 7, 9)
    defaults = Settings.from_env({})
    assert (defaults.ws_init_timeout_s, defaults.ws_max_operations, defaults.events_buffer) == (10.0, 100, 64)
    for name in ("CSMS_WS_INIT_TIMEOUT", "CSMS_WS_MAX_OPERATIONS", "CSMS_EVENTS_BUFFER"):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: "0"})
