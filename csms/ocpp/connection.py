"""One connected charge point: its reader loop, its outgoing CALL slot, and its keep-alive pings.

The gateway creates a :class:`StationConnection` per accepted socket and runs :meth:`run` in the
connection's own task. Incoming CALLs are handled in order, in the reader task: OCPP-J allows a
charger one outstanding CALL, so there is nothing to run concurrently, and not reading while a
handler works is the backpressure. A bad frame is answered with a CALLERROR and never ends the
connection.
"""

from __future__ import annotations

import contextlib
import logging
import math
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from csms.ocpp import codec
from csms.ocpp.handlers.context import CallContext, Deps, Handler
from csms.ocpp.websocket import ConnectionClosed, WebSocket
from csms.services.clock import utcnow
from csms.services.commands import ChargerOffline, ChargerRejected, ChargerTimeout

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from csms.ocpp.admission import TurnAdmission
    from csms.services.journal import Journal

log = logging.getLogger(__name__)

# Answers remembered per connection, so that a CALL resent with the same unique id (the charger
# missed our answer) gets the same answer instead of being executed twice. A charger has one CALL in
# flight and resends the last one, so a few suffice; each costs memory on every connection.
_REMEMBERED_ANSWERS = 4


@dataclass(eq=False)
class _Pending:
    unique_id: str
    action: str
    done: trio.Event = field(default_factory=trio.Event)
    answer: codec.CallResult | codec.CallError | None = None
    closed: bool = False


