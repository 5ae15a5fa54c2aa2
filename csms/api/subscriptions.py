"""Live updates: GraphQL subscriptions fed by the process's change events (``csms.services.events``).

Each subscription subscribes to its events *first*, then sends the current state, then one update per
change. When events may have been missed (the LISTEN connection dropped, or the client read too slowly
and its buffer collapsed) it reloads the current state and sends what differs from what the client
last saw. Reads for one object are shared between all the subscribers that watch it
(``EventHub.load``), and a charging session's events carry its new state (``csms.store.session_events``),
so most session updates need no query at all.

An update is built once per change for all its subscribers and yielded as a shared value
(``csms.api.ws_fanout``): GraphQL executes and JSON encodes it once per document, and on our WebSocket
it goes straight to each socket (``DirectDelivery``). They are served over ``graphql-transport-ws`` on
``/graphql`` (``csms.api.ws``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator  # noqa: TC003 (strawberry resolves annotations at runtime)
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import strawberry
from strawberry import Info

from csms.api.access import LOGGED_IN, PUBLIC
from csms.api.context import ApiContext  # noqa: TC001
from csms.api.errors import BadUserInput, Forbidden, NotFound
from csms.api.scalars import Long  # noqa: TC001
from csms.api.session_types import ChargingSession, may_see_session
from csms.api.ws_fanout import DirectDelivery, direct_delivery, share
from csms.services.clock import utcnow
from csms.services.metrics import received_at
from csms.store import views
from csms.store.balances import WalletTotals, wallet_totals
from csms.store.session_events import apply_state, read_session, state_version

if TYPE_CHECKING:
    from collections.abc import Mapping

    from csms.services.events import Event, EventHub
    from csms.store.session_views import SessionView

log = logging.getLogger(__name__)

MAX_STATION_ID = 48


@strawberry.type(description="The status of one connector of a station, as it changed.")
class StationStatusChange:
    station_id: str
    connector_id: int = strawberry.field(description="1, 2, ...; 0 is the charge point as a whole.")
    status: str = strawberry.field(description="OCPP ChargePointStatus, e.g. Available, Charging, Faulted.")
    error_code: str = strawberry.field(description="OCPP ChargePointErrorCode; NoError when healthy.")
    updated_at: datetime = strawberry.field(description="When csms recorded the status (UTC).")

    @classmethod
    def from_view(cls, view: views.ConnectorStatus) -> StationStatusChange:
        """From a stored connector row (current state)."""
        return cls(station_id=view.station_id, connector_id=view.connector_id, status=view.status,
                   error_code=view.error_code, updated_at=view.updated_at)

    @classmethod
    def from_event(cls, data: Mapping[str, Any]) -> StationStatusChange | None:
        """From a ``station_status`` event's payload (None if it lacks a field)."""
        try:
            at = data.get("updated_at")
            return cls(station_id=str(data["station_id"]), connector_id=int(data["connector_id"]),
                       status=str(data["status"]), error_code=str(data["error_code"]),
                       updated_at=datetime.fromisoformat(str(at)) if at else utcnow())
        except (KeyError, TypeError, ValueError):
            log.warning("ignoring a malformed station_status event")
            return None


@strawberry.type(description="Whether a station holds a connection to csms.")
class StationConnectionChange:
    station_id: str
    connected: bool
    updated_at: datetime = strawberry.field(description="When csms noticed (UTC).")


@strawberry.type(description="A wallet's balance. Money in tyiyn (1 som = 100 tyiyn).")
class WalletBalance:
    available_tyiyn: Long = strawberry.field(description="What may be spent now.")
    held_tyiyn: Long = strawberry.field(description="Reserved by charging sessions that are still running.")

    @classmethod
    def from_totals(cls, totals: WalletTotals) -> WalletBalance:
        """From the store's totals."""
        return cls(available_tyiyn=totals.available_tyiyn, held_tyiyn=totals.held_tyiyn)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class SessionUpdate:
    """A session's state as one subscriber has it: the view, its version, and the value to yield."""

    view: SessionView
    version: int  # the database clock of the state (csms.store.session_events)
    shared: ChargingSession  # one object for every subscriber of the same change (ws_fanout.share)

    @classmethod
    def of(cls, view: SessionView, version: int, stamp: float | None) -> SessionUpdate:
        """From a read (``version``: when it started) or an event's state."""
        return cls(view, version, share(ChargingSession.from_view(view), received_at=stamp))

    @classmethod
    def from_event(cls, event: Event, last: SessionUpdate) -> SessionUpdate | None:
        """The state an event carries, if it is newer than ``last``; else None (read it instead).

        Built once per event for all its subscribers (``Event.memo``): the fields an event does not
        carry never change after a session is created, so any subscriber's ``last`` supplies them.
        """
        version = state_version(event.data)
        if event.resync or version is None or version <= last.version:
            return None
        update: SessionUpdate | None = event.memo.get("session")
        if update is None:
            view = apply_state(last.view, event.data)
            if view is None:
                return None
            update = event.memo["session"] = cls.of(view, version, received_at(event.data))
        return update


