"""SQL for web push: subscriptions, once-only notification claims, and the low-balance state.

Every function runs inside the caller's transaction (call them through ``Database.run``). Writes are
idempotent: an upsert, a delete by key, an ``INSERT ... ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

    from csms.store.db import Conn

# A user rarely has more browsers than this; subscribing another replaces the least recently used.
MAX_SUBSCRIPTIONS_PER_USER = 10


@dataclass(frozen=True, slots=True)
class PushSubscriptionRow:
    """A stored browser subscription."""

    id: str
    user_id: str
    endpoint: str
    p256dh: str
    auth: str
    user_agent: str
    created_at: datetime
    last_used_at: datetime


_COLUMNS = "id::text, user_id::text, endpoint, p256dh, auth, user_agent, created_at, last_used_at"


def upsert_subscription(conn: Conn, user_id: str, endpoint: str, p256dh: str, auth: str,
                        user_agent: str) -> PushSubscriptionRow:
    """Store a subscription for ``user_id`` (new keys replace old ones; an endpoint moves to this user).

    Keeps at most :data:`MAX_SUBSCRIPTIONS_PER_USER` per user by deleting the least recently used.
    """
    row = conn.execute(
        f"""INSERT INTO push_subscriptions (user_id, endpoint, p256dh, auth, user_agent)
            VALUES (%s, %s, %s, %s, %s)
            ON CONFLICT (endpoint) DO UPDATE SET user_id = EXCLUDED.user_id, p256dh = EXCLUDED.p256dh,
                auth = EXCLUDED.auth, user_agent = EXCLUDED.user_agent, updated_at = now(), last_used_at = now()
            RETURNING {_COLUMNS}""",
        (user_id, endpoint, p256dh, auth, user_agent),
    ).fetchone()
    assert row is not None
    conn.execute(
        """DELETE FROM push_subscriptions WHERE id IN (
               SELECT id FROM push_subscriptions WHERE user_id = %s
               ORDER BY last_used_at DESC, created_at DESC OFFSET %s)""",
        (user_id, MAX_SUBSCRIPTIONS_PER_USER),
    )
    return PushSubscriptionRow(*row)


def delete_user_subscription(conn: Conn, user_id: str, endpoint: str) -> bool:
    """Remove the caller's subscription with ``endpoint``; False if there was none."""
    cur = conn.execute("DELETE FROM push_subscriptions WHERE user_id = %s AND endpoint = %s", (user_id, endpoint))
    return cur.rowcount > 0


def delete_subscription(conn: Conn, subscription_id: str) -> bool:
    """Remove a subscription the push service called gone (404/410); False if already gone."""
    return conn.execute("DELETE FROM push_subscriptions WHERE id = %s", (subscription_id,)).rowcount > 0


def user_subscriptions(conn: Conn, user_id: str) -> list[PushSubscriptionRow]:
    """A user's subscriptions, most recently used first."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM push_subscriptions WHERE user_id = %s ORDER BY last_used_at DESC, id",
        (user_id,),
    ).fetchall()
    return [PushSubscriptionRow(*r) for r in rows]


def has_subscriptions(conn: Conn, user_id: str) -> bool:
    """Whether a user has any subscription (most events concern users who have none)."""
    row = conn.execute("SELECT 1 FROM push_subscriptions WHERE user_id = %s LIMIT 1", (user_id,)).fetchone()
    return row is not None


def mark_used(conn: Conn, subscription_ids: list[str]) -> None:
    """Note successful deliveries (keeps the subscriptions from being pruned as unused)."""
    if subscription_ids:
        conn.execute("UPDATE push_subscriptions SET last_used_at = now() WHERE id = ANY(%s::uuid[])",
                     (subscription_ids,))


def delete_unused(conn: Conn, max_idle_days: int) -> int:
    """Delete subscriptions neither renewed nor delivered to for ``max_idle_days``; how many."""
    cur = conn.execute("DELETE FROM push_subscriptions WHERE last_used_at < now() - make_interval(days => %s)",
                       (max_idle_days,))
    return cur.rowcount


def delete_old_claims(conn: Conn, days: int) -> int:
    """Forget notification claims older than ``days``; how many."""
    cur = conn.execute("DELETE FROM push_notifications WHERE created_at < now() - make_interval(days => %s)",
                       (days,))
    return cur.rowcount


def claim_notification(conn: Conn, user_id: str, event_key: str, kind: str) -> bool:
    """Claim the right to send the notification ``event_key`` to ``user_id``.

    Returns:
        True for the first claim (this process sends it); False when any process claimed it before.
    """
    row = conn.execute(
        """INSERT INTO push_notifications (user_id, event_key, kind) VALUES (%s, %s, %s)
           ON CONFLICT DO NOTHING RETURNING 1""",
        (user_id, event_key, kind),
    ).fetchone()
    return row is not None


def record_balance_side(conn: Conn, user_id: str, low: bool) -> int | None:
    """Record which side of the low-balance threshold a wallet is on now.

    The state row is locked, so concurrent callers (every csms process hears the same event) see each
    crossing once.

    Returns:
        The number of this downward crossing when the wallet has just gone low; None otherwise.
    """
    conn.execute("INSERT INTO push_balance_state (user_id, low) VALUES (%s, false) ON CONFLICT DO NOTHING",
                 (user_id,))
    row = conn.execute("SELECT low, crossings FROM push_balance_state WHERE user_id = %s FOR UPDATE",
                       (user_id,)).fetchone()
    assert row is not None
    was_low, crossings = bool(row[0]), int(row[1])
    if was_low == low:
        return None
    crossings += 1 if low else 0
    conn.execute("UPDATE push_balance_state SET low = %s, crossings = %s, updated_at = now() WHERE user_id = %s",
                 (low, crossings, user_id))
    return crossings if low else None


def charging_sessions_at(conn: Conn, station_id: str, connector_id: int) -> list[str]:
    """Ids of sessions charging on a connector (connector 0: on any connector of the station)."""
    rows = conn.execute(
        """SELECT id::text FROM charging_sessions WHERE station_id = %s AND status IN ('charging', 'stopping')
           AND (%s = 0 OR connector_id = %s)""",
        (station_id, connector_id, connector_id),
    ).fetchall()
    return [r[0] for r in rows]
