"""The OCPP journal: buffered writes, append-only, retention."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
import trio

from csms.services.journal import Journal
from csms.store.db import Conn, Database


async def test_journal_writes_prunes_and_refuses_updates(db: Database) -> None:
    journal = Journal(db, flush_s=0.01)
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        for i in range(40):
            journal.record("J-1", "out", 2, "Reset", str(i), f'[2,"{i}","Reset",{{"type":"Soft"}}]')
        received = datetime.now(UTC)
        for i in range(10):  # a CALL and its answer: one row, two frames
            journal.record_exchange("J-1", 2, "Heartbeat", f"h{i}", f'[2,"h{i}","Heartbeat",{{}}]', received, 3,
                                    f'[3,"h{i}",{{}}]')
        journal.close()
    assert journal.written == 60
    row = await db.run(lambda c: c.execute(
        "SELECT direction, message_type, action, payload, received_at, answer_type, answer_payload, "
        "answered_at >= received_at FROM ocpp_journal WHERE unique_id = 'h3'").fetchone())
    assert row == ("in", 2, "Heartbeat", '[2,"h3","Heartbeat",{}]', received, 3, '[3,"h3",{}]', True)

    def age_half(conn: Conn) -> None:
        conn.execute("INSERT INTO ocpp_journal (station_id, direction, payload, received_at) "
                     "SELECT 'J-1', 'in', 'old', now() - interval '40 days' FROM generate_series(1, 7)")

    await db.run(age_half)
    assert await journal.prune(30) == 7
    assert await db.run(lambda c: c.execute("SELECT count(*) FROM ocpp_journal").fetchone()) == (50,)  # rows
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        await db.run(lambda c: c.execute("UPDATE ocpp_journal SET payload = 'x'"))


async def test_full_buffer_drops_and_counts(db: Database) -> None:
    journal = Journal(db, capacity=5)
    for i in range(8):
        journal.record("J-2", "out", 3, None, str(i), "[3]")
    journal.record_exchange("J-2", 2, "Heartbeat", "9", '[2,"9","Heartbeat",{}]', datetime.now(UTC), 3, "[3]")
    assert journal.dropped == 5  # frames: an exchange is two


async def test_a_frame_with_a_nul_character_does_not_cost_its_batch(db: Database) -> None:
    # A WebSocket text frame may carry U+0000 (it is not JSON then, but it is journaled like any bad
    # frame). PostgreSQL text cannot hold it; the other frames of the batch must still be written.
    journal = Journal(db, flush_s=0.01)
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        journal.record("J-3", "in", 2, "Heartbeat", "1", '[2,"1","Heartbeat",{}]')
        journal.record("J-3", "in", None, None, "-1", '[2,"2","Data\x00Transfer",{}]')
        journal.record("J-3", "in", 2, "Heartbeat", "3\x00", '[2,"3","Heartbeat",{}]')
        journal.close()
    assert (journal.written, journal.dropped) == (3, 0)
    rows = await db.run(lambda c: c.execute(
        "SELECT unique_id, payload FROM ocpp_journal WHERE station_id = 'J-3' ORDER BY id").fetchall())
    assert rows[1][1] == '[2,"2","Data\\u0000Transfer",{}]'
    assert rows[2][0] == "3\\u0000"