def _hub(info: Info[ApiContext, None]) -> EventHub:
    hub = info.context.require_services().events
    if hub is None:
        raise RuntimeError("live updates need the events service")
    return hub


async def _delivered(direct: DirectDelivery | None, value: object) -> bool:
    """Whether ``value`` went straight to the subscriber's socket (then it is not yielded)."""
    return direct is not None and await direct.deliver(value)


def _status_update(event: Event) -> tuple[StationStatusChange, StationStatusChange] | None:
    """A station status event's change and its shared form, built once for all its subscribers (None
    for a malformed event)."""
    if "status" not in event.memo:
        update = StationStatusChange.from_event(event.data)
        event.memo["status"] = None if update is None else (update, share(update, received_at=received_at(
            event.data)))
    built: tuple[StationStatusChange, StationStatusChange] | None = event.memo["status"]
    return built


def _station_id(station_id: str) -> str:
    if not 1 <= len(station_id) <= MAX_STATION_ID:
        raise BadUserInput(f"stationId must have 1 to {MAX_STATION_ID} characters.")
    return station_id


async def _check_station_visible(info: Info[ApiContext, None], station_id: str) -> None:
    """NOT_FOUND for a station the caller may not see: as in the ``station`` query, a station that is
    not on the map yet (it has no location) is visible to admins only."""
    principal = info.context.principal
    if principal is not None and principal.is_admin:
        return
    if not await info.context.db.run(views.station_listed, station_id):
        raise NotFound("No such station.")


# Resolvers are plain typed functions passed as resolver=: strawberry's decorator form is untyped.
async def station_status_changed(
    info: Info[ApiContext, None], station_id: str
) -> AsyncGenerator[StationStatusChange, None]:
    """The current status of each connector, then every change (NOT_FOUND for an unknown station)."""
    hub, db, station_id = _hub(info), info.context.db, _station_id(station_id)
    await _check_station_visible(info, station_id)
    direct = direct_delivery(info.context.extra)
    sent: dict[int, tuple[str, str]] = {}

    async def current(seq: int) -> list[views.ConnectorStatus] | None:
        return await hub.load("connectors", station_id, seq, lambda: db.run(views.station_statuses, station_id))

    with hub.subscribe(("station_status", station_id)) as sub:
        rows = await current(sub.start_seq)
        if rows is None:
            raise NotFound("No such station.")
        while True:
            for row in rows:
                # After a resync only what differs from what the client has is sent again.
                change = StationStatusChange.from_view(row)
                if sent.get(change.connector_id) != (change.status, change.error_code):
                    sent[change.connector_id] = (change.status, change.error_code)
                    yield change
            event = await sub.receive()
            if event.resync:
                rows = await current(event.seq) or []
                continue
            rows = []
            built = _status_update(event)
            if built is not None:
                update, shared = built
                sent[update.connector_id] = (update.status, update.error_code)
                if not await _delivered(direct, shared):
                    yield shared


async def station_connection_changed(
    info: Info[ApiContext, None], station_id: str
) -> AsyncGenerator[StationConnectionChange, None]:
    """Whether the station is connected now, then every change (NOT_FOUND for an unknown station)."""
    hub, db, station_id = _hub(info), info.context.db, _station_id(station_id)
    await _check_station_visible(info, station_id)

    async def current(seq: int) -> bool | None:
        return await hub.load("connected", station_id, seq, lambda: db.run(views.station_connected, station_id))

    with hub.subscribe(("station_connection", station_id)) as sub:
        connected = await current(sub.start_seq)
        if connected is None:
            raise NotFound("No such station.")
        last = connected
        yield StationConnectionChange(station_id=station_id, connected=connected, updated_at=utcnow())
        async for event in sub:
            if event.resync:
                connected = bool(await current(event.seq))
                at = utcnow()
            else:
                connected = bool(event.data.get("connected"))
                raw = event.data.get("updated_at")
                at = datetime.fromisoformat(str(raw)) if raw else utcnow()
            if connected != last or not event.resync:
                last = connected
                yield StationConnectionChange(station_id=station_id, connected=connected, updated_at=at)


