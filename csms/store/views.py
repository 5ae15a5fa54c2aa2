"""Read-only queries behind the GraphQL API: the catalog (locations, stations, connectors, tariffs),
transactions and meter values.

Each function takes a connection (call it through ``Database.run``) and returns frozen dataclasses, so
the API layer never sees rows or SQL. Times are ``timestamptz`` and come back as aware datetimes.

The catalog is read as a :class:`CatalogSnapshot`: a fixed number of queries (locations, their
stations, those stations' connectors, their connection state) whatever the number of stations, with
tariffs joined in, so no list query ever runs one query per station.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime

    import psycopg

    Conn = psycopg.Connection[Any]

# A charger counts as connected while the node holding its socket has shown signs of life this recently.
CONNECTED_NODE_WINDOW = "30 seconds"
MAX_PAGE = 100


@dataclass(frozen=True, slots=True)
class TariffView:
    """A tariff: tyiyn per kWh plus a fee per session; ``owner_id`` None is an operator tariff."""

    id: str
    owner_id: str | None
    name: str
    price_per_kwh_tyiyn: int
    session_fee_tyiyn: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class LocationView:
    """A site on the map; ``owner_id`` is operator-only data."""

    id: str
    name: str
    address: str
    city: str
    latitude: float | None
    longitude: float | None
    owner_id: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StationView:
    """One charge point, with its location's owner and its own (default) tariff."""

    id: str
    vendor: str | None
    model: str | None
    serial_number: str | None
    firmware_version: str | None
    registration_status: str
    last_seen: datetime | None
    location_id: str | None
    connector_count: int | None
    has_password: bool
    owner_id: str | None  # the owner of the station's location
    tariff: TariffView | None


@dataclass(frozen=True, slots=True)
class ConnectorView:
    """The last known state of one connector (connector 0 is the charge point itself).

    ``tariff`` is the effective tariff: the connector's own, else the station's (None for connector 0,
    which never charges). ``own_tariff`` tells which of the two it is.
    """

    station_id: str
    connector_id: int
    status: str
    error_code: str
    info: str | None
    updated_at: datetime
    own_tariff: bool
    tariff: TariffView | None


@dataclass(frozen=True, slots=True)
class BoundingBox:
    """A map rectangle in degrees; ``west > east`` means it crosses the antimeridian."""

    south: float
    west: float
    north: float
    east: float


@dataclass(frozen=True)
class CatalogSnapshot:
    """Locations with their stations, connectors and connection state, read in one transaction."""

    locations: list[LocationView]
    stations: list[StationView]
    connectors: dict[str, list[ConnectorView]] = field(default_factory=dict)
    connected: set[str] = field(default_factory=set)


_TARIFF_COLUMNS = "{t}.id::text, {t}.owner_id::text, {t}.name, {t}.price_per_kwh_tyiyn, {t}.session_fee_tyiyn, " \
    "{t}.updated_at"
_LOCATION_COLUMNS = "l.id::text, l.name, l.address, l.city, l.latitude::float8, l.longitude::float8, " \
    "l.owner_id::text, l.created_at"
_STATION_SELECT = f"""
    SELECT s.id, s.vendor, s.model, s.serial_number, s.firmware_version, s.registration_status, s.last_seen,
           s.location_id::text, s.connector_count, s.password_hash IS NOT NULL, l.owner_id::text,
           {_TARIFF_COLUMNS.format(t="t")}
    FROM stations s LEFT JOIN locations l ON l.id = s.location_id LEFT JOIN tariffs t ON t.id = s.tariff_id
"""
# Connector 0 is the charge point as a whole: it never charges, so it has no effective tariff.
_CONNECTOR_SELECT = f"""
    SELECT c.station_id, c.connector_id, c.status, c.error_code, c.info, c.updated_at, c.tariff_id IS NOT NULL,
           {_TARIFF_COLUMNS.format(t="t")}
    FROM connectors c JOIN stations s ON s.id = c.station_id
    LEFT JOIN tariffs t ON c.connector_id > 0 AND t.id = coalesce(c.tariff_id, s.tariff_id)
"""
_CONNECTED = f"""
    SELECT c.station_id FROM charger_connections c JOIN nodes n ON n.node_id = c.node_id
    WHERE n.last_seen > now() - interval '{CONNECTED_NODE_WINDOW}'
"""


