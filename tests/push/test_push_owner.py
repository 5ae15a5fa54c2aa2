"""An owner hears when one of their stations has had no connection for CSMS_STATION_OFFLINE_AFTER, and
when it is back; stations that stay connected, were never seen, or belong to nobody stay quiet."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from tests.charging.support import rows, setup_station
from tests.conftest import add_station, charger, make_user
from tests.push.support import messages, notes, subscribe, wait_messages

if TYPE_CHECKING:
    import httpx

    from simulators.push_service import PushService
    from tests.conftest import Node


async def wait_connected(node: Node, station_id: str, connected: bool) -> None:
    """Flush the node's presence until ``charger_connections`` shows the station (dis)connected."""
    with trio.fail_after(10):
        while True:
            assert node.csms.stations is not None
            await node.csms.stations.flush_presence()
            found = await rows(node.db, "SELECT 1 FROM charger_connections WHERE station_id = %s", station_id)
            if bool(found) == connected:
                return
            await trio.sleep(0.05)


async def test_station_offline_then_back_online(pnode: Node, api: httpx.AsyncClient,
                                                push_service: PushService) -> None:
    owner_id, owner_token = await make_user(pnode.db, "owner")
    await setup_station(pnode, "OFF-1", owner_id=owner_id)
    await setup_station(pnode, "STAY-1", owner_id=owner_id)
    await setup_station(pnode, "NEVER-1", owner_id=owner_id)  # registered, never connected
    await add_station(pnode, "NOBODY-1")  # no location, no owner
    laptop = await subscribe(api, owner_token, push_service)
    async with charger(pnode, "STAY-1"), charger(pnode, "NOBODY-1"):
        async with charger(pnode, "OFF-1"):
            await wait_connected(pnode, "OFF-1", True)
            await wait_connected(pnode, "STAY-1", True)
        await wait_connected(pnode, "OFF-1", False)
        [offline] = await wait_messages(push_service, laptop["id"], 1)
        assert offline["json"] == {"kind": "station_offline", "title": "Station offline",
                                   "body": "OFF-1 has had no connection for 1 s.", "url": "/stations/OFF-1",
                                   "tag": "station-OFF-1"}
        assert offline["urgency"] == "high"
        # Told once CSMS_STATION_OFFLINE_AFTER (1 s) had passed since the job found it disconnected.
        [(waited,)] = await rows(pnode.db, "SELECT extract(epoch FROM notified_at - noticed_at)::float "
                                           "FROM push_station_state WHERE station_id = 'OFF-1'")
        assert 1.0 <= waited < 5.0
        # Told once per outage, however many rounds the job makes meanwhile.
        await trio.sleep(0.5)
        assert len(await messages(push_service, laptop["id"])) == 1
        async with charger(pnode, "OFF-1"):
            await wait_connected(pnode, "OFF-1", True)
            received = await wait_messages(push_service, laptop["id"], 2)
    assert notes(received)[1] == {"kind": "station_online", "title": "Station back online",
                                  "body": "OFF-1 is connected again.", "url": "/stations/OFF-1",
                                  "tag": "station-OFF-1"}
    assert received[1]["topic"] == received[0]["topic"]
    assert [n["body"] for n in notes(await messages(push_service, laptop["id"]))] == [
        "OFF-1 has had no connection for 1 s.", "OFF-1 is connected again."]
