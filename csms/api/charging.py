"""Charging from the app: start and stop a session, and read sessions (driver, owner and admin views).

Money is integer tyiyn and energy integer Wh (``Long``). ``startCharging`` and ``stopCharging`` accept
an ``Idempotency-Key`` HTTP header: a retry with the same key and input returns the first result for
24 hours; the same key with other input is refused with ``IDEMPOTENCY_KEY_REUSED``.

Error codes (``extensions.code``): ``BAD_USER_INPUT``, ``LIMIT_OUT_OF_RANGE``, ``NOT_FOUND``,
``FORBIDDEN``, ``UNAUTHENTICATED``, ``STATION_OFFLINE``, ``CONNECTOR_UNAVAILABLE``, ``NO_TARIFF``,
``INSUFFICIENT_BALANCE``, ``ACCOUNT_BLOCKED``, ``ACCOUNT_PENDING_DELETION``,
``IDEMPOTENCY_KEY_REUSED``, ``IDEMPOTENCY_KEY_IN_PROGRESS``.
"""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 (strawberry resolves annotations at runtime)
from typing import TYPE_CHECKING

import strawberry
from strawberry import Info

from csms.api.access import LOGGED_IN, OWNER
from csms.api.auth_errors import account_errors
from csms.api.context import ApiContext  # noqa: TC001 (strawberry reads resolver annotations at runtime)
from csms.api.errors import ApiError, BadUserInput, DomainError, Forbidden, NotFound, Unauthenticated
from csms.api.idempotency_keys import idempotency_key
from csms.api.scalars import Long  # noqa: TC001
from csms.api.session_types import (
    ChargingSession,
    ChargingSessionConnection,
    decode_session_cursor,
    may_see_session,
)
from csms.api.types import DEFAULT_PAGE, as_utc, check_page_size
from csms.services.sessions import Caller, SessionError, SessionService, StartRequest
from csms.store import session_views as views
from csms.store.sessions import STATUSES

if TYPE_CHECKING:
    from csms.api.context import Principal

_PLAIN_ERRORS: dict[str, type[ApiError]] = {
    "BAD_USER_INPUT": BadUserInput, "NOT_FOUND": NotFound, "FORBIDDEN": Forbidden,
    "UNAUTHENTICATED": Unauthenticated,
}


@strawberry.input(description="Start charging on one connector with exactly one limit: money or energy.")
class StartChargingInput:
    station_id: str = strawberry.field(description="The station id, 1-50 characters A-Z, 0-9 or '-'.")
    connector_id: int = strawberry.field(description="The connector, 1 to 10.")
    limit_tyiyn: Long | None = strawberry.field(
        default=None, description="Spend at most this much (1 to 10,000,000 tyiyn); held on the wallet."
    )
    energy_wh: Long | None = strawberry.field(
        default=None, description="Deliver at most this much energy (1 to 1,000,000 Wh); its cost is held."
    )


@strawberry.input(description="Which sessions to list; every field is optional.")
class SessionFilter:
    station_id: str | None = None
    status: str | None = strawberry.field(default=None, description="One of the ChargingSession statuses.")
    from_: datetime | None = strawberry.field(default=None, name="from", description="Created at or after.")
    to: datetime | None = strawberry.field(default=None, description="Created before.")


def _api_error(exc: SessionError) -> ApiError:
    plain = _PLAIN_ERRORS.get(exc.code)
    return plain(exc.message) if plain is not None else DomainError(exc.code, exc.message)


def _caller(principal: Principal) -> Caller:
    return Caller(principal.user_id, principal.is_admin, f"{principal.kind}:{principal.subject}")


def _service(info: Info[ApiContext, None]) -> SessionService:
    services = info.context.require_services()
    return SessionService(services.db, services.commands, services.settings)


def _idempotency_key(info: Info[ApiContext, None]) -> str | None:
    return idempotency_key(info.context)  # read like every money-moving mutation's


async def resolve_start_charging(info: Info[ApiContext, None], input: StartChargingInput) -> ChargingSession:
    """Place the hold and ask the charger to start (see ``SessionService.start``)."""
    principal = info.context.require()
    request = StartRequest(input.station_id, input.connector_id, input.limit_tyiyn, input.energy_wh)
    try:
        with account_errors():  # ACCOUNT_BLOCKED, ACCOUNT_PENDING_DELETION
            view = await _service(info).start(_caller(principal), request, _idempotency_key(info))
    except SessionError as exc:
        raise _api_error(exc) from None
    return ChargingSession.from_view(view)


