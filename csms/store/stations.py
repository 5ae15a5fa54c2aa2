"""SQL for stations, connectors, id tags, presence and anomalies.

Every function takes a connection and runs inside the caller's transaction (see ``Database.run``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from psycopg.types.json import Jsonb

from csms.store.events import CHANNEL, notify
from csms.store.views import CONNECTED_NODE_WINDOW

if TYPE_CHECKING:
    from datetime import datetime

    from csms.store.db import Conn


@dataclass(frozen=True, slots=True)
class StationAuth:
    """What the OCPP handshake needs to know about a station."""

    id: str
    registration_status: str
    password_hash: str | None


@dataclass(frozen=True, slots=True)
class IdTagRow:
    """An id tag as stored."""

    id_tag: str
    status: str
    expiry_date: datetime | None
    parent_id_tag: str | None


def get_station_auth(conn: Conn, station_id: str) -> StationAuth | None:
    """Look a station up by its OCPP identity (exact match)."""
    row = conn.execute(
        "SELECT id, registration_status, password_hash FROM stations WHERE id = %s", (station_id,)
    ).fetchone()
    return StationAuth(row[0], row[1], row[2]) if row else None


def add_station(conn: Conn, station_id: str, password_hash: str | None, status: str = "Accepted") -> bool:
    """Register a station. Returns False when it already exists (nothing is changed then)."""
    row = conn.execute(
        "INSERT INTO stations (id, password_hash, registration_status) VALUES (%s, %s, %s) "
        "ON CONFLICT (id) DO NOTHING RETURNING id",
        (station_id, password_hash, status),
    ).fetchone()
    return row is not None


def set_station_password(conn: Conn, station_id: str, password_hash: str | None) -> bool:
    """Replace a station's password hash (None removes the password). False if no such station."""
    cur = conn.execute("UPDATE stations SET password_hash = %s WHERE id = %s", (password_hash, station_id))
    return cur.rowcount == 1


def record_boot(conn: Conn, station_id: str, fields: dict[str, str | None]) -> str:
    """Store the identity a charger reported at boot; returns its registration status."""
    row = conn.execute(
        """UPDATE stations SET vendor = %s, model = %s, serial_number = %s, charge_box_serial = %s,
               firmware_version = %s, iccid = %s, imsi = %s, meter_type = %s, meter_serial_number = %s,
               last_boot_at = now(), last_seen = now()
           WHERE id = %s RETURNING registration_status""",
        (
            fields.get("chargePointVendor"),
            fields.get("chargePointModel"),
            fields.get("chargePointSerialNumber"),
            fields.get("chargeBoxSerialNumber"),
            fields.get("firmwareVersion"),
            fields.get("iccid"),
            fields.get("imsi"),
            fields.get("meterType"),
            fields.get("meterSerialNumber"),
            station_id,
        ),
    ).fetchone()
    return str(row[0]) if row else "Rejected"


