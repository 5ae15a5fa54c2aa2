"""Drivers and owners get the pushes of a charging session, decrypted by the push service exactly as a
browser would see them: started, completed with energy and cost, revenue for the owner, failures with
their reason, charger faults, low balance once per crossing, and payment confirmed."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import trio

from csms.services.tariffs import Price, energy_cost
from csms.store.events import notify
from tests.charging.support import STOP, credit, gql, setup_station, started, wait_session
from tests.conftest import charger, make_user
from tests.ledger_check import assert_ledger_clean
from tests.push.conftest import SUBJECT
from tests.push.support import kwh_text, messages, notes, som_text, subscribe, wait_messages

if TYPE_CHECKING:
    import httpx

    from csms.store.db import Conn, Database
    from simulators.push_service import PushService
    from tests.conftest import Node


async def publish(db: Database, topic: str, **fields: object) -> None:
    """Publish an event the way the services do: notify inside a committed transaction."""

    def write(conn: Conn) -> None:
        notify(conn, topic, **fields)

    await db.run(write)


async def test_driver_and_owner_see_start_and_completion(pnode: Node, api: httpx.AsyncClient,
                                                         push_service: PushService) -> None:
    owner_id, owner_token = await make_user(pnode.db, "owner")
    await setup_station(pnode, "PUSH-1", per_kwh=1234, fee=150, owner_id=owner_id)
    driver_id, token = await make_user(pnode.db)
    await credit(pnode.db, driver_id, 500_000)
    phone = await subscribe(api, token, push_service, "driver phone")
    owner_laptop = await subscribe(api, owner_token, push_service, "owner laptop")
    async with charger(pnode, "PUSH-1", power_w=360_000, meter_interval_s=0.05):
        s = await started(api, token, "PUSH-1", 1, limit=200_000)
        [first] = await wait_messages(push_service, phone["id"], 1)
        assert first["json"] == {"kind": "charging_started", "title": "Charging started",
                                 "body": "PUSH-1, connector 1: charging up to 2,000.00 som.",
                                 "url": f"/sessions/{s['id']}", "tag": f"session-{s['id']}"}
        await wait_session(api, token, s["id"], status="charging", energy_above=20)
        await gql(api, STOP, {"id": s["id"]}, token=token)
        done = await wait_session(api, token, s["id"], status="completed")
    received = await wait_messages(push_service, phone["id"], 2)
    energy, charged = done["energyWh"], done["chargedTyiyn"]
    assert charged == energy_cost(energy, Price(1234, 150)) > 0
    assert notes(received) == [first["json"], {
        "kind": "charging_completed", "title": "Charging complete",
        "body": f"{kwh_text(energy)} at PUSH-1 cost {som_text(charged)}.",
        "url": f"/sessions/{s['id']}", "tag": f"session-{s['id']}"}]
    # What the push service saw on the wire: VAPID for its own origin with our subject, the default TTL,
    # and one Topic per session, so an undelivered "started" is replaced by "complete".
    for message in received:
        assert message["vapid"]["sub"] == SUBJECT
        assert message["vapid"]["aud"] == push_service.url
        assert (message["ttl"], message["urgency"]) == (86_400, "normal")
    assert received[0]["topic"] == received[1]["topic"]
    owner_notes = notes(await wait_messages(push_service, owner_laptop["id"], 2))
    assert owner_notes == [
        {"kind": "owner_session_started", "title": "New charging session",
         "body": "PUSH-1, connector 1 started charging.", "url": f"/sessions/{s['id']}",
         "tag": f"owner-session-{s['id']}"},
        {"kind": "owner_session_completed", "title": "Session completed",
         "body": f"PUSH-1: {kwh_text(energy)}, revenue {som_text(charged)}.", "url": f"/sessions/{s['id']}",
         "tag": f"owner-session-{s['id']}"},
    ]
    # Nothing more arrives: every MeterValues published another `charging` event, each one ignored.
    await trio.sleep(0.3)
    assert len(await messages(push_service, phone["id"])) == 2
    await assert_ledger_clean(pnode.db)


async def test_refused_start_is_a_failure_push_with_its_reason(pnode: Node, api: httpx.AsyncClient,
                                                               push_service: PushService) -> None:
    await setup_station(pnode, "PUSH-2")
    driver_id, token = await make_user(pnode.db)
    await credit(pnode.db, driver_id, 100_000)
    phone = await subscribe(api, token, push_service)
    async with charger(pnode, "PUSH-2", remote_start_mode="reject"):
        s = await started(api, token, "PUSH-2", 1, limit=50_000)
        assert s["status"] == "failed"
    [failed] = await wait_messages(push_service, phone["id"], 1)
    assert failed["json"] == {"kind": "charging_failed", "title": "Charging did not start",
                              "body": "PUSH-2 refused to start. Nothing was charged.",
                              "url": f"/sessions/{s['id']}", "tag": f"session-{s['id']}"}
    assert failed["urgency"] == "high"
    await assert_ledger_clean(pnode.db)


async def test_charger_fault_while_charging_reaches_the_driver(pnode: Node, api: httpx.AsyncClient,
                                                               push_service: PushService) -> None:
    await setup_station(pnode, "PUSH-3")
    driver_id, token = await make_user(pnode.db)
    await credit(pnode.db, driver_id, 100_000)
    phone = await subscribe(api, token, push_service)
    async with charger(pnode, "PUSH-3", meter_interval_s=0.05) as cp:
        s = await started(api, token, "PUSH-3", 1, limit=50_000)
        await wait_session(api, token, s["id"], status="charging")
        await cp.send_status(2, "Faulted")  # the other connector: not this driver's business
        await cp.send_status(1, "Faulted")
        fault = await wait_messages(push_service, phone["id"], 1, kind="charging_fault")
    assert notes(fault) == [{"kind": "charging_fault", "title": "Charger fault",
                             "body": "PUSH-3, connector 1 reported a fault.",
                             "url": f"/sessions/{s['id']}", "tag": f"session-{s['id']}"}]


async def test_low_balance_once_per_crossing(pnode: Node, api: httpx.AsyncClient, push_service: PushService) -> None:
    # Threshold 10,000 tyiyn (the default). 150 som, minus a 100 som hold, leaves 50 som available.
    await setup_station(pnode, "PUSH-4", per_kwh=100)
    driver_id, token = await make_user(pnode.db)
    await credit(pnode.db, driver_id, 15_000)
    phone = await subscribe(api, token, push_service)
    async with charger(pnode, "PUSH-4", power_w=36_000, meter_interval_s=0.05):
        s = await started(api, token, "PUSH-4", 1, limit=10_000)
        [low] = await wait_messages(push_service, phone["id"], 1, kind="low_balance")
        assert low["json"] == {"kind": "low_balance", "title": "Low balance",
                               "body": "50.00 som left in your wallet. Top up to keep charging.",
                               "url": "/wallet", "tag": "low-balance"}
        # Still low: more balance events change nothing. The payment event after them is a barrier:
        # events are planned in order, so once its push arrives the balance events were handled.
        for _ in range(3):
            await publish(pnode.db, "balance", user_id=driver_id)
        await publish(pnode.db, "invoice", invoice_id="inv-barrier", user_id=driver_id, status="paid")
        await wait_messages(push_service, phone["id"], 1, kind="payment_confirmed")
        assert len(await wait_messages(push_service, phone["id"], 1, kind="low_balance")) == 1
        await wait_session(api, token, s["id"], status="charging", energy_above=5)
        await gql(api, STOP, {"id": s["id"]}, token=token)
        done = await wait_session(api, token, s["id"], status="completed")
        # The hold is released: back above the threshold (a few tyiyn were spent).
        assert 15_000 - done["chargedTyiyn"] >= 10_000
        await publish(pnode.db, "invoice", invoice_id="inv-barrier-2", user_id=driver_id, status="paid")
        await wait_messages(push_service, phone["id"], 2, kind="payment_confirmed")
        # A second hold crosses again: a second push.
        s2 = await started(api, token, "PUSH-4", 2, limit=10_000)
        second = await wait_messages(push_service, phone["id"], 2, kind="low_balance")
        available = 15_000 - done["chargedTyiyn"] - 10_000
        assert second[1]["json"]["body"] == f"{som_text(available)} left in your wallet. Top up to keep charging."
        await gql(api, STOP, {"id": s2["id"]}, token=token)
        await wait_session(api, token, s2["id"], status="completed")
    await assert_ledger_clean(pnode.db)


async def test_payment_confirmed_from_the_invoice_event(pnode: Node, api: httpx.AsyncClient,
                                                        push_service: PushService) -> None:
    driver_id, token = await make_user(pnode.db)
    await credit(pnode.db, driver_id, 65_000)
    phone = await subscribe(api, token, push_service)
    invoice_id = str(uuid.uuid4())
    # Only `paid` notifies; the event arrives twice (two webhooks, two processes): one push.
    await publish(pnode.db, "invoice", invoice_id=invoice_id, user_id=driver_id, status="pending")
    await publish(pnode.db, "invoice", invoice_id=invoice_id, user_id=driver_id, status="paid", amount_tyiyn=50_000)
    await publish(pnode.db, "invoice", invoice_id=invoice_id, user_id=driver_id, status="paid", amount_tyiyn=50_000)
    # Without an amount the text still confirms it.
    other = str(uuid.uuid4())
    await publish(pnode.db, "invoice", invoice_id=other, user_id=driver_id, status="paid")
    received = await wait_messages(push_service, phone["id"], 2)
    assert notes(received) == [
        {"kind": "payment_confirmed", "title": "Payment confirmed", "body": "500.00 som added. Balance: 650.00 som.",
         "url": "/wallet", "tag": f"invoice-{invoice_id}"},
        {"kind": "payment_confirmed", "title": "Payment confirmed",
         "body": "Your top-up was credited. Balance: 650.00 som.", "url": "/wallet", "tag": f"invoice-{other}"},
    ]
    await trio.sleep(0.2)
    assert len(await messages(push_service, phone["id"])) == 2
