"""Session change events carry the row's state with a version that grows in commit order."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import psycopg

from csms.store.events import CHANNEL
from csms.store.session_events import apply_state, notify_session, read_session, state_version
from csms.store.session_views import get_session
from tests.api.test_subscriptions import _session
from tests.conftest import make_user

if TYPE_CHECKING:
    from csms.store.db import Conn, Database


async def test_event_state_matches_the_row_and_versions_grow(db: Database) -> None:
    user_id, _ = await make_user(db)
    session_id = await db.run(_session, user_id, None)
    before = await db.run(read_session, session_id)
    assert before is not None and before[1] == await db.run(get_session, session_id)

    def change(conn: Conn, energy: int) -> None:
        conn.execute("SELECT id FROM charging_sessions WHERE id = %s FOR UPDATE", (session_id,))
        conn.execute("UPDATE charging_sessions SET energy_wh = %s, cost_tyiyn = %s, power_w = 7000, "
                     "updated_at = now() WHERE id = %s", (energy, energy * 3 // 2, session_id))
        notify_session(conn, session_id, received_us=123 if energy == 1000 else None)

    with psycopg.connect(db.dsn, autocommit=True) as listener:
        listener.execute(f"LISTEN {CHANNEL}")
        await db.run(change, 1000)
        await db.run(change, 2000)
        payloads = [json.loads(n.payload) for n in listener.notifies(timeout=5, stop_after=2)]
    first, second = payloads
    assert (first["topic"], first["session_id"], first["user_id"], first["station_id"], first["status"]) == (
        "session", session_id, user_id, "SESS-1", "charging")
    assert (first["received_us"], second["received_us"]) == (123, None)
    v0, v1, v2 = before[0], state_version(first), state_version(second)
    assert v1 is not None and v2 is not None and v0 < v1 < v2
    # Applied to any view of the session, the state gives exactly what a read gives after that commit.
    after = await db.run(get_session, session_id)
    assert apply_state(before[1], second) == after
    older = apply_state(before[1], first)
    assert older is not None
    assert (older.energy_wh, older.cost_tyiyn, older.power_w) == (1000, 1500, 7000)
    assert older.updated_at <= after.updated_at and older.id == after.id


async def test_unknown_or_malformed(db: Database) -> None:
    assert await db.run(read_session, "not-a-uuid") is None
    assert await db.run(read_session, "00000000-0000-4000-8000-000000000000") is None
    assert state_version({"state": {"version": True}}) is None and state_version({}) is None
