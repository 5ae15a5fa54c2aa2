"""SQL for managing the catalog: locations, stations, connectors and tariffs, and the audit log.

Reads for the API are in ``csms.store.views``; this module holds the writes, the row locks the
business rules (``csms.services.catalog``) take before deciding, and two lookups other services use:
:func:`effective_tariff` and :func:`station_owner`. The audit log has its own module (``csms.store.audit``).

Lock order, to stay deadlock-free: station rows, then location rows, then tariff rows.

Every function runs inside the caller's transaction (call them through ``Database.run``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import psycopg
from psycopg import sql

from csms.store.sessions import OPEN_STATUSES_SQL

if TYPE_CHECKING:
    from decimal import Decimal

    from csms.store.db import Conn

# Columns a caller may change through update_*: anything else is a programming error.
LOCATION_COLUMNS = frozenset({"name", "address", "city", "latitude", "longitude", "owner_id"})
STATION_COLUMNS = frozenset({"location_id", "connector_count", "tariff_id"})
TARIFF_COLUMNS = frozenset({"name", "price_per_kwh_tyiyn", "session_fee_tyiyn", "owner_id"})


class Duplicate(Exception):
    """A unique name or id is taken (``constraint`` names which)."""

    def __init__(self, constraint: str) -> None:
        super().__init__(constraint)
        self.constraint = constraint


@dataclass(frozen=True, slots=True)
class LocationRow:
    """A location as the rules see it (coordinates as stored: numeric with 6 decimals)."""

    id: str
    name: str
    address: str
    city: str
    latitude: Decimal | None
    longitude: Decimal | None
    owner_id: str | None


@dataclass(frozen=True, slots=True)
class StationRow:
    """The managed fields of a station."""

    id: str
    location_id: str | None
    connector_count: int | None
    tariff_id: str | None
    password_hash: str | None


@dataclass(frozen=True, slots=True)
class TariffRow:
    """A tariff; ``owner_id`` None is an operator tariff."""

    id: str
    owner_id: str | None
    name: str
    price_per_kwh_tyiyn: int
    session_fee_tyiyn: int


def _set_clause(changes: dict[str, Any], allowed: frozenset[str]) -> sql.Composed:
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    return sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in sorted(changes)
    )


def _unique(conn: Conn, statement: sql.Composed, params: dict[str, Any]) -> None:
    """Run a write in a savepoint, turning a unique violation into :class:`Duplicate`."""
    try:
        with conn.transaction():
            conn.execute(statement, params)
    except psycopg.errors.UniqueViolation as exc:
        raise Duplicate(exc.diag.constraint_name or "unique") from None


# --- locations

_LOCATION = "SELECT id::text, name, address, city, latitude, longitude, owner_id::text FROM locations"


def lock_location(conn: Conn, location_id: str, *, exclusive: bool = False) -> LocationRow | None:
    """Read a location and lock it (FOR UPDATE, else FOR SHARE) until the transaction ends."""
    mode = "UPDATE" if exclusive else "SHARE"
    row = conn.execute(f"{_LOCATION} WHERE id = %s FOR {mode}", (location_id,)).fetchone()
    return LocationRow(*row) if row else None


def location_by_name(conn: Conn, name: str) -> LocationRow | None:
    """The location called ``name`` (names are unique), or None."""
    row = conn.execute(f"{_LOCATION} WHERE name = %s", (name,)).fetchone()
    return LocationRow(*row) if row else None


def insert_location(conn: Conn, values: dict[str, Any]) -> str | None:
    """Insert a location; its id, or None when the name is taken (nothing is written then)."""
    row = conn.execute(
        """INSERT INTO locations (name, address, city, latitude, longitude, owner_id)
           VALUES (%(name)s, %(address)s, %(city)s, %(latitude)s, %(longitude)s, %(owner_id)s)
           ON CONFLICT (name) DO NOTHING RETURNING id::text""",
        values,
    ).fetchone()
    return str(row[0]) if row else None


def update_location(conn: Conn, location_id: str, changes: dict[str, Any]) -> None:
    """Change some columns of a location.

    Raises:
        Duplicate: the new name is taken.
    """
    statement = sql.SQL("UPDATE locations SET {} WHERE id = {}").format(
        _set_clause(changes, LOCATION_COLUMNS), sql.Placeholder("_id"))
    _unique(conn, statement, {**changes, "_id": location_id})


def station_ids_at(conn: Conn, location_id: str) -> list[str]:
    """The ids of the stations at a location."""
    return [r[0] for r in conn.execute("SELECT id FROM stations WHERE location_id = %s", (location_id,))]


# --- stations and connectors

def lock_station(conn: Conn, station_id: str) -> StationRow | None:
    """Read a station's managed fields and lock its row until the transaction ends."""
    row = conn.execute(
        """SELECT id, location_id::text, connector_count, tariff_id::text, password_hash
           FROM stations WHERE id = %s FOR UPDATE""",
        (station_id,),
    ).fetchone()
    return StationRow(*row) if row else None


