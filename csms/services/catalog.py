"""Managing the catalog: who may create and change locations, stations, connectors and tariffs.

Rules:

- Owners manage the locations they own, the stations at those locations, and their own tariffs; admins
  manage everything and may set or change owners. An object the caller may not manage is reported as
  :class:`NotFound` (its existence is not revealed), except operator tariffs, which every owner sees:
  changing one is :class:`NotAllowed`.
- A station or connector uses its location owner's tariffs or operator tariffs (no owner), never another
  owner's. Changes that would break this (moving a station, changing a location's owner) are refused.
- Every mutation is one transaction that locks what it decides on (see ``csms.store.catalog`` for the
  lock order). Repeating a create with identical values returns the existing object and a repeated
  update changes nothing, so a client's retry after a timeout never duplicates anything.
- An admin's change to an object someone else owns is written to ``audit_log`` in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import trio

from csms.services import catalog_input as check
from csms.services.catalog_input import CatalogError, Conflict, InvalidInput, NotAllowed, NotFound
from csms.services.stations import hash_password, verify_password
from csms.store import audit
from csms.store import catalog as store

if TYPE_CHECKING:
    from csms.store.db import Conn, Database

__all__ = ["Actor", "CatalogError", "Conflict", "InvalidInput", "NotAllowed", "NotFound"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is changing the catalog.

    Attributes:
        user_id: the user acting (None for an admin API key).
        is_admin: operators manage everything.
        is_owner: station owners manage what they own.
        audit: ``(actor_kind, actor_id)`` for the audit log.
    """

    user_id: str | None
    is_admin: bool
    is_owner: bool
    audit: tuple[str, str]

    def can_manage(self, owner_id: str | None) -> bool:
        """Whether this actor manages objects owned by ``owner_id`` (None: the operator's)."""
        return self.is_admin or (self.is_owner and self.user_id is not None and owner_id == self.user_id)


def _foreign(actor: Actor, *owners: str | None) -> bool:
    """An admin acting on something someone else owns (before or after the change)."""
    return actor.is_admin and any(o is not None and o != actor.user_id for o in owners)


def _audit(conn: Conn, actor: Actor, action: str, target: str, detail: dict[str, Any]) -> None:
    """Record an admin's change to someone else's object (no secrets in ``detail``)."""
    audit.record(conn, actor_kind=actor.audit[0], actor_id=actor.audit[1], action=action, target=target,
                 detail=detail)


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in values.items()}


def _diff(current: Any, changes: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in changes.items() if getattr(current, k) != v}


def _new_owner(conn: Conn, actor: Actor, requested: str | None) -> str | None:
    """The owner a new object gets: owners own what they create; admins choose (None: the operator)."""
    if not actor.is_admin:
        if requested is not None and requested != actor.user_id:
            raise NotAllowed("Only admins may choose another owner.")
        return actor.user_id
    if requested is not None and not store.is_owner_user(conn, requested):
        raise InvalidInput("ownerId is not a user with the owner role.")
    return requested


def _usable_tariff(conn: Conn, actor: Actor, tariff_id: str, station_owner: str | None) -> store.TariffRow:
    """A tariff the actor may put on a station owned by ``station_owner`` (locked against changes)."""
    tariff = store.lock_tariff(conn, tariff_id)
    if tariff is None or not (tariff.owner_id is None or actor.can_manage(tariff.owner_id)):
        raise NotFound("No such tariff.")
    if tariff.owner_id is not None and tariff.owner_id != station_owner:
        raise InvalidInput("A station uses its owner's tariffs or operator tariffs only.")
    return tariff


def _owner_of(conn: Conn, station: store.StationRow) -> str | None:
    """The owner of a station's location, locked (FOR SHARE) so that it cannot change meanwhile."""
    location = store.lock_location(conn, station.location_id) if station.location_id else None
    return location.owner_id if location else None


def _managed_station(conn: Conn, actor: Actor, station_id: str) -> tuple[store.StationRow, str | None]:
    """The station (locked) and its owner, if the actor manages it."""
    station = store.lock_station(conn, station_id)
    owner = _owner_of(conn, station) if station else None
    if station is None or not actor.can_manage(owner):
        raise NotFound("No such station.")
    return station, owner


