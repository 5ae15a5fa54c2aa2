"""The events hub's topic-wide subscriptions (what push consumes): every event of a topic, in order and
never coalesced, next to the coalescing per-object subscriptions; bounded, dropping and counting when full;
fed by real PostgreSQL notifications."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from csms.services.events import EventHub
from csms.store.events import notify

if TYPE_CHECKING:
    from csms.store.db import Conn, Database


def session(session_id: str, status: str) -> dict[str, object]:
    return {"topic": "session", "session_id": session_id, "user_id": "U", "station_id": "CP", "status": status}


async def test_every_event_of_the_topic_in_order_without_coalescing() -> None:
    hub = EventHub(None)
    with hub.subscribe_topics("session", "invoice") as everything, hub.subscribe(("session", "S1")) as latest:
        for status in ("requested", "accepted", "charging", "charging", "completed"):
            assert hub.publish("session", session("S1", status)) == 2
        hub.publish("session", session("S2", "requested"))
        hub.publish("invoice", {"invoice_id": "I1", "user_id": "U", "status": "paid"})
        hub.publish("balance", {"user_id": "U"})  # not a watched topic
        seen = [(e.topic, e.key, e.data.get("status")) for e in [await everything.receive() for _ in range(7)]]
        assert seen == [("session", "S1", "requested"), ("session", "S1", "accepted"), ("session", "S1", "charging"),
                        ("session", "S1", "charging"), ("session", "S1", "completed"),
                        ("session", "S2", "requested"), ("invoice", "I1", "paid")]
        assert everything.pending == 0
        # The per-object subscriber kept only the latest state of S1.
        assert latest.pending == 1 and (await latest.receive()).data["status"] == "completed"
    assert hub.subscriber_count == 0


async def test_a_full_topic_buffer_drops_and_counts_without_blocking() -> None:
    hub = EventHub(None)
    with hub.subscribe_topics("balance", capacity=3) as sub:
        for i in range(10):
            hub.publish("balance", {"user_id": f"U{i}"})
        assert (sub.pending, sub.dropped) == (3, 7)
        assert [(await sub.receive()).key for _ in range(3)] == ["U0", "U1", "U2"]
        hub.resync_all()
        resync = await sub.receive()
        assert resync.resync and resync.topic == "balance" and resync.key == ""


async def test_topic_subscribers_hear_real_notifications(db: Database) -> None:
    hub = EventHub(db.dsn)
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        with hub.subscribe_topics("invoice") as sub:

            def write(conn: Conn) -> None:
                notify(conn, "invoice", invoice_id="I9", user_id="U9", status="paid", amount_tyiyn=12_345)

            await db.run(write)
            with trio.fail_after(5):
                event = await sub.receive()
        assert (event.topic, event.key, dict(event.data)) == (
            "invoice", "I9", {"topic": "invoice", "invoice_id": "I9", "user_id": "U9", "status": "paid",
                              "amount_tyiyn": 12_345})
        nursery.cancel_scope.cancel()
