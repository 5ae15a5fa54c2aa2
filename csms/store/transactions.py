"""SQL for charging transactions and meter values.

Writers here are idempotent: the group-commit writer may run them twice (a batch that failed is
retried one operation at a time) and a cancelled call may still have committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from datetime import datetime

    from csms.store.db import Conn


@dataclass(frozen=True, slots=True)
class MeterRow:
    """One sampled value, ready to insert."""

    station_id: str
    connector_id: int
    transaction_id: int | None
    sampled_at: datetime
    measurand: str
    phase: str | None
    unit: str | None
    context: str
    location: str | None
    format: str | None
    value: str
    source: str


@dataclass(frozen=True, slots=True)
class StartedTransaction:
    """The outcome of a StartTransaction: the id to answer and the id tag status answered first."""

    transaction_id: int
    id_tag_status: str
    duplicate: bool


StopOutcome = Literal["stopped", "repeated", "unknown"]


def start_transaction(
    conn: Conn,
    *,
    station_id: str,
    connector_id: int,
    id_tag: str,
    id_tag_status: str,
    meter_start_wh: int,
    started_at: datetime,
    start_key_ts: datetime,
    reservation_id: int | None,
) -> StartedTransaction:
    """Allocate a transaction id, or return the one already allocated for the same start.

    The same station, connector, id tag, timestamp and meterStart identify a duplicate (a resend
    after a lost answer), which gets the same id and the same id tag status as the first time.
    """
    row = conn.execute(
        """INSERT INTO transactions (station_id, connector_id, id_tag, id_tag_status, meter_start_wh,
                                     started_at, start_key_ts, reservation_id)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (station_id, connector_id, id_tag, start_key_ts, meter_start_wh) DO NOTHING
           RETURNING id""",
        (station_id, connector_id, id_tag, id_tag_status, meter_start_wh, started_at, start_key_ts,
         reservation_id),
    ).fetchone()
    if row is not None:
        return StartedTransaction(int(row[0]), id_tag_status, duplicate=False)
    row = conn.execute(
        """SELECT id, id_tag_status FROM transactions
           WHERE station_id = %s AND connector_id = %s AND id_tag = %s AND start_key_ts = %s
             AND meter_start_wh = %s""",
        (station_id, connector_id, id_tag, start_key_ts, meter_start_wh),
    ).fetchone()
    assert row is not None  # the conflicting row exists: rows are never deleted
    return StartedTransaction(int(row[0]), str(row[1]), duplicate=True)


def open_transactions_on(conn: Conn, station_id: str, connector_id: int, except_id: int) -> list[int]:
    """Ids of other transactions still open on a connector (a lost StopTransaction)."""
    rows = conn.execute(
        """SELECT id FROM transactions WHERE station_id = %s AND connector_id = %s
           AND stopped_at IS NULL AND id <> %s""",
        (station_id, connector_id, except_id),
    ).fetchall()
    return [int(r[0]) for r in rows]


def stop_transaction(
    conn: Conn,
    *,
    station_id: str,
    transaction_id: int,
    meter_stop_wh: int,
    stopped_at: datetime,
    reason: str | None,
    id_tag: str | None,
) -> StopOutcome:
    """Close a transaction; a second stop or an unknown id changes nothing."""
    row = conn.execute(
        """UPDATE transactions SET meter_stop_wh = %s, stopped_at = %s, stop_reason = %s,
               stop_id_tag = %s, stop_received_at = now()
           WHERE id = %s AND station_id = %s AND stopped_at IS NULL RETURNING id""",
        (meter_stop_wh, stopped_at, reason, id_tag, transaction_id, station_id),
    ).fetchone()
    if row is not None:
        return "stopped"
    row = conn.execute(
        "SELECT 1 FROM transactions WHERE id = %s AND station_id = %s", (transaction_id, station_id)
    ).fetchone()
    return "repeated" if row else "unknown"


def transaction_start_info(conn: Conn, station_id: str, transaction_id: int) -> tuple[int, int] | None:
    """``(connector_id, meter_start_wh)`` of a station's transaction, or None if unknown."""
    row = conn.execute(
        "SELECT connector_id, meter_start_wh FROM transactions WHERE id = %s AND station_id = %s",
        (transaction_id, station_id),
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else None


def insert_meter_rows(conn: Conn, rows: list[MeterRow]) -> None:
    """Insert many sampled values in one statement; values already stored are skipped."""
    if not rows:
        return
    cols = list(zip(*(
        (r.station_id, r.connector_id, r.transaction_id, r.sampled_at, r.measurand, r.phase, r.unit,
         r.context, r.location, r.format, r.value, r.source)
        for r in rows
    ), strict=True))
    conn.execute(
        """INSERT INTO meter_values (station_id, connector_id, transaction_id, sampled_at, measurand,
                                     phase, unit, context, location, format, value, source)
           SELECT * FROM unnest(%s::text[], %s::int[], %s::int[], %s::timestamptz[], %s::text[],
                                %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                                %s::text[])
           ON CONFLICT DO NOTHING""",
        [list(c) for c in cols],
    )
