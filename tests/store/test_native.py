"""Statements run on the event loop (csms.store.native) against the real PostgreSQL."""

from __future__ import annotations

import pytest
import trio

from csms.store.db import Conn, Database
from csms.store.native import APPLICATION_NAME, NativeConnection, NativeError


def _terminate_direct_connections(conn: Conn) -> int:
    rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                        (APPLICATION_NAME,)).fetchall()
    return len(rows)


async def test_statement_with_parameters_returns_text_rows(db: Database) -> None:
    native = NativeConnection(db.dsn)
    try:
        rows = await native.execute(b"SELECT $1::int + 1, $2::text, NULL::text", [b"41", "søm".encode()])
        assert rows == [(b"42", "søm".encode(), None)]
        await native.execute(b"INSERT INTO stations (id) VALUES ($1)", [b"CP-N1"], prepare=b"t_add")
        await native.execute(b"INSERT INTO stations (id) VALUES ($1)", [b"CP-N2"], prepare=b"t_add")
    finally:
        native.close()
    # Autocommit: visible to every other connection at once.
    assert await db.run(lambda c: c.execute("SELECT id FROM stations ORDER BY id").fetchall()) == [
        ("CP-N1",), ("CP-N2",)]


async def test_refused_statement_raises_with_sqlstate_and_connection_stays_usable(db: Database) -> None:
    native = NativeConnection(db.dsn)
    try:
        await native.execute(b"INSERT INTO stations (id) VALUES ($1)", [b"CP-D"])
        with pytest.raises(NativeError) as caught:
            await native.execute(b"INSERT INTO stations (id) VALUES ($1)", [b"CP-D"], prepare=b"t_dup")
        assert caught.value.sqlstate == "23505"  # unique_violation
        with pytest.raises(NativeError) as bad:
            await native.execute(b"SELEC 1", [], prepare=b"t_bad")
        assert bad.value.sqlstate == "42601"  # syntax_error, found when preparing
        assert await native.execute(b"SELECT 1", []) == [(b"1",)]
    finally:
        native.close()


async def test_broken_connection_is_reopened_with_its_prepared_statements(db: Database) -> None:
    native = NativeConnection(db.dsn)
    try:
        assert await native.execute(b"SELECT $1::int", [b"1"], prepare=b"t_one") == [(b"1",)]
        assert await db.run(_terminate_direct_connections) == 1
        with pytest.raises(NativeError) as caught:
            await native.execute(b"SELECT $1::int", [b"2"], prepare=b"t_one")
        assert caught.value.sqlstate is None or caught.value.sqlstate.startswith("57")  # admin shutdown
        # A new connection, where the statement is prepared again.
        assert await native.execute(b"SELECT $1::int", [b"3"], prepare=b"t_one") == [(b"3",)]
    finally:
        native.close()


async def test_cancelled_statement_is_cancelled_on_the_server(db: Database) -> None:
    native = NativeConnection(db.dsn)
    marker = "csms-native-cancel-test"
    try:
        with trio.move_on_after(0.5) as scope:
            await native.execute(f"SELECT pg_sleep(30) /* {marker} */".encode(), [])
        assert scope.cancelled_caught

        def active(conn: Conn) -> int:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s "
                               "AND pid <> pg_backend_pid()", (f"%{marker}%",)).fetchone()
            return int(row[0])

        with trio.fail_after(5):
            while await db.run(active):
                await trio.sleep(0.05)
        assert await native.execute(b"SELECT 1", []) == [(b"1",)]  # usable again (a new connection)
    finally:
        native.close()
