"""Charging transactions reported by chargers: start, meter values, stop.

StartTransaction, StopTransaction and MeterValues are committed before they are answered (through
the group committer) and are idempotent, so a charger that resends after a lost answer, or replays
its queue after being offline, is billed once. Oddities are answered normally and recorded in
``ocpp_anomalies`` for an operator instead of being refused: a charger that gets an error for a
StopTransaction retries it forever.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from csms.services.clock import EARLIEST_PLAUSIBLE, MAX_FUTURE_SKEW, charger_time
from csms.services.stations import IdTagInfo, id_tag_info
from csms.store import stations as station_store
from csms.store import transactions as store
from csms.store.transactions import MeterSamples

if TYPE_CHECKING:
    from datetime import datetime

    from csms.services.commit import GroupCommitter
    from csms.store.db import Conn

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StartResult:
    """What to answer a StartTransaction with."""

    transaction_id: int
    id_tag_info: IdTagInfo


class TransactionService:
    """Durable, idempotent handling of transaction messages."""

    def __init__(self, committer: GroupCommitter) -> None:
        self.committer = committer

    async def start(self, station_id: str, payload: dict[str, Any], received_at: datetime) -> StartResult:
        """Record a StartTransaction and allocate (or find) its transaction id."""
        sent, started_at, replaced = charger_time(payload["timestamp"], received_at)

        def write(conn: Conn) -> StartResult:
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
                return StartResult(started.transaction_id, info)
            if replaced:
                station_store.record_anomaly(conn, station_id, "timestamp_replaced",
                                             {"action": "StartTransaction", "sent": payload["timestamp"],
                                              "transactionId": started.transaction_id})
            left_open = store.open_transactions_on(conn, station_id, int(payload["connectorId"]),
                                                   started.transaction_id)
            if left_open:
                station_store.record_anomaly(conn, station_id, "transaction_left_open",
                                             {"open": left_open, "newTransactionId": started.transaction_id})
            return StartResult(started.transaction_id, info)

        return await self.committer.submit(write)

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
            connector_id, start_wh = found if found else (0, None)
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
            if id_tag is None:
                return None
            return id_tag_info(station_store.get_id_tag(conn, id_tag), received_at)

        return await self.committer.submit(write)

    async def meter_values(self, station_id: str, payload: dict[str, Any], received_at: datetime) -> None:
        """Store every sampled value of a MeterValues message."""
        tx = payload.get("transactionId")
        # Not expanded here: PostgreSQL turns it into rows (see MeterSamples).
        samples = MeterSamples(station_id, int(payload["connectorId"]), int(tx) if tx is not None else None,
                               payload["meterValue"], received_at, "MeterValues")
        await self.committer.submit_rows([samples])