def record_status(
    conn: Conn,
    station_id: str,
    connector_id: int,
    status: str,
    error_code: str,
    info: str | None,
    vendor_id: str | None,
    vendor_error_code: str | None,
    status_at: datetime | None,
) -> None:
    """Set a connector's current status and append it to the history.

    A notification older than the stored one (a replay after reconnect) goes to the history only,
    so the current status never moves backwards in time. A change of the current status publishes a
    ``station_status`` event, sent when the transaction commits.
    """
    current = conn.execute(
        """INSERT INTO connectors AS c (station_id, connector_id, status, error_code, info, vendor_id,
                                       vendor_error_code, status_at, updated_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now())
           ON CONFLICT (station_id, connector_id) DO UPDATE SET
               status = EXCLUDED.status, error_code = EXCLUDED.error_code, info = EXCLUDED.info,
               vendor_id = EXCLUDED.vendor_id, vendor_error_code = EXCLUDED.vendor_error_code,
               status_at = EXCLUDED.status_at, updated_at = now()
           WHERE c.status_at IS NULL OR EXCLUDED.status_at IS NULL OR EXCLUDED.status_at >= c.status_at
           RETURNING updated_at""",
        (station_id, connector_id, status, error_code, info, vendor_id, vendor_error_code, status_at),
    ).fetchone()
    conn.execute(
        """INSERT INTO connector_status_history (station_id, connector_id, status, error_code, info,
                                                 vendor_id, vendor_error_code, status_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
        (station_id, connector_id, status, error_code, info, vendor_id, vendor_error_code, status_at),
    )
    if current is not None:
        notify(conn, "station_status", station_id=station_id, connector_id=connector_id, status=status,
               error_code=error_code, updated_at=current[0].isoformat())


def set_station_field(conn: Conn, station_id: str, column: str, value: str) -> None:
    """Record a diagnostics or firmware status."""
    if column not in {"diagnostics_status", "firmware_status"}:
        raise ValueError(column)
    conn.execute(f"UPDATE stations SET {column} = %s WHERE id = %s", (value, station_id))


def touch_last_seen(conn: Conn, seen: dict[str, datetime]) -> None:
    """Flush buffered last-seen times in one statement."""
    if not seen:
        return
    # One JSON document (serialised in C) rather than two arrays that psycopg would adapt element by
    # element in Python: with 10,000 chargers that held the interpreter lock for tens of milliseconds.
    doc = orjson.dumps(seen).decode()  # aware datetimes as RFC 3339
    # SKIP LOCKED: a row a boot is updating right now is skipped (the boot sets last_seen itself), so
    # this bulk update never waits on, or deadlocks with, the group commit's writes.
    conn.execute(
        """WITH v AS (SELECT key AS id, value::timestamptz AS ts FROM jsonb_each_text(%s::jsonb)),
                locked AS (SELECT s.id FROM stations s JOIN v USING (id) ORDER BY s.id
                           FOR UPDATE OF s SKIP LOCKED)
           UPDATE stations s SET last_seen = v.ts FROM v JOIN locked USING (id)
           WHERE s.id = v.id AND (s.last_seen IS NULL OR s.last_seen < v.ts)""",
        (doc,),
    )


def get_id_tag(conn: Conn, id_tag: str) -> IdTagRow | None:
    """Find an id tag, case-insensitively."""
    row = conn.execute(
        "SELECT id_tag, status, expiry_date, parent_id_tag FROM id_tags WHERE upper(id_tag) = upper(%s)",
        (id_tag,),
    ).fetchone()
    return IdTagRow(row[0], row[1], row[2], row[3]) if row else None


def upsert_id_tag(
    conn: Conn, id_tag: str, status: str, expiry: datetime | None, parent: str | None
) -> None:
    """Create an id tag, or update the one that matches case-insensitively."""
    existing = get_id_tag(conn, id_tag)
    if existing is None:
        conn.execute(
            "INSERT INTO id_tags (id_tag, status, expiry_date, parent_id_tag) VALUES (%s, %s, %s, %s)",
            (id_tag, status, expiry, parent),
        )
    else:
        conn.execute(
            "UPDATE id_tags SET status = %s, expiry_date = %s, parent_id_tag = %s WHERE id_tag = %s",
            (status, expiry, parent, existing.id_tag),
        )


def record_anomaly(conn: Conn, station_id: str, kind: str, detail: dict[str, Any]) -> None:
    """Note something a charger did that was answered but deserves an operator's look."""
    conn.execute(
        "INSERT INTO ocpp_anomalies (station_id, kind, detail) VALUES (%s, %s, %s)",
        (station_id, kind, Jsonb(detail)),
    )


def node_alive(conn: Conn, node_id: str) -> None:
    """Mark this node alive (it holds the sockets listed for it in charger_connections)."""
    conn.execute(
        "INSERT INTO nodes (node_id) VALUES (%s) ON CONFLICT (node_id) DO UPDATE SET last_seen = now()",
        (node_id,),
    )


def node_gone(conn: Conn, node_id: str) -> None:
    """Forget this node and the connections it held (clean shutdown)."""
    conn.execute("DELETE FROM charger_connections WHERE node_id = %s", (node_id,))
    conn.execute("DELETE FROM nodes WHERE node_id = %s", (node_id,))


def set_links(conn: Conn, node_id: str, connected: list[str], disconnected: list[str]) -> None:
    """Record which stations this node now holds, and which it lost.

    A disconnect removes the row only if it is still this node's: another node may have taken the
    station over since.
    """
    # Lists as JSON documents, for the same reason as in touch_last_seen. Each change publishes a
    # ``station_connection`` event from the same statement (no extra round trip), sent on commit.
    if disconnected:
        conn.execute(
            f"""WITH gone AS (DELETE FROM charger_connections WHERE node_id = %s
                   AND station_id IN (SELECT jsonb_array_elements_text(%s::jsonb)) RETURNING station_id)
               SELECT {_CONNECTION_EVENT} FROM gone""",
            (node_id, json.dumps(disconnected), CHANNEL, False),
        )
    if connected:
        conn.execute(
            f"""WITH held AS (INSERT INTO charger_connections (station_id, node_id)
                   SELECT s, %s FROM jsonb_array_elements_text(%s::jsonb) AS s
                   WHERE EXISTS (SELECT 1 FROM stations WHERE id = s)
                   ON CONFLICT (station_id) DO UPDATE SET node_id = EXCLUDED.node_id, connected_at = now()
                   RETURNING station_id)
               SELECT {_CONNECTION_EVENT} FROM held""",
            (node_id, json.dumps(connected), CHANNEL, True),
        )


# One ``station_connection`` notification per row (see csms.store.events for the payload).
_CONNECTION_EVENT = """pg_notify(%s, json_build_object('topic', 'station_connection', 'station_id', station_id,
                                                   'connected', %s::boolean, 'updated_at', now())::text)"""


def station_holder(conn: Conn, station_id: str, except_node: str) -> str | None:
    """The live node other than ``except_node`` that holds the station's socket, or None."""
    row = conn.execute(
        f"""SELECT c.node_id FROM charger_connections c JOIN nodes n ON n.node_id = c.node_id
            WHERE c.station_id = %s AND c.node_id <> %s
              AND n.last_seen > now() - interval '{CONNECTED_NODE_WINDOW}'""",
        (station_id, except_node),
    ).fetchone()
    return str(row[0]) if row else None