def _managed_location(conn: Conn, actor: Actor, location_id: str, *, exclusive: bool) -> store.LocationRow:
    location = store.lock_location(conn, location_id, exclusive=exclusive)
    if location is None or not actor.can_manage(location.owner_id):
        raise NotFound("No such location.")
    return location


# --- locations

async def create_location(db: Database, actor: Actor, *, name: str, address: str = "", city: str = "",
                          latitude: float | None = None, longitude: float | None = None,
                          owner_id: str | None = None) -> str:
    """Create a location and return its id (the existing one's for an identical repeat).

    Raises:
        InvalidInput, NotAllowed, Conflict: see the module rules.
    """
    values = check.changes({"name": name, "address": address, "city": city, "latitude": latitude,
                            "longitude": longitude}, check.LOCATION_FIELDS)
    check.coordinates_pair(values["latitude"], values["longitude"])
    requested_owner = check.object_id(owner_id, "ownerId")

    def write(conn: Conn) -> str:
        values["owner_id"] = _new_owner(conn, actor, requested_owner)
        new_id = store.insert_location(conn, values)
        if new_id is None:
            existing = store.location_by_name(conn, values["name"])
            if existing is not None and actor.can_manage(existing.owner_id) and not _diff(existing, values):
                return existing.id
            raise Conflict("A location with this name exists.")
        if _foreign(actor, values["owner_id"]):
            _audit(conn, actor, "location.create", f"location:{new_id}", _jsonable(values))
        return new_id

    return await db.run(write)


async def update_location(db: Database, actor: Actor, location_id: str, changes: dict[str, Any]) -> None:
    """Change a location's name, address, city, coordinates or (admins) owner.

    Args:
        changes: only the fields to change; a None value clears it where that is allowed.

    Raises:
        InvalidInput, NotFound, NotAllowed, Conflict: see the module rules.
    """
    location_id = check.object_id(location_id, "id") or ""
    clean = check.changes(changes, check.LOCATION_FIELDS)

    def write(conn: Conn) -> None:
        location = _managed_location(conn, actor, location_id, exclusive=True)
        check.coordinates_pair(clean.get("latitude", location.latitude), clean.get("longitude", location.longitude))
        diff = _diff(location, clean)
        if "owner_id" in diff:
            if not actor.is_admin:
                raise NotAllowed("Only admins may change a location's owner.")
            if diff["owner_id"] is not None and not store.is_owner_user(conn, diff["owner_id"]):
                raise InvalidInput("ownerId is not a user with the owner role.")
            if store.uses_foreign_tariffs(conn, store.station_ids_at(conn, location_id), diff["owner_id"]):
                raise InvalidInput("Stations here use the current owner's tariffs: assign operator tariffs "
                                   "or none first.")
        if not diff:
            return
        try:
            store.update_location(conn, location_id, diff)
        except store.Duplicate:
            raise Conflict("A location with this name exists.") from None
        if _foreign(actor, location.owner_id, diff.get("owner_id")):
            _audit(conn, actor, "location.update", f"location:{location_id}", _jsonable(diff))

    await db.run(write)


# --- stations

