"""Live subscriptions end to end: real chargers, real PostgreSQL notifications, a real socket."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
import trio

from csms.store import ledger
from csms.store.events import CHANNEL, notify
from csms.store.users import create_user
from csms.supervisor import Csms, Ready
from tests.api.ws_client import LiveApi, WsClient, error_codes, on_the_map, start_live_api, wait_until
from tests.conftest import add_station, charger, make_user, node_settings
from tests.ledger_check import assert_ledger_clean

if TYPE_CHECKING:
    from csms.store.db import Conn, Database
    from tests.conftest import Node

STATUS = """subscription Status($id: String!) {
  stationStatusChanged(stationId: $id) { stationId connectorId status errorCode updatedAt }
}"""
CONNECTION = "subscription C($id: String!) { stationConnectionChanged(stationId: $id) { connected } }"
SESSION = """subscription S($id: ID!) {
  sessionUpdated(id: $id) { id status energyWh costTyiyn holdTyiyn }
}"""
BALANCE = "subscription { balanceChanged { availableTyiyn heldTyiyn } }"


@pytest.fixture
async def api(db: Database, nursery: trio.Nursery) -> LiveApi:
    return await start_live_api(db, nursery)


# -- stations ------------------------------------------------------------------------------------


async def test_station_status_from_a_simulated_charger(node: Node) -> None:
    await add_station(node, "LIVE-1")
    await node.db.run(on_the_map, "LIVE-1")
    ws_url = node.graphql_url.replace("http://", "ws://")
    async with WsClient.connect(ws_url) as ws:
        await ws.init()  # anonymous: station status is public
        await ws.subscribe("s", STATUS, {"id": "LIVE-1"})
        async with charger(node, "LIVE-1", connectors=2) as cp:
            seen: dict[int, str] = {}
            while seen != {0: "Available", 1: "Available", 2: "Available"}:
                change = (await ws.next_data("s"))["stationStatusChanged"]
                assert change["stationId"] == "LIVE-1" and change["errorCode"] == "NoError"
                seen[change["connectorId"]] = change["status"]
            await cp.send_status(2, "Faulted")
            change = (await ws.next_data("s"))["stationStatusChanged"]
            assert (change["connectorId"], change["status"]) == (2, "Faulted")


async def test_station_status_starts_with_the_current_state(api: LiveApi, db: Database) -> None:
    await db.run(_station_with_connectors, "LIVE-2", {1: "Charging", 2: "Available"})
    async with WsClient.connect(api.ws_url) as ws:
        await ws.init()
        await ws.subscribe("s", STATUS, {"id": "LIVE-2"})
        first = [(await ws.next_data("s"))["stationStatusChanged"] for _ in range(2)]
        assert [(c["connectorId"], c["status"]) for c in first] == [(1, "Charging"), (2, "Available")]


async def test_station_connection_changes(node: Node) -> None:
    await add_station(node, "LIVE-3")
    await node.db.run(on_the_map, "LIVE-3")
    assert node.csms.stations is not None
    ws_url = node.graphql_url.replace("http://", "ws://")
    async with WsClient.connect(ws_url) as ws:
        await ws.init()
        await ws.subscribe("c", CONNECTION, {"id": "LIVE-3"})
        assert await ws.next_data("c") == {"stationConnectionChanged": {"connected": False}}
        async with charger(node, "LIVE-3"):
            await node.csms.stations.flush_presence()  # normally every second
            assert await ws.next_data("c") == {"stationConnectionChanged": {"connected": True}}
        # The gateway notes the closed socket asynchronously: flush until the change is written.
        with trio.fail_after(5):
            while True:
                await node.csms.stations.flush_presence()
                with trio.move_on_after(0.1):
                    assert await ws.next_data("c") == {"stationConnectionChanged": {"connected": False}}
                    break


@pytest.mark.parametrize("query", [STATUS, CONNECTION])
async def test_unknown_station_is_not_found(api: LiveApi, query: str) -> None:
    async with WsClient.connect(api.ws_url) as ws:
        await ws.init()
        await ws.subscribe("s", query, {"id": "NOPE"})
        message = await ws.receive_json()
        assert message["type"] == "error" and error_codes(message) == ["NOT_FOUND"]
        await ws.subscribe("t", query, {"id": "X" * 49})
        assert error_codes(await ws.receive_json()) == ["BAD_USER_INPUT"]
    await wait_until(lambda: api.hub.subscriber_count == 0)


# -- charging sessions ---------------------------------------------------------------------------


def _station_with_connectors(conn: Conn, station_id: str, statuses: dict[int, str]) -> None:
    conn.execute("INSERT INTO stations (id) VALUES (%s)", (station_id,))
    on_the_map(conn, station_id)
    for connector, value in statuses.items():
        conn.execute("INSERT INTO connectors (station_id, connector_id, status) VALUES (%s, %s, %s)",
                     (station_id, connector, value))


def _session(conn: Conn, user_id: str, owner_id: str | None) -> str:
    """A charging session holding 5,000 tyiyn of the driver's 20,000 (as the session service would)."""
    conn.execute("INSERT INTO locations (name, owner_id) VALUES ('Depot', %s)", (owner_id,))
    conn.execute("INSERT INTO stations (id, location_id) SELECT 'SESS-1', id FROM locations WHERE name = 'Depot'")
    wallet = ledger.user_account(conn, user_id)
    revenue = ledger.system_account(conn, ledger.OPERATOR_REVENUE)
    ledger.transfer(conn, "topup-1", ledger.system_account(conn, ledger.ADJUSTMENTS), wallet, 20_000)
    ledger.hold(conn, "hold-1", wallet, revenue, 5_000)
    row = conn.execute(
        """INSERT INTO charging_sessions (user_id, station_id, connector_id, status, id_tag, limit_tyiyn,
                                          price_per_kwh_tyiyn, session_fee_tyiyn, hold_tyiyn, hold_transfer_id,
                                          revenue_account_id)
           VALUES (%s, 'SESS-1', 1, 'charging', 'APP-1', 5000, 1500, 0, 5000, 'hold-1', %s) RETURNING id::text""",
        (user_id, revenue),
    ).fetchone()
    assert row is not None
    notify(conn, "balance", user_id=user_id)
    return str(row[0])


