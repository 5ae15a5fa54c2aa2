"""The catalog API area: the public map, owners' locations and tariffs, and the mutations that manage them.

Access: the map queries (``locations``, ``location``, ``station``) are public, with operator-only
fields hidden field by field (``catalog_types``). ``myLocations`` and ``myTariffs`` and every mutation
need an owner or an admin; the business rules (``csms.services.catalog``) scope them to what the
caller manages. Errors: BAD_USER_INPUT, NOT_FOUND (also for objects the caller may not see), FORBIDDEN,
CONFLICT (a name or id is taken, or connectors in use would be removed).

Every query reads one snapshot in one transaction with a fixed number of SQL queries.
"""

from __future__ import annotations

import strawberry
from strawberry import Info

from csms.api.access import OWNER, PUBLIC
from csms.api.catalog_types import Location, Station, Tariff, actor_of, build, catalog_errors
from csms.api.context import ApiContext  # noqa: TC001 (strawberry reads resolver annotations at runtime)
from csms.api.errors import BadUserInput, Forbidden, NotFound
from csms.api.scalars import Long
from csms.services import catalog
from csms.services import catalog_input as check
from csms.store import views


@strawberry.input(description="A map rectangle in degrees. west > east crosses the antimeridian.")
class BoundingBoxInput:
    south: float
    west: float
    north: float
    east: float


def _bbox(box: BoundingBoxInput | None) -> views.BoundingBox | None:
    if box is None:
        return None
    with catalog_errors():
        south, north = check.coordinate(box.south, "south", 90), check.coordinate(box.north, "north", 90)
        west, east = check.coordinate(box.west, "west", 180), check.coordinate(box.east, "east", 180)
    if south is None or north is None or west is None or east is None or south > north:
        raise BadUserInput("The box needs south <= north.")
    return views.BoundingBox(float(south), float(west), float(north), float(east))


def _id(value: str | None, name: str) -> str | None:
    try:
        return check.object_id(value, name)
    except check.InvalidInput as exc:
        raise BadUserInput(str(exc)) from None


# Resolvers are plain typed functions passed as resolver=: strawberry's decorator form is untyped.
async def resolve_locations(
    info: Info[ApiContext, None], city: str | None = None, bbox: BoundingBoxInput | None = None
) -> list[Location]:
    """Locations on the map, optionally in one city (ignoring case) and/or inside a box."""
    if city is not None:
        with catalog_errors():
            city = check.text(city, "city", min_len=1, max_len=100)
    snapshot = await info.context.db.run(views.find_snapshot, city=city, bbox=_bbox(bbox))
    return build(snapshot, actor_of(info.context.principal))[0]


async def resolve_location(info: Info[ApiContext, None], id: strawberry.ID) -> Location | None:
    """One location, or null if the id is unknown."""
    snapshot = await info.context.db.run(views.find_snapshot, location_id=_id(id, "id"))
    locations = build(snapshot, actor_of(info.context.principal))[0]
    return locations[0] if locations else None


async def load_station(info: Info[ApiContext, None], station_id: str) -> Station | None:
    """A station as the caller may see it, with its location and siblings; None if unknown or hidden."""
    snapshot = await info.context.db.run(views.station_snapshot, station_id)
    if snapshot is None:
        return None
    stations = build(snapshot, actor_of(info.context.principal))[1]
    return next((s for s in stations if s.id == station_id), None)


async def resolve_station(info: Info[ApiContext, None], id: str) -> Station | None:
    """One station, or null if the id is unknown (or it is not on the map and the caller is no admin)."""
    return await load_station(info, id)


def _scope(info: Info[ApiContext, None], owner_id: str | None) -> tuple[catalog.Actor, str | None]:
    """The actor, and whose objects a ``my*`` query lists (None: everything, for admins)."""
    actor = actor_of(info.context.require())
    assert actor is not None
    owner = _id(owner_id, "ownerId")
    if actor.is_admin:
        return actor, owner
    if owner is not None and owner != actor.user_id:
        raise Forbidden("Only admins list other owners' objects.")
    return actor, actor.user_id


async def resolve_my_locations(info: Info[ApiContext, None], owner_id: strawberry.ID | None = None) -> list[Location]:
    """The caller's locations (admins: every location, or one owner's)."""
    actor, owner = _scope(info, owner_id)
    if owner is None and not actor.is_admin:
        return []  # an owner API key without a user owns nothing
    snapshot = await info.context.db.run(views.find_snapshot, owner_id=owner)
    return build(snapshot, actor)[0]