async def create_station(db: Database, actor: Actor, *, station_id: str, connector_count: int,
                         location_id: str | None = None, tariff_id: str | None = None,
                         password: str | None = None) -> None:
    """Register a station with its connectors, at a location the actor manages.

    Owners must give one of their locations; admins may leave a station unassigned. The optional
    password (security profile 1) is stored as an argon2id hash.

    Raises:
        InvalidInput, NotFound, Conflict: see the module rules.
    """
    station_id = check.station_id(station_id)
    count = check.connector_count(connector_count)
    location = check.object_id(location_id, "locationId")
    tariff = check.object_id(tariff_id, "tariffId")
    if password is not None:
        check.password(password)
    if location is None and not actor.is_admin:
        raise InvalidInput("Put the station at one of your locations (locationId).")
    # argon2 is deliberately slow: hash off the event loop, before taking any lock.
    hashed = await trio.to_thread.run_sync(hash_password, password) if password is not None else None

    def write(conn: Conn) -> None:
        owner = None
        if location is not None:
            owner = _managed_location(conn, actor, location, exclusive=False).owner_id
        if tariff is not None:
            _usable_tariff(conn, actor, tariff, owner)
        if not store.insert_station(conn, station_id, location, count, tariff, hashed):
            _same_station_or_conflict(conn, actor, station_id, location, count, tariff, password)
            return
        if _foreign(actor, owner):
            detail = {"location_id": location, "connector_count": count, "tariff_id": tariff,
                      "password_set": hashed is not None}
            _audit(conn, actor, "station.create", f"station:{station_id}", detail)

    await db.run(write)


def _same_station_or_conflict(conn: Conn, actor: Actor, station_id: str, location: str | None, count: int,
                              tariff: str | None, password: str | None) -> None:
    """Accept a repeated create of an identical station (a retry); anything else is a conflict."""
    existing = store.lock_station(conn, station_id)
    same = (
        existing is not None
        and actor.can_manage(_owner_of(conn, existing))
        and (existing.location_id, existing.connector_count, existing.tariff_id) == (location, count, tariff)
        and (existing.password_hash is None if password is None else verify_password(existing.password_hash, password))
    )
    if not same:
        raise Conflict("A station with this id exists.")


async def update_station(db: Database, actor: Actor, station_id: str, changes: dict[str, Any]) -> None:
    """Move a station, change its connector count or its tariff (None: no station tariff).

    Removing connectors that have an open transaction or an active session is a :class:`Conflict`.

    Raises:
        InvalidInput, NotFound, Conflict: see the module rules.
    """
    clean = check.changes(changes, check.STATION_FIELDS)
    if "location_id" in clean and clean["location_id"] is None and not actor.is_admin:
        raise InvalidInput("A station stays at one of your locations.")

    def write(conn: Conn) -> None:
        station, owner = _managed_station(conn, actor, station_id)
        diff = _diff(station, clean)
        new_owner = owner
        if diff.get("location_id") is not None:
            new_owner = _managed_location(conn, actor, diff["location_id"], exclusive=False).owner_id
        elif "location_id" in diff:
            new_owner = None
        if diff.get("tariff_id") is not None:
            _usable_tariff(conn, actor, diff["tariff_id"], new_owner)
        if not diff:
            return
        if "connector_count" in diff:
            busy = store.connectors_in_use(conn, station_id, diff["connector_count"])
            if busy:
                raise Conflict(f"Connectors {', '.join(map(str, busy))} are in use and cannot be removed.")
            store.set_connector_count(conn, station_id, diff["connector_count"])
        store.update_station(conn, station_id, diff)
        # Checked after the writes so a tariff changed in the same call counts; raising rolls back.
        if new_owner != owner and store.uses_foreign_tariffs(conn, [station_id], new_owner):
            raise InvalidInput("The station or its connectors use tariffs of its current owner: change them first.")
        if _foreign(actor, owner, new_owner):
            _audit(conn, actor, "station.update", f"station:{station_id}", diff)

    await db.run(write)


async def assign_tariff(db: Database, actor: Actor, station_id: str, connector_id: int | None,
                        tariff_id: str | None) -> None:
    """Set the tariff of a station, or of one connector (overriding the station's); None removes it.

    Raises:
        InvalidInput, NotFound: see the module rules.
    """
    tariff = check.object_id(tariff_id, "tariffId")
    if connector_id is not None and not 1 <= connector_id <= check.MAX_CONNECTORS:
        raise InvalidInput(f"connectorId must be between 1 and {check.MAX_CONNECTORS}.")

    def write(conn: Conn) -> None:
        station, owner = _managed_station(conn, actor, station_id)
        if connector_id is not None and not store.lock_connector(conn, station_id, connector_id):
            raise NotFound("The station has no such connector.")
        if tariff is not None:
            _usable_tariff(conn, actor, tariff, owner)
        if connector_id is None:
            if station.tariff_id == tariff:
                return
            store.update_station(conn, station_id, {"tariff_id": tariff})
        else:
            if store.connector_tariff(conn, station_id, connector_id) == tariff:
                return
            store.set_connector_tariff(conn, station_id, connector_id, tariff)
        if _foreign(actor, owner):
            _audit(conn, actor, "tariff.assign", f"station:{station_id}",
                   {"connector_id": connector_id, "tariff_id": tariff})

    await db.run(write)


