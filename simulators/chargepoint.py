"""A simulated OCPP 1.6J charge point, usable from tests and from the ``simulators.charger`` CLI.

Task ownership: :meth:`ChargePoint.run` opens the simulator's nursery, which lives as long as the simulator
and owns everything that must survive a reconnect (transaction flows, meter loops, resets). Each WebSocket
connection has its own nursery owning the reader, the heartbeat loop and the offline-queue replay; it is torn
down when the socket goes away, and ``run`` reconnects.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import logging
import math
import socket
import struct
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio
import trio_websocket

from simulators import ocppj
from simulators.ocppj import CallErrorReceived, ConnectionLost, SimulatorError

log = logging.getLogger("simulators.charger")

#: Battery model for the SoC measurand: every session starts at this SoC with a battery of this size.
_SOC_START = 20.0
_BATTERY_WH = 60_000.0


@dataclass
class ConnectorState:
    """What the charger knows about one connector.

    Attributes:
        status: The OCPP ChargePointStatus last reported (or to be reported on reconnect).
        transaction_id: The running transaction, negative while it is a local placeholder (offline start).
        meter_wh: The energy register in Wh; it only grows.
        id_tag: The idTag of the running transaction.
    """

    status: str = "Available"
    transaction_id: int | None = None
    meter_wh: float = 0.0
    id_tag: str | None = None
    session_start_wh: float = 0.0
    meter_t: float = 0.0
    charging: bool = False
    pending_availability: str | None = None
    stop_meter: trio.Event | None = field(default=None, repr=False)


@dataclass
class _Queued:
    action: str
    payload: dict[str, Any]
    placeholder: int | None = None


class _Pending:
    """One CALL waiting for its answer; at most one per connection exists outside :meth:`resend_last`."""

    def __init__(self, uid: str | None = None) -> None:
        self.uid = uid
        self.done = trio.Event()
        self.frame: ocppj.Frame | None = None
        self.raw: str = ""


class ChargePoint:
    """A simulated charge point speaking OCPP 1.6J over trio-websocket.

    Args:
        url: Central-system endpoint; the station id is appended to it.
        station_id: The charge point identity, also used as serial number.
        password: Enables HTTP Basic authentication (security profile 1).
        connectors: Number of connectors, numbered from 1.
        power_w: Charging power while a transaction runs.
        meter_interval_s: Seconds between periodic MeterValues (floats are fine for tests).
        subprotocols: WebSocket subprotocols to offer, ``["ocpp1.6"]`` by default.
        response_timeout_s: How long a CALL waits for its answer before ``trio.TooSlowError``.
        reconnect: Reconnect after the connection drops; if false, ``run`` returns instead.
        reconnect_delay_s: Pause before each reconnection attempt.

    Attributes:
        connectors: Connector number → :class:`ConnectorState`; ``station_status`` is connector 0.
        boot_response: The last Accepted BootNotification answer.
        heartbeat_interval: Seconds between heartbeats (from the boot answer or ChangeConfiguration).
        config: Configuration key → value, as served by GetConfiguration.
        received: ``(action, payload)`` of every CS→CP CALL, in arrival order.
        duplicate_next: Fault injection: send the next N transaction messages twice, the second time with a
            fresh unique id and the identical payload (answers land in ``duplicate_responses``).
    """

    def __init__(
        self,
        url: str,
        station_id: str,
        *,
        password: str | None = None,
        connectors: int = 2,
        power_w: int = 11000,
        meter_interval_s: float = 10.0,
        subprotocols: list[str] | None = None,
        response_timeout_s: float = 30.0,
        reconnect: bool = True,
        reconnect_delay_s: float = 0.2,
    ) -> None:
        self.url = url
        self.station_id = station_id
        self.password = password
        self.power_w = power_w
        self.meter_interval_s = meter_interval_s
        self.subprotocols = ["ocpp1.6"] if subprotocols is None else subprotocols
        self.response_timeout_s = response_timeout_s
        self.reconnect = reconnect
        self.reconnect_delay_s = reconnect_delay_s
        self.connectors: dict[int, ConnectorState] = {i: ConnectorState() for i in range(1, connectors + 1)}
        self.station_status = "Available"
        self.boot_response: dict[str, Any] | None = None
        self.heartbeat_interval: float = 300
        self.config = ocppj.default_config(connectors, self.heartbeat_interval, meter_interval_s)
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.duplicate_next = 0
        #: Answers to the second copy of each duplicated message, for idempotency assertions.
        self.duplicate_responses: list[dict[str, Any]] = []
        self._ws: trio_websocket.WebSocketConnection | None = None
        self._ready = trio.Event()
        self._online = trio.Event()
        self._online.set()
        self._offline = False
        self._changed = trio.Event()
        self._hb_changed = trio.Event()
        self._call_lock = trio.Lock()
        self._pending: dict[str, _Pending] = {}
        self._raw_waiter: _Pending | None = None
        self._queue: deque[_Queued] = deque()
        self._replaying = False
        self._id_map: dict[int, int] = {}
        self._next_placeholder = -1
        self._last_call: tuple[str, dict[str, Any]] | None = None
        self._last_uid = ""
        self._nursery: trio.Nursery | None = None
        self._conn_scope: trio.CancelScope | None = None

    # --- lifecycle

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, boot and serve the central system until cancelled.

        Reports readiness through ``task_status`` once the first BootNotification was Accepted and the status
        notifications were sent. Handshake failures and dropped connections lead to a reconnect after
        ``reconnect_delay_s`` (unless ``reconnect`` is false, then the error is raised before readiness and
        ``run`` returns after it). While :meth:`go_offline` is in effect no connection is attempted.
        """
        started = False

        def on_ready() -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started()

        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                while True:
                    await self._online.wait()
                    try:
                        await self._session(on_ready)
                    except (trio_websocket.HandshakeError, OSError) as exc:
                        log.warning("%s connection failed: %r", self.station_id, exc)
                        if not self.reconnect and not started:
                            raise
                    if not self.reconnect:
                        break
                    await trio.sleep(self.reconnect_delay_s)
            finally:
                self._nursery = None
            nursery.cancel_scope.cancel()

    async def _session(self, on_ready: Callable[[], None]) -> None:
        """Run one WebSocket connection from handshake to drop; returns normally when the socket goes away."""
        headers: list[tuple[bytes, bytes]] = []
        if self.password is not None:
            token = base64.b64encode(f"{self.station_id}:{self.password}".encode()).decode()
            headers.append((b"Authorization", f"Basic {token}".encode()))
        url = self.url + self.station_id
        log.info("%s connecting to %s", self.station_id, url)
        async with trio_websocket.open_websocket_url(
            url, subprotocols=self.subprotocols, extra_headers=headers, disconnect_timeout=1.0
        ) as ws:
            self._ws = ws
            try:
                async with trio.open_nursery() as conn:
                    self._conn_scope = conn.cancel_scope
                    conn.start_soon(self._guard, self._reader, ws)
                    await self._guard(self._boot_and_announce, on_ready)
                    if not conn.cancel_scope.cancel_called:
                        conn.start_soon(self._guard, self._heartbeat_loop)
                        conn.start_soon(self._guard, self._replay)
            finally:
                self._ws = None
                self._conn_scope = None
                self._not_ready()
                for pending in [*self._pending.values(), self._raw_waiter]:
                    if pending is not None:
                        pending.done.set()  # no frame: the waiter raises ConnectionLost
                log.info("%s disconnected", self.station_id)

    async def _guard(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run a per-connection task; a dead socket ends the whole connection instead of crashing ``run``."""
        try:
            await fn(*args)
        except (trio_websocket.ConnectionClosed, SimulatorError, trio.BrokenResourceError,
                trio.ClosedResourceError, trio.TooSlowError) as exc:
            log.info("%s connection ends: %r", self.station_id, exc)
            if self._conn_scope is not None:
                self._conn_scope.cancel()

    async def _boot_and_announce(self, on_ready: Callable[[], None]) -> None:
        await self._boot()
        await self._send_status(0, self.station_status)
        for cid, conn in self.connectors.items():
            await self._send_status(cid, conn.status)
        self._ready.set()
        on_ready()

    async def _boot(self) -> None:
        """Send BootNotification until Accepted, waiting the server-given interval after Pending/Rejected."""
        while True:
            resp = await self._send_call("BootNotification", self._boot_payload())
            interval = resp.get("interval", 0)
            if resp.get("status") == "Accepted":
                self._accept_boot(resp)
                return
            await trio.sleep(interval if isinstance(interval, int | float) and interval > 0 else 10)

    def _boot_payload(self) -> dict[str, Any]:
        return {
            "chargePointVendor": "csms-sim",
            "chargePointModel": "SimCharger",
            "chargePointSerialNumber": self.station_id,
            "firmwareVersion": "1.0",
        }

    def _accept_boot(self, resp: dict[str, Any]) -> None:
        self.boot_response = resp
        interval = resp.get("interval")
        # Floats are accepted too (not valid OCPP) so that tests can use sub-second heartbeats.
        if isinstance(interval, int | float) and not isinstance(interval, bool) and interval > 0:
            self._set_heartbeat(interval)

    def _set_heartbeat(self, interval: float) -> None:
        self.heartbeat_interval = interval
        self.config["HeartbeatInterval"] = ocppj.format_number(interval)
        self._hb_changed.set()

    async def _heartbeat_loop(self) -> None:
        while True:
            self._hb_changed = trio.Event()
            with trio.move_on_after(self.heartbeat_interval):
                await self._hb_changed.wait()
                continue  # interval changed: restart the wait with the new value
            # A refused heartbeat (already logged) is the server's bug, not a reason to hang up.
            with contextlib.suppress(CallErrorReceived):
                await self._send_call("Heartbeat", {})

    async def _reader(self, ws: trio_websocket.WebSocketConnection) -> None:
        """Receive frames: answer CS→CP CALLs, hand CALLRESULT/CALLERROR to the waiting caller."""
        while True:
            text = await ws.get_message()
            try:
                frame = ocppj.decode(text)
            except ocppj.FrameError as exc:
                log.warning("%s ← malformed frame (%s): %r", self.station_id, exc, text)
                self._offer_raw(str(text), exc.unique_id)
                if exc.unique_id is not None:
                    await self._send_text(ocppj.encode_error(exc.unique_id, exc.code, str(exc)))
                continue
            consumed = self._offer_raw(str(text), frame.unique_id)
            if frame.type == ocppj.CALL:
                await self._answer(frame)
                continue
            pending = self._pending.pop(frame.unique_id, None)
            if pending is None:
                if not consumed:
                    log.warning("%s ← unmatched answer %s", self.station_id, text)
                continue
            pending.frame = frame
            pending.done.set()

    def _offer_raw(self, text: str, uid: str | None) -> bool:
        """Give a frame to a waiting :meth:`send_raw` if it answers it; return whether it was taken."""
        waiter = self._raw_waiter
        if waiter is None or waiter.done.is_set() or (waiter.uid is not None and waiter.uid != uid):
            return False
        waiter.raw = text
        waiter.done.set()
        return True

    async def _answer(self, frame: ocppj.Frame) -> None:
        payload = frame.payload or {}
        log.info("%s ← %s %s", self.station_id, frame.action, json.dumps(payload))
        self.received.append((frame.action, payload))
        handler = HANDLERS.get(frame.action)
        after = None
        if handler is None:
            reply = ocppj.encode_error(frame.unique_id, "NotImplemented", f"{frame.action} is not supported")
            log.info("%s → %s CALLERROR NotImplemented", self.station_id, frame.action)
        else:
            try:
                result, after = handler(self, payload)
            except HandlerError as exc:
                reply = ocppj.encode_error(frame.unique_id, exc.code, str(exc))
                log.info("%s → %s CALLERROR %s %s", self.station_id, frame.action, exc.code, exc)
            else:
                reply = ocppj.encode_result(frame.unique_id, result)
                log.info("%s → %s.conf %s", self.station_id, frame.action, json.dumps(result))
        await self._send_text(reply)
        if after is not None:
            # Follow-up messages run in the simulator's nursery, never inline: the reader must keep reading so
            # the answers to those very messages can arrive.
            self.spawn(after)

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run a follow-up flow in the simulator's nursery, logging (not raising) OCPP-level failures."""
        if self._nursery is None:
            raise RuntimeError("ChargePoint.run() is not running")

        async def flow() -> None:
            try:
                await fn()
            except (SimulatorError, trio.TooSlowError, trio_websocket.ConnectionClosed) as exc:
                log.warning("%s follow-up %s failed: %r", self.station_id, getattr(fn, "__name__", fn), exc)

        self._nursery.start_soon(flow)

    # --- sending

    async def _send_text(self, text: str) -> None:
        ws = self._ws
        if ws is None:
            raise ConnectionLost("not connected")
        try:
            await ws.send_message(text)
        except (trio_websocket.ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ConnectionLost(f"connection closed: {exc!r}") from None

    async def _send_call(
        self, action: str, payload: dict[str, Any], uid: str | None = None
    ) -> dict[str, Any]:
        """Send one CALL on the current connection and wait for its answer (one CALL in flight at a time)."""
        async with self._call_lock:
            uid = uid or ocppj.new_uid()
            pending = _Pending()
            self._pending[uid] = pending
            self._last_call = (action, payload)
            self._last_uid = uid
            try:
                with trio.fail_after(self.response_timeout_s):
                    log.info("%s → %s %s", self.station_id, action, json.dumps(payload))
                    await self._send_text(ocppj.encode_call(uid, action, payload))
                    await pending.done.wait()
            finally:
                self._pending.pop(uid, None)
        frame = pending.frame
        if frame is None:
            raise ConnectionLost(f"connection lost while waiting for {action}")
        if frame.type == ocppj.CALLERROR:
            log.info("%s ← %s CALLERROR %s %s", self.station_id, action, frame.error_code,
                     frame.error_description)
            raise CallErrorReceived(frame.error_code, frame.error_description, frame.error_details or {})
        log.info("%s ← %s.conf %s", self.station_id, action, json.dumps(frame.payload))
        return frame.payload or {}

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a CALL and return the CALLRESULT payload.

        Waits (within ``response_timeout_s``) for the charger to be connected and booted first.

        Raises:
            CallErrorReceived: The server answered with a CALLERROR.
            ConnectionLost: The connection dropped before the answer arrived.
            trio.TooSlowError: No connection or no answer in time.
        """
        with trio.fail_after(self.response_timeout_s):
            await self._ready.wait()
        return await self._send_call(action, payload)

    async def send_raw(self, text: str) -> str:
        """Send ``text`` verbatim and return the raw frame that answers it.

        The answer is matched by the unique id found in ``text``; if none can be read, the next frame received
        at all is returned. Raises ``trio.TooSlowError`` after ``response_timeout_s``.
        """
        with trio.fail_after(self.response_timeout_s):
            await self._ready.wait()
            async with self._call_lock:
                waiter = _Pending(ocppj.peek_unique_id(text))
                self._raw_waiter = waiter
                try:
                    log.info("%s → raw %s", self.station_id, text)
                    await self._send_text(text)
                    await waiter.done.wait()
                finally:
                    self._raw_waiter = None
        if not waiter.raw:
            raise ConnectionLost("connection lost while waiting for an answer to a raw frame")
        return waiter.raw

    async def resend_last(self, same_uid: bool) -> dict[str, Any]:
        """Resend the last CALL's payload, reusing its unique id or not, and return the answer payload.

        Only the payload and action are kept, so with ``same_uid=True`` the frame is byte-identical.
        """
        if self._last_call is None:
            raise RuntimeError("no CALL was sent yet")
        action, payload = self._last_call
        uid = self._last_uid if same_uid else None
        return await self._send_call(action, payload, uid=uid)

    # --- offline

    @property
    def offline(self) -> bool:
        """Whether :meth:`go_offline` is in effect."""
        return self._offline

    def go_offline(self) -> None:
        """Drop the connection and stay away; transaction messages queue up until :meth:`go_online`."""
        self._offline = True
        self._online = trio.Event()
        self.disconnect()

    def go_online(self) -> None:
        """Allow reconnecting; the queued transaction messages are replayed in order after the boot."""
        self._offline = False
        self._online.set()

    def disconnect(self) -> None:
        """Fault injection: drop the TCP connection abruptly, without a WebSocket close handshake."""
        ws = self._ws
        if ws is None:
            return
        self._not_ready()  # from now on transaction messages queue instead of failing
        stream: Any = ws._stream  # no public accessor; we need the socket to skip the close handshake
        transport = getattr(stream, "transport_stream", stream)  # unwrap TLS
        sock = getattr(transport, "socket", None)
        if sock is not None:
            # Linger 0 makes the kernel send RST, as when a charger loses power or its modem.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        elif self._conn_scope is not None:
            self._conn_scope.cancel()

    def _not_ready(self) -> None:
        # Replace the event only once it was set: a task already waiting on an unset event must be woken
        # by the next boot, not be left holding an orphaned event.
        if self._ready.is_set():
            self._ready = trio.Event()

    async def wait_connected(self) -> None:
        """Wait until the charger is connected and its BootNotification was Accepted."""
        await self._ready.wait()

    async def wait_for_status(self, connector_id: int, status: str, timeout: float = 5.0) -> None:
        """Wait until a connector (0 = the station) has ``status``; ``trio.TooSlowError`` on timeout."""
        with trio.fail_after(timeout):
            while self._status_of(connector_id) != status:
                await self._changed.wait()

    def _status_of(self, connector_id: int) -> str:
        return self.station_status if connector_id == 0 else self.connectors[connector_id].status

    def _notify_changed(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

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

    async def send_status(self, connector_id: int, status: str) -> None:
        """Record a status change and report it if connected (status messages are not queued offline)."""
        if connector_id == 0:
            self.station_status = status
        else:
            self.connectors[connector_id].status = status
        self._notify_changed()
        if self._ready.is_set():
            # Lost statuses are harmless: all statuses are reported again after the next boot.
            with contextlib.suppress(ConnectionLost):
                await self._send_status(connector_id, status)

    async def _send_status(self, connector_id: int, status: str) -> None:
        await self._send_call("StatusNotification", ocppj.status_payload(connector_id, status))

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


# --- CS→CP handlers
#
# Routing is a data table (action → handler). A handler never does I/O: it validates the request, updates
# state and returns the answer plus an optional follow-up flow, which the reader starts in the simulator's
# nursery after the answer is on the wire (the answer must precede e.g. the StartTransaction it causes).

Payload = dict[str, Any]
Flow = Callable[[], Awaitable[None]]
Handler = Callable[[ChargePoint, Payload], tuple[Payload, Flow | None]]


class HandlerError(SimulatorError):
    """A CS→CP request is invalid; answered with a CALLERROR carrying ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _field(payload: Payload, key: str, kind: type, *, required: bool = True) -> Any:
    if key not in payload:
        if required:
            raise HandlerError("OccurenceConstraintViolation", f"{key} is required")
        return None
    value = payload[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise HandlerError("TypeConstraintViolation", f"{key} must be {kind.__name__}")
    return value


def _choice(payload: Payload, key: str, allowed: tuple[str, ...]) -> str:
    value: str = _field(payload, key, str)
    if value not in allowed:
        raise HandlerError("PropertyConstraintViolation", f"{key} must be one of {', '.join(allowed)}")
    return value


def _remote_start(cp: ChargePoint, p: Payload) -> tuple[Payload, Flow | None]:
    id_tag: str = _field(p, "idTag", str)
    wanted: int | None = _field(p, "connectorId", int, required=False)
    free = [c for c, s in cp.connectors.items() if s.status in ("Available", "Preparing") and s.transaction_id
            is None and (wanted is None or c == wanted)]
    if not free:
        return {"status": "Rejected"}, None
    cid = free[0]
    # Claim the connector now, so a second RemoteStart arriving before the flow runs is rejected.
    cp.connectors[cid].status = "Preparing"

    async def flow() -> None:
        if cp.config["AuthorizeRemoteTxRequests"] == "true" and await cp.authorize(id_tag) != "Accepted":
            await cp.send_status(cid, "Available")
            return
        await cp.start_transaction(cid, id_tag)

    return {"status": "Accepted"}, flow


def _remote_stop(cp: ChargePoint, p: Payload) -> tuple[Payload, Flow | None]:
    tx_id: int = _field(p, "transactionId", int)
    for cid, conn in cp.connectors.items():
        if conn.transaction_id == tx_id:

            async def flow(cid: int = cid) -> None:
                if cp.connectors[cid].transaction_id == tx_id:  # a duplicate RemoteStop may have won the race
                    await cp.stop_transaction(cid, "Remote")

            return {"status": "Accepted"}, flow
    return {"status": "Rejected"}, None


def _reset(cp: ChargePoint, p: Payload) -> tuple[Payload, Flow | None]:
    kind = _choice(p, "type", ("Soft", "Hard"))

    async def flow() -> None:
        for cid, conn in cp.connectors.items():
            if conn.transaction_id is not None:
                await cp.stop_transaction(cid, f"{kind}Reset")
        if kind == "Hard":
            for conn in cp.connectors.values():
                conn.status = "Available"  # a power cycle clears availability changes
            cp.station_status = "Available"
        cp.disconnect()  # run() reconnects and boots again

    return {"status": "Accepted"}, flow


def _unlock(cp: ChargePoint, p: Payload) -> tuple[Payload, Flow | None]:
    cid: int = _field(p, "connectorId", int)
    conn = cp.connectors.get(cid)
    if conn is None:
        return {"status": "NotSupported"}, None
    flow = None
    if conn.transaction_id is not None:
        flow = functools.partial(cp.stop_transaction, cid, "UnlockCommand")
    return {"status": "Unlocked"}, flow


def _change_availability(cp: ChargePoint, p: Payload) -> tuple[Payload, Flow | None]:
    cid: int = _field(p, "connectorId", int)
    kind = _choice(p, "type", ("Inoperative", "Operative"))
    if cid != 0 and cid not in cp.connectors:
        return {"status": "Rejected"}, None
    new = "Unavailable" if kind == "Inoperative" else "Available"
    targets = list(cp.connectors) if cid == 0 else [cid]
    busy = [c for c in targets if cp.connectors[c].transaction_id is not None]
    for c in busy:
        cp.connectors[c].pending_availability = new  # applied when the transaction ends

    async def flow() -> None:
        if cid == 0 and cp.station_status != new:
            await cp.send_status(0, new)
        for c in targets:
            if c not in busy and cp.connectors[c].status != new:
                await cp.send_status(c, new)

    return {"status": "Scheduled" if busy else "Accepted"}, flow


def _change_configuration(cp: ChargePoint, p: Payload) -> tuple[Payload, Flow | None]:
    key: str = _field(p, "key", str)
    value: str = _field(p, "value", str)
    if key not in ocppj.CONFIG_KEYS:
        return {"status": "NotSupported"}, None
    readonly, kind = ocppj.CONFIG_KEYS[key]
    if readonly or not ocppj.valid_config_value(kind, value):
        return {"status": "Rejected"}, None
    if key == "HeartbeatInterval":
        if float(value) < 1:
            return {"status": "Rejected"}, None
        cp._set_heartbeat(int(float(value)))
    elif key == "MeterValueSampleInterval":
        cp.meter_interval_s = float(value)
    cp.config[key] = value
    return {"status": "Accepted"}, None


def _get_configuration(cp: ChargePoint, p: Payload) -> tuple[Payload, Flow | None]:
    keys = _field(p, "key", list, required=False)
    if keys is not None and not all(isinstance(k, str) for k in keys):
        raise HandlerError("TypeConstraintViolation", "key must be a list of strings")
    wanted = keys or list(cp.config)
    known = [{"key": k, "readonly": ocppj.CONFIG_KEYS[k][0], "value": cp.config[k]} for k in wanted
             if k in cp.config]
    unknown = [k for k in wanted if k not in cp.config]
    result: Payload = {"configurationKey": known}
    if unknown:
        result["unknownKey"] = unknown
    return result, None


def _trigger_message(cp: ChargePoint, p: Payload) -> tuple[Payload, Flow | None]:
    message: str = _field(p, "requestedMessage", str)
    cid: int | None = _field(p, "connectorId", int, required=False)
    if cid is not None and cid != 0 and cid not in cp.connectors:
        return {"status": "Rejected"}, None

    async def flow() -> None:
        if message == "BootNotification":
            resp = await cp._send_call("BootNotification", cp._boot_payload())
            if resp.get("status") == "Accepted":
                cp._accept_boot(resp)
        elif message in ("DiagnosticsStatusNotification", "FirmwareStatusNotification"):
            # Neither profile is implemented, so there is never an upload or update running.
            await cp._send_call(message, {"status": "Idle"})
        elif message == "Heartbeat":
            await cp._send_call("Heartbeat", {})
        elif message == "MeterValues":
            for c in [cid] if cid else list(cp.connectors):
                await cp._send_call("MeterValues", cp.meter_values(c, "Trigger"))
        else:
            for c in [cid] if cid is not None else [0, *cp.connectors]:
                await cp._send_status(c, cp._status_of(c))

    known = ("BootNotification", "DiagnosticsStatusNotification", "FirmwareStatusNotification", "Heartbeat",
             "MeterValues", "StatusNotification")
    if message not in known:
        return {"status": "NotImplemented"}, None
    return {"status": "Accepted"}, flow


def _accept(status: str) -> Handler:
    return lambda cp, p: ({"status": status}, None)


HANDLERS: dict[str, Handler] = {
    "RemoteStartTransaction": _remote_start,
    "RemoteStopTransaction": _remote_stop,
    "Reset": _reset,
    "UnlockConnector": _unlock,
    "ChangeAvailability": _change_availability,
    "ChangeConfiguration": _change_configuration,
    "GetConfiguration": _get_configuration,
    "ClearCache": _accept("Accepted"),
    "TriggerMessage": _trigger_message,
    "DataTransfer": _accept("UnknownVendorId"),
}
