"""Read-only queries behind the GraphQL API: stations, connectors, transactions, meter values.

Each function takes a connection (call it through ``Database.run``) and returns frozen dataclasses, so
the API layer never sees rows or SQL. Times are ``timestamptz`` and come back as aware datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime

    import psycopg

    Conn = psycopg.Connection[Any]

# A charger counts as connected while the node holding its socket has shown signs of life this recently.
CONNECTED_NODE_WINDOW = "30 seconds"
MAX_PAGE = 100


@dataclass(frozen=True)
class StationView:
    """One charge point as the API shows it."""

    id: str
    vendor: str | None
    model: str | None
    serial_number: str | None
    firmware_version: str | None
    registration_status: str
    last_seen: datetime | None


@dataclass(frozen=True)
class ConnectorView:
    """The last known state of one connector (connector 0 is the charge point itself)."""

    station_id: str
    connector_id: int
    status: str
    error_code: str
    info: str | None
    updated_at: datetime


@dataclass(frozen=True)
class TransactionView:
    """One OCPP transaction; the stop fields are None while it runs."""

    id: int
    station_id: str
    connector_id: int
    id_tag: str
    meter_start_wh: int
    meter_stop_wh: int | None
    energy_wh: int | None
    started_at: datetime
    stopped_at: datetime | None
    stop_reason: str | None


@dataclass(frozen=True)
class TransactionPage:
    """A page of transactions, newest first, and whether older ones follow."""

    items: list[TransactionView]
    has_next_page: bool


@dataclass(frozen=True)
class MeterValueView:
    """One sampled value as the charger sent it."""

    sampled_at: datetime
    measurand: str
    phase: str | None
    unit: str | None
    context: str
    location: str | None
    value: str
    transaction_id: int | None
    connector_id: int


_STATION_COLUMNS = "id, vendor, model, serial_number, firmware_version, registration_status, last_seen"
_CONNECTOR_COLUMNS = "station_id, connector_id, status, error_code, info, updated_at"
_CONNECTED = f"""
    SELECT c.station_id FROM charger_connections c JOIN nodes n ON n.node_id = c.node_id
    WHERE n.last_seen > now() - interval '{CONNECTED_NODE_WINDOW}'
"""


def list_stations(conn: Conn) -> list[StationView]:
    """All stations, ordered by id."""
    rows = conn.execute(f"SELECT {_STATION_COLUMNS} FROM stations ORDER BY id").fetchall()
    return [StationView(*row) for row in rows]


def get_station(conn: Conn, station_id: str) -> StationView | None:
    """One station, or None if there is no such id."""
    row = conn.execute(f"SELECT {_STATION_COLUMNS} FROM stations WHERE id = %s", (station_id,)).fetchone()
    return StationView(*row) if row is not None else None


def station_connectors(conn: Conn, station_id: str) -> list[ConnectorView]:
    """The connectors of one station, by connector id."""
    rows = conn.execute(
        f"SELECT {_CONNECTOR_COLUMNS} FROM connectors WHERE station_id = %s ORDER BY connector_id",
        (station_id,),
    ).fetchall()
    return [ConnectorView(*row) for row in rows]


def connectors_by_station(conn: Conn) -> dict[str, list[ConnectorView]]:
    """The connectors of every station, grouped by station id (one query for a whole list)."""
    rows = conn.execute(f"SELECT {_CONNECTOR_COLUMNS} FROM connectors ORDER BY station_id, connector_id").fetchall()
    grouped: dict[str, list[ConnectorView]] = {}
    for row in rows:
        grouped.setdefault(row[0], []).append(ConnectorView(*row))
    return grouped


def station_connected(conn: Conn, station_id: str) -> bool:
    """Whether a live csms node holds this station's socket."""
    row = conn.execute(f"SELECT EXISTS ({_CONNECTED} AND c.station_id = %s)", (station_id,)).fetchone()
    return bool(row and row[0])


def connected_stations(conn: Conn) -> set[str]:
    """The ids of every station that a live csms node holds a socket for."""
    return {row[0] for row in conn.execute(_CONNECTED).fetchall()}


def list_transactions(conn: Conn, station_id: str | None, first: int, after_id: int | None) -> TransactionPage:
    """A page of transactions, newest (highest id) first, optionally of one station.

    Keyset pagination: ``after_id`` is the id of the last transaction already seen, so a page stays
    stable while new transactions arrive.

    Raises:
        ValueError: ``first`` is outside 1..:data:`MAX_PAGE`.
    """
    if not 1 <= first <= MAX_PAGE:
        raise ValueError(f"first must be between 1 and {MAX_PAGE}")
    rows = conn.execute(
        """
        SELECT id, station_id, connector_id, id_tag, meter_start_wh, meter_stop_wh, energy_wh,
               started_at, stopped_at, stop_reason
        FROM transactions
        WHERE (%(station)s::text IS NULL OR station_id = %(station)s)
          AND (%(after)s::integer IS NULL OR id < %(after)s)
        ORDER BY id DESC
        LIMIT %(limit)s
        """,
        {"station": station_id, "after": after_id, "limit": first + 1},
    ).fetchall()
    # One extra row tells whether another page exists without a COUNT.
    items = [TransactionView(*row) for row in rows[:first]]
    return TransactionPage(items, has_next_page=len(rows) > first)


def transaction_meter_values(conn: Conn, transaction_id: int) -> list[MeterValueView]:
    """The meter values reported for one transaction, in sampling order."""
    rows = conn.execute(
        """
        SELECT sampled_at, measurand, phase, unit, context, location, value, transaction_id, connector_id
        FROM meter_values WHERE transaction_id = %s ORDER BY sampled_at, id
        """,
        (transaction_id,),
    ).fetchall()
    return [MeterValueView(*row) for row in rows]
