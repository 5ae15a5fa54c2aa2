"""Commands from the central system to a charger (CS→CP calls), behind one small interface.

Services and the API reach chargers only through :class:`ChargerCommands`; the OCPP gateway provides
the :class:`CallSender` that actually talks to the socket, so ``services`` never import the gateway.
Each method returns the charger's answer payload or raises a :class:`CommandError`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Protocol

import trio

if TYPE_CHECKING:
    from collections.abc import Callable

# How long a command whose charger dropped its connection before the CALL left waits for the charger to
# be back (on this node or another) before it is sent once more. Chargers reconnect within seconds, and a
# driver's stop or an operator's reset should not fail because it met the reconnect.
RECONNECT_GRACE_S = 5.0
_ONLINE_POLL_S = 0.25


class CommandError(Exception):
    """Base of the errors a CS→CP command can end with."""


class ChargerOffline(CommandError):
    """The charger has no open connection (on this node, nor on another one the relay knows of).

    Attributes:
        interrupted: a connection was there but closed under the command (the charger may be
            reconnecting); False when there was none to begin with.
        sent: the CALL had left before the connection closed, so the charger may have acted on it;
            a command is only sent again when this is False.
    """

    def __init__(self, station_id: str, *, interrupted: bool = False, sent: bool = False) -> None:
        super().__init__(station_id)
        self.interrupted = interrupted
        self.sent = sent


class ChargerTimeout(CommandError):
    """The charger did not answer within the timeout."""


class ChargerRejected(CommandError):
    """The charger answered with a CALLERROR (``code``) or an invalid payload."""

    def __init__(self, code: str, description: str = "") -> None:
        super().__init__(f"{code}: {description}" if description else code)
        self.code = code
        self.description = description


class Relay(Protocol):
    """Reaches chargers held by other nodes (:class:`csms.services.command_relay.CommandRelay`)."""

    async def holder(self, station_id: str) -> str | None: ...

    async def call(self, node_id: str, station_id: str, action: str, payload: dict[str, Any],
                   timeout_s: float | None = None) -> dict[str, Any]: ...


class CallSender(Protocol):
    """Sends one OCPP CALL to a charger and returns the CALLRESULT payload."""

    async def __call__(self, station_id: str, action: str, payload: dict[str, Any],
                       timeout_s: float | None = None) -> dict[str, Any]: ...


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


class ChargerCommands:
    """The OCPP 1.6 CS→CP calls, typed."""

    def __init__(self, send: CallSender, connected: Callable[[str], bool] | None = None,
                 relay: Relay | None = None, *, reconnect_grace_s: float = RECONNECT_GRACE_S) -> None:
        self._send = send
        self._connected = connected
        #: Reaches chargers connected to other nodes (None: this node's chargers only).
        self.relay = relay
        self.reconnect_grace_s = reconnect_grace_s

    def is_connected(self, station_id: str) -> bool:
        """Whether the charger has an open connection on this node (False when unknown)."""
        return self._connected is not None and self._connected(station_id)

    async def is_online(self, station_id: str) -> bool:
        """Whether the charger is connected to this node or, with a relay, to another live node."""
        if self.is_connected(station_id):
            return True
        return self.relay is not None and await self.relay.holder(station_id) is not None

    async def call(self, station_id: str, action: str, payload: dict[str, Any],
                   timeout_s: float | None = None) -> dict[str, Any]:
        """Send any CS→CP action (validated by the gateway against the 1.6 schema).

        A charger connected to another node is reached through that node (the relay). When the
        charger's connection closes before the CALL leaves (it is reconnecting, perhaps to another
        node), the command waits up to ``reconnect_grace_s`` for the charger to be back and is sent
        once more; a CALL that did leave is never sent twice (a RemoteStart must not run twice).
        """
        try:
            return await self._call_once(station_id, action, payload, timeout_s)
        except ChargerOffline as exc:
            if exc.sent or not exc.interrupted or self.reconnect_grace_s <= 0:
                raise
        if not await self._back_online(station_id):
            raise ChargerOffline(station_id, interrupted=True)
        return await self._call_once(station_id, action, payload, timeout_s)

    async def _back_online(self, station_id: str) -> bool:
        """Whether the charger is connected again (here or on another node) within the grace period.

        Polled: a charger that reconnects to another node shows only in the database, once that node's
        presence flush has run, so there is no event to wait on.
        """
        for _ in range(max(1, math.ceil(self.reconnect_grace_s / _ONLINE_POLL_S))):
            await trio.sleep(_ONLINE_POLL_S)
            if await self.is_online(station_id):
                return True
        return False

    async def _call_once(self, station_id: str, action: str, payload: dict[str, Any],
                         timeout_s: float | None) -> dict[str, Any]:
        if self.relay is not None and not self.is_connected(station_id):
            node = await self.relay.holder(station_id)
            if node is not None:
                return await self.relay.call(node, station_id, action, payload, timeout_s)
        return await self._send(station_id, action, payload, timeout_s)

    async def remote_start(self, station_id: str, id_tag: str, connector_id: int | None = None,
                           charging_profile: dict[str, Any] | None = None) -> dict[str, Any]:
        """RemoteStartTransaction → ``{"status": "Accepted" | "Rejected"}``."""
        return await self.call(station_id, "RemoteStartTransaction", _drop_none(
            {"idTag": id_tag, "connectorId": connector_id, "chargingProfile": charging_profile}))

    async def remote_stop(self, station_id: str, transaction_id: int) -> dict[str, Any]:
        """RemoteStopTransaction → ``{"status": ...}``."""
        return await self.call(station_id, "RemoteStopTransaction", {"transactionId": transaction_id})

    async def reset(self, station_id: str, kind: str = "Soft") -> dict[str, Any]:
        """Reset (``Soft`` or ``Hard``)."""
        return await self.call(station_id, "Reset", {"type": kind})

    async def unlock_connector(self, station_id: str, connector_id: int) -> dict[str, Any]:
        """UnlockConnector → ``{"status": "Unlocked" | "UnlockFailed" | "NotSupported"}``."""
        return await self.call(station_id, "UnlockConnector", {"connectorId": connector_id})

    async def change_availability(self, station_id: str, connector_id: int, kind: str) -> dict[str, Any]:
        """ChangeAvailability (``Operative`` or ``Inoperative``; connector 0 = whole station)."""
        return await self.call(station_id, "ChangeAvailability", {"connectorId": connector_id, "type": kind})

    async def change_configuration(self, station_id: str, key: str, value: str) -> dict[str, Any]:
        """ChangeConfiguration of one key."""
        return await self.call(station_id, "ChangeConfiguration", {"key": key, "value": value})

    async def get_configuration(self, station_id: str, keys: list[str] | None = None) -> dict[str, Any]:
        """GetConfiguration (all keys when ``keys`` is None)."""
        return await self.call(station_id, "GetConfiguration", {"key": keys} if keys else {})

    async def clear_cache(self, station_id: str) -> dict[str, Any]:
        """ClearCache (the charger's authorisation cache)."""
        return await self.call(station_id, "ClearCache", {})

    async def trigger_message(self, station_id: str, requested: str,
                              connector_id: int | None = None) -> dict[str, Any]:
        """TriggerMessage (BootNotification, Heartbeat, MeterValues, StatusNotification, ...)."""
        return await self.call(station_id, "TriggerMessage", _drop_none(
            {"requestedMessage": requested, "connectorId": connector_id}))

    async def data_transfer(self, station_id: str, vendor_id: str, message_id: str | None = None,
                            data: str | None = None) -> dict[str, Any]:
        """DataTransfer to a vendor extension on the charger."""
        return await self.call(station_id, "DataTransfer", _drop_none(
            {"vendorId": vendor_id, "messageId": message_id, "data": data}))
