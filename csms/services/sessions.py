"""Charging sessions started from the app: start, stop, and the checks in front of them.

Starting (DESIGN.md "Charging session"): in ONE transaction the session is created (``requested``,
the tariff copied in, a fresh CSMS-issued id tag registered as Accepted) and the hold is placed on the
driver's wallet, credited to the station owner's revenue account (else the operator's). Only then is
RemoteStartTransaction sent; Accepted → ``accepted``, anything else → ``failed`` with the hold
voided in full. The charger's StartTransaction, MeterValues and StopTransaction then drive the session
(``csms.services.transactions``), and the reaper cleans up what never finishes
(``csms.services.reapers``).

Refusals are :class:`SessionError` with the API's error code; the API layer turns them into GraphQL
errors (services never import the API). Whether the driver's account may pay is the accounts
service's rule (:func:`csms.services.accounts.ensure_can_transact`): its ``AccountBlocked`` and
``AccountPendingDeletion`` pass through unchanged for the API's ``account_errors`` to report.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import psycopg
import trio

from csms.services import accounts, idempotency
from csms.services import session_billing as billing
from csms.services.clock import utcnow
from csms.services.commands import ChargerOffline, ChargerTimeout, CommandError
from csms.services.session_tracker import StopRequest, send_remote_stop
from csms.services.tariffs import Price, energy_cost
from csms.store import catalog, ledger
from csms.store import session_views as views
from csms.store import sessions as store
from csms.store.events import notify

if TYPE_CHECKING:
    from csms.config import Settings
    from csms.services.commands import ChargerCommands
    from csms.store.db import Conn, Database

log = logging.getLogger(__name__)

STATION_ID = re.compile(r"^[A-Z0-9-]{1,50}$")
MAX_CONNECTOR_ID = 10
MAX_LIMIT_TYIYN = 10_000_000  # 100,000 som
MAX_ENERGY_WH = 1_000_000  # 1 MWh: more than any vehicle battery
STARTABLE = ("Available", "Preparing")


class SessionError(Exception):
    """A refused session request; ``code`` is the API's ``extensions.code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class StartRequest:
    """What a driver asks for: a connector and exactly one limit (money or energy)."""

    station_id: str
    connector_id: int
    limit_tyiyn: int | None = None
    energy_wh: int | None = None

    def validate(self) -> None:
        """Check the shape and ranges of the request before any database work.

        Raises:
            SessionError: ``BAD_USER_INPUT`` or ``LIMIT_OUT_OF_RANGE``.
        """
        if not STATION_ID.match(self.station_id):
            raise SessionError("BAD_USER_INPUT", "stationId must be 1-50 characters A-Z, 0-9 or '-'.")
        if not 1 <= self.connector_id <= MAX_CONNECTOR_ID:
            raise SessionError("BAD_USER_INPUT", f"connectorId must be between 1 and {MAX_CONNECTOR_ID}.")
        if (self.limit_tyiyn is None) == (self.energy_wh is None):
            raise SessionError("BAD_USER_INPUT", "Give exactly one of limitTyiyn and energyWh.")
        if self.limit_tyiyn is not None and not 0 < self.limit_tyiyn <= MAX_LIMIT_TYIYN:
            raise SessionError("LIMIT_OUT_OF_RANGE", f"limitTyiyn must be between 1 and {MAX_LIMIT_TYIYN}.")
        if self.energy_wh is not None and not 0 < self.energy_wh <= MAX_ENERGY_WH:
            raise SessionError("LIMIT_OUT_OF_RANGE", f"energyWh must be between 1 and {MAX_ENERGY_WH}.")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: the user acting (None for an admin API key), whether they are an admin, and the
    identity their idempotency keys are scoped to."""

    user_id: str | None
    is_admin: bool
    principal: str


class SessionService:
    """Starts and stops app sessions. Stateless: the API builds one per request from its services."""

    def __init__(self, db: Database, commands: ChargerCommands | None, settings: Settings) -> None:
        self.db = db
        self.commands = commands
        self.settings = settings

    async def start(self, caller: Caller, request: StartRequest, idempotency_key: str | None = None
                    ) -> views.SessionView:
        """Create the session with its hold, then ask the charger to start.

        Returns:
            The session: ``accepted`` when the charger took the RemoteStart (it may already be
            ``charging``), ``failed`` (hold voided) when it refused, timed out or went offline; for a
            retry with the same idempotency key, the first request's session as it is now.

        Raises:
            SessionError: a refusal, with its code (nothing was changed).
            accounts.AccountBlocked, accounts.AccountPendingDeletion: the driver may not pay (nothing
                was changed).
        """
        request.validate()
        if caller.user_id is None:
            raise SessionError("FORBIDDEN", "Charging needs a user account (not an API key).")
        session_id = str(uuid.uuid4())
        tag = billing.new_session_tag()
        connected = self.commands is not None and await self.commands.is_online(request.station_id)
        fp = idempotency.fingerprint({"stationId": request.station_id, "connectorId": request.connector_id,
                                      "limitTyiyn": request.limit_tyiyn, "energyWh": request.energy_wh})
        opened, created = await self.db.run(
            _open_session, caller, request, session_id, tag, connected, self._tag_validity(), idempotency_key, fp)
        if created:
            failure = await self._remote_start(request, tag)
            # Shielded: the outcome must be recorded even if the client went away meanwhile.
            with trio.CancelScope(shield=True):
                await self.db.run(_after_remote_start, opened, failure)
        view = await self.db.run(views.get_session, opened)
        assert view is not None
        return view

    async def stop(self, caller: Caller, session_id: str, idempotency_key: str | None = None
                   ) -> views.SessionView:
        """Stop a session: RemoteStop when charging, or fail it (hold voided) if it has not started.

        Only the session's driver or an admin may stop it. Stopping an ended session changes nothing.

        Raises:
            SessionError: ``NOT_FOUND`` or ``FORBIDDEN``.
        """
        fp = idempotency.fingerprint({"sessionId": session_id})
        stop = await self.db.run(_stop_session, caller, session_id, idempotency_key, fp)
        if stop is not None:
            await send_remote_stop(self.commands, stop)
        view = await self.db.run(views.get_session, session_id)
        assert view is not None
        return view

    def _tag_validity(self) -> timedelta:
        # The tag must outlive the whole session: waiting to start, charging, and stopping.
        s = self.settings
        return timedelta(seconds=s.session_start_timeout_s + s.session_max_duration_s + s.session_stop_grace_s)

    async def _remote_start(self, request: StartRequest, tag: str) -> str | None:
        """Send RemoteStartTransaction; None if Accepted, else why it failed."""
        if self.commands is None:
            return "offline"
        try:
            answer = await self.commands.remote_start(request.station_id, tag, request.connector_id)
        except ChargerOffline as exc:
            # A RemoteStart that left before the connection dropped went unanswered, like a timeout: the
            # charger may still start, and a late StartTransaction is handled as after a timeout.
            return "timeout" if exc.sent else "offline"
        except ChargerTimeout:
            return "timeout"
        except CommandError as exc:
            log.info("RemoteStart on %s failed: %s", request.station_id, type(exc).__name__)
            return "error"
        return None if answer.get("status") == "Accepted" else "rejected"


def _claim(conn: Conn, caller: Caller, operation: str, key: str | None, fp: bytes) -> dict[str, Any] | None:
    if key is None:
        return None
    try:
        return idempotency.claim(conn, caller.principal, operation, key, fp)
    except idempotency.IdempotencyError as exc:
        raise SessionError(exc.code, "This Idempotency-Key was used for another request.") from None


def _check_account(conn: Conn, user_id: str) -> None:
    """The accounts service's rule, share-locking the user until the starting transaction ends."""
    try:
        accounts.ensure_can_transact(conn, user_id)
    except accounts.UnknownAccount:
        # The caller's token names a user that is gone: its credential no longer stands for anyone.
        raise SessionError("UNAUTHENTICATED", "The account no longer exists.") from None


