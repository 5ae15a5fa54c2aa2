"""Transactions of the simulated charge point: charging, metering and the offline queue (a mixin).

Transaction messages (StartTransaction, MeterValues, StopTransaction) go through :meth:`tx_call`: sent now
when connected, otherwise queued and replayed in order after the next boot, with the negative placeholder
transaction ids of offline starts replaced by the real ones.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from simulators import ocppj
from simulators.ocppj import CallErrorReceived, ConnectionLost

if TYPE_CHECKING:
    from collections import deque
    from collections.abc import Awaitable, Callable

    from simulators.chargepoint import ConnectorState

log = logging.getLogger("simulators.charger")

#: Battery model for the SoC measurand: every session starts at this SoC with a battery of this size.
_SOC_START = 20.0
_BATTERY_WH = 60_000.0


@dataclass
class _Queued:
    action: str
    payload: dict[str, Any]
    placeholder: int | None = None



class TransactionsMixin:
    """Start/stop transactions, meter loops and the offline queue with its replay.

    The state lives in :class:`~simulators.chargepoint.ChargePoint`, which sets it in its ``__init__``.
    """

    station_id: str
    power_w: int
    meter_interval_s: float
    connectors: dict[int, ConnectorState]
    config: dict[str, str]
    duplicate_next: int
    duplicate_responses: list[dict[str, Any]]
    _ready: trio.Event
    _offline: bool
    _queue: deque[_Queued]
    _replaying: bool
    _id_map: dict[int, int]
    _next_placeholder: int
    _nursery: trio.Nursery | None

    if TYPE_CHECKING:  # provided by ChargePoint and RpcMixin

        async def _send_call(
            self, action: str, payload: dict[str, Any], uid: str | None = None
        ) -> dict[str, Any]: ...

        async def send_status(self, connector_id: int, status: str) -> None: ...

        def spawn(self, fn: Callable[[], Awaitable[None]]) -> None: ...

    # --- offline queue

    def _can_send_tx(self) -> bool:
        return self._ready.is_set() and not self._offline and not self._queue and not self._replaying

    async def tx_call(
        self, action: str, payload: dict[str, Any], placeholder: int | None = None
    ) -> dict[str, Any] | None:
        """Send a transaction message now, or queue it (returning None) if offline or a replay is pending."""
        if self._can_send_tx():
            try:
                return await self._send_tx_now(action, payload)
            except ConnectionLost:
                pass  # realistic chargers keep the message and retry it after reconnecting
        log.info("%s queued %s %s", self.station_id, action, json.dumps(payload))
        self._queue.append(_Queued(action, payload, placeholder))
        return None

    async def _send_tx_now(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        resp = await self._send_call(action, payload)
        if self.duplicate_next > 0:
            self.duplicate_next -= 1
            self.duplicate_responses.append(await self._send_call(action, payload))
        return resp

    def _resolve_tx_id(self, payload: dict[str, Any]) -> bool:
        """Rewrite a placeholder transaction id with the real one; False if it can never be resolved."""
        tx_id = payload.get("transactionId")
        if isinstance(tx_id, int) and tx_id < 0:
            if tx_id not in self._id_map:
                return False
            payload["transactionId"] = self._id_map[tx_id]
        return True

    async def _replay(self) -> None:
        """Replay the offline queue in order, then let transaction messages flow live again."""
        self._replaying = True
        try:
            while self._queue:
                item = self._queue[0]
                if not self._resolve_tx_id(item.payload):
                    log.warning("%s dropping %s of an unknown transaction", self.station_id, item.action)
                    self._queue.popleft()
                    continue
                try:
                    resp = await self._send_tx_now(item.action, item.payload)
                except CallErrorReceived:
                    resp = {}  # the server refused it; resending would fail the same way
                self._queue.popleft()
                real = resp.get("transactionId")
                if item.placeholder is not None and isinstance(real, int):
                    self._id_map[item.placeholder] = real
                    for conn in self.connectors.values():
                        if conn.transaction_id == item.placeholder:
                            conn.transaction_id = real
        finally:
            self._replaying = False

    # --- charging

    async def start_transaction(self, connector_id: int, id_tag: str) -> int:
        """Start a transaction on a connector and its meter loop; return the transaction id.

        While offline the StartTransaction is queued and a negative placeholder id is returned; it is replaced
        by the real id once the queue is replayed.
        """
        if self._nursery is None:
            raise RuntimeError("ChargePoint.run() is not running")
        conn = self.connectors[connector_id]
        if conn.transaction_id is not None:
            raise ValueError(f"connector {connector_id} already has transaction {conn.transaction_id}")
        conn.id_tag = id_tag
        await self.send_status(connector_id, "Preparing")
        self._advance_meter(conn)
        conn.session_start_wh = conn.meter_wh
        placeholder = self._next_placeholder
        payload = {"connectorId": connector_id, "idTag": id_tag, "meterStart": int(conn.meter_wh),
                   "timestamp": ocppj.now_iso()}
        resp = await self.tx_call("StartTransaction", payload, placeholder)
        if resp is None:
            self._next_placeholder -= 1
            tx_id = placeholder
        else:
            tx_id = int(resp["transactionId"])
        conn.transaction_id = tx_id
        status = (resp or {}).get("idTagInfo", {}).get("status", "Accepted")
        if status != "Accepted" and self.config["StopTransactionOnInvalidId"] == "true":
            await self.stop_transaction(connector_id, "DeAuthorized")
            return tx_id
        await self.send_status(connector_id, "Charging")
        conn.charging = True
        conn.stop_meter = trio.Event()
        self.spawn(functools.partial(self._meter_loop, connector_id, conn.stop_meter))
        return tx_id

    async def stop_transaction(self, connector_id: int, reason: str = "Local") -> None:
        """Stop the transaction: StopTransaction with a final reading, then Finishing and Available."""
        conn = self.connectors[connector_id]
        if conn.transaction_id is None:
            raise ValueError(f"no transaction on connector {connector_id}")
        self._advance_meter(conn)
        conn.charging = False
        if conn.stop_meter is not None:
            conn.stop_meter.set()
            conn.stop_meter = None
        tx_id, conn.transaction_id = conn.transaction_id, None
        payload = {
            "transactionId": tx_id,
            "idTag": conn.id_tag,
            "meterStop": int(conn.meter_wh),
            "timestamp": ocppj.now_iso(),
            "reason": reason,
            "transactionData": [self._sample(conn, "Transaction.End", charging=True, power=0.0)],
        }
        conn.id_tag = None
        await self.tx_call("StopTransaction", payload)
        await self.send_status(connector_id, "Finishing")
        final = conn.pending_availability or "Available"
        conn.pending_availability = None
        await self.send_status(connector_id, final)

    async def authorize(self, id_tag: str) -> str:
        """Authorize an idTag and return its status; offline it is accepted (LocalAuthorizeOffline)."""
        if not self._ready.is_set():
            return "Accepted"
        resp = await self._send_call("Authorize", {"idTag": id_tag})
        return str(resp.get("idTagInfo", {}).get("status", "Invalid"))

    async def _meter_loop(self, connector_id: int, stop: trio.Event) -> None:
        """Send periodic MeterValues until ``stop`` is set.

        Stopping is an event rather than a cancel scope so that a MeterValues already on the wire is never
        cancelled halfway: the StopTransaction then simply waits for it (one CALL in flight).
        """
        while True:
            interval = self.meter_interval_s if self.meter_interval_s > 0 else math.inf  # 0 disables sampling
            with trio.move_on_after(interval):
                await stop.wait()
            if stop.is_set():
                return
            await self.tx_call("MeterValues", self.meter_values(connector_id, "Sample.Periodic"))

    def meter_values(self, connector_id: int, context: str) -> dict[str, Any]:
        """Build a MeterValues request for a connector, with the transaction id when one runs."""
        conn = self.connectors[connector_id]
        self._advance_meter(conn)
        payload: dict[str, Any] = {
            "connectorId": connector_id,
            "meterValue": [self._sample(conn, context, charging=conn.charging)],
        }
        if conn.transaction_id is not None:
            payload["transactionId"] = conn.transaction_id
        return payload

    def _sample(
        self, conn: ConnectorState, context: str, *, charging: bool, power: float | None = None
    ) -> dict[str, Any]:
        if power is None:
            power = float(self.power_w) if charging else 0.0
        soc = min(100.0, _SOC_START + (conn.meter_wh - conn.session_start_wh) / _BATTERY_WH * 100)
        return ocppj.meter_sample(conn.meter_wh, power, soc if charging else None, context)

    def _advance_meter(self, conn: ConnectorState) -> None:
        """Integrate the configured power over the time since the last reading (only while charging)."""
        now = trio.current_time()
        if conn.charging:
            conn.meter_wh += self.power_w * (now - conn.meter_t) / 3600.0
        conn.meter_t = now