def _tariff(values: tuple[Any, ...]) -> TariffView | None:
    return TariffView(*values) if values[0] is not None else None


def _station(row: tuple[Any, ...]) -> StationView:
    return StationView(*row[:11], _tariff(row[11:]))  # type: ignore[call-arg]  # 11 columns + tariff


def is_uuid(value: str) -> bool:
    """Whether ``value`` is a UUID (ids of locations, tariffs and users)."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def find_locations(
    conn: Conn,
    *,
    city: str | None = None,
    bbox: BoundingBox | None = None,
    owner_id: str | None = None,
    location_id: str | None = None,
) -> list[LocationView]:
    """Locations matching every given filter, by name. ``city`` compares case-insensitively."""
    rows = conn.execute(
        f"""
        SELECT {_LOCATION_COLUMNS} FROM locations l
        WHERE (%(city)s::text IS NULL OR lower(l.city) = lower(%(city)s))
          AND (%(owner)s::uuid IS NULL OR l.owner_id = %(owner)s)
          AND (%(id)s::uuid IS NULL OR l.id = %(id)s)
          AND (%(south)s::numeric IS NULL OR (
                l.latitude BETWEEN %(south)s AND %(north)s
                AND CASE WHEN %(west)s::numeric <= %(east)s::numeric
                         THEN l.longitude BETWEEN %(west)s AND %(east)s
                         ELSE l.longitude >= %(west)s OR l.longitude <= %(east)s END))
        ORDER BY l.name, l.id
        """,
        {
            "city": city, "owner": owner_id, "id": location_id,
            "south": bbox.south if bbox else None, "north": bbox.north if bbox else None,
            "west": bbox.west if bbox else None, "east": bbox.east if bbox else None,
        },
    ).fetchall()
    return [LocationView(*row) for row in rows]


def _complete(conn: Conn, locations: list[LocationView], stations: list[StationView]) -> CatalogSnapshot:
    """Add the connectors and connection state of ``stations`` (two queries)."""
    ids = [s.id for s in stations]
    if not ids:
        return CatalogSnapshot(locations, stations)
    connectors: dict[str, list[ConnectorView]] = {}
    rows = conn.execute(
        f"{_CONNECTOR_SELECT} WHERE c.station_id = ANY(%s) ORDER BY c.station_id, c.connector_id", (ids,)
    ).fetchall()
    for row in rows:
        view = ConnectorView(*row[:7], _tariff(row[7:]))  # type: ignore[call-arg]  # 7 columns + tariff
        connectors.setdefault(row[0], []).append(view)
    connected = {r[0] for r in conn.execute(f"{_CONNECTED} AND c.station_id = ANY(%s)", (ids,)).fetchall()}
    return CatalogSnapshot(locations, stations, connectors, connected)


def location_snapshot(conn: Conn, locations: list[LocationView]) -> CatalogSnapshot:
    """``locations`` with everything under them: three queries, whatever their number."""
    ids = [loc.id for loc in locations]
    rows = conn.execute(f"{_STATION_SELECT} WHERE s.location_id = ANY(%s::uuid[]) ORDER BY s.id", (ids,)).fetchall()
    return _complete(conn, locations, [_station(row) for row in rows])


def find_snapshot(
    conn: Conn,
    *,
    city: str | None = None,
    bbox: BoundingBox | None = None,
    owner_id: str | None = None,
    location_id: str | None = None,
) -> CatalogSnapshot:
    """The snapshot of the locations :func:`find_locations` returns for these filters."""
    return location_snapshot(
        conn, find_locations(conn, city=city, bbox=bbox, owner_id=owner_id, location_id=location_id))


def station_snapshot(conn: Conn, station_id: str) -> CatalogSnapshot | None:
    """One station in context: its whole location (so the station's siblings come along), or just the
    station when it has no location. None if there is no such station."""
    row = conn.execute(f"{_STATION_SELECT} WHERE s.id = %s", (station_id,)).fetchone()
    if row is None:
        return None
    station = _station(row)
    if station.location_id is None:
        return _complete(conn, [], [station])
    return find_snapshot(conn, location_id=station.location_id)


def all_stations_snapshot(conn: Conn) -> CatalogSnapshot:
    """Every station (unassigned ones too) with the locations they belong to: four queries."""
    stations = [_station(row) for row in conn.execute(f"{_STATION_SELECT} ORDER BY s.id").fetchall()]
    rows = conn.execute(f"SELECT {_LOCATION_COLUMNS} FROM locations l WHERE l.id IN "
                        "(SELECT location_id FROM stations) ORDER BY l.name, l.id").fetchall()
    return _complete(conn, [LocationView(*row) for row in rows], stations)


def find_tariffs(conn: Conn, *, owner_id: str | None, include_operator: bool, everything: bool = False
                 ) -> list[TariffView]:
    """Tariffs of ``owner_id``, plus operator tariffs when asked; ``everything`` ignores both filters."""
    rows = conn.execute(
        f"""SELECT {_TARIFF_COLUMNS.format(t="t")} FROM tariffs t
            WHERE %(all)s OR t.owner_id = %(owner)s::uuid OR (%(operator)s AND t.owner_id IS NULL)
            ORDER BY t.owner_id NULLS FIRST, t.name, t.id""",
        {"all": everything, "owner": owner_id, "operator": include_operator},
    ).fetchall()
    return [TariffView(*row) for row in rows]


def get_tariff(conn: Conn, tariff_id: str) -> TariffView | None:
    """One tariff, or None (also for a malformed id)."""
    if not is_uuid(tariff_id):
        return None
    row = conn.execute(f"SELECT {_TARIFF_COLUMNS.format(t='t')} FROM tariffs t WHERE t.id = %s",
                       (tariff_id,)).fetchone()
    return TariffView(*row) if row else None


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


@dataclass(frozen=True, slots=True)
class ConnectorStatus:
    """One connector's live status, without catalog details (what status subscriptions send)."""

    station_id: str
    connector_id: int
    status: str
    error_code: str
    updated_at: datetime


def station_listed(conn: Conn, station_id: str) -> bool:
    """Whether the station exists and is on the public map (it has a location)."""
    row = conn.execute("SELECT location_id IS NOT NULL FROM stations WHERE id = %s", (station_id,)).fetchone()
    return bool(row and row[0])


def station_statuses(conn: Conn, station_id: str) -> list[ConnectorStatus] | None:
    """The live status of a station's connectors, or None if there is no such station."""
    if conn.execute("SELECT 1 FROM stations WHERE id = %s", (station_id,)).fetchone() is None:
        return None
    rows = conn.execute(
        "SELECT station_id, connector_id, status, error_code, updated_at FROM connectors"
        " WHERE station_id = %s ORDER BY connector_id",
        (station_id,),
    ).fetchall()
    return [ConnectorStatus(*row) for row in rows]


def station_connected(conn: Conn, station_id: str) -> bool | None:
    """Whether a live csms node holds the station's socket; None if there is no such station."""
    if conn.execute("SELECT 1 FROM stations WHERE id = %s", (station_id,)).fetchone() is None:
        return None
    row = conn.execute(f"SELECT EXISTS ({_CONNECTED} AND c.station_id = %s)", (station_id,)).fetchone()
    return bool(row and row[0])
