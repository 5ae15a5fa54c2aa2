"""Charging transactions reported by chargers: start, meter values, stop.

StartTransaction, StopTransaction and MeterValues are committed before they are answered (through
the group committer) and are idempotent, so a charger that resends after a lost answer, or replays
its queue after being offline, is billed once. Oddities are answered normally and recorded in
``ocpp_anomalies`` for an operator instead of being refused: a charger that gets an error for a
StopTransaction retries it forever.

Transactions started for an app session (their idTag is the session's CSMS-issued tag) also drive the
session, in the same committed write as the OCPP rows: StartTransaction links it (``charging``),
MeterValues update its live values (and may reach its limit, queueing a RemoteStop), StopTransaction
bills it. MeterValues of other transactions take the plain batched insert: the only added cost on
that path is one set lookup (:class:`~csms.services.session_tracker.LiveSessions`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from csms.services import session_billing as billing
from csms.services.clock import EARLIEST_PLAUSIBLE, MAX_FUTURE_SKEW, charger_time
from csms.services.session_meter import read_meter_values
from csms.services.session_tracker import LiveSessions, StopRequest
from csms.services.stations import IdTagInfo, id_tag_info
from csms.store import sessions as session_store
from csms.store import stations as station_store
from csms.store import transactions as store
from csms.store.session_live import LiveUpdate
from csms.store.transactions import MeterSamples

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from csms.services.commit import GroupCommitter
    from csms.services.live_meter import LiveMeterWriter
    from csms.services.session_meter import Reading
    from csms.store.db import Conn
    from csms.store.sessions import SessionRow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StartResult:
    """What to answer a StartTransaction with."""

    transaction_id: int
    id_tag_info: IdTagInfo
    session_linked: bool = False


class TransactionService:
    """Durable, idempotent handling of transaction messages."""

    def __init__(self, committer: GroupCommitter, live: LiveSessions | None = None,
                 live_writer: LiveMeterWriter | None = None) -> None:
        self.committer = committer
        self.live = live if live is not None else LiveSessions()
        #: The fast lane for live sessions' MeterValues (None: they all take the locked path).
        self.live_writer = live_writer
        #: Hands a committed change event to this process's subscribers (``EventHub.publish_committed``);
        #: set once the events hub runs. Without it, they get the event through NOTIFY alone.
        self.publish_committed: Callable[[str], None] | None = None

    def publish_to(self, publish: Callable[[str], None]) -> None:
        """Hand committed change events to this process's subscribers from now on."""
        self.publish_committed = publish
        if self.live_writer is not None:
            self.live_writer.publish = publish

    async def start(self, station_id: str, payload: dict[str, Any], received_at: datetime) -> StartResult:
        """Record a StartTransaction and allocate (or find) its transaction id."""
        sent, started_at, replaced = charger_time(payload["timestamp"], received_at)

        def write(conn: Conn) -> StartResult:
            # The session is locked before the tag is read: a concurrent stopCharging that retires the
            # tag either commits first (and the tag reads Expired) or waits for this link.
            session = (session_store.lock_session_by_tag(conn, payload["idTag"])
                       if billing.is_session_tag(payload["idTag"]) else None)
            info = id_tag_info(station_store.get_id_tag(conn, payload["idTag"]), received_at)
            started = store.start_transaction(
                conn,
                station_id=station_id,
                connector_id=int(payload["connectorId"]),
                id_tag=payload["idTag"],
                id_tag_status=info.status,
                meter_start_wh=int(payload["meterStart"]),
                started_at=started_at,
                start_key_ts=sent,
                reservation_id=payload.get("reservationId"),
            )
            if started.duplicate:
                # Same answer as the first time, even if the tag changed since.
                info = IdTagInfo(started.id_tag_status, info.expiry_date, info.parent_id_tag)
                station_store.record_anomaly(conn, station_id, "duplicate_start_transaction",
                                             {"transactionId": started.transaction_id})
                return StartResult(started.transaction_id, info, _link(conn, session, info, started.transaction_id))
            if replaced:
                station_store.record_anomaly(conn, station_id, "timestamp_replaced",
                                             {"action": "StartTransaction", "sent": payload["timestamp"],
                                              "transactionId": started.transaction_id})
            left_open = store.open_transactions_on(conn, station_id, int(payload["connectorId"]),
                                                   started.transaction_id)
            if left_open:
                station_store.record_anomaly(conn, station_id, "transaction_left_open",
                                             {"open": left_open, "newTransactionId": started.transaction_id})
            return StartResult(started.transaction_id, info, _link(conn, session, info, started.transaction_id))

        def _link(conn: Conn, session: session_store.SessionRow | None, info: IdTagInfo, tx_id: int) -> bool:
            if session is None:
                return False
            if info.status != "Accepted":
                # The session failed or was cancelled and its tag retired: the charger is told so (and
                # stops), nothing is linked or billed.
                station_store.record_anomaly(conn, station_id, "session_tag_not_accepted",
                                             {"sessionId": session.id, "status": info.status, "transactionId": tx_id})
                return False
            return billing.link_start(conn, session, station_id, int(payload["connectorId"]), tx_id,
                                      int(payload["meterStart"]), started_at)

        result = await self.committer.submit(write)
        if result.session_linked:
            self.live.add(result.transaction_id)
        return result

    async def stop(self, station_id: str, payload: dict[str, Any], received_at: datetime) -> IdTagInfo | None:
        """Record a StopTransaction (with its transactionData); always succeeds for the charger.

        Returns:
            The idTagInfo to answer when the charger sent an idTag, else None.
        """
        _, stopped_at, replaced = charger_time(payload["timestamp"], received_at)
        tx_id = int(payload["transactionId"])
        id_tag = payload.get("idTag")

        def write(conn: Conn) -> IdTagInfo | None:
            outcome = store.stop_transaction(
                conn, station_id=station_id, transaction_id=tx_id, meter_stop_wh=int(payload["meterStop"]),
                stopped_at=stopped_at, reason=payload.get("reason", "Local"), id_tag=id_tag,
            )
            found = store.transaction_start_info(conn, station_id, tx_id)
            # StopTransaction carries no connectorId; its transactionData belongs to the transaction's
            # connector (0 when the transaction is unknown).
            connector_id, start_wh, start_tag = found if found else (0, None, "")
            if payload.get("transactionData"):
                store.insert_meter_samples(conn, [MeterSamples(
                    station_id, connector_id, tx_id, payload["transactionData"], received_at,
                    "StopTransaction")], EARLIEST_PLAUSIBLE, MAX_FUTURE_SKEW)
            if outcome == "stopped":
                if start_wh is not None and int(payload["meterStop"]) < start_wh:
                    station_store.record_anomaly(conn, station_id, "meter_stop_below_start",
                                                 {"transactionId": tx_id, "meterStart": start_wh,
                                                  "meterStop": payload["meterStop"]})
                if replaced:
                    station_store.record_anomaly(conn, station_id, "timestamp_replaced",
                                                 {"action": "StopTransaction", "sent": payload["timestamp"],
                                                  "transactionId": tx_id})
            else:
                station_store.record_anomaly(conn, station_id, f"stop_{outcome}_transaction",
                                             {"transactionId": tx_id, "meterStop": payload["meterStop"]})
            # Only transactions started with a session's tag can have a session: other stops cost nothing more.
            if outcome != "unknown" and billing.is_session_tag(start_tag):
                _bill_session(conn, station_id, tx_id, int(payload["meterStop"]), stopped_at,
                              payload.get("reason", "Local"), first=outcome == "stopped")
            if id_tag is None:
                return None
            return id_tag_info(station_store.get_id_tag(conn, id_tag), received_at)

        info = await self.committer.submit(write)
        self.live.discard(tx_id)
        return info

    def is_watched(self, action: str, payload: object) -> bool:
        """Whether a CALL is the MeterValues of a charging session (which a driver may be watching)."""
        if action != "MeterValues" or not isinstance(payload, dict):
            return False
        tx = payload.get("transactionId")
        return isinstance(tx, int) and self.live.is_live(tx)

    async def meter_values(self, station_id: str, payload: dict[str, Any], received_at: datetime) -> None:
        """Store every sampled value of a MeterValues message (and update its session, if it has one)."""
        tx = payload.get("transactionId")
        # Not expanded here: PostgreSQL turns it into rows (see MeterSamples).
        samples = MeterSamples(station_id, int(payload["connectorId"]), int(tx) if tx is not None else None,
                               payload["meterValue"], received_at, "MeterValues")
        if tx is None or not self.live.is_live(int(tx)):
            await self.committer.submit_rows([samples])
            return
        tx_id = int(tx)
        reading = read_meter_values(payload["meterValue"])
        if await self._write_live(tx_id, samples, reading, received_at):
            return

        def write(conn: Conn) -> tuple[StopRequest | None, str | None, SessionRow | None]:
            return _session_reading(conn, station_id, tx_id, reading, received_at)

        # Urgent: a driver may be watching this session live (GroupCommitter's urgent lane).
        stop, event, row = await self.committer.submit(write, [samples], urgent=True)
        self.live.remember(tx_id, row)
        if event is not None and self.publish_committed is not None:
            # Committed: this process's subscribers get it now rather than after NOTIFY's round trip.
            self.publish_committed(event)
        if stop is not None:
            self.live.request_stop(stop)

    async def _write_live(self, tx_id: int, samples: MeterSamples, reading: Reading, received_at: datetime) -> bool:
        """Write a session's reading in the fast lane (``csms.services.live_meter``) if it can go there.

        False: it must be written under the row lock (the session's row is not known here yet, the
        reading reaches the limit, or the session had changed).
        """
        row = self.live.last_row(tx_id)
        plan = billing.plan_reading(row, reading) if row is not None and self.live_writer is not None else None
        if plan is None or plan.stop or row is None or self.live_writer is None:
            return False
        if not plan.fields:  # nothing new for the session: its samples alone
            await self.committer.submit_rows([samples])
            return True
        update = LiveUpdate(samples, row, plan.fields, int(received_at.timestamp() * 1_000_000))
        if await self.live_writer.write(update) is None:
            self.live.remember(tx_id, None)
            return False
        self.live.remember(tx_id, plan.after)
        return True