async def session_updated(info: Info[ApiContext, None], id: strawberry.ID) -> AsyncGenerator[ChargingSession, None]:
    """The session now, then after every change; NOT_FOUND if unknown, FORBIDDEN if not the caller's."""
    hub, db = _hub(info), info.context.db
    principal = info.context.require()
    direct = direct_delivery(info.context.extra)  # on our WebSocket: updates go straight to the socket
    try:
        session_id = str(uuid.UUID(str(id)))
    except ValueError:
        raise NotFound("No such charging session.") from None

    async def current(seq: int, data: Mapping[str, Any]) -> SessionUpdate | None:
        async def read() -> SessionUpdate | None:
            found = await db.run(read_session, session_id)
            if found is None:
                return None
            # Built inside the shared read: every subscriber of this read yields this very object, so
            # the update is executed and encoded once for all of them (ws_fanout).
            return SessionUpdate.of(found[1], found[0], received_at(data))

        return await hub.load("session", session_id, seq, read)

    with hub.subscribe(("session", session_id)) as sub:
        update = await current(sub.start_seq, {})
        if update is None:
            raise NotFound("No such charging session.")
        if not may_see_session(principal, update.view):
            raise Forbidden("This charging session is not yours.")
        last = update
        yield update.shared
        async for event in sub:
            # Most events carry the new state (no read); one that may be older than what the client
            # has (see csms.store.session_events) or has none is answered by a (shared) read.
            update = SessionUpdate.from_event(event, last) or await current(event.seq, event.data)
            if update is None:
                continue
            changed = update.view != last.view  # coalesced or repeated events may show nothing new
            last = update
            if changed and not await _delivered(direct, update.shared):
                yield update.shared


async def balance_changed(info: Info[ApiContext, None]) -> AsyncGenerator[WalletBalance, None]:
    """The caller's wallet balance now, then after every change (FORBIDDEN for a key without a user)."""
    hub, db = _hub(info), info.context.db
    user_id = info.context.require().user_id
    if user_id is None:
        raise Forbidden("This credential has no wallet: log in as a user.")
    user_id = user_id.lower()
    direct = direct_delivery(info.context.extra)

    async def current(seq: int) -> tuple[WalletTotals, WalletBalance]:
        async def read() -> tuple[WalletTotals, WalletBalance]:
            totals = await db.run(wallet_totals, user_id)
            return totals, share(WalletBalance.from_totals(totals))  # one for all of this read's subscribers

        return await hub.load("wallet", user_id, seq, read)

    with hub.subscribe(("balance", user_id)) as sub:
        last, balance = await current(sub.start_seq)
        yield balance
        async for event in sub:
            totals, balance = await current(event.seq)
            if totals != last:
                last = totals
                if not await _delivered(direct, balance):
                    yield balance


@strawberry.type
class LiveSubscription:
    # The field types come from the resolvers' AsyncGenerator annotations.
    station_status_changed = strawberry.subscription(
        resolver=station_status_changed,
        permission_classes=PUBLIC,
        description="A station's connector statuses: first the current one of each connector, then every change. "
        "Stations without a location are visible to admins only.",
    )
    station_connection_changed = strawberry.subscription(
        resolver=station_connection_changed,
        permission_classes=PUBLIC,
        description="Whether a station is connected to csms: first now, then every change. Stations without a "
        "location are visible to admins only.",
    )
    session_updated = strawberry.subscription(
        resolver=session_updated,
        permission_classes=LOGGED_IN,
        description="A charging session: first as it is now, then after every change. Its driver, the "
        "owner of its station and admins may watch it.",
    )
    balance_changed = strawberry.subscription(
        resolver=balance_changed,
        permission_classes=LOGGED_IN,
        description="The caller's wallet balance: first now, then after every change.",
    )


QUERIES: list[type] = []
MUTATIONS: list[type] = []
SUBSCRIPTIONS: list[type] = [LiveSubscription]
