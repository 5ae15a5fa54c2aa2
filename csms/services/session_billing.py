"""A charging session's state changes that move money or live values, run inside a caller's transaction.

Each function takes a session row already locked by the caller (``csms.store.sessions.lock_*``) and
checks its status before acting, so whichever of the API, the OCPP handlers or the reaper gets the
lock first makes the transition and the others find it done. That, not only the transfer ids, is what
makes the ledger writes happen once: the hold is resolved by exactly one transfer
(``session:<id>:settle``), a post for the billed amount or a void.

Every change calls ``notify`` in the same transaction (topic ``session``; ``balance`` when money
moved), so listeners only hear about committed changes.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from csms.services.tariffs import Price, energy_cost
from csms.store import ledger, session_events
from csms.store import sessions as store
from csms.store.events import notify
from csms.store.stations import record_anomaly

if TYPE_CHECKING:
    from datetime import datetime

    from csms.services.session_meter import Reading
    from csms.store.db import Conn
    from csms.store.sessions import SessionRow

log = logging.getLogger(__name__)


# CSMS-issued id tags look like APP + 17 hex digits (20 characters, OCPP's limit). The prefix lets
# StartTransaction skip the session lookup for RFID cards, whose UIDs are hex digits only.
SESSION_TAG_PREFIX = "APP"
_TAG_LENGTH = 20


def new_session_tag() -> str:
    """A fresh, unguessable id tag for one session (68 random bits)."""
    return SESSION_TAG_PREFIX + secrets.token_hex(9)[: _TAG_LENGTH - len(SESSION_TAG_PREFIX)].upper()


def is_session_tag(id_tag: str) -> bool:
    """Whether an id tag may be a session's (then StartTransaction looks its session up)."""
    return len(id_tag) == _TAG_LENGTH and id_tag[:3].upper() == SESSION_TAG_PREFIX


def hold_transfer_id(session_id: str) -> str:
    """The ledger id of a session's hold (placed with the session)."""
    return f"session:{session_id}:hold"


def settle_transfer_id(session_id: str) -> str:
    """The ledger id of the one transfer that resolves a session's hold (post or void)."""
    return f"session:{session_id}:settle"


def price_of(row: SessionRow) -> Price:
    """The tariff copied into the session at start."""
    return Price(row.price_per_kwh_tyiyn, row.session_fee_tyiyn)


def limit_reached(row: SessionRow, energy_wh: int) -> bool:
    """Whether a session at ``energy_wh`` has used its money or energy limit (time to RemoteStop)."""
    if row.energy_limit_wh is not None and energy_wh >= row.energy_limit_wh:
        return True
    return energy_cost(energy_wh, price_of(row)) >= row.hold_tyiyn


def notify_session(conn: Conn, row: SessionRow, status: str, received_at: datetime | None = None) -> str | None:
    """Publish a session change (delivered when the caller's transaction commits).

    The event carries the row's new state, so ``sessionUpdated`` subscribers need no read; the status is
    read from the row too (the caller has just written ``status``). ``received_at`` is when the charger
    message behind the change arrived, for the live-latency metrics.
    """
    return session_events.notify_session(conn, row.id,
                                         int(received_at.timestamp() * 1_000_000) if received_at else None)


def fail(conn: Conn, row: SessionRow, reason: str) -> bool:
    """Fail a session that never charged: void its hold in full and retire its id tag.

    Returns:
        False when the session was no longer waiting to start (nothing changed).
    """
    if row.status not in ("requested", "accepted"):
        return False
    if ledger.pending_resolution(conn, row.hold_transfer_id) is None:
        ledger.void(conn, settle_transfer_id(row.id), row.hold_transfer_id, reason="session failed",
                    metadata={"session_id": row.id, "failure": reason})
    store.update_session(conn, row.id, status="failed", failure_reason=reason, charged_tyiyn=0,
                         settled_by="failed", ended_at=_now(conn))
    store.expire_id_tag(conn, row.id_tag)
    notify_session(conn, row, "failed")
    notify(conn, "balance", user_id=row.user_id)
    return True


def settle(conn: Conn, row: SessionRow, meter_stop_wh: int, ended_at: datetime, reason: str | None,
           settled_by: str) -> int | None:
    """Complete a charging session: bill the delivered energy, capped at the hold, and release the rest.

    Args:
        meter_stop_wh: the final register reading (StopTransaction's meterStop, or the reaper's last
            durable reading).
        reason: the OCPP stop reason; a reason the CSMS set earlier (limit, driver, max duration) wins.
        settled_by: ``stop_transaction`` or ``meter_values``.

    Returns:
        What was charged in tyiyn, or None when the session was not charging or stopping.
    """
    if row.status not in ("charging", "stopping"):
        return None
    start = row.meter_start_wh if row.meter_start_wh is not None else meter_stop_wh
    energy = meter_stop_wh - start
    if energy < 0:
        record_anomaly(conn, row.station_id, "session_meter_below_start",
                       {"sessionId": row.id, "transactionId": row.transaction_id, "meterStart": start,
                        "meterStop": meter_stop_wh})
        energy = 0
    cost = energy_cost(energy, price_of(row))
    charged = min(cost, row.hold_tyiyn)
    if cost > row.hold_tyiyn:
        # The charger went on past the RemoteStop: the driver never pays more than the hold.
        record_anomaly(conn, row.station_id, "session_cost_over_hold",
                       {"sessionId": row.id, "cost": cost, "hold": row.hold_tyiyn, "energyWh": energy})
    if ledger.pending_resolution(conn, row.hold_transfer_id) is None:
        # post() voids instead when charged is 0 (a transfer amount is always positive).
        ledger.post(conn, settle_transfer_id(row.id), row.hold_transfer_id, charged, reason="charging session",
                    metadata={"session_id": row.id, "energy_wh": energy})
    else:
        record_anomaly(conn, row.station_id, "session_hold_already_resolved", {"sessionId": row.id})
    store.update_session(conn, row.id, status="completed", energy_wh=energy, meter_last_wh=meter_stop_wh,
                         cost_tyiyn=charged, charged_tyiyn=charged, ended_at=ended_at,
                         stop_reason=row.stop_reason or reason, settled_by=settled_by)
    store.expire_id_tag(conn, row.id_tag)
    notify_session(conn, row, "completed")
    notify(conn, "balance", user_id=row.user_id)
    owner = store.owner_of_account(conn, row.revenue_account_id)
    if owner is not None:
        notify(conn, "balance", user_id=owner)
    return charged