async def resolve_stop_charging(info: Info[ApiContext, None], session_id: strawberry.ID) -> ChargingSession:
    """Stop (or cancel, before it started) a session: its driver or an admin."""
    principal = info.context.require()
    try:
        view = await _service(info).stop(_caller(principal), str(session_id), _idempotency_key(info))
    except SessionError as exc:
        raise _api_error(exc) from None
    return ChargingSession.from_view(view)


async def resolve_session(info: Info[ApiContext, None], id: strawberry.ID) -> ChargingSession | None:
    """One session for its driver, its station's owner or an admin; null otherwise or if unknown."""
    view = await info.context.db.run(views.get_session, str(id))
    if view is None or not may_see_session(info.context.principal, view):
        return None
    return ChargingSession.from_view(view)


async def resolve_my_sessions(info: Info[ApiContext, None], first: int | None = DEFAULT_PAGE,
                              after: str | None = None) -> ChargingSessionConnection:
    """The caller's own sessions, newest first."""
    principal = info.context.require()
    if principal.user_id is None:
        raise Forbidden("Only user accounts have sessions of their own.")
    size = check_page_size(first)
    cursor = decode_session_cursor(after) if after is not None else None
    page = await info.context.db.run(views.list_sessions, views.SessionFilter(user_id=principal.user_id), size,
                                     cursor)
    return ChargingSessionConnection.from_page(page)


async def resolve_sessions(info: Info[ApiContext, None], filter: SessionFilter | None = None,
                           first: int | None = DEFAULT_PAGE, after: str | None = None) -> ChargingSessionConnection:
    """Sessions at the caller's stations (owners) or everywhere (admins), newest first."""
    principal = info.context.require()
    owner_id = None
    if not principal.is_admin:
        if principal.user_id is None:
            raise Forbidden()
        owner_id = principal.user_id
    f = filter or SessionFilter()
    if f.status is not None and f.status not in STATUSES:
        raise BadUserInput(f"status must be one of {', '.join(STATUSES)}.")
    if f.station_id is not None and not 1 <= len(f.station_id) <= 50:
        raise BadUserInput("stationId must be 1-50 characters.")
    size = check_page_size(first)
    cursor = decode_session_cursor(after) if after is not None else None
    where = views.SessionFilter(owner_id=owner_id, station_id=f.station_id, status=f.status,
                                created_from=_utc(f.from_), created_to=_utc(f.to))
    page = await info.context.db.run(views.list_sessions, where, size, cursor)
    return ChargingSessionConnection.from_page(page)


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


@strawberry.type
class ChargingQuery:
    session: ChargingSession | None = strawberry.field(
        resolver=resolve_session, permission_classes=LOGGED_IN,
        description="One charging session: its driver, the station's owner and admins may see it; else null.",
    )
    my_sessions: ChargingSessionConnection = strawberry.field(
        resolver=resolve_my_sessions, permission_classes=LOGGED_IN,
        description="The caller's charging sessions, newest first. `first` is 1 to 100.",
    )
    sessions: ChargingSessionConnection = strawberry.field(
        resolver=resolve_sessions, permission_classes=OWNER,
        description="Sessions at the owner's stations (admins: all), newest first. `first` is 1 to 100.",
    )


@strawberry.type
class ChargingMutation:
    start_charging: ChargingSession = strawberry.field(
        resolver=resolve_start_charging, permission_classes=LOGGED_IN,
        description="Hold the limit on the wallet and start the charger. Accepts an Idempotency-Key header. "
        "The session comes back `accepted` (or already `charging`) or `failed` (hold released) if the "
        "charger refused, timed out or went offline.",
    )
    stop_charging: ChargingSession = strawberry.field(
        resolver=resolve_stop_charging, permission_classes=LOGGED_IN,
        description="Stop a session (its driver or an admin). Before it started, it fails and the hold is "
        "released; while charging it becomes `stopping` and is billed when the charger reports the stop. "
        "Accepts an Idempotency-Key header.",
    )


QUERIES: list[type] = [ChargingQuery]
MUTATIONS: list[type] = [ChargingMutation]
SUBSCRIPTIONS: list[type] = []
