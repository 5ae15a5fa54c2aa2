"""A simulated OCPP 1.6J charge point, usable from tests and from the ``simulators.charger`` CLI.

Task ownership: :meth:`ChargePoint.run` opens the simulator's nursery, which lives as long as the simulator
and owns everything that must survive a reconnect (transaction flows, meter loops, resets). Each WebSocket
connection has its own nursery owning the reader, the heartbeat loop and the offline-queue replay; it is torn
down when the socket goes away, and ``run`` reconnects.

The class is assembled from one module per job: this one holds the connection lifecycle (connect, boot,
heartbeat, reconnect), CS→CP dispatch, fault injection and status reporting; :mod:`simulators.rpc` the
OCPP-J request/response layer, :mod:`simulators.transactions` charging, metering and the offline queue, and
:mod:`simulators.handlers` the CS→CP command handlers.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import socket
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio
import trio_websocket

from simulators import ocppj
from simulators.handlers import HANDLERS, HandlerError
from simulators.ocppj import CallErrorReceived, ConnectionLost, SimulatorError
from simulators.rpc import RpcMixin
from simulators.transactions import TransactionsMixin

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from simulators.rpc import _Pending
    from simulators.transactions import _Queued

log = logging.getLogger("simulators.charger")


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


class ChargePoint(TransactionsMixin, RpcMixin):
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
        remote_start_mode: ``"accept"`` (start the transaction), ``"reject"`` (answer Rejected) or
            ``"accept_no_start"`` (answer Accepted, never send StartTransaction).
        remote_stop_mode: ``"accept"`` (stop the transaction) or ``"accept_no_stop"`` (answer Accepted and
            keep charging, never sending StopTransaction).
        unanswered: CS→CP actions the charger receives but never answers (a hung charger).
        answer_delays: CS→CP action → seconds before answering it (a slow charger; its reader waits too).
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
        remote_start_mode: str = "accept",
        remote_stop_mode: str = "accept",
        unanswered: set[str] | None = None, answer_delays: dict[str, float] | None = None,
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
        self.remote_start_mode = remote_start_mode
        self.remote_stop_mode = remote_stop_mode
        self.unanswered: set[str] = set(unanswered or ())
        self.answer_delays: dict[str, float] = dict(answer_delays or {})
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
        opened: trio_websocket.WebSocketConnection | None = None
        try:
            async with trio_websocket.open_websocket_url(
                url, subprotocols=self.subprotocols, extra_headers=headers, disconnect_timeout=1.0
            ) as ws:
                opened = ws
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
        finally:
            if opened is not None:
                # trio-websocket 0.12 leaves its socket open when the server closes first; close it here.
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(opened._stream)

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

    async def _answer(self, frame: ocppj.Frame) -> None:
        payload = frame.payload or {}
        log.info("%s ← %s %s", self.station_id, frame.action, json.dumps(payload))
        self.received.append((frame.action, payload))
        if frame.action in self.unanswered:
            log.info("%s ignores %s (fault injection)", self.station_id, frame.action)
            return
        await trio.sleep(self.answer_delays.get(frame.action, 0))
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

    # --- status

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
