"""Two csms processes on one database hear every event, yet each notification is sent once: the process
that claims it in ``push_notifications`` sends it, and only one process runs the station-offline job."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import trio

from tests.charging.support import STOP, credit, gql, rows, setup_station, started, wait_session
from tests.conftest import Node, charger, make_user, running_node
from tests.ledger_check import assert_ledger_clean
from tests.push.conftest import push_settings
from tests.push.support import messages, notes, subscribe, wait_messages
from tests.push.test_push_owner import wait_connected

if TYPE_CHECKING:
    from pathlib import Path

    from simulators.push_service import PushService


async def settled(nodes: list[Node]) -> None:
    """Wait until both processes considered the same events and no new ones arrive for 0.3 s."""
    last: list[int] = []
    with trio.fail_after(10):
        while True:
            counts = []
            for node in nodes:
                assert node.csms.push is not None
                counts.append(node.csms.push.producer.handled)
            if len(set(counts)) == 1 and counts == last:
                return
            last = counts
            await trio.sleep(0.3)


async def test_two_processes_send_each_notification_once(db_url: str, vapid_key_file: Path,
                                                         push_service: PushService) -> None:
    async with running_node(push_settings(db_url, vapid_key_file)) as a, \
            running_node(push_settings(db_url, vapid_key_file)) as b, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{a.ready.http_port}", timeout=15) as api_a, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{b.ready.http_port}", timeout=15) as api_b:
        owner_id, owner_token = await make_user(a.db, "owner")
        await setup_station(a, "TWO-1", owner_id=owner_id)
        driver_id, token = await make_user(a.db)
        await credit(a.db, driver_id, 100_000)
        phone = await subscribe(api_b, token, push_service)
        laptop = await subscribe(api_a, owner_token, push_service)
        async with charger(a, "TWO-1", meter_interval_s=0.05):
            await wait_connected(a, "TWO-1", True)
            s = await started(api_a, token, "TWO-1", 1, limit=20_000)
            await wait_session(api_b, token, s["id"], status="charging", energy_above=5)
            await gql(api_b, STOP, {"id": s["id"]}, token=token)
            await wait_session(api_a, token, s["id"], status="completed")
        await wait_connected(a, "TWO-1", False)
        # Both processes run the presence job; one tells the owner.
        await wait_messages(push_service, laptop["id"], 1, kind="station_offline")
        await wait_messages(push_service, phone["id"], 2)
        await settled([a, b])
        await trio.sleep(0.5)  # several presence rounds on both nodes
        assert [n["kind"] for n in notes(await messages(push_service, phone["id"]))] == [
            "charging_started", "charging_completed"]
        assert [n["kind"] for n in notes(await messages(push_service, laptop["id"]))] == [
            "owner_session_started", "owner_session_completed", "station_offline"]
        [(claims, distinct)] = await rows(a.db, "SELECT count(*), count(DISTINCT (user_id, event_key)) "
                                                "FROM push_notifications")
        assert claims == distinct == 5
        sent = 0
        for node in (a, b):
            assert node.csms.push is not None
            sent += node.csms.push.sender.sent
        assert sent == 5
        await assert_ledger_clean(a.db)
