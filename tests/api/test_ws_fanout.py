"""Many subscribers of one change: one GraphQL execution and one JSON encoding, the same bytes for all."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
import trio.testing

from csms.api import ws_fanout
from csms.api.context import ApiContext, ApiServices, Principal
from csms.api.schema import schema
from csms.config import Settings
from csms.services.events import EventHub
from csms.store.events import notify
from tests.api.test_subscriptions import _meter, _session, _station_with_connectors
from tests.api.ws_client import LiveApi, WsClient, start_live_api, wait_until
from tests.conftest import TEST_SIGNER, make_user

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from csms.store.db import Conn, Database

SESSION = "subscription S($id: ID!) { sessionUpdated(id: $id) { id status energyWh costTyiyn } }"
SESSION_SMALL = "subscription T($id: ID!) { sessionUpdated(id: $id) { energyWh } }"


@pytest.fixture
async def api(db: Database, nursery: trio.Nursery) -> LiveApi:
    return await start_live_api(db, nursery)


async def _stream(hub: EventHub, db: Database, user_id: str, query: str, session_id: str,
                  direct: ws_fanout.DirectDelivery | None = None) -> AsyncGenerator[Any, None]:
    services = ApiServices(db=db, settings=Settings(), signer=TEST_SIGNER, events=hub)
    context = ApiContext(db=db, principal=Principal.from_user(user_id, "driver"), services=services,
                         extra={ws_fanout.DIRECT_DELIVERY: direct} if direct else {})
    stream: AsyncGenerator[Any, None] = await schema.subscribe(query, {"id": session_id}, context_value=context)
    return stream


async def test_subscribers_of_one_change_share_its_execution_and_encoding(db: Database) -> None:
    user_id, _ = await make_user(db)
    session_id = await db.run(_session, user_id, None)
    hub = EventHub(None)  # fed by publish(): the schema and the hub are real, only LISTEN is left out
    same = [await _stream(hub, db, user_id, SESSION, session_id) for _ in range(3)]
    other = await _stream(hub, db, user_id, SESSION_SMALL, session_id)
    for stream in [*same, other]:
        assert (await stream.__anext__()).data is not None  # the current state
    await db.run(_meter, session_id, 2000, 3000)
    hub.publish("session", {"session_id": session_id, "received_us": int(time.time() * 1e6)})
    results = [await stream.__anext__() for stream in same]
    small = await other.__anext__()

    assert results[0].data == {"sessionUpdated": {"id": session_id, "status": "charging", "energyWh": 2000,
                                                  "costTyiyn": 3000}}
    # The very same result object: the update was executed once for the three of them...
    assert results[0].data is results[1].data is results[2].data
    event = ws_fanout.shared_event(results[0])
    assert event is not None and event.received_at is not None
    # ...and encoded once: the messages differ only in their operation id.
    messages = [ws_fanout.next_message(f"op-{i}", r) for i, r in enumerate(results)]
    payloads = {json.dumps(json.loads(text)["payload"]) for text, _ in messages}
    assert len(payloads) == 1 and [json.loads(text)["id"] for text, _ in messages] == ["op-0", "op-1", "op-2"]
    assert all(stamp == event.received_at for _, stamp in messages)
    # Another document over the same event is executed on its own, with its own selection.
    assert small.data == {"sessionUpdated": {"energyWh": 2000}}
    assert ws_fanout.shared_event(small) is event and small.data is not results[0].data
    for stream in [*same, other]:
        await stream.aclose()


async def test_updates_go_straight_to_the_socket(db: Database) -> None:
    user_id, _ = await make_user(db)
    session_id = await db.run(_session, user_id, None)
    hub = EventHub(None)
    sent: list[str] = []

    async def send(text: str) -> None:
        sent.append(text)

    stream = await _stream(hub, db, user_id, SESSION, session_id, ws_fanout.DirectDelivery("op-7", send, hub.metrics))
    first = await stream.__anext__()  # the current state takes the usual way
    assert first.data["sessionUpdated"]["energyWh"] == 0 and sent == []
    async with trio.open_nursery() as nursery:
        # The result stream itself yields nothing more: updates bypass it.
        nursery.start_soon(stream.__anext__)
        await trio.testing.wait_all_tasks_blocked()
        await db.run(_meter, session_id, 1000, 1500)
        hub.publish("session", {"session_id": session_id, "received_us": int(time.time() * 1e6)})
        await wait_until(lambda: bool(sent))
        nursery.cancel_scope.cancel()
    assert [json.loads(text) for text in sent] == [{"id": "op-7", "type": "next", "payload": {"data": {
        "sessionUpdated": {"id": session_id, "status": "charging", "energyWh": 1000, "costTyiyn": 1500}}}}]
    assert hub.metrics.delivery.count == 1
    await stream.aclose()


async def test_a_result_with_errors_is_sent_as_is(db: Database) -> None:
    hub = EventHub(None)
    user_id, _ = await make_user(db)
    stream = await _stream(hub, db, user_id, SESSION, "00000000-0000-4000-8000-000000000000")
    result = await stream.__anext__()
    assert result.errors and ws_fanout.shared_event(result) is None
    await stream.aclose()


async def test_every_socket_gets_the_same_bytes_and_the_latency_is_recorded(api: LiveApi, db: Database) -> None:
    user_id, access = await make_user(db)
    session_id = await db.run(_session, user_id, None)
    clients = 20
    async with trio.open_nursery() as nursery:
        sockets: list[WsClient] = []

        async def connect(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            async with WsClient.connect(api.ws_url) as ws:
                sockets.append(ws)
                await ws.init({"token": access})
                await ws.subscribe(f"s{len(sockets)}", SESSION, {"id": session_id})
                await ws.receive_json()  # the current state
                task_status.started()
                await trio.sleep_forever()

        for _ in range(clients):
            await nursery.start(connect)
        received_us = int(time.time() * 1e6)

        def change(conn: Conn) -> None:
            row = conn.execute("UPDATE charging_sessions SET energy_wh = 4000, cost_tyiyn = 6000 WHERE id = %s "
                               "RETURNING user_id::text, station_id", (session_id,)).fetchone()
            assert row is not None
            notify(conn, "session", session_id=session_id, user_id=row[0], station_id=row[1], status="charging",
                   received_us=received_us)

        await db.run(change)
        messages = [json.loads(await ws.receive()) for ws in sockets]
        nursery.cancel_scope.cancel()
    assert {json.dumps(m["payload"]) for m in messages} == {json.dumps(
        {"data": {"sessionUpdated": {"id": session_id, "status": "charging", "energyWh": 4000, "costTyiyn": 6000}}},
    )}
    # One notification arrived stamped; each of the 20 sockets recorded its update's age once.
    metrics = api.hub.metrics
    await wait_until(lambda: metrics.delivery.count == clients)
    assert metrics.notify.count == 1
    assert 0 <= metrics.delivery.sum / clients < 5
    async with httpx.AsyncClient(base_url=api.url) as http:
        page = (await http.get("/metrics")).text
    assert f"csms_live_event_latency_seconds_count {clients}" in page
    assert "csms_live_notify_latency_seconds_count 1" in page


async def test_station_status_and_balance_updates_are_shared_too(db: Database) -> None:
    user_id, _ = await make_user(db)
    await db.run(_station_with_connectors, "FAN-1", {1: "Available"})
    hub = EventHub(None)
    services = ApiServices(db=db, settings=Settings(), signer=TEST_SIGNER, events=hub)
    context = ApiContext(db=db, principal=Principal.from_user(user_id, "driver"), services=services)
    status = "subscription { stationStatusChanged(stationId: \"FAN-1\") { connectorId status } }"
    balance = "subscription { balanceChanged { availableTyiyn heldTyiyn } }"
    streams = {name: [await schema.subscribe(query, context_value=context) for _ in range(2)]
               for name, query in (("status", status), ("balance", balance))}
    for stream in [*streams["status"], *streams["balance"]]:
        await stream.__anext__()  # the current state
    await db.run(_session, user_id, None)  # credits 20,000 and holds 5,000
    hub.publish("station_status", {"station_id": "FAN-1", "connector_id": 1, "status": "Charging",
                                   "error_code": "NoError", "updated_at": "2026-11-26T12:00:00+00:00"})
    hub.publish("balance", {"user_id": user_id})
    for name, expected in (("status", {"stationStatusChanged": {"connectorId": 1, "status": "Charging"}}),
                           ("balance", {"balanceChanged": {"availableTyiyn": 15_000, "heldTyiyn": 5_000}})):
        first, second = [await stream.__anext__() for stream in streams[name]]
        assert first.data == expected and first.data is second.data, name
        for stream in streams[name]:
            await stream.aclose()
