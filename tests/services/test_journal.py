"""The OCPP journal: buffered writes, append-only, retention."""

from __future__ import annotations

import psycopg
import pytest
import trio

from csms.services.journal import Journal
from csms.store.db import Conn, Database


async def test_journal_writes_prunes_and_refuses_updates(db: Database) -> None:
    journal = Journal(db, flush_s=0.01)
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        for i in range(50):
            journal.record("J-1", "in", 2, "Heartbeat", str(i), f'[2,"{i}","Heartbeat",{{}}]')
        journal.close()
    assert journal.written == 50

    def age_half(conn: Conn) -> None:
        conn.execute("INSERT INTO ocpp_journal (station_id, direction, payload, received_at) "
                     "SELECT 'J-1', 'in', 'old', now() - interval '40 days' FROM generate_series(1, 7)")

    await db.run(age_half)
    assert await journal.prune(30) == 7
    assert await db.run(lambda c: c.execute("SELECT count(*) FROM ocpp_journal").fetchone()) == (50,)
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        await db.run(lambda c: c.execute("UPDATE ocpp_journal SET payload = 'x'"))


async def test_full_buffer_drops_and_counts(db: Database) -> None:
    journal = Journal(db, capacity=5)
    for i in range(8):
        journal.record("J-2", "out", 3, None, str(i), "[3]")
    assert journal.dropped == 3