# --- tariffs

async def create_tariff(db: Database, actor: Actor, *, name: str, price_per_kwh_tyiyn: int,
                        session_fee_tyiyn: int = 0, owner_id: str | None = None) -> str:
    """Create a tariff (names are unique per owner, ignoring case) and return its id.

    An identical repeat returns the existing tariff; the same name with other prices is a conflict.

    Raises:
        InvalidInput, NotAllowed, Conflict: see the module rules.
    """
    clean_name = check.text(name, "name", min_len=1, max_len=100)
    per_kwh = check.price(price_per_kwh_tyiyn)
    per_session = check.fee(session_fee_tyiyn)
    requested_owner = check.object_id(owner_id, "ownerId")

    def write(conn: Conn) -> str:
        owner = _new_owner(conn, actor, requested_owner)
        store.lock_tariff_names(conn, owner)
        existing = store.tariff_by_name(conn, owner, clean_name)
        if existing is not None:
            if (existing.name, existing.price_per_kwh_tyiyn, existing.session_fee_tyiyn) == (
                    clean_name, per_kwh, per_session):
                return existing.id
            raise Conflict("A tariff with this name exists.")
        new_id = store.insert_tariff(conn, owner, clean_name, per_kwh, per_session)
        if _foreign(actor, owner):
            _audit(conn, actor, "tariff.create", f"tariff:{new_id}",
                   {"owner_id": owner, "name": clean_name, "price_per_kwh_tyiyn": per_kwh,
                    "session_fee_tyiyn": per_session})
        return new_id

    return await db.run(write)


async def update_tariff(db: Database, actor: Actor, tariff_id: str, changes: dict[str, Any]) -> None:
    """Change a tariff's name, prices or (admins, while it is unused) owner.

    Running sessions keep the price they started with (it is copied at start).

    Raises:
        InvalidInput, NotFound, NotAllowed, Conflict: see the module rules.
    """
    tariff_id = check.object_id(tariff_id, "id") or ""
    clean = check.changes(changes, check.TARIFF_FIELDS)

    def write(conn: Conn) -> None:
        tariff = store.lock_tariff(conn, tariff_id, exclusive=True)
        if tariff is None or not (tariff.owner_id is None or actor.can_manage(tariff.owner_id)):
            raise NotFound("No such tariff.")
        if not actor.can_manage(tariff.owner_id):
            raise NotAllowed("Only admins change operator tariffs.")
        diff = _diff(tariff, clean)
        if "owner_id" in diff:
            if not actor.is_admin:
                raise NotAllowed("Only admins may change a tariff's owner.")
            if diff["owner_id"] is not None and not store.is_owner_user(conn, diff["owner_id"]):
                raise InvalidInput("ownerId is not a user with the owner role.")
            if store.tariff_in_use(conn, tariff_id):
                raise InvalidInput("The tariff is in use: its owner cannot change.")
        if "name" in diff or "owner_id" in diff:
            owner = diff.get("owner_id", tariff.owner_id)
            store.lock_tariff_names(conn, owner)
            clash = store.tariff_by_name(conn, owner, diff.get("name", tariff.name))
            if clash is not None and clash.id != tariff_id:
                raise Conflict("A tariff with this name exists.")
        if not diff:
            return
        store.update_tariff(conn, tariff_id, diff)
        if _foreign(actor, tariff.owner_id, diff.get("owner_id")):
            _audit(conn, actor, "tariff.update", f"tariff:{tariff_id}", diff)

    await db.run(write)
