"""Commands for a charger whose socket another csms node holds, carried through PostgreSQL.

Several nodes share one database; a charger is connected to one of them (``charger_connections``),
but a driver's ``startCharging`` or an operator's command may arrive at any node. DESIGN.md ("Events
and scale-out") has no broker besides PostgreSQL, so the command travels as a NOTIFY on
:data:`CHANNEL` to the node holding the socket, which sends the CALL and answers the same way:

    {"kind": "request", "id": ..., "from": node, "to": node, "station": ..., "action": ...,
     "payload": {...}, "timeout_s": 30.0}
    {"kind": "reply", "id": ..., "to": node, "result": {...}}          the charger's CALLRESULT
    {"kind": "reply", "id": ..., "to": node, "error": "offline" | "timeout" | "rejected",
     "code": ..., "description": ..., "sent": false}

``sent`` (with ``offline``) says whether the CALL had left before the charger's connection closed; a
reply without it (from an older node) counts as sent, so the command is never sent twice.

Every node LISTENs on the channel on its events connection (:class:`csms.services.events.EventHub`)
and ignores messages addressed to other nodes. A NOTIFY payload is limited to 8,000 bytes: a request
or an answer that does not fit ends as a ``rejected`` command with a clear description instead.
Commands are rare next to charger traffic (a remote start or stop per session), so one shared channel
and a database round trip per message are cheap enough; a lost reply (a LISTEN connection that
dropped meanwhile) shows as a timeout, like a charger that did not answer.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from csms.services.commands import ChargerOffline, ChargerRejected, ChargerTimeout, CommandError
from csms.services.metrics import counter
from csms.store.stations import station_holder

if TYPE_CHECKING:
    from csms.services.commands import CallSender
    from csms.store.db import Conn, Database

log = logging.getLogger(__name__)

CHANNEL = "csms_commands"
MAX_PAYLOAD_BYTES = 7_900  # PostgreSQL refuses NOTIFY payloads of 8,000 bytes or more
# Time added to a command's own timeout for the two database trips around it.
RELAY_MARGIN_S = 3.0


@dataclass(eq=False)
class _Waiter:
    done: trio.Event = field(default_factory=trio.Event)
    reply: dict[str, Any] | None = None


class CommandRelay:
    """Sends commands to other nodes' chargers and runs the commands other nodes send to ours.

    Start it with ``nursery.start(relay.run)`` and feed it the notifications of :data:`CHANNEL`
    (:meth:`notified`).

    Args:
        db: the shared database.
        node_id: this node (as written to ``charger_connections``).
        local: sends a CALL to a charger connected to this node (the gateway's ``send_call``).
        default_timeout_s: the charger's answer timeout when a command names none.
    """

    def __init__(self, db: Database, node_id: str, local: CallSender, *, default_timeout_s: float) -> None:
        self._db = db
        self.node_id = node_id
        self._local = local
        self._default_timeout_s = default_timeout_s
        self._waiting: dict[str, _Waiter] = {}
        self._nursery: trio.Nursery | None = None
        self.sent = 0  # commands sent to other nodes
        self.served = 0  # commands other nodes sent here

    def render_metrics(self) -> list[str]:
        """The relay's counters in the Prometheus text format (for ``GET /metrics``)."""
        return [*counter("csms_relay_commands_sent_total",
                         "Commands sent to chargers held by other csms nodes.", self.sent),
                *counter("csms_relay_commands_served_total",
                         "Commands other csms nodes sent to chargers held here.", self.served)]

    async def holder(self, station_id: str) -> str | None:
        """The other live node holding the charger's socket, or None (not connected elsewhere)."""
        return await self._db.run(station_holder, station_id, self.node_id)

    async def call(self, node_id: str, station_id: str, action: str, payload: dict[str, Any],
                   timeout_s: float | None = None) -> dict[str, Any]:
        """Have ``node_id`` send the CALL to its charger, and return the charger's answer.

        Raises:
            ChargerOffline: the node no longer holds the charger.
            ChargerTimeout: no answer in time (from the charger, or the node is gone).
            ChargerRejected: a CALLERROR, or a command too large to relay.
        """
        timeout = self._default_timeout_s if timeout_s is None else timeout_s
        request_id = uuid.uuid4().hex
        message = _encode({"kind": "request", "id": request_id, "from": self.node_id, "to": node_id,
                           "station": station_id, "action": action, "payload": payload, "timeout_s": timeout})
        if message is None:
            raise ChargerRejected("PropertyConstraintViolation", "the command is too large to relay to another node")
        waiter = _Waiter()
        self._waiting[request_id] = waiter
        try:
            await self._db.run(_notify, message)
            self.sent += 1
            with trio.move_on_after(timeout + RELAY_MARGIN_S):
                await waiter.done.wait()
        finally:
            del self._waiting[request_id]
        if waiter.reply is None:
            raise ChargerTimeout(station_id)
        return _outcome(station_id, waiter.reply)

    def notified(self, text: str) -> None:
        """Handle one notification of :data:`CHANNEL` (from the events hub's LISTEN loop)."""
        try:
            message = json.loads(text)
            if message.get("to") != self.node_id:
                return
            kind, request_id = message["kind"], str(message["id"])
        except (ValueError, TypeError, KeyError, AttributeError):
            log.warning("command relay: ignoring a malformed message (%d bytes)", len(text))
            return
        if kind == "reply":
            waiter = self._waiting.get(request_id)
            if waiter is not None and not waiter.done.is_set():
                waiter.reply = message
                waiter.done.set()
        elif kind == "request" and self._nursery is not None:
            self._nursery.start_soon(self._serve, message)

    async def run(self, *, task_status: trio.TaskStatus[CommandRelay] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve other nodes' commands until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started(self)
            await trio.sleep_forever()

    async def _serve(self, message: dict[str, Any]) -> None:
        try:
            station, action = str(message["station"]), str(message["action"])
            payload, reply_to = message["payload"], str(message["from"])
            timeout_s = float(message["timeout_s"])
        except (KeyError, TypeError, ValueError):
            log.warning("command relay: ignoring a malformed request")
            return
        if not isinstance(payload, dict):
            return
        self.served += 1
        reply: dict[str, Any] = {"kind": "reply", "id": message["id"], "to": reply_to}
        try:
            reply["result"] = await self._local(station, action, payload, timeout_s)
        except ChargerOffline as exc:
            reply.update(error="offline", sent=exc.sent)
        except ChargerTimeout:
            reply["error"] = "timeout"
        except ChargerRejected as exc:
            reply.update(error="rejected", code=exc.code, description=exc.description)
        except CommandError as exc:
            reply.update(error="rejected", code="GenericError", description=type(exc).__name__)
        except Exception:  # a bug here must still answer, or the requester waits for its timeout
            log.exception("command relay: %s for %s failed", action, station)
            reply.update(error="rejected", code="InternalError", description="the other node could not send it")
        text = _encode(reply)
        if text is None:
            text = _encode({**{k: reply[k] for k in ("kind", "id", "to")}, "error": "rejected",
                            "code": "GenericError", "description": "the answer is too large to relay to another node"})
        assert text is not None
        try:
            await self._db.run(_notify, text)
        except Exception as exc:  # the requester times out; nothing else to do here
            log.warning("command relay: could not send an answer (%s)", type(exc).__name__)


def _outcome(station_id: str, reply: dict[str, Any]) -> dict[str, Any]:
    error = reply.get("error")
    if error is None:
        result = reply.get("result")
        if not isinstance(result, dict):
            raise ChargerRejected("FormationViolation", "the other node sent an unreadable answer")
        return result
    if error == "offline":
        # The node held the charger when we looked, so its connection went meanwhile: interrupted.
        raise ChargerOffline(station_id, interrupted=True, sent=reply.get("sent") is not False)
    if error == "timeout":
        raise ChargerTimeout(station_id)
    raise ChargerRejected(str(reply.get("code", "GenericError")), str(reply.get("description", "")))


def _encode(message: dict[str, Any]) -> str | None:
    text = json.dumps(message, separators=(",", ":"))
    return text if len(text.encode()) <= MAX_PAYLOAD_BYTES else None


def _notify(conn: Conn, text: str) -> None:
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, text))


__all__ = ["CHANNEL", "CommandRelay"]