async def resolve_my_tariffs(
    info: Info[ApiContext, None], owner_id: strawberry.ID | None = None, include_operator_tariffs: bool = True
) -> list[Tariff]:
    """The caller's tariffs plus, unless excluded, the operator tariffs they may also use."""
    actor, owner = _scope(info, owner_id)
    everything = actor.is_admin and owner is None
    rows = await info.context.db.run(views.find_tariffs, owner_id=owner, include_operator=include_operator_tariffs,
                                     everything=everything)
    return [Tariff.from_view(row, actor) for row in rows]


@strawberry.type
class CatalogQuery:
    locations: list[Location] = strawberry.field(
        resolver=resolve_locations, permission_classes=PUBLIC,
        description="The public map: locations with stations, live connector status and tariffs, by name.",
    )
    location: Location | None = strawberry.field(
        resolver=resolve_location, permission_classes=PUBLIC, description="One location, or null if unknown."
    )
    station: Station | None = strawberry.field(
        resolver=resolve_station, permission_classes=PUBLIC,
        description="One station, or null if unknown. Stations without a location are visible to admins only.",
    )
    my_locations: list[Location] = strawberry.field(
        resolver=resolve_my_locations, permission_classes=OWNER,
        description="Owners: their locations. Admins: every location, or one owner's with ownerId.",
    )
    my_tariffs: list[Tariff] = strawberry.field(
        resolver=resolve_my_tariffs, permission_classes=OWNER,
        description="Owners: their tariffs and the operator tariffs. Admins: every tariff, or one owner's.",
    )


# --- mutations

@strawberry.input
class CreateLocationInput:
    name: str
    address: str = ""
    city: str = ""
    latitude: float | None = None
    longitude: float | None = None
    owner_id: strawberry.ID | None = strawberry.field(default=None, description="Admins only; null: operator.")


@strawberry.input(description="Only the fields given change; null clears coordinates or (admins) the owner.")
class UpdateLocationInput:
    id: strawberry.ID
    name: str | None = strawberry.UNSET
    address: str | None = strawberry.UNSET
    city: str | None = strawberry.UNSET
    latitude: float | None = strawberry.UNSET
    longitude: float | None = strawberry.UNSET
    owner_id: strawberry.ID | None = strawberry.UNSET


@strawberry.input
class CreateStationInput:
    id: str = strawberry.field(description="1 to 48 of A-Z, 0-9 and '-'.")
    connector_count: int = strawberry.field(description="1 to 10; creates connectors 1..n.")
    location_id: strawberry.ID | None = strawberry.field(default=None, description="Required for owners.")
    tariff_id: strawberry.ID | None = None
    password: str | None = strawberry.field(
        default=None, description="HTTP Basic password (16 to 40 printable ASCII), stored as an argon2id hash."
    )


@strawberry.input(description="Only the fields given change; tariffId null removes the station's tariff.")
class UpdateStationInput:
    id: str
    location_id: strawberry.ID | None = strawberry.UNSET
    connector_count: int | None = strawberry.UNSET
    tariff_id: strawberry.ID | None = strawberry.UNSET


@strawberry.input
class CreateTariffInput:
    name: str
    price_per_kwh_tyiyn: Long = strawberry.field(description="0 to 10,000,000 tyiyn per kWh.")
    session_fee_tyiyn: Long = strawberry.field(default=Long(0), description="0 to 10,000,000 tyiyn.")
    owner_id: strawberry.ID | None = strawberry.field(default=None, description="Admins only; null: operator tariff.")


@strawberry.input(description="Only the fields given change. The owner changes only while the tariff is unused.")
class UpdateTariffInput:
    id: strawberry.ID
    name: str | None = strawberry.UNSET
    price_per_kwh_tyiyn: Long | None = strawberry.UNSET
    session_fee_tyiyn: Long | None = strawberry.UNSET
    owner_id: strawberry.ID | None = strawberry.UNSET


def _given(values: object, *names: str) -> dict[str, object]:
    """The input fields the client sent (UNSET ones are left out)."""
    return {name: getattr(values, name) for name in names if getattr(values, name) is not strawberry.UNSET}


def _actor(info: Info[ApiContext, None]) -> catalog.Actor:
    actor = actor_of(info.context.require())
    assert actor is not None
    return actor


async def _location(info: Info[ApiContext, None], location_id: str) -> Location:
    found = await resolve_location(info, strawberry.ID(location_id))
    if found is None:  # deleted between the write and this read
        raise NotFound("No such location.")
    return found


async def _station(info: Info[ApiContext, None], station_id: str) -> Station:
    found = await load_station(info, station_id)
    if found is None:
        raise NotFound("No such station.")
    return found


async def _tariff(info: Info[ApiContext, None], tariff_id: str) -> Tariff:
    view = await info.context.db.run(views.get_tariff, tariff_id)
    if view is None:
        raise NotFound("No such tariff.")
    return Tariff.from_view(view, _actor(info))


