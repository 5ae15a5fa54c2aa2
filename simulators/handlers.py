"""CS→CP command handlers of the simulated charge point: the ``HANDLERS`` table and its entries.

Routing is a data table (action → handler). A handler never does I/O: it validates the request, updates
state and returns the answer plus an optional follow-up flow, which the reader starts in the simulator's
nursery after the answer is on the wire (the answer must precede e.g. the StartTransaction it causes).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from simulators import ocppj
from simulators.ocppj import SimulatorError

if TYPE_CHECKING:
    from simulators.chargepoint import ChargePoint

Payload = dict[str, Any]
Flow = Callable[[], Awaitable[None]]
Handler = Callable[["ChargePoint", Payload], tuple[Payload, Flow | None]]



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
    if cp.remote_start_mode == "reject":
        return {"status": "Rejected"}, None
    free = [c for c, s in cp.connectors.items() if s.status in ("Available", "Preparing") and s.transaction_id
            is None and (wanted is None or c == wanted)]
    if not free:
        return {"status": "Rejected"}, None
    cid = free[0]
    # Claim the connector now, so a second RemoteStart arriving before the flow runs is rejected.
    cp.connectors[cid].status = "Preparing"
    if cp.remote_start_mode == "accept_no_start":
        return {"status": "Accepted"}, None  # fault injection: the EV never plugs in

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
            if cp.remote_stop_mode == "accept_no_stop":
                return {"status": "Accepted"}, None  # fault injection: it says yes and keeps charging

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
