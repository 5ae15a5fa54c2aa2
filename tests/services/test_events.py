"""The events hub: routing, coalescing buffers, shared reads, and the LISTEN loop on a real PostgreSQL."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import psycopg
import pytest
import trio

from csms.services.events import Event, EventHub
from csms.store.events import CHANNEL, notify

if TYPE_CHECKING:
    from csms.store.db import Conn, Database


def status(station: str, connector: int, value: str) -> dict[str, object]:
    return {"topic": "station_status", "station_id": station, "connector_id": connector, "status": value,
            "error_code": "NoError"}


async def test_events_reach_only_the_subscribers_of_their_object() -> None:
    hub = EventHub(None)
    with hub.subscribe(("station_status", "A")) as a, hub.subscribe(("station_status", "B")) as b, \
            hub.subscribe(("session", "A")) as other_topic:
        assert hub.publish("station_status", status("A", 1, "Charging")) == 1
        event = await a.receive()
        assert (event.topic, event.key, event.data["status"], event.resync) == ("station_status", "A", "Charging",
                                                                                 False)
        assert b.pending == 0 and other_topic.pending == 0
    assert hub.subscriber_count == 0


async def test_a_change_published_as_committed_is_delivered_once_whichever_path_comes_first() -> None:
    hub = EventHub(None)
    first = '{"topic": "session", "session_id": "S", "state": {"version": 1}}'
    second = '{"topic": "session", "session_id": "S", "state": {"version": 2}}'
    with hub.subscribe(("session", "S")) as sub, hub.subscribe_topics("session") as watcher:
        hub.publish_committed(first)  # the writer, right after its commit ...
        hub.notified(first)  # ... then its own NOTIFY: not delivered again
        hub.notified(second)  # the NOTIFY first this time ...
        hub.publish_committed(second)  # ... then the writer: not delivered again
        hub.notified('{"topic": "session", "session_id": "S", "state": {"version": 3}}')  # another process
        versions = [(await watcher.receive()).data["state"]["version"] for _ in range(3)]
        assert versions == [1, 2, 3] and watcher.pending == 0
        assert (await sub.receive()).data["state"]["version"] == 3  # coalesced: the latest
        assert sub.pending == 0
    assert hub.received == 3


async def test_unknown_topics_and_keyless_payloads_are_dropped() -> None:
    hub = EventHub(None)
    with hub.subscribe(("station_status", "A")) as sub:
        assert hub.publish("no_such_topic", {"station_id": "A"}) == 0
        assert hub.publish("station_status", {"status": "Charging"}) == 0
        assert sub.pending == 0


async def test_slow_subscriber_gets_latest_per_part_and_never_blocks() -> None:
    hub = EventHub(None, capacity=8)
    with hub.subscribe(("station_status", "A")) as slow, hub.subscribe(("station_status", "A")) as fast:
        seen: list[str] = []
        for i in range(10_000):
            # publish() is synchronous: it cannot wait for a subscriber, however slow.
            hub.publish("station_status", status("A", 1 + i % 2, f"s{i}"))
            seen.append((await fast.receive()).data["status"])
        assert seen == [f"s{i}" for i in range(10_000)]
        # The slow one kept only the latest status of each connector, oldest slot first.
        assert slow.pending == 2
        assert [(e.data["connector_id"], e.data["status"]) for e in [await slow.receive(), await slow.receive()]] \
            == [(1, "s9998"), (2, "s9999")]
        assert slow.coalesced == 9_998 and slow.overflows == 0


async def test_full_buffer_collapses_into_one_resync() -> None:
    hub = EventHub(None, capacity=3)
    with hub.subscribe(("station_status", "A")) as sub:
        for connector in range(1, 6):
            hub.publish("station_status", status("A", connector, "Faulted"))
        assert sub.overflows == 1
        first = await sub.receive()
        assert first.resync and first.key == "A" and first.data == {}
        # What came after the collapse is queued normally again.
        second = await sub.receive()
        assert (second.resync, second.data["connector_id"]) == (False, 5)
        assert sub.pending == 0


async def test_resync_supersedes_queued_events() -> None:
    hub = EventHub(None)
    with hub.subscribe(("session", "S")) as sub:
        hub.publish("session", {"session_id": "S", "status": "charging"})
        hub.resync_all()
        event = await sub.receive()
        assert event.resync and sub.pending == 0


async def test_receive_waits_for_the_next_event() -> None:
    hub = EventHub(None)
    got: list[Event] = []
    with hub.subscribe(("balance", "U")) as sub:
        async with trio.open_nursery() as nursery:
            async def consume() -> None:
                got.append(await sub.receive())

            nursery.start_soon(consume)
            await trio.sleep(0.01)
            assert got == []
            hub.publish("balance", {"user_id": "U"})
        assert [e.key for e in got] == ["U"]


async def test_shared_load_reads_once_for_concurrent_subscribers() -> None:
    hub = EventHub(None)
    calls = 0

    async def read() -> int:
        nonlocal calls
        calls += 1
        await trio.sleep(0.01)
        return calls

    results: list[int] = []
    async with trio.open_nursery() as nursery:
        for _ in range(100):
            nursery.start_soon(lambda: _append(results, hub.load("session", "S", 0, read)))
    assert calls == 1 and results == [1] * 100
    # A result that started before a newer event is not reused for it.
    hub.publish("session", {"session_id": "S"})
    assert await hub.load("session", "S", hub.seq, read) == 2
    # ... but it is for that event again, and other keys read on their own.
    assert await hub.load("session", "S", hub.seq, read) == 2
    assert await hub.load("session", "T", hub.seq, read) == 3


async def test_failed_shared_load_is_retried_by_each_waiter() -> None:
    hub = EventHub(None)
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        await trio.sleep(0.01)
        if attempts == 1:
            raise RuntimeError("database hiccup")
        return "ok"

    outcomes: list[str] = []

    async def one() -> None:
        try:
            outcomes.append(await hub.load("wallet", "U", 0, flaky))
        except RuntimeError:
            outcomes.append("failed")

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(one)
    assert sorted(outcomes) == ["failed", "ok", "ok"]


async def _append(results: list[int], awaitable: object) -> None:
    results.append(await awaitable)  # type: ignore[misc]


# -- the LISTEN loop on PostgreSQL ---------------------------------------------------------------


async def test_committed_notifications_arrive_rolled_back_ones_do_not(db: Database, nursery: trio.Nursery) -> None:
    hub: EventHub = await nursery.start(EventHub(db.dsn).run)
    with hub.subscribe(("balance", "U1")) as sub:

        def rolled_back(conn: Conn) -> None:
            notify(conn, "balance", user_id="U1", note="rolled back")
            raise ValueError("abort")

        with pytest.raises(ValueError, match="abort"):
            await db.run(rolled_back)
        await db.run(lambda conn: notify(conn, "balance", user_id="U1", note="committed"))
        with trio.fail_after(5):
            event = await sub.receive()
        assert event.data == {"topic": "balance", "user_id": "U1", "note": "committed"}
        await trio.sleep(0.05)
        assert sub.pending == 0


async def test_malformed_notifications_are_ignored(db: Database, nursery: trio.Nursery) -> None:
    hub: EventHub = await nursery.start(EventHub(db.dsn).run)
    with hub.subscribe(("balance", "U1")) as sub:

        def send(conn: Conn) -> None:
            for payload in ["not json", "[1]", '{"no": "topic"}']:
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
            notify(conn, "balance", user_id="U1")

        await db.run(send)
        with trio.fail_after(5):
            event = await sub.receive()
        assert event.key == "U1"
        assert hub.received == 4


async def test_lost_connection_reconnects_and_resyncs(db: Database, nursery: trio.Nursery) -> None:
    hub: EventHub = await nursery.start(EventHub(db.dsn, reconnect_min_s=0.01).run)
    with hub.subscribe(("session", "S1")) as sub:
        pid = hub.listener_pid
        assert pid is not None
        with psycopg.connect(db.dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with trio.fail_after(5):
            event = await sub.receive()
        # Notifications sent while nobody listened are lost: subscribers are told to reload.
        assert event.resync and event.key == "S1"
        assert hub.reconnects == 1 and hub.listener_pid not in (None, pid)
        await db.run(lambda conn: notify(conn, "session", session_id="S1", status="charging"))
        with trio.fail_after(5):
            event = await sub.receive()
        assert (event.resync, event.data["status"]) == (False, "charging")


async def test_stopping_is_set_when_the_loop_ends(db: Database) -> None:
    hub = EventHub(db.dsn)
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        assert not hub.stopping.is_set()
        nursery.cancel_scope.cancel()
    assert hub.stopping.is_set() and hub.listener_pid is None


async def test_age_of_stamped_events_on_arrival_is_measured(db: Database, nursery: trio.Nursery) -> None:
    hub: EventHub = await nursery.start(EventHub(db.dsn).run)
    sent_us = int(time.time() * 1_000_000)
    await db.run(lambda conn: notify(conn, "session", session_id="S1", status="charging", received_us=sent_us))
    await db.run(lambda conn: notify(conn, "session", session_id="S1", status="stopping"))  # not stamped
    with trio.fail_after(5):
        while hub.received < 2:
            await trio.sleep(0.01)
    # Only the stamped one is measured: from the stamp to its arrival here, through commit and LISTEN.
    assert hub.metrics.notify.count == 1
    assert 0 <= hub.metrics.notify.sum < time.time() - sent_us / 1_000_000 + 0.001
    page = "\n".join(hub.render_metrics())
    assert "csms_live_notify_latency_seconds_count 1" in page and "csms_events_received_total 2" in page


async def test_stop_callbacks_run_once_when_the_hub_stops_and_can_be_withdrawn() -> None:
    hub = EventHub(None)
    called: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        hub.on_stopping(lambda: called.append("kept"))
        forget = hub.on_stopping(lambda: called.append("withdrawn"))
        forget()
        assert called == []
        nursery.cancel_scope.cancel()
    assert hub.stopping.is_set()
    assert called == ["kept"]
    hub.on_stopping(lambda: called.append("late"))  # after the stop: at once
    assert called == ["kept", "late"]