async def resolve_create_location(info: Info[ApiContext, None], input: CreateLocationInput) -> Location:
    """Create a location (an identical repeat returns the existing one)."""
    with catalog_errors():
        new_id = await catalog.create_location(
            info.context.db, _actor(info), name=input.name, address=input.address, city=input.city,
            latitude=input.latitude, longitude=input.longitude, owner_id=input.owner_id,
        )
    return await _location(info, new_id)


async def resolve_update_location(info: Info[ApiContext, None], input: UpdateLocationInput) -> Location:
    """Change the given fields of a location."""
    changes = _given(input, "name", "address", "city", "latitude", "longitude", "owner_id")
    with catalog_errors():
        await catalog.update_location(info.context.db, _actor(info), input.id, changes)
    return await _location(info, str(_id(input.id, "id")))


async def resolve_create_station(info: Info[ApiContext, None], input: CreateStationInput) -> Station:
    """Register a station with its connectors (an identical repeat returns the existing one)."""
    with catalog_errors():
        await catalog.create_station(
            info.context.db, _actor(info), station_id=input.id, connector_count=input.connector_count,
            location_id=input.location_id, tariff_id=input.tariff_id, password=input.password,
        )
    return await _station(info, input.id)


async def resolve_update_station(info: Info[ApiContext, None], input: UpdateStationInput) -> Station:
    """Move a station, change its connector count or its tariff."""
    changes = _given(input, "location_id", "connector_count", "tariff_id")
    with catalog_errors():
        await catalog.update_station(info.context.db, _actor(info), input.id, changes)
    return await _station(info, input.id)


async def resolve_create_tariff(info: Info[ApiContext, None], input: CreateTariffInput) -> Tariff:
    """Create a tariff (an identical repeat returns the existing one)."""
    with catalog_errors():
        new_id = await catalog.create_tariff(
            info.context.db, _actor(info), name=input.name, price_per_kwh_tyiyn=input.price_per_kwh_tyiyn,
            session_fee_tyiyn=input.session_fee_tyiyn, owner_id=input.owner_id,
        )
    return await _tariff(info, new_id)


async def resolve_update_tariff(info: Info[ApiContext, None], input: UpdateTariffInput) -> Tariff:
    """Change the given fields of a tariff."""
    changes = _given(input, "name", "price_per_kwh_tyiyn", "session_fee_tyiyn", "owner_id")
    with catalog_errors():
        await catalog.update_tariff(info.context.db, _actor(info), input.id, changes)
    return await _tariff(info, str(_id(input.id, "id")))


async def resolve_assign_tariff(
    info: Info[ApiContext, None],
    station_id: str,
    connector_id: int | None = None,
    tariff_id: strawberry.ID | None = None,
) -> Station:
    """Set (or with tariffId null, remove) the tariff of a station or of one of its connectors."""
    with catalog_errors():
        await catalog.assign_tariff(info.context.db, _actor(info), station_id, connector_id, tariff_id)
    return await _station(info, station_id)


@strawberry.type
class CatalogMutation:
    create_location: Location = strawberry.field(
        resolver=resolve_create_location, permission_classes=OWNER,
        description="Create a location. Owners own what they create; admins may set ownerId. CONFLICT if the "
        "name is taken (an identical repeat returns the existing location).",
    )
    update_location: Location = strawberry.field(
        resolver=resolve_update_location, permission_classes=OWNER,
        description="Change a location you manage (admins: any, and its owner).",
    )
    create_station: Station = strawberry.field(
        resolver=resolve_create_station, permission_classes=OWNER,
        description="Register a charge point with its connectors at a location you manage. CONFLICT if the id "
        "is taken (an identical repeat returns the existing station).",
    )
    update_station: Station = strawberry.field(
        resolver=resolve_update_station, permission_classes=OWNER,
        description="Move a station, change its connector count or its tariff. CONFLICT when connectors in use "
        "would be removed.",
    )
    create_tariff: Tariff = strawberry.field(
        resolver=resolve_create_tariff, permission_classes=OWNER,
        description="Create a tariff; names are unique per owner. Admins may set ownerId (null: operator tariff).",
    )
    update_tariff: Tariff = strawberry.field(
        resolver=resolve_update_tariff, permission_classes=OWNER,
        description="Change a tariff you own (admins: any). Running sessions keep the price they started with.",
    )
    assign_tariff: Station = strawberry.field(
        resolver=resolve_assign_tariff, permission_classes=OWNER,
        description="Give a station (or, with connectorId, one connector) a tariff: the station owner's own or "
        "an operator tariff. tariffId null removes it.",
    )


QUERIES: list[type] = [CatalogQuery]
MUTATIONS: list[type] = [CatalogMutation]
SUBSCRIPTIONS: list[type] = []
