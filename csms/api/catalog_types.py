"""GraphQL types of the catalog (Location, Station, Connector, Tariff), built from store snapshots.

Field-level privacy: the map is public, but some fields are operator data (a station's serial number,
firmware, registration status, last seen time, whether it has a password, a connector's free-text
info, owner ids). They are visible to the owner of the station's location and to admins, and are
**null for everyone else** (no error, so one query document serves the public map and the owner's
dashboard). ``viewerCanManage`` tells a client which case it is in, so a null is never ambiguous.

Stations without a location are not on the map: only admins see them.

Objects are built from a :class:`~csms.store.views.CatalogSnapshot` (a fixed number of queries) and
link to each other in memory, so no field here runs a query.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime  # noqa: TC003 (strawberry resolves annotations at runtime)
from typing import TYPE_CHECKING

import strawberry

from csms.api.context import Principal, Role
from csms.api.errors import BadUserInput, DomainError, Forbidden, NotFound
from csms.api.scalars import Long
from csms.services import catalog
from csms.services import catalog_input as check
from csms.services.tariffs import Price, energy_cost

if TYPE_CHECKING:
    from collections.abc import Iterator

    from csms.store import views


def actor_of(principal: Principal | None) -> catalog.Actor | None:
    """The catalog's view of a caller (None for anonymous callers)."""
    if principal is None:
        return None
    return catalog.Actor(user_id=principal.user_id, is_admin=principal.is_admin,
                         is_owner=Role.OWNER in principal.roles, audit=principal.audit_actor)


def manages(actor: catalog.Actor | None, owner_id: str | None) -> bool:
    """Whether the caller sees operator-only fields of objects owned by ``owner_id``."""
    return actor is not None and actor.can_manage(owner_id)


@contextmanager
def catalog_errors() -> Iterator[None]:
    """Translate the catalog's refusals into the API's typed errors."""
    try:
        yield
    except check.InvalidInput as exc:
        raise BadUserInput(str(exc)) from None
    except check.NotFound as exc:
        raise NotFound(str(exc)) from None
    except check.NotAllowed as exc:
        raise Forbidden(str(exc)) from None
    except check.Conflict as exc:
        raise DomainError("CONFLICT", str(exc)) from None


def resolve_estimate_cost(root: Tariff, energy_wh: Long) -> Long:
    """Cost of ``energy_wh`` under this tariff (computed by the one tariff function)."""
    with catalog_errors():
        check.energy(energy_wh)
    return Long(energy_cost(energy_wh, Price(root.price_per_kwh_tyiyn, root.session_fee_tyiyn)))


@strawberry.type(description="A price list: tyiyn per kWh plus a fee per session (1 som = 100 tyiyn).")
class Tariff:
    id: strawberry.ID
    name: str
    price_per_kwh_tyiyn: Long
    session_fee_tyiyn: Long
    is_operator_tariff: bool = strawberry.field(description="Set by the operator, usable at every station.")
    owner_id: strawberry.ID | None = strawberry.field(description="Owner and admin only (else null).")
    updated_at: datetime
    estimate_cost: Long = strawberry.field(
        resolver=resolve_estimate_cost,
        description="What charging energyWh (0 to 10,000,000) costs: ceil(Wh * price / 1000) + fee, in tyiyn.",
    )

    @classmethod
    def from_view(cls, view: views.TariffView, actor: catalog.Actor | None) -> Tariff:
        """Build the GraphQL object; the owner id only for those who manage it."""
        visible = view.owner_id is not None and manages(actor, view.owner_id)
        return cls(id=strawberry.ID(view.id), name=view.name, price_per_kwh_tyiyn=Long(view.price_per_kwh_tyiyn),
                   session_fee_tyiyn=Long(view.session_fee_tyiyn), is_operator_tariff=view.owner_id is None,
                   owner_id=strawberry.ID(view.owner_id) if visible and view.owner_id else None,
                   updated_at=view.updated_at)


def _tariff(view: views.TariffView | None, actor: catalog.Actor | None) -> Tariff | None:
    return Tariff.from_view(view, actor) if view is not None else None