def _hold_amount(request: StartRequest, price: Price) -> int:
    if request.limit_tyiyn is not None:
        if request.limit_tyiyn <= price.session_fee_tyiyn:
            raise SessionError("LIMIT_OUT_OF_RANGE", "limitTyiyn must be more than the session fee.")
        return request.limit_tyiyn
    assert request.energy_wh is not None
    # A free tariff still holds 1 tyiyn: a hold is never empty; it is voided when nothing is owed.
    return max(energy_cost(request.energy_wh, price), 1)


def _open_session(conn: Conn, caller: Caller, request: StartRequest, session_id: str, tag: str, connected: bool,
                  tag_validity: timedelta, key: str | None, fp: bytes) -> tuple[str, bool]:
    """The starting transaction; returns ``(session id, created)`` (not created: an idempotent retry)."""
    stored = _claim(conn, caller, "startCharging", key, fp)
    if stored is not None:
        return str(stored["session_id"]), False
    assert caller.user_id is not None
    _check_account(conn, caller.user_id)
    exists, status = store.connector_status(conn, request.station_id, request.connector_id)
    if not exists:
        raise SessionError("NOT_FOUND", "No such station.")
    if not connected:
        raise SessionError("STATION_OFFLINE", "The station is not connected.")
    if status not in STARTABLE or store.connector_busy(conn, request.station_id, request.connector_id):
        raise SessionError("CONNECTOR_UNAVAILABLE", "The connector is not available.")
    # Price and payee follow the catalog's rules, which live in one place each.
    tariff = catalog.effective_tariff(conn, request.station_id, request.connector_id)
    if tariff is None:
        raise SessionError("NO_TARIFF", "The connector has no tariff.")
    owner_id = catalog.station_owner(conn, request.station_id)
    price = Price(tariff.price_per_kwh_tyiyn, tariff.session_fee_tyiyn)
    hold = _hold_amount(request, price)
    wallet = ledger.user_account(conn, caller.user_id)
    revenue = (ledger.user_account(conn, owner_id, "owner_revenue") if owner_id
               else ledger.system_account(conn, ledger.OPERATOR_REVENUE))
    hold_id = billing.hold_transfer_id(session_id)
    try:
        ledger.hold(conn, hold_id, wallet, revenue, hold, reason="charging session hold",
                    metadata={"session_id": session_id})
    except ledger.InsufficientFunds:
        raise SessionError("INSUFFICIENT_BALANCE", "The balance does not cover the limit.") from None
    store.insert_id_tag(conn, tag, utcnow() + tag_validity)
    try:
        with conn.transaction():
            store.insert_session(conn, session_id=session_id, user_id=caller.user_id, station_id=request.station_id,
                                 connector_id=request.connector_id, id_tag=tag, limit_tyiyn=request.limit_tyiyn,
                                 energy_limit_wh=request.energy_wh, tariff_id=tariff.tariff_id,
                                 price_per_kwh_tyiyn=price.per_kwh_tyiyn, session_fee_tyiyn=price.session_fee_tyiyn,
                                 hold_tyiyn=hold, hold_transfer_id=hold_id, revenue_account_id=revenue)
    except psycopg.errors.UniqueViolation as exc:
        if exc.diag.constraint_name == "charging_sessions_active_connector":
            # Another session took the connector since connector_busy looked.
            raise SessionError("CONNECTOR_UNAVAILABLE", "The connector is not available.") from None
        raise
    notify(conn, "session", session_id=session_id, user_id=caller.user_id, station_id=request.station_id,
           status="requested")
    notify(conn, "balance", user_id=caller.user_id)
    if key is not None:
        idempotency.complete(conn, caller.principal, "startCharging", key, {"session_id": session_id})
    return session_id, True


