"""``sessionUpdated`` from the state a session event carries: no read per change, never an older state.

End to end with a simulated charger driving a session started from the app, and at the level of the
schema and the events hub, where crafted events show which path an update took.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx
import trio

from csms.api.context import ApiContext, ApiServices, Principal
from csms.api.schema import schema
from csms.config import Settings
from csms.services.events import EventHub
from tests.api.test_subscriptions import _meter, _session
from tests.api.ws_client import WsClient
from tests.charging.support import START, STOP, credit, gql, setup_station
from tests.conftest import TEST_SIGNER, charger, make_user

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from csms.store.db import Database
    from tests.conftest import Node

LIVE = """subscription L($id: ID!) {
  sessionUpdated(id: $id) { id status energyWh powerW soc costTyiyn chargedTyiyn stopReason updatedAt }
}"""


async def test_a_driver_watches_a_session_from_start_to_bill(node: Node) -> None:
    await setup_station(node, "STATE-1", per_kwh=1500)
    user_id, token = await make_user(node.db)
    await credit(node.db, user_id, 100_000)
    async with charger(node, "STATE-1", connectors=1, meter_interval_s=0) as cp, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.ready.http_port}", timeout=15) as client:
        started = await gql(client, START, {"input": {"stationId": "STATE-1", "connectorId": 1,
                                                      "limitTyiyn": 50_000}}, token=token)
        session_id = started["data"]["startCharging"]["id"]
        connector = cp.connectors[1]
        with trio.fail_after(5):
            while not connector.charging:
                await trio.sleep(0.01)
        async with WsClient.connect(node.graphql_url.replace("http://", "ws://")) as ws:
            await ws.init({"token": token})
            await ws.subscribe("live", LIVE, {"id": session_id})
            first = (await ws.next_data("live"))["sessionUpdated"]
            assert (first["status"], first["energyWh"]) == ("charging", 0)
            start_wh = int(connector.session_start_wh)
            seen: list[dict[str, Any]] = []
            expected: list[tuple[int, int, int, str]] = []
            for step in (1000, 2500):
                connector.meter_wh = start_wh + step
                payload = cp.meter_values(1, "Sample.Periodic")
                energy = int(float(payload["meterValue"][0]["sampledValue"][0]["value"])) - start_wh
                expected.append((energy, -(-energy * 1500 // 1000), 11000, "charging"))
                await cp.tx_call("MeterValues", payload)
                update = (await ws.next_data("live"))["sessionUpdated"]
                while update["energyWh"] < energy:  # an update per change, never a stale one in between
                    update = (await ws.next_data("live"))["sessionUpdated"]
                seen.append(update)
            assert [(u["energyWh"], u["costTyiyn"], u["powerW"], u["status"]) for u in seen] == expected
            assert expected[0][0] >= 1000 and expected[1][0] >= 2500
            assert seen[0]["updatedAt"] < seen[1]["updatedAt"] and seen[1]["soc"] is not None
            await gql(client, STOP, {"id": session_id}, token=token)
            last = seen[-1]
            with trio.fail_after(5):
                while last["status"] != "completed":
                    last = (await ws.next_data("live"))["sessionUpdated"]
            assert last["energyWh"] >= 2500 and last["chargedTyiyn"] == last["costTyiyn"]
            assert last["stopReason"] is not None


async def _stream(hub: EventHub, db: Database, user_id: str, session_id: str) -> AsyncGenerator[Any, None]:
    services = ApiServices(db=db, settings=Settings(), signer=TEST_SIGNER, events=hub)
    context = ApiContext(db=db, principal=Principal.from_user(user_id, "driver"), services=services)
    stream: AsyncGenerator[Any, None] = await schema.subscribe(
        "subscription S($id: ID!) { sessionUpdated(id: $id) { energyWh costTyiyn status } }", {"id": session_id},
        context_value=context)
    return stream


def _event(session_id: str, version: int, energy_wh: int, **state: Any) -> dict[str, Any]:
    return {"session_id": session_id, "state": {
        "version": version, "status": "charging", "updated_at": "2026-11-26T12:00:00+00:00", "energy_wh": energy_wh,
        "cost_tyiyn": energy_wh * 3 // 2, "transaction_id": 7, "power_w": None, "soc": None, "charged_tyiyn": None,
        "stop_reason": None, "failure_reason": None, "started_at": None, "ended_at": None, **state}}


async def test_newer_states_are_taken_from_the_event_older_ones_are_read_again(db: Database) -> None:
    user_id, _ = await make_user(db)
    session_id = await db.run(_session, user_id, None)
    hub = EventHub(None)  # fed by publish(), so the events can say what the database does not
    stream = await _stream(hub, db, user_id, session_id)
    assert (await stream.__anext__()).data == {"sessionUpdated": {"energyWh": 0, "costTyiyn": 0,
                                                                   "status": "charging"}}
    now_us = int(time.time() * 1e6) + 60_000_000  # later than the read above (same clock, on this host)
    # The event's state, not the database's (which still says 0): no read was made.
    hub.publish("session", _event(session_id, now_us, 4000))
    assert (await stream.__anext__()).data == {"sessionUpdated": {"energyWh": 4000, "costTyiyn": 6000,
                                                                   "status": "charging"}}
    # A state not newer than what the subscriber has may be older than it: the session is read instead.
    await db.run(_meter, session_id, 5000, 7500)
    hub.publish("session", _event(session_id, now_us, 9999))
    assert (await stream.__anext__()).data == {"sessionUpdated": {"energyWh": 5000, "costTyiyn": 7500,
                                                                   "status": "charging"}}
    # A malformed state is read too (now 6000 in the database).
    await db.run(_meter, session_id, 6000, 9000)
    hub.publish("session", _event(session_id, now_us + 1_000_000_000, 1, cost_tyiyn="lots"))
    assert (await stream.__anext__()).data["sessionUpdated"]["energyWh"] == 6000
    await stream.aclose()
