"""SQL for charging transactions and meter values.

Writers here are idempotent: the group-commit writer may run them twice (a batch that failed is
retried one operation at a time) and a cancelled call may still have committed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from csms.store.db import Conn


@dataclass(frozen=True, slots=True)
class MeterSamples:
    """The ``meterValue`` list of one message (as decoded from the frame), and where it belongs.

    PostgreSQL expands it into one ``meter_values`` row per sampled value (see
    :func:`insert_meter_samples`): that keeps the per-value work out of the csms process, where it
    competed with the event loop for the interpreter lock.
    """

    station_id: str
    connector_id: int
    transaction_id: int | None
    meter_values: list[dict[str, Any]]
    received_at: datetime
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


def transaction_start_info(conn: Conn, station_id: str, transaction_id: int) -> tuple[int, int, str] | None:
    """``(connector_id, meter_start_wh, id_tag)`` of a station's transaction, or None if unknown."""
    row = conn.execute(
        "SELECT connector_id, meter_start_wh, id_tag FROM transactions WHERE id = %s AND station_id = %s",
        (transaction_id, station_id),
    ).fetchone()
    return (int(row[0]), int(row[1]), str(row[2])) if row else None


# One row per sampled value, with the OCPP 1.6 defaults for omitted fields. A charger timestamp before
# %(earliest)s or more than %(skew)s after the receive time is not believed: the receive time is used
# and an anomaly is recorded (the same rule as csms.services.clock.charger_time).
SAMPLES_CTES = """m AS (
    SELECT item->>0 AS station_id, (item->>1)::int AS connector_id, (item->>2)::int AS transaction_id,
           item->3 AS doc, (item->>4)::timestamptz AS received_at, item->>5 AS source
    FROM jsonb_array_elements(%(batch)s::jsonb) AS b(item)
), v AS (
    SELECT m.*, mv, t.ts, (t.ts < %(earliest)s::timestamptz OR t.ts > m.received_at + %(skew)s::interval) AS replaced
    FROM m
    CROSS JOIN LATERAL jsonb_array_elements(m.doc) AS mv
    CROSS JOIN LATERAL (SELECT (mv->>'timestamp')::timestamptz AS ts) AS t
), flagged AS (
    INSERT INTO ocpp_anomalies (station_id, kind, detail)
    SELECT station_id, 'timestamp_replaced',
           jsonb_build_object('action', source, 'sent', mv->>'timestamp', 'transactionId', transaction_id)
    FROM v WHERE replaced
)"""
SAMPLES_INSERT = """INSERT INTO meter_values (station_id, connector_id, transaction_id, sampled_at, measurand,
                          phase, unit, context, location, format, value, source, received_at)
SELECT v.station_id, v.connector_id, v.transaction_id, CASE WHEN v.replaced THEN v.received_at ELSE v.ts END,
       coalesce(sv->>'measurand', 'Energy.Active.Import.Register'), sv->>'phase', coalesce(sv->>'unit', 'Wh'),
       coalesce(sv->>'context', 'Sample.Periodic'), coalesce(sv->>'location', 'Outlet'),
       coalesce(sv->>'format', 'Raw'), sv->>'value', v.source, v.received_at
FROM v CROSS JOIN LATERAL jsonb_array_elements(v.mv->'sampledValue') AS sv
ON CONFLICT DO NOTHING"""
_INSERT_SAMPLES = f"WITH {SAMPLES_CTES}\n{SAMPLES_INSERT}"


def insert_meter_samples(conn: Conn, items: list[MeterSamples], earliest: datetime, skew: timedelta) -> None:
    """Insert every sampled value of many messages in one statement; values already stored are skipped."""
    if items:
        conn.execute(_INSERT_SAMPLES, {"earliest": earliest, "skew": skew, "batch": _samples_json(items)})


def native_samples_sql(sql: str) -> str:
    """Samples SQL (:data:`SAMPLES_CTES`, :data:`SAMPLES_INSERT`) with the positional parameters of
    :func:`meter_samples_params` (``$1`` to ``$3``), for :class:`csms.store.native.NativeConnection`."""
    return sql.replace("%(batch)s", "$1").replace("%(earliest)s", "$2").replace("%(skew)s", "$3")


_INSERT_SAMPLES_NATIVE = native_samples_sql(_INSERT_SAMPLES).encode()
# The same insert without ON CONFLICT. PostgreSQL inserts every row of an ON CONFLICT statement
# speculatively (an extra index probe and WAL record per row): measured here, 134 us of server CPU per
# five-value MeterValues with it against 86 us without, which under the S1 flood was a third of the
# database's load. Stored values are rare (a replay after a lost answer), so the writer tries this
# first and falls back to the statement that skips them when PostgreSQL reports a unique violation
# (the failed statement changed nothing).
_INSERT_NEW_SAMPLES_NATIVE = native_samples_sql(_INSERT_SAMPLES.removesuffix("\nON CONFLICT DO NOTHING")).encode()
UNIQUE_VIOLATION = "23505"


def meter_samples_params(items: list[MeterSamples], earliest: datetime, skew: timedelta) -> list[bytes | None]:
    """The text parameters ``$1`` to ``$3`` of the native samples SQL."""
    return [_samples_json(items).encode(), earliest.isoformat().encode(), f"{skew.total_seconds()} seconds".encode()]


def meter_samples_statement(items: list[MeterSamples], earliest: datetime, skew: timedelta, *,
                            skip_stored: bool = True) -> tuple[bytes, list[bytes | None]]:
    """The same insert as :func:`insert_meter_samples`, as a query and text parameters for
    :class:`csms.store.native.NativeConnection` (one autocommit statement).

    Args:
        skip_stored: False gives the cheaper statement that fails as a whole, with SQLSTATE
            :data:`UNIQUE_VIOLATION`, when any of the values is stored already.
    """
    query = _INSERT_SAMPLES_NATIVE if skip_stored else _INSERT_NEW_SAMPLES_NATIVE
    return query, meter_samples_params(items, earliest, skew)


def _samples_json(items: list[MeterSamples]) -> str:
    # The whole batch travels as one JSON document, written in C (orjson, datetimes as RFC 3339), where
    # adapting arrays of strings would escape every element in Python.
    batch = [(i.station_id, i.connector_id, i.transaction_id, i.meter_values, i.received_at, i.source)
             for i in items]
    try:
        return orjson.dumps(batch).decode()
    except TypeError:  # a number orjson cannot write (beyond 64 bits): json can
        return json.dumps([(*row[:4], row[4].isoformat(), row[5]) for row in batch])
