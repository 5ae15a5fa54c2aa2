"""The OCPP-J request/response layer of the simulated charge point (a mixin of :class:`ChargePoint`).

One CALL is in flight per connection at a time (``_call_lock``). :meth:`RpcMixin._reader` hands every
CALLRESULT/CALLERROR to the waiting :class:`_Pending` and passes CS→CP CALLs to the host's ``_answer``.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import trio
import trio_websocket

from simulators import ocppj
from simulators.ocppj import CallErrorReceived, ConnectionLost

log = logging.getLogger("simulators.charger")


class _Pending:
    """One CALL waiting for its answer; at most one per connection exists outside :meth:`resend_last`."""

    def __init__(self, uid: str | None = None) -> None:
        self.uid = uid
        self.done = trio.Event()
        self.frame: ocppj.Frame | None = None
        self.raw: str = ""



class RpcMixin:
    """Sending CALLs and raw frames, and matching the answers the reader receives.

    The state lives in :class:`~simulators.chargepoint.ChargePoint`, which sets it in its ``__init__``.
    """

    station_id: str
    response_timeout_s: float
    _ws: trio_websocket.WebSocketConnection | None
    _ready: trio.Event
    _call_lock: trio.Lock
    _pending: dict[str, _Pending]
    _raw_waiter: _Pending | None
    _last_call: tuple[str, dict[str, Any]] | None
    _last_uid: str

    if TYPE_CHECKING:  # provided by ChargePoint

        async def _answer(self, frame: ocppj.Frame) -> None: ...

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
