"""The group committer's urgent lane: a write someone is watching live never waits behind the flood."""

from __future__ import annotations

import trio
import trio.testing

from csms.services.commit import GroupCommitter
from csms.store.db import Conn, Database


def _slow(conn: Conn) -> str:
    conn.execute("SELECT pg_sleep(0.5)")  # a big batch of ordinary meter values, say
    return "slow"


def _insert(station_id: str) -> object:
    def insert(conn: Conn) -> str:
        conn.execute("INSERT INTO stations (id) VALUES (%s)", (station_id,))
        return station_id

    return insert


async def test_urgent_write_commits_while_the_ordinary_lane_is_busy(db: Database) -> None:
    committer = GroupCommitter(db, writers=1, max_wait_s=0.001)
    done: dict[str, float] = {}

    async def submit(name: str, fn: object, urgent: bool = False) -> None:
        await committer.submit(fn, urgent=urgent)  # type: ignore[arg-type]
        done[name] = trio.current_time()

    async with trio.open_nursery() as writers:
        await writers.start(committer.run)
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(submit, "slow", _slow)
            await trio.sleep(0.05)  # the only ordinary writer is now inside pg_sleep
            nursery.start_soon(submit, "queued", _insert("ORDINARY-1"))
            nursery.start_soon(submit, "urgent", _insert("URGENT-1"), True)
        committer.close()
    # The urgent write did not wait for the ordinary writer; the ordinary one queued behind it did.
    assert done["urgent"] - start < 0.4 < done["queued"] - start
    assert done["urgent"] < done["slow"] <= done["queued"]
    rows = await db.run(lambda c: c.execute("SELECT id FROM stations ORDER BY id").fetchall())
    assert rows == [("ORDINARY-1",), ("URGENT-1",)]


async def test_close_drains_both_lanes(db: Database) -> None:
    committer = GroupCommitter(db)
    results: list[str] = []

    async def submit(i: int) -> None:
        results.append(await committer.submit(_insert(f"DRAIN-{i}"), urgent=i % 2 == 0))  # type: ignore[arg-type]

    async with trio.open_nursery() as writers:
        await writers.start(committer.run)
        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(submit, i)
            await trio.testing.wait_all_tasks_blocked()  # every write is queued or in a batch
            committer.close()  # queued writes of both lanes still commit; run() then returns
    assert sorted(results) == sorted(f"DRAIN-{i}" for i in range(10))