def _bill_session(conn: Conn, station_id: str, tx_id: int, meter_stop_wh: int, stopped_at: datetime,
                  reason: str, *, first: bool) -> None:
    """Settle the session of a stopped transaction, in the StopTransaction's own write."""
    try:
        # A savepoint: a billing bug must not make the StopTransaction fail (the charger would resend
        # it forever); the session stays open and the reaper settles it after the stop grace.
        with conn.transaction():
            session = session_store.lock_session_by_transaction(conn, station_id, tx_id)
            if session is None:
                return
            charged = billing.settle(conn, session, meter_stop_wh, stopped_at, reason, "stop_transaction")
            if charged is None and first and session.status == "completed":
                # Settled earlier from the last durable reading: the stop came after the grace.
                station_store.record_anomaly(conn, station_id, "stop_after_session_settled",
                                             {"sessionId": session.id, "transactionId": tx_id,
                                              "meterStop": meter_stop_wh, "billedEnergyWh": session.energy_wh})
    except Exception:
        log.exception("settling the session of transaction %d on %s failed", tx_id, station_id)


def _session_reading(conn: Conn, station_id: str, tx_id: int, reading: Reading, received_at: datetime
                     ) -> tuple[StopRequest | None, str | None, SessionRow | None]:
    """Apply a MeterValues to its session under the row lock: a RemoteStop to queue when it reached the
    limit, the change event it published, and the session row after it (None for any that is not)."""
    try:
        # Live values are not what bills (StopTransaction is): a failure here is logged, and must not
        # fail the meter samples committed with it.
        with conn.transaction():
            session = session_store.lock_session_by_transaction(conn, station_id, tx_id)
            if session is None:
                return None, None, None
            applied = billing.apply_reading(conn, session, reading, received_at)
            stop = StopRequest(session.id, station_id, tx_id) if applied.stop else None
            return stop, applied.event, applied.row
    except Exception:
        log.exception("updating the session of transaction %d on %s failed", tx_id, station_id)
    return None, None, None
