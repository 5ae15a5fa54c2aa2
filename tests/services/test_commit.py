"""Group commit: many writers share transactions; one bad write fails alone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import trio

from csms.services.commit import CommitError, GroupCommitter
from csms.store.db import Conn, Database
from csms.store.native import APPLICATION_NAME
from csms.store.transactions import MeterSamples


async def test_concurrent_writes_share_batches_and_a_bad_one_fails_alone(db: Database) -> None:
    committer = GroupCommitter(db, max_batch=100, max_wait_s=0.005)
    results: dict[int, object] = {}

    async def write(i: int) -> None:
        def insert(conn: Conn) -> int:
            if i == 13:
                conn.execute("INSERT INTO stations (id) VALUES ('bad id with spaces')")  # CHECK fails
            conn.execute("INSERT INTO stations (id) VALUES (%s)", (f"GC-{i}",))
            return i

        try:
            results[i] = await committer.submit(insert)
        except CommitError as exc:
            results[i] = exc

    async with trio.open_nursery() as writers:
        await writers.start(committer.run)
        async with trio.open_nursery() as nursery:
            for i in range(40):
                nursery.start_soon(write, i)
        committer.close()
    assert isinstance(results.pop(13), CommitError)
    assert results == {i: i for i in range(40) if i != 13}
    assert committer.batches < 40  # writes were grouped
    count = await db.run(lambda c: c.execute("SELECT count(*) FROM stations").fetchone())
    assert count == (39,)


async def test_submit_after_close_is_refused(db: Database) -> None:
    committer = GroupCommitter(db)
    committer.close()
    with pytest.raises(trio.ClosedResourceError):
        await committer.submit(lambda conn: None)


def _samples(station_id: str, i: int) -> MeterSamples:
    return MeterSamples(station_id, 1, None, [{"timestamp": f"2026-01-01T00:00:{i:02d}Z", "sampledValue": [
        {"value": str(i * 10)}, {"value": "7000", "measurand": "Power.Active.Import", "unit": "W"}]}],
        datetime.now(UTC), "MeterValues")


async def test_samples_alone_are_written_directly_and_survive_a_lost_connection(db: Database) -> None:
    await db.run(lambda c: c.execute("INSERT INTO stations (id) VALUES ('GC-N')"))
    committer = GroupCommitter(db, max_batch=100, max_wait_s=0.002)
    async with trio.open_nursery() as writers:
        await writers.start(committer.run)
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(committer.submit_rows, [_samples("GC-N", i)])
        # The direct connections die; the next writes reconnect or fall back to a worker thread.
        await db.run(lambda c: c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                          "WHERE application_name = %s", (APPLICATION_NAME,)))
        async with trio.open_nursery() as nursery:
            for i in range(20, 40):
                nursery.start_soon(committer.submit_rows, [_samples("GC-N", i)])
        # A resend after a lost answer stores nothing twice.
        await committer.submit_rows([_samples("GC-N", 3)])
        assert committer.replayed_batches == 1
        committer.close()
    count = await db.run(lambda c: c.execute("SELECT count(*) FROM meter_values WHERE station_id = 'GC-N'").fetchone())
    assert count == (80,)
    # The writers closed their connections on the way out (backends exit a moment later).
    with trio.fail_after(5):
        while await db.run(lambda c: c.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                                               (APPLICATION_NAME,)).fetchone()) != (0,):
            await trio.sleep(0.05)


async def test_a_batch_holding_a_stored_value_is_written_again_skipping_only_that(db: Database) -> None:
    await db.run(lambda c: c.execute("INSERT INTO stations (id) VALUES ('GC-R'), ('GC-S')"))
    committer = GroupCommitter(db, max_batch=100, max_wait_s=0.05)  # the two writes share one batch
    async with trio.open_nursery() as writers:
        await writers.start(committer.run)
        await committer.submit_rows([_samples("GC-R", 1)])
        assert committer.replayed_batches == 0  # new values take the statement without ON CONFLICT
        async with trio.open_nursery() as nursery:
            nursery.start_soon(committer.submit_rows, [_samples("GC-R", 1)])  # a replay
            nursery.start_soon(committer.submit_rows, [_samples("GC-S", 1)])  # new, in the same batch
        assert committer.replayed_batches == 1
        # The next batches skip stored values without trying the plain INSERT first.
        await committer.submit_rows([_samples("GC-S", 1)])
        await committer.submit_rows([_samples("GC-S", 2)])
        assert committer.replayed_batches == 1
        committer.close()
    rows = await db.run(lambda c: c.execute(
        "SELECT station_id, count(*) FROM meter_values GROUP BY station_id ORDER BY station_id").fetchall())
    assert rows == [("GC-R", 2), ("GC-S", 4)]