def _meter(conn: Conn, session_id: str, energy_wh: int, cost: int) -> None:
    row = conn.execute(
        """UPDATE charging_sessions SET energy_wh = %s, cost_tyiyn = %s, updated_at = clock_timestamp()
           WHERE id = %s RETURNING user_id::text, station_id, status""",
        (energy_wh, cost, session_id),
    ).fetchone()
    assert row is not None
    notify(conn, "session", session_id=session_id, user_id=row[0], station_id=row[1], status=row[2])


async def test_session_updated_follows_the_session(api: LiveApi, db: Database) -> None:
    user_id, access = await make_user(db)
    session_id = await db.run(_session, user_id, None)
    async with WsClient.connect(api.ws_url) as ws:
        await ws.init({"Authorization": f"Bearer {access}"})
        await ws.subscribe("s", SESSION, {"id": session_id.upper()})
        first = (await ws.next_data("s"))["sessionUpdated"]
        assert first == {"id": session_id, "status": "charging", "energyWh": 0, "costTyiyn": 0, "holdTyiyn": 5000}
        for energy in (1000, 2000):
            await db.run(_meter, session_id, energy, energy * 1500 // 1000)
            update = (await ws.next_data("s"))["sessionUpdated"]
            assert (update["energyWh"], update["costTyiyn"]) == (energy, energy * 3 // 2)
    await assert_ledger_clean(db)


async def test_session_access(api: LiveApi, db: Database, token: str) -> None:
    driver_id, _ = await make_user(db)
    owner_id, owner_access = await make_user(db, "owner")
    _, stranger_access = await make_user(db)
    _, other_owner_access = await make_user(db, "owner")
    session_id = await db.run(_session, driver_id, owner_id)
    cases: list[tuple[dict[str, Any], str, list[str] | None]] = [
        ({}, session_id, ["UNAUTHENTICATED"]),
        ({"token": stranger_access}, session_id, ["FORBIDDEN"]),
        ({"token": other_owner_access}, session_id, ["FORBIDDEN"]),
        ({"token": stranger_access}, "not-a-uuid", ["NOT_FOUND"]),
        ({"token": stranger_access}, "00000000-0000-4000-8000-000000000000", ["NOT_FOUND"]),
        ({"token": owner_access}, session_id, None),
        ({"Authorization": f"Bearer {token}"}, session_id, None),  # admin API key
    ]
    for payload, sid, codes in cases:
        async with WsClient.connect(api.ws_url) as ws:
            await ws.init(payload)
            await ws.subscribe("s", SESSION, {"id": sid})
            message = await ws.receive_json()
            if codes is None:
                assert message["type"] == "next" and message["payload"]["data"]["sessionUpdated"]["id"] == session_id
            else:
                assert message["type"] == "error" and error_codes(message) == codes, (payload, sid, message)
    await wait_until(lambda: api.hub.subscriber_count == 0)
    await assert_ledger_clean(db)


# -- balances ------------------------------------------------------------------------------------


async def test_balance_changed(api: LiveApi, db: Database) -> None:
    user_id, access = await make_user(db)
    async with WsClient.connect(api.ws_url) as ws:
        await ws.init({"token": access})
        await ws.subscribe("b", BALANCE)
        assert await ws.next_data("b") == {"balanceChanged": {"availableTyiyn": 0, "heldTyiyn": 0}}
        await db.run(_session, user_id, None)  # tops up 20,000, holds 5,000, publishes one balance event
        assert await ws.next_data("b") == {"balanceChanged": {"availableTyiyn": 15_000, "heldTyiyn": 5_000}}

        def settle(conn: Conn) -> None:
            # Billed as the session engine would: 1,000 Wh at 15 som per kWh.
            ledger.post(conn, "post-1", "hold-1", 1_500)
            conn.execute("""UPDATE charging_sessions SET status = 'completed', energy_wh = 1000, cost_tyiyn = 1500,
                                charged_tyiyn = 1500 WHERE hold_transfer_id = 'hold-1'""")
            notify(conn, "balance", user_id=user_id)

        await db.run(settle)
        assert await ws.next_data("b") == {"balanceChanged": {"availableTyiyn": 18_500, "heldTyiyn": 0}}
    await assert_ledger_clean(db)


async def test_balance_needs_a_user(api: LiveApi, token: str) -> None:
    for payload, code in [({}, "UNAUTHENTICATED"), ({"Authorization": f"Bearer {token}"}, "FORBIDDEN")]:
        async with WsClient.connect(api.ws_url) as ws:
            await ws.init(payload)
            await ws.subscribe("b", BALANCE)
            assert error_codes(await ws.receive_json()) == [code]


async def test_balance_of_one_user_is_not_sent_to_another(api: LiveApi, db: Database) -> None:
    _, access_a = await make_user(db)
    async with WsClient.connect(api.ws_url) as ws:
        await ws.init({"token": access_a})
        await ws.subscribe("b", BALANCE)
        await ws.next_data("b")
        user_b = (await db.run(lambda conn: create_user(conn, email="b@example.test"))).id
        received = api.hub.received
        await db.run(_session, user_b, None)
        await wait_until(lambda: api.hub.received > received)
        with trio.move_on_after(0.2) as quiet:
            pytest.fail(f"user A was sent {await ws.receive_json()}")
        assert quiet.cancelled_caught
    await assert_ledger_clean(db)


async def test_lost_listen_connection_resends_what_changed(api: LiveApi, db: Database) -> None:
    await db.run(_station_with_connectors, "GAP-1", {1: "Available", 2: "Available"})
    user_id, access = await make_user(db)
    session_id = await db.run(_session, user_id, None)
    async with WsClient.connect(api.ws_url) as ws:
        await ws.init({"token": access})
        await ws.subscribe("st", STATUS, {"id": "GAP-1"})
        await ws.subscribe("se", SESSION, {"id": session_id})
        first = [await ws.receive_json() for _ in range(3)]
        assert sorted(m["id"] for m in first) == ["se", "st", "st"]

        def changed_unnoticed(conn: Conn) -> None:
            # Changes whose notifications are lost (as if sent while the LISTEN connection was down).
            conn.execute("UPDATE connectors SET status = 'Faulted' WHERE station_id = 'GAP-1' AND connector_id = 2")
            conn.execute("UPDATE charging_sessions SET energy_wh = 777 WHERE id = %s", (session_id,))

        await db.run(changed_unnoticed)
        pid = api.hub.listener_pid
        await db.run(lambda conn: conn.execute("SELECT pg_terminate_backend(%s)", (pid,)))
        resent = {m["id"]: m["payload"]["data"] for m in [await ws.receive_json() for _ in range(2)]}
        # Only what differs from what the client has: connector 2, and the session.
        assert resent["st"]["stationStatusChanged"]["connectorId"] == 2
        assert resent["st"]["stationStatusChanged"]["status"] == "Faulted"
        assert resent["se"]["sessionUpdated"]["energyWh"] == 777
        assert api.hub.reconnects == 1
    await assert_ledger_clean(db)


# -- fan-out ---------------------------------------------------------------------------------------


async def test_slow_subscriber_does_not_hold_up_others(api: LiveApi, db: Database) -> None:
    await db.run(_station_with_connectors, "FLOOD-1", {1: "Available"})
    async with WsClient.connect(api.ws_url) as slow, WsClient.connect(api.ws_url) as fast:
        for ws in (slow, fast):
            await ws.init()
            await ws.subscribe("s", STATUS, {"id": "FLOOD-1"})
            await ws.next_data("s")
        # 5,000 status changes committed at once (payloads differ, so PostgreSQL sends each one).
        await db.run(lambda conn: conn.execute(
            """SELECT pg_notify(%s, json_build_object('topic', 'station_status', 'station_id', 'FLOOD-1',
                   'connector_id', 1, 'status', 'S' || i, 'error_code', 'NoError', 'updated_at', now())::text)
               FROM generate_series(1, 5000) AS i""", (CHANNEL,)))
        # The fast client reaches the last state while the slow one has not read a single message.
        with trio.fail_after(10):
            while (await fast.next_data("s"))["stationStatusChanged"]["status"] != "S5000":
                pass
        received = 0
        while True:
            received += 1
            if (await slow.next_data("s"))["stationStatusChanged"]["status"] == "S5000":
                break
        # Everything a slow reader missed was coalesced into the latest state, not queued without bound.
        assert received < 5000


# -- a standard client ---------------------------------------------------------------------------


async def test_gql_websockets_transport(api: LiveApi, db: Database, token: str) -> None:
    """The ``gql`` package's graphql-transport-ws client (asyncio, in a thread) works against us."""
    await db.run(_station_with_connectors, "GQL-1", {1: "Available"})

    async def client() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        from gql import Client, GraphQLRequest
        from gql.transport.websockets import WebsocketsTransport

        transport = WebsocketsTransport(url=api.ws_url, init_payload={"Authorization": f"Bearer {token}"},
                                        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL])
        async with Client(transport=transport) as session:
            stations = await session.execute(GraphQLRequest("{ stations { id } }"))
            changes = []
            request = GraphQLRequest(STATUS, variable_values={"id": "GQL-1"})
            async for result in session.subscribe(request):
                changes.append(result["stationStatusChanged"])
                if len(changes) == 2:
                    break
            return stations, changes

    async with trio.open_nursery() as nursery:
        outcome: list[Any] = []

        async def run_client() -> None:
            outcome.append(await trio.to_thread.run_sync(asyncio.run, client()))

        nursery.start_soon(run_client)
        await wait_until(lambda: api.hub.subscriber_count == 1, timeout=10)
        await db.run(lambda conn: notify(conn, "station_status", station_id="GQL-1", connector_id=1,
                                         status="Preparing", error_code="NoError",
                                         updated_at="2026-11-26T12:00:00+00:00"))
    stations, changes = outcome[0]
    assert stations == {"stations": [{"id": "GQL-1"}]}
    assert [(c["connectorId"], c["status"]) for c in changes] == [(1, "Available"), (1, "Preparing")]
    assert changes[1]["updatedAt"] == "2026-11-26T12:00:00+00:00"


# -- shutdown --------------------------------------------------------------------------------------


async def test_stopping_csms_closes_subscriptions_without_waiting_for_the_grace(db_url: str) -> None:
    settings = node_settings(db_url, shutdown_grace_s=10.0)
    async with trio.open_nursery() as nursery:
        csms = Csms(settings)
        ready: Ready = await nursery.start(csms.run)
        await csms.add_station("BYE-1")
        assert csms.db is not None
        await csms.db.run(on_the_map, "BYE-1")
        async with WsClient.connect(f"ws://127.0.0.1:{ready.http_port}/graphql") as ws:
            await ws.init()
            await ws.subscribe("c", CONNECTION, {"id": "BYE-1"})
            await ws.next_data("c")
            stopped_at = trio.current_time()
            csms.stop()
            assert await ws.wait_closed() == (1001, "Server shutting down")
    # The open socket did not hold the API for its graceful-stop deadline.
    assert trio.current_time() - stopped_at < 5