def link_start(conn: Conn, row: SessionRow, station_id: str, connector_id: int, transaction_id: int,
               meter_start_wh: int, started_at: datetime) -> bool:
    """Attach the charger's StartTransaction to the session it was started for (→ ``charging``).

    Returns:
        True when the session is now charging with this transaction (also for a duplicate start).
    """
    if row.transaction_id == transaction_id:
        return row.status in ("charging", "stopping")
    if row.station_id != station_id or row.status not in ("requested", "accepted"):
        record_anomaly(conn, station_id, "session_tag_start_refused",
                       {"sessionId": row.id, "status": row.status, "transactionId": transaction_id})
        return False
    if connector_id != row.connector_id:
        record_anomaly(conn, station_id, "session_started_on_other_connector",
                       {"sessionId": row.id, "requested": row.connector_id, "started": connector_id})
    store.update_session(conn, row.id, status="charging", transaction_id=transaction_id,
                         meter_start_wh=meter_start_wh, meter_last_wh=meter_start_wh, started_at=started_at,
                         cost_tyiyn=min(energy_cost(0, price_of(row)), row.hold_tyiyn))
    notify_session(conn, row, "charging")
    return True


@dataclass(frozen=True, slots=True)
class ReadingPlan:
    """What a MeterValues changes in a charging session, decided from the session row alone.

    Attributes:
        fields: the live columns to set (energy, register, cost, sample time, power, SoC); empty when
            the reading brings nothing new.
        stop: the reading reached the session's limit (the session moves to ``stopping``).
        after: the row as it is once the change is written.
    """

    fields: dict[str, object]
    stop: bool
    after: SessionRow


def plan_reading(row: SessionRow, reading: Reading) -> ReadingPlan | None:
    """The change a reading makes to a session in ``row``'s state; None if it is not charging.

    Energy only grows (a replayed older message cannot lower it) and power/SoC only move forward in the
    charger's time. A pure function: :func:`apply_reading` writes the plan under the row lock, and
    ``csms.services.live_meter`` writes it without one, on the condition that the row is still in
    the state the plan was made from.
    """
    if row.status not in ("charging", "stopping") or row.meter_start_wh is None:
        return None
    energy = row.energy_wh
    fields: dict[str, object] = {}
    if reading.register_wh is not None and reading.register_wh - row.meter_start_wh > energy:
        energy = reading.register_wh - row.meter_start_wh
        fields.update(energy_wh=energy, meter_last_wh=reading.register_wh,
                      cost_tyiyn=min(energy_cost(energy, price_of(row)), row.hold_tyiyn))
    sampled_at = row.meter_sampled_at
    if reading.sampled_at is not None and (sampled_at is None or reading.sampled_at >= sampled_at):
        sampled_at = fields["meter_sampled_at"] = reading.sampled_at
        if reading.power_w is not None:
            fields["power_w"] = reading.power_w
        if reading.soc is not None:
            fields["soc"] = reading.soc
    stop = row.status == "charging" and limit_reached(row, energy)
    after = replace(row, energy_wh=energy, meter_sampled_at=sampled_at)
    if stop:
        after = replace(after, status="stopping", stop_reason="LimitReached")
    return ReadingPlan(fields, stop, after)


@dataclass(frozen=True, slots=True)
class ReadingApplied:
    """What :func:`apply_reading` did: whether to send RemoteStop, the change event it published, and the
    session row after it (None when the session is not charging)."""

    stop: bool
    event: str | None
    row: SessionRow | None


def apply_reading(conn: Conn, row: SessionRow, reading: Reading, received_at: datetime | None = None
                  ) -> ReadingApplied:
    """Update live energy, power, SoC and cost from a MeterValues; switch to ``stopping`` at the limit.

    ``row`` is locked by the caller. ``stop`` is True when this reading reached the limit: the caller
    sends RemoteStop, once, because only this transition from ``charging`` sets it. ``received_at``
    (when csms received the MeterValues) travels in the change event, for the live-latency metrics.
    """
    plan = plan_reading(row, reading)
    if plan is None:
        return ReadingApplied(False, None, None)
    fields = dict(plan.fields)
    if plan.stop:
        fields.update(status="stopping", stop_requested_at=_now(conn), stop_reason="LimitReached")
    if not fields:
        return ReadingApplied(False, None, plan.after)
    store.update_session(conn, row.id, **fields)
    return ReadingApplied(plan.stop, notify_session(conn, row, plan.after.status, received_at), plan.after)


def request_stop(conn: Conn, row: SessionRow, reason: str) -> bool:
    """Move a charging session to ``stopping`` (the caller then sends RemoteStop). False if not charging."""
    if row.status != "charging":
        return False
    store.update_session(conn, row.id, status="stopping", stop_requested_at=_now(conn), stop_reason=reason)
    notify_session(conn, row, "stopping")
    return True


def _now(conn: Conn) -> datetime:
    # The database's clock, like created_at and the reaper's cutoffs, so intervals compare one clock.
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]