def _after_remote_start(conn: Conn, session_id: str, failure: str | None) -> None:
    row = store.lock_session(conn, session_id)
    if row is None:
        return
    if failure is not None:
        billing.fail(conn, row, failure)
    elif row.status == "requested":
        # The StartTransaction may have won the race and made it `charging` already: then nothing to do.
        store.update_session(conn, row.id, status="accepted", accepted_at=utcnow())
        billing.notify_session(conn, row, "accepted")


def _stop_session(conn: Conn, caller: Caller, session_id: str, key: str | None, fp: bytes) -> StopRequest | None:
    row = store.lock_session(conn, session_id)
    if row is None:
        raise SessionError("NOT_FOUND", "No such session.")
    if not (caller.is_admin or (caller.user_id is not None and caller.user_id == row.user_id)):
        raise SessionError("FORBIDDEN", "Only the session's driver or an operator may stop it.")
    if _claim(conn, caller, "stopCharging", key, fp) is not None:
        return None  # a retry: the first call already did it
    stop: StopRequest | None = None
    if row.status in ("requested", "accepted"):
        billing.fail(conn, row, "cancelled")
    elif billing.request_stop(conn, row, "UserStopped"):
        assert row.transaction_id is not None
        stop = StopRequest(row.id, row.station_id, row.transaction_id)
    if key is not None:
        idempotency.complete(conn, caller.principal, "stopCharging", key, {"session_id": row.id})
    return stop
