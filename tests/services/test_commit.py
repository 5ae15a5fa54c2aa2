"""Group commit: many writers share transactions; one bad write fails alone."""

from __future__ import annotations

import pytest
import trio

from csms.services.commit import CommitError, GroupCommitter
from csms.store.db import Conn, Database


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