class StationConnection:
    """The live session of one charge point on this node."""

    def __init__(self, station_id: str, ws: WebSocket, deps: Deps, routes: Mapping[str, Handler],
                 journal: Journal, admission: TurnAdmission, *, ping_interval_s: float,
                 call_timeout_s: float) -> None:
        self.station_id = station_id
        self.ws = ws
        self._admission = admission
        self._deps = deps
        self._metrics = deps.metrics
        self._routes = routes
        self._journal = journal
        self._ping_interval_s = ping_interval_s
        self._pinged_at = -math.inf
        self._call_timeout_s = call_timeout_s
        # At most one CS→CP CALL in flight (OCPP-J). Created on the first call: most connections never
        # get one, and a lock is three objects (with its parking lot) on every connection.
        self._call_lock: trio.Lock | None = None
        self._pending: _Pending | None = None
        self._answers: OrderedDict[str, str] = OrderedDict()
        self.cancel_scope = trio.CancelScope()
        self.close_code = 1000
        self.close_reason = ""
        self.close_timeout_s: float | None = None  # None: the WebSocket's default

    async def run(self) -> None:
        """Read and answer until the socket closes or :meth:`stop` is called; then close the socket."""
        try:
            with self.cancel_scope:
                try:
                    await self._read_loop()
                except ConnectionClosed as closed:
                    log.info("%s disconnected (%s)", self.station_id, closed.code)
        finally:
            if self._pending is not None:
                self._pending.closed = True
                self._pending.done.set()
            with trio.CancelScope(shield=True):
                await self.ws.close(self.close_code, self.close_reason, timeout_s=self.close_timeout_s)

    def stop(self, code: int, reason: str) -> None:
        """Ask the connection to end and close its socket with ``code``."""
        self.close_code, self.close_reason = code, reason
        self.cancel_scope.cancel()

    def keep_alive(self, now: float) -> None:
        """Ping a charger quiet for ``ping_interval_s``; close one quiet for twice that (the gateway's sweep).

        The ping never waits: it goes out at once if the socket takes it, or with the next write otherwise
        (a charger whose socket takes nothing is not reading, and is closed at twice the interval).
        """
        interval = self._ping_interval_s
        silent = now - self.ws.last_received
        if silent >= 2 * interval:  # not even the pong to our last ping came back
            if not self.cancel_scope.cancel_called:
                log.info("%s did not answer a ping; closing", self.station_id)
                self.close_timeout_s = 1.0  # it is not answering: don't wait long for its close frame
                self.stop(1011, "ping timeout")
        elif silent >= interval and now - self._pinged_at >= interval:
            self._pinged_at = now
            with contextlib.suppress(ConnectionClosed):  # the reader sees it too and ends the connection
                self.ws.ping_nowait()

    async def _read_loop(self) -> None:
        while True:
            text = await self.ws.receive_text()
            read_at = trio.current_time()
            received_at = utcnow()  # before the admission wait: it is part of the message's latency
            try:
                frame: codec.Call | codec.CallResult | codec.CallError | codec.OcppError = codec.parse_frame(text)
            except codec.OcppError as err:
                frame = err
            # Usually at once; in a flood, in a later turn (see csms.ocpp.admission). A charging
            # session's MeterValues skip the queue: its driver may be watching it live.
            if not (isinstance(frame, codec.Call) and self._deps.transactions.is_watched(frame.action, frame.payload)):
                await self._admission.admit()
            self._deps.stations.touch(self.station_id)  # lastSeen: any message counts, not only heartbeats
            if isinstance(frame, codec.OcppError):
                answer = codec.encode_error(frame.unique_id, frame.code, frame.description, frame.details)
                self._journal.record_exchange(self.station_id, None, None, frame.unique_id, text, received_at, 4,
                                              answer)
                await self.ws.send_text(answer)
                continue
            if isinstance(frame, codec.Call):
                await self._answer(frame, text, read_at, received_at)
            else:
                kind = 3 if isinstance(frame, codec.CallResult) else 4
                self._journal.record(self.station_id, "in", kind, None, frame.unique_id, text)
                self._deliver(frame)
            # Don't keep the last message alive while waiting (maybe minutes) for the next one:
            # with thousands of mostly idle chargers that is a good share of a connection's memory.
            del text, frame

    async def _answer(self, call: codec.Call, frame: str, read_at: float, received_at: datetime) -> None:
        """Handle a CALL, journal it with its answer (one row), and send the answer."""
        remembered = self._answers.get(call.unique_id)
        if remembered is not None:
            text, kind = remembered, 3
        else:
            try:
                text, kind = await self._handle(call, received_at)
            except BaseException:
                # Not answered (the connection is closing): the frame is journaled all the same.
                self._journal.record(self.station_id, "in", 2, call.action, call.unique_id, frame)
                raise
            # Measured as the answer goes to the socket: after send_all's closing checkpoint it would
            # include a turn of the scheduler, which is not this call's time.
            self._metrics.call(call.action).observe(trio.current_time() - read_at)
        self._journal.record_exchange(self.station_id, 2, call.action, call.unique_id, frame, received_at, kind, text)
        await self.ws.send_text(text)

    async def _handle(self, call: codec.Call, received_at: datetime) -> tuple[str, int]:
        """The answer to a CALL: a CALLRESULT (kind 3) or a CALLERROR (kind 4)."""
        try:
            codec.validate_request(call.action, call.payload, unique_id=call.unique_id)
            handler = self._routes.get(call.action)
            if handler is None:
                raise codec.OcppError(codec.CallErrorCode.NotImplemented, f"{call.action} is not handled",
                                      unique_id=call.unique_id)
            ctx = CallContext(self.station_id, received_at, self._deps)
            result = await handler(ctx, call.payload)
        except codec.OcppError as err:
            return codec.encode_error(err.unique_id, err.code, err.description, err.details), 4
        except Exception:
            # Never a traceback or payload to the charger; it retries transaction messages itself.
            log.exception("%s: %s handler failed", self.station_id, call.action)
            return codec.encode_error(call.unique_id, codec.CallErrorCode.InternalError,
                                      "internal error; please retry", None), 4
        text = codec.encode_result(call.unique_id, result)
        self._answers[call.unique_id] = text
        if len(self._answers) > _REMEMBERED_ANSWERS:
            self._answers.popitem(last=False)
        return text, 3

    async def _send(self, text: str, kind: int, action: str | None, unique_id: str) -> None:
        self._journal.record(self.station_id, "out", kind, action, unique_id, text)
        await self.ws.send_text(text)

    def _deliver(self, frame: codec.CallResult | codec.CallError) -> None:
        pending = self._pending
        if pending is None or pending.unique_id != frame.unique_id:
            log.warning("%s: answer to unknown or expired call %s ignored", self.station_id, frame.unique_id)
            return
        pending.answer = frame
        pending.done.set()

    async def call(self, action: str, payload: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        """Send a CS→CP CALL and wait for the charger's answer.

        Raises:
            ChargerTimeout: no answer in time (the slot is freed; a late answer is ignored).
            ChargerRejected: a CALLERROR, or a result that breaks the action's schema.
            ChargerOffline: the connection closed while waiting.
        """
        timeout = self._call_timeout_s if timeout_s is None else timeout_s
        with trio.move_on_after(timeout) as scope:
            if self._call_lock is None:
                self._call_lock = trio.Lock()
            async with self._call_lock:
                pending = _Pending(str(uuid.uuid4()), action)
                self._pending = pending
                try:
                    try:
                        await self._send(codec.encode_call(pending.unique_id, action, payload), 2, action,
                                         pending.unique_id)
                    except ConnectionClosed:
                        raise ChargerOffline(self.station_id, interrupted=True) from None
                    await pending.done.wait()
                finally:
                    self._pending = None
        if scope.cancelled_caught:
            raise ChargerTimeout(f"{self.station_id} did not answer {action} within {timeout:g} s")
        if pending.closed or pending.answer is None:
            raise ChargerOffline(self.station_id, interrupted=True, sent=True)
        answer = pending.answer
        if isinstance(answer, codec.CallError):
            raise ChargerRejected(answer.code, answer.description)
        try:
            codec.validate_response(action, answer.payload, unique_id=answer.unique_id)
        except codec.OcppError as err:
            raise ChargerRejected(str(err.code), f"invalid {action} answer: {err.description}") from None
        return answer.payload