def insert_station(conn: Conn, station_id: str, location_id: str | None, connector_count: int,
                   tariff_id: str | None, password_hash: str | None) -> bool:
    """Register a station with connectors 1..``connector_count``. False if the id exists (nothing written)."""
    row = conn.execute(
        """INSERT INTO stations (id, location_id, connector_count, tariff_id, password_hash)
           VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING RETURNING id""",
        (station_id, location_id, connector_count, tariff_id, password_hash),
    ).fetchone()
    if row is None:
        return False
    set_connector_count(conn, station_id, connector_count)
    return True


def update_station(conn: Conn, station_id: str, changes: dict[str, Any]) -> None:
    """Change some managed columns of a station (connector rows: see :func:`set_connector_count`)."""
    statement = sql.SQL("UPDATE stations SET {} WHERE id = {}").format(
        _set_clause(changes, STATION_COLUMNS), sql.Placeholder("_id"))
    conn.execute(statement, {**changes, "_id": station_id})


def set_connector_count(conn: Conn, station_id: str, count: int) -> None:
    """Make connectors 1..``count`` exist (status Unknown until the charger reports) and drop higher ones."""
    conn.execute(
        """INSERT INTO connectors (station_id, connector_id)
           SELECT %s, n FROM generate_series(1, %s) AS n ON CONFLICT DO NOTHING""",
        (station_id, count),
    )
    conn.execute("DELETE FROM connectors WHERE station_id = %s AND connector_id > %s", (station_id, count))


def connectors_in_use(conn: Conn, station_id: str, above: int) -> list[int]:
    """Connectors numbered above ``above`` with an open charger transaction or an active app session."""
    rows = conn.execute(
        f"""SELECT connector_id FROM transactions
            WHERE station_id = %(s)s AND connector_id > %(n)s AND stopped_at IS NULL
            UNION
            SELECT connector_id FROM charging_sessions
            WHERE station_id = %(s)s AND connector_id > %(n)s AND status IN {OPEN_STATUSES_SQL}
            ORDER BY 1""",
        {"s": station_id, "n": above},
    ).fetchall()
    return [int(r[0]) for r in rows]


def lock_connector(conn: Conn, station_id: str, connector_id: int) -> bool:
    """Lock one connector row; False if the station has no such connector."""
    row = conn.execute(
        "SELECT 1 FROM connectors WHERE station_id = %s AND connector_id = %s FOR UPDATE", (station_id, connector_id)
    ).fetchone()
    return row is not None


def set_connector_tariff(conn: Conn, station_id: str, connector_id: int, tariff_id: str | None) -> None:
    """Give a connector its own tariff (None: it uses the station's again)."""
    conn.execute(
        "UPDATE connectors SET tariff_id = %s WHERE station_id = %s AND connector_id = %s",
        (tariff_id, station_id, connector_id),
    )


def connector_tariff(conn: Conn, station_id: str, connector_id: int) -> str | None:
    """The id of a connector's own tariff, if it has one."""
    row = conn.execute("SELECT tariff_id::text FROM connectors WHERE station_id = %s AND connector_id = %s",
                       (station_id, connector_id)).fetchone()
    return row[0] if row else None


# --- tariffs

_TARIFF = "SELECT id::text, owner_id::text, name, price_per_kwh_tyiyn, session_fee_tyiyn FROM tariffs"


def lock_tariff(conn: Conn, tariff_id: str, *, exclusive: bool = False) -> TariffRow | None:
    """Read a tariff and lock it (FOR UPDATE, else FOR SHARE) until the transaction ends."""
    mode = "UPDATE" if exclusive else "SHARE"
    row = conn.execute(f"{_TARIFF} WHERE id = %s FOR {mode}", (tariff_id,)).fetchone()
    return TariffRow(*row) if row else None


def lock_tariff_names(conn: Conn, owner_id: str | None) -> None:
    """Serialise tariff creation per owner, so two concurrent creates cannot both pass the name check.

    Tariff names have no unique index (0004), so uniqueness per owner is kept here.
    """
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"csms.tariffs:{owner_id or '-'}",))


