"""SQL for charging sessions started from the app (table ``charging_sessions``) and their id tags.

Writers lock the session row (``FOR UPDATE``) and re-check its status before changing it: the API,
the OCPP handlers (through group commit) and the reaper may all act on one session at once, and the
row lock makes every transition, and so every ledger transfer, happen once.

Every function runs inside the caller's transaction (call them through ``Database.run`` or the group
committer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from csms.store.views import is_uuid

if TYPE_CHECKING:
    from datetime import datetime

    from csms.store.db import Conn

OPEN_STATUSES = ("requested", "accepted", "charging", "stopping")
STATUSES = (*OPEN_STATUSES, "completed", "failed")
# As an SQL list, written out so the planner can use the partial indexes of migration 0004 (their
# predicate is this very list; a bound array parameter would hide it).
OPEN_STATUSES_SQL = "(" + ", ".join(f"'{status}'" for status in OPEN_STATUSES) + ")"


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A session as the billing code sees it, read under its row lock."""

    id: str
    user_id: str
    station_id: str
    connector_id: int
    status: str
    id_tag: str
    limit_tyiyn: int | None
    energy_limit_wh: int | None
    price_per_kwh_tyiyn: int
    session_fee_tyiyn: int
    hold_tyiyn: int
    hold_transfer_id: str
    revenue_account_id: int
    transaction_id: int | None
    meter_start_wh: int | None
    energy_wh: int
    meter_sampled_at: datetime | None
    stop_reason: str | None


_ROW = """id::text, user_id::text, station_id, connector_id, status, id_tag, limit_tyiyn, energy_limit_wh,
    price_per_kwh_tyiyn, session_fee_tyiyn, hold_tyiyn, hold_transfer_id, revenue_account_id, transaction_id,
    meter_start_wh, energy_wh, meter_sampled_at, stop_reason"""

# Columns a caller may set through update_session (never money already moved, never ids).
_UPDATABLE = frozenset({
    "status", "transaction_id", "meter_start_wh", "meter_last_wh", "energy_wh", "power_w", "soc", "cost_tyiyn",
    "charged_tyiyn", "stop_reason", "failure_reason", "accepted_at", "started_at", "stop_requested_at",
    "ended_at", "meter_sampled_at", "settled_by",
})


def connector_status(conn: Conn, station_id: str, connector_id: int) -> tuple[bool, str | None]:
    """Whether the station exists, and the connector's last reported status (None: never reported)."""
    row = conn.execute(
        """SELECT c.status FROM stations st
           LEFT JOIN connectors c ON c.station_id = st.id AND c.connector_id = %s
           WHERE st.id = %s""",
        (connector_id, station_id),
    ).fetchone()
    return (False, None) if row is None else (True, row[0])


def connector_busy(conn: Conn, station_id: str, connector_id: int) -> bool:
    """Whether a session is already active on the connector (the unique index is the final guard)."""
    row = conn.execute(
        f"""SELECT 1 FROM charging_sessions WHERE station_id = %s AND connector_id = %s
            AND status IN {OPEN_STATUSES_SQL}""",
        (station_id, connector_id),
    ).fetchone()
    return row is not None


def insert_id_tag(conn: Conn, id_tag: str, expiry: datetime) -> None:
    """Register a session's CSMS-issued id tag as Accepted until ``expiry``."""
    conn.execute("INSERT INTO id_tags (id_tag, status, expiry_date) VALUES (%s, 'Accepted', %s)", (id_tag, expiry))


def expire_id_tag(conn: Conn, id_tag: str) -> None:
    """End a session tag's validity now, so a late StartTransaction with it is answered Expired."""
    conn.execute("UPDATE id_tags SET expiry_date = least(expiry_date, now()) WHERE id_tag = %s", (id_tag,))


