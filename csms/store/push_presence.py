"""SQL for the station-offline job: which owned stations lost their connection, and which came back.

A station is *connected* while ``charger_connections`` names a node that is alive (``nodes.last_seen``
within :data:`NODE_ALIVE_S`: every node refreshes it every few seconds, so a crashed node's stale
rows stop counting). A station that is not connected gets a ``push_station_state`` row the first time
the job sees it so; once that row is older than the offline threshold, its owner is told (once). When
the station is connected again the row goes, and the owner hears "back online" if they heard "offline".

Every function runs inside the caller's transaction; :func:`try_job_lock` makes sure only one csms
process runs the job at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

    from csms.store.db import Conn

# An arbitrary constant naming the job's transaction-level advisory lock ("push" in ASCII).
_JOB_LOCK = 0x7075_7368
# A node that has not refreshed its row for this long is dead (nodes refresh every second).
NODE_ALIVE_S = 60
# Stations silent for longer than this when first found offline are not announced: after a first
# deployment or a long outage of csms itself, owners would otherwise get one push per dead station.
STALE_DAYS = 7

_CONNECTED = f"""EXISTS (SELECT 1 FROM charger_connections c JOIN nodes n ON n.node_id = c.node_id
    WHERE c.station_id = {{station}} AND n.last_seen > now() - interval '{NODE_ALIVE_S} seconds')"""


@dataclass(frozen=True, slots=True)
class PresenceChange:
    """A station whose owner is to be told it went offline or came back."""

    station_id: str
    owner_id: str
    since: datetime  # when the owner was told it was offline (the key of this outage)


def try_job_lock(conn: Conn) -> bool:
    """Take the job's lock for this transaction; False when another process is running the job."""
    row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (_JOB_LOCK,)).fetchone()
    return bool(row and row[0])


def back_online(conn: Conn) -> list[PresenceChange]:
    """Forget stations that are connected again; those whose owner heard "offline" are returned."""
    rows = conn.execute(
        f"""WITH back AS (
                DELETE FROM push_station_state p WHERE {_CONNECTED.format(station="p.station_id")}
                RETURNING p.station_id, p.notified_at)
            SELECT b.station_id, l.owner_id::text, b.notified_at FROM back b
            JOIN stations s ON s.id = b.station_id JOIN locations l ON l.id = s.location_id
            WHERE b.notified_at IS NOT NULL AND l.owner_id IS NOT NULL"""
    ).fetchall()
    return [PresenceChange(*r) for r in rows]


def notice_disconnected(conn: Conn) -> int:
    """Start the clock for owned stations, once seen, that have no live connection; how many were new."""
    cur = conn.execute(
        f"""INSERT INTO push_station_state (station_id)
            SELECT s.id FROM stations s JOIN locations l ON l.id = s.location_id
            WHERE l.owner_id IS NOT NULL AND s.last_seen IS NOT NULL
              AND NOT {_CONNECTED.format(station="s.id")}
            ON CONFLICT (station_id) DO NOTHING"""
    )
    return cur.rowcount


def newly_offline(conn: Conn, offline_after_s: float) -> list[PresenceChange]:
    """Mark stations disconnected for ``offline_after_s`` as announced and return them (once each)."""
    rows = conn.execute(
        f"""UPDATE push_station_state p SET notified_at = now()
            FROM stations s JOIN locations l ON l.id = s.location_id
            WHERE p.station_id = s.id AND p.notified_at IS NULL AND l.owner_id IS NOT NULL
              AND p.noticed_at < now() - make_interval(secs => %s)
              AND s.last_seen > now() - interval '{STALE_DAYS} days'
            RETURNING p.station_id, l.owner_id::text, p.notified_at""",
        (offline_after_s,),
    ).fetchall()
    return [PresenceChange(*r) for r in rows]