@strawberry.type(description="The live state of one connector; connector 0 is the charge point itself.")
class Connector:
    connector_id: int
    status: str = strawberry.field(description="OCPP ChargePointStatus, e.g. Available, Charging, Faulted.")
    error_code: str = strawberry.field(description="OCPP ChargePointErrorCode; NoError when healthy.")
    info: str | None = strawberry.field(description="The charger's free text. Owner and admin only (else null).")
    updated_at: datetime = strawberry.field(description="When csms last recorded a status (UTC).")
    tariff: Tariff | None = strawberry.field(
        description="The tariff charging here costs: the connector's own, else the station's (null: none set)."
    )
    has_own_tariff: bool = strawberry.field(description="Whether the connector overrides the station's tariff.")

    @classmethod
    def from_view(cls, view: views.ConnectorView, actor: catalog.Actor | None, manage: bool) -> Connector:
        """Build the GraphQL object; ``manage`` reveals operator-only fields."""
        return cls(connector_id=view.connector_id, status=view.status, error_code=view.error_code,
                   info=view.info if manage else None, updated_at=view.updated_at,
                   tariff=_tariff(view.tariff, actor), has_own_tariff=view.own_tariff)


@strawberry.type(description="A charge point. Fields marked 'owner and admin only' are null for everyone else.")
class Station:
    id: str = strawberry.field(description="The charge point identity (last segment of its OCPP URL).")
    vendor: str | None
    model: str | None
    location_id: strawberry.ID | None
    connector_count: int | None
    connected: bool = strawberry.field(description="Whether a live csms node holds the charger's WebSocket now.")
    connectors: list[Connector] = strawberry.field(description="The station's connectors, by connector id.")
    tariff: Tariff | None = strawberry.field(description="The station's tariff, used by connectors without their own.")
    viewer_can_manage: bool = strawberry.field(description="Whether the caller sees operator-only fields.")
    serial_number: str | None = strawberry.field(description="Owner and admin only.")
    firmware_version: str | None = strawberry.field(description="Owner and admin only.")
    registration_status: str | None = strawberry.field(
        description="Accepted, Pending or Rejected. Owner and admin only.")
    last_seen: datetime | None = strawberry.field(
        description="Last message from the charger (UTC). Owner and admin only.")
    has_password: bool | None = strawberry.field(
        description="Whether the charger must authenticate with HTTP Basic. Owner and admin only.")
    location: Location | None = strawberry.field(default=None, description="Where it is; null if unassigned.")

    @classmethod
    def from_view(cls, view: views.StationView, snapshot: views.CatalogSnapshot, actor: catalog.Actor | None
                  ) -> Station:
        """Build the GraphQL object with its connectors; ``location`` is linked by :func:`build`."""
        manage = manages(actor, view.owner_id)
        return cls(
            id=view.id, vendor=view.vendor, model=view.model,
            location_id=strawberry.ID(view.location_id) if view.location_id else None,
            connector_count=view.connector_count, connected=view.id in snapshot.connected,
            connectors=[Connector.from_view(c, actor, manage) for c in snapshot.connectors.get(view.id, [])],
            tariff=_tariff(view.tariff, actor), viewer_can_manage=manage,
            serial_number=view.serial_number if manage else None,
            firmware_version=view.firmware_version if manage else None,
            registration_status=view.registration_status if manage else None,
            last_seen=view.last_seen if manage else None,
            has_password=view.has_password if manage else None,
        )


@strawberry.type(description="A charging site on the map with its stations.")
class Location:
    id: strawberry.ID
    name: str
    address: str
    city: str
    latitude: float | None = strawberry.field(description="Degrees, WGS 84 (6 decimals).")
    longitude: float | None = strawberry.field(description="Degrees, WGS 84 (6 decimals).")
    stations: list[Station]
    viewer_can_manage: bool = strawberry.field(description="Whether the caller manages this location.")
    owner_id: strawberry.ID | None = strawberry.field(description="Owner and admin only (else null).")


def build(snapshot: views.CatalogSnapshot, actor: catalog.Actor | None) -> tuple[list[Location], list[Station]]:
    """The snapshot's locations and stations as linked GraphQL objects, as ``actor`` may see them.

    Stations without a location are included only for admins.
    """
    stations = [Station.from_view(s, snapshot, actor) for s in snapshot.stations
                if s.location_id is not None or manages(actor, None)]
    by_location: dict[str, list[Station]] = {}
    for station in stations:
        if station.location_id is not None:
            by_location.setdefault(str(station.location_id), []).append(station)
    locations = []
    for view in snapshot.locations:
        manage = manages(actor, view.owner_id)
        location = Location(
            id=strawberry.ID(view.id), name=view.name, address=view.address, city=view.city,
            latitude=view.latitude, longitude=view.longitude, stations=by_location.get(view.id, []),
            viewer_can_manage=manage, owner_id=strawberry.ID(view.owner_id) if manage and view.owner_id else None,
        )
        for station in location.stations:
            station.location = location
        locations.append(location)
    return locations, stations