def tariff_by_name(conn: Conn, owner_id: str | None, name: str) -> TariffRow | None:
    """The tariff of ``owner_id`` (None: operator) with this name, ignoring case."""
    row = conn.execute(
        f"{_TARIFF} WHERE owner_id IS NOT DISTINCT FROM %s::uuid AND lower(name) = lower(%s) ORDER BY created_at",
        (owner_id, name),
    ).fetchone()
    return TariffRow(*row) if row else None


def insert_tariff(conn: Conn, owner_id: str | None, name: str, price_per_kwh_tyiyn: int,
                  session_fee_tyiyn: int) -> str:
    """Insert a tariff and return its id."""
    row = conn.execute(
        """INSERT INTO tariffs (owner_id, name, price_per_kwh_tyiyn, session_fee_tyiyn)
           VALUES (%s, %s, %s, %s) RETURNING id::text""",
        (owner_id, name, price_per_kwh_tyiyn, session_fee_tyiyn),
    ).fetchone()
    assert row is not None
    return str(row[0])


def update_tariff(conn: Conn, tariff_id: str, changes: dict[str, Any]) -> None:
    """Change some columns of a tariff (``updated_at`` follows)."""
    statement = sql.SQL("UPDATE tariffs SET {}, updated_at = now() WHERE id = {}").format(
        _set_clause(changes, TARIFF_COLUMNS), sql.Placeholder("_id"))
    conn.execute(statement, {**changes, "_id": tariff_id})


def tariff_in_use(conn: Conn, tariff_id: str) -> bool:
    """Whether a station or a connector uses this tariff."""
    row = conn.execute(
        """SELECT EXISTS (SELECT 1 FROM stations WHERE tariff_id = %(t)s)
               OR EXISTS (SELECT 1 FROM connectors WHERE tariff_id = %(t)s)""",
        {"t": tariff_id},
    ).fetchone()
    return bool(row and row[0])


def uses_foreign_tariffs(conn: Conn, station_ids: list[str], owner_id: str | None) -> bool:
    """Whether these stations or their connectors use a tariff of an owner other than ``owner_id``.

    Operator tariffs (no owner) fit every station.
    """
    row = conn.execute(
        """SELECT EXISTS (
               SELECT 1 FROM tariffs t
               WHERE t.owner_id IS NOT NULL AND t.owner_id IS DISTINCT FROM %(owner)s::uuid
                 AND t.id IN (SELECT tariff_id FROM stations WHERE id = ANY(%(ids)s)
                              UNION SELECT tariff_id FROM connectors WHERE station_id = ANY(%(ids)s)))""",
        {"ids": station_ids, "owner": owner_id},
    ).fetchone()
    return bool(row and row[0])


# --- users

def is_owner_user(conn: Conn, user_id: str) -> bool:
    """Whether ``user_id`` is a user with the owner role (who may own locations and tariffs)."""
    row = conn.execute("SELECT role = 'owner' FROM users WHERE id = %s", (user_id,)).fetchone()
    return bool(row and row[0])


# --- lookups for other services

class EffectiveTariff(NamedTuple):
    """The tariff that applies to one connector."""

    tariff_id: str
    price_per_kwh_tyiyn: int
    session_fee_tyiyn: int


def effective_tariff(conn: Conn, station_id: str, connector_id: int) -> EffectiveTariff | None:
    """``(tariff_id, price_per_kwh_tyiyn, session_fee_tyiyn)`` that applies to one connector, or None.

    The connector's own tariff wins, else the station's. None when neither has one, the station is
    unknown, or ``connector_id`` is 0 (the charge point itself never charges). Price the energy with
    ``csms.services.tariffs.energy_cost``, never here.
    """
    if connector_id < 1:
        return None
    row = conn.execute(
        """SELECT t.id::text, t.price_per_kwh_tyiyn, t.session_fee_tyiyn
           FROM stations s
           LEFT JOIN connectors c ON c.station_id = s.id AND c.connector_id = %s
           JOIN tariffs t ON t.id = coalesce(c.tariff_id, s.tariff_id)
           WHERE s.id = %s""",
        (connector_id, station_id),
    ).fetchone()
    return EffectiveTariff(str(row[0]), int(row[1]), int(row[2])) if row else None


def station_owner(conn: Conn, station_id: str) -> str | None:
    """The user id of the owner of the station's location; None if unassigned, unowned or unknown."""
    row = conn.execute(
        "SELECT l.owner_id::text FROM stations s JOIN locations l ON l.id = s.location_id WHERE s.id = %s",
        (station_id,),
    ).fetchone()
    return row[0] if row else None