def insert_session(conn: Conn, *, session_id: str, user_id: str, station_id: str, connector_id: int,
                   id_tag: str, limit_tyiyn: int | None, energy_limit_wh: int | None, tariff_id: str,
                   price_per_kwh_tyiyn: int, session_fee_tyiyn: int, hold_tyiyn: int, hold_transfer_id: str,
                   revenue_account_id: int) -> None:
    """Insert a ``requested`` session with its tariff copied in.

    Raises:
        psycopg.errors.UniqueViolation: another session is active on the connector
            (constraint ``charging_sessions_active_connector``).
    """
    conn.execute(
        """INSERT INTO charging_sessions (id, user_id, station_id, connector_id, id_tag, limit_tyiyn,
               energy_limit_wh, tariff_id, price_per_kwh_tyiyn, session_fee_tyiyn, hold_tyiyn, hold_transfer_id,
               revenue_account_id)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (session_id, user_id, station_id, connector_id, id_tag, limit_tyiyn, energy_limit_wh, tariff_id,
         price_per_kwh_tyiyn, session_fee_tyiyn, hold_tyiyn, hold_transfer_id, revenue_account_id),
    )


def lock_session(conn: Conn, session_id: str) -> SessionRow | None:
    """The session with this id, locked for the rest of the transaction (None if unknown)."""
    if not is_uuid(session_id):
        return None
    row = conn.execute(f"SELECT {_ROW} FROM charging_sessions WHERE id = %s FOR UPDATE", (session_id,)).fetchone()
    return SessionRow(*row) if row else None


def lock_session_by_tag(conn: Conn, id_tag: str) -> SessionRow | None:
    """The session that owns an id tag (compared case-insensitively, as OCPP does), locked."""
    row = conn.execute(
        f"SELECT {_ROW} FROM charging_sessions WHERE upper(id_tag) = upper(%s) FOR UPDATE", (id_tag,)
    ).fetchone()
    return SessionRow(*row) if row else None


def lock_session_by_transaction(conn: Conn, station_id: str, transaction_id: int) -> SessionRow | None:
    """The session linked to a station's OCPP transaction, locked (None for a transaction of no session)."""
    row = conn.execute(
        f"SELECT {_ROW} FROM charging_sessions WHERE transaction_id = %s AND station_id = %s FOR UPDATE",
        (transaction_id, station_id),
    ).fetchone()
    return SessionRow(*row) if row else None


def update_session(conn: Conn, session_id: str, **fields: Any) -> None:
    """Set columns of a session (names checked against a fixed list) and its ``updated_at``."""
    unknown = set(fields) - _UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    assignments = ", ".join(f"{name} = %s" for name in fields)
    conn.execute(f"UPDATE charging_sessions SET {assignments}, updated_at = now() WHERE id = %s",
                 (*fields.values(), session_id))


def owner_of_account(conn: Conn, account_id: int) -> str | None:
    """The user behind a revenue account (None for the operator's)."""
    row = conn.execute("SELECT user_id::text FROM ledger_accounts WHERE id = %s", (account_id,)).fetchone()
    return row[0] if row else None


def due_for_start_timeout(conn: Conn, cutoff: datetime) -> list[str]:
    """Sessions still waiting for their StartTransaction that were requested before ``cutoff``."""
    rows = conn.execute(
        """SELECT id::text FROM charging_sessions WHERE status IN ('requested', 'accepted') AND created_at < %s
           ORDER BY created_at LIMIT 500""",
        (cutoff,),
    ).fetchall()
    return [r[0] for r in rows]


def due_for_max_duration(conn: Conn, cutoff: datetime) -> list[str]:
    """Charging sessions that started before ``cutoff`` (too long: they are stopped)."""
    rows = conn.execute(
        """SELECT id::text FROM charging_sessions WHERE status = 'charging' AND coalesce(started_at, created_at) < %s
           ORDER BY created_at LIMIT 500""",
        (cutoff,),
    ).fetchall()
    return [r[0] for r in rows]


def due_for_stop_grace(conn: Conn, cutoff: datetime) -> list[str]:
    """Stopping sessions whose stop was requested before ``cutoff`` and never confirmed."""
    rows = conn.execute(
        """SELECT id::text FROM charging_sessions WHERE status = 'stopping'
           AND coalesce(stop_requested_at, updated_at) < %s ORDER BY created_at LIMIT 500""",
        (cutoff,),
    ).fetchall()
    return [r[0] for r in rows]


def last_durable_register_wh(conn: Conn, station_id: str, transaction_id: int) -> int | None:
    """The highest billing energy register stored for a transaction (what group commit made durable).

    Mirrors :func:`csms.services.session_meter.energy_wh`: whole-connector outlet values in Wh or kWh,
    floored to whole Wh; values that are not decimal numbers are skipped.
    """
    row = conn.execute(
        r"""SELECT max(floor(CASE unit WHEN 'kWh' THEN value::numeric * 1000 ELSE value::numeric END))
            FROM meter_values
            WHERE transaction_id = %s AND station_id = %s AND measurand = 'Energy.Active.Import.Register'
              AND phase IS NULL AND coalesce(location, 'Outlet') = 'Outlet' AND unit IN ('Wh', 'kWh')
              AND value ~ '^\s*[0-9]+(\.[0-9]+)?\s*$'""",
        (transaction_id, station_id),
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def active_transaction_ids(conn: Conn) -> set[int]:
    """OCPP transaction ids of sessions that are charging or stopping (their MeterValues update them)."""
    rows = conn.execute(
        """SELECT transaction_id FROM charging_sessions
           WHERE status IN ('charging', 'stopping') AND transaction_id IS NOT NULL"""
    ).fetchall()
    return {int(r[0]) for r in rows}
