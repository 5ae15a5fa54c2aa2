"""The Trio database helper against the real PostgreSQL: transactions, cancellation, pool health."""

from __future__ import annotations

import psycopg
import pytest
import trio

from csms.store.db import Conn, Database


async def test_run_commits_and_returns(db: Database) -> None:
    def insert(conn: Conn) -> int:
        conn.execute("INSERT INTO stations (id) VALUES ('CP-1')")
        return int(conn.execute("SELECT count(*) FROM stations").fetchone()[0])

    assert await db.run(insert) == 1
    assert await db.run(lambda c: c.execute("SELECT id FROM stations").fetchall()) == [("CP-1",)]


async def test_error_rolls_back(db: Database) -> None:
    def insert_then_fail(conn: Conn) -> None:
        conn.execute("INSERT INTO stations (id) VALUES ('CP-2')")
        conn.execute("SELECT 1/0")

    with pytest.raises(psycopg.errors.DivisionByZero):
        await db.run(insert_then_fail)
    assert await db.run(lambda c: c.execute("SELECT count(*) FROM stations").fetchone()) == (0,)


async def test_cancel_sends_server_side_cancel_and_pool_stays_whole(db: Database) -> None:
    marker = "csms-cancel-test"

    def slow(conn: Conn) -> None:
        conn.execute(f"SELECT pg_sleep(30) /* {marker} */")

    with trio.move_on_after(0.5) as scope:
        await db.run(slow)
    assert scope.cancelled_caught

    def backends(conn: Conn) -> list[tuple[str, str]]:
        rows = conn.execute(
            "SELECT state, query FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
        return [(str(s), str(q)) for s, q in rows]

    # The query is no longer running on the server and nothing is left idle in a transaction.
    rows = await db.run(backends)
    assert not any(marker in q and s == "active" for s, q in rows), rows
    assert not any(s.startswith("idle in transaction") for s, _ in rows), rows
    # Every pooled connection is usable: run as many concurrent calls as the pool has connections.
    async with trio.open_nursery() as nursery:
        for _ in range(db.pool.max_size * 2):
            nursery.start_soon(db.run, lambda c: c.execute("SELECT pg_sleep(0.05)"))
    stats = db.pool.get_stats()
    assert stats["pool_size"] == db.pool.max_size
    assert stats.get("requests_errors", 0) == 0


async def test_many_cancellations_leak_nothing(db: Database) -> None:
    for i in range(20):
        with trio.move_on_after(0.01 * (i % 5)):
            await db.run(lambda c: c.execute("SELECT pg_sleep(1)"))
    rows = await db.run(
        lambda c: c.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state <> 'idle' AND pid <> pg_backend_pid()"
        ).fetchone()
    )
    assert rows == (0,)
    assert db.pool.get_stats()["pool_size"] == db.pool.max_size
