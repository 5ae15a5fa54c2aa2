"""Last-seen times: buffered in memory, written at most every LAST_SEEN_RESOLUTION_S per station while it
is connected, and exactly once it disconnects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from csms.services import stations as stations_module
from csms.services.commit import GroupCommitter
from csms.services.stations import StationService
from csms.store.db import Conn, Database
from tests.conftest import Node, add_station, charger


def _last_seen(conn: Conn, station_id: str) -> datetime | None:
    row = conn.execute("SELECT last_seen FROM stations WHERE id = %s", (station_id,)).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


async def test_last_seen_resolution_and_exact_time_on_disconnect(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    service = StationService(db, GroupCommitter(db), node_id="presence-test")
    await service.add_station("PRES-1", None)
    # Both of the service's clocks, moved by hand (the wall clock starts a minute ago).
    clock = [1000.0]
    start = datetime.now(UTC) - timedelta(minutes=1)
    monkeypatch.setattr(stations_module, "monotonic", lambda: clock[0])
    monkeypatch.setattr(stations_module, "utcnow", lambda: start + timedelta(seconds=clock[0] - 1000.0))

    service.connected("PRES-1")
    await service.flush_presence()
    first = await db.run(_last_seen, "PRES-1")
    assert first == start

    # Heard from again within the resolution: nothing new to write.
    clock[0] += stations_module.LAST_SEEN_RESOLUTION_S / 2
    service.touch("PRES-1")
    await service.flush_presence()
    assert await db.run(_last_seen, "PRES-1") == first

    # Past the resolution: written again.
    clock[0] += stations_module.LAST_SEEN_RESOLUTION_S
    service.touch("PRES-1")
    await service.flush_presence()
    second = await db.run(_last_seen, "PRES-1")
    assert second == start + timedelta(seconds=1.5 * stations_module.LAST_SEEN_RESOLUTION_S)

    # Heard from once more, then silent for 40 s before the socket closes: the stored time is the
    # last message's, not the disconnect's.
    clock[0] += 1.0
    service.touch("PRES-1")
    clock[0] += 40.0
    service.disconnected("PRES-1")
    await service.flush_presence()
    assert await db.run(_last_seen, "PRES-1") == second + timedelta(seconds=1)


async def test_reconnected_station_is_written_at_once(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    service = StationService(db, GroupCommitter(db), node_id="presence-test")
    await service.add_station("PRES-2", None)
    monkeypatch.setattr(stations_module, "monotonic", lambda: 500.0)
    service.connected("PRES-2")
    service.disconnected("PRES-2")
    await service.flush_presence()
    await db.run(lambda conn: conn.execute("UPDATE stations SET last_seen = NULL WHERE id = 'PRES-2'"))
    service.connected("PRES-2")  # same instant, but a new connection: queued again
    await service.flush_presence()
    assert await db.run(_last_seen, "PRES-2") is not None


async def test_any_charger_message_counts_as_seen(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    # A charger that only sends MeterValues (heartbeats are minutes apart) is still seen.
    clock = [1000.0]
    monkeypatch.setattr(stations_module, "monotonic", lambda: clock[0])
    await add_station(node, "PRES-3")
    service = node.csms.stations
    assert service is not None
    async with charger(node, "PRES-3") as cp:
        await service.flush_presence()
        await node.db.run(lambda conn: conn.execute("UPDATE stations SET last_seen = NULL WHERE id = 'PRES-3'"))
        clock[0] += stations_module.LAST_SEEN_RESOLUTION_S
        await cp.call("DataTransfer", {"vendorId": "nobody"})
        await service.flush_presence()
        assert await node.db.run(_last_seen, "PRES-3") is not None
