"""The simulator's own OCPP-J 1.6 frame helpers and message builders.

These are deliberately independent of ``csms.ocpp``: the simulator must not share the server's codec,
otherwise a bug in that codec would be invisible in end-to-end tests. Nothing here does I/O.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

CALL = 2
CALLRESULT = 3
CALLERROR = 4

#: Actions whose CALLs carry transaction data. While the charger is offline they are queued (in order) and
#: replayed on reconnect; every other CP→CS message is simply dropped, as real chargers do.
TRANSACTION_ACTIONS = frozenset({"StartTransaction", "StopTransaction", "MeterValues"})


class SimulatorError(Exception):
    """Base class of every error the simulator raises on purpose."""


class CallErrorReceived(SimulatorError):
    """The central system answered one of our CALLs with a CALLERROR.

    Attributes:
        code: The OCPP error code, e.g. ``"FormationViolation"``.
        description: The free-text description sent by the server.
        details: The error details object.
    """

    def __init__(self, code: str, description: str, details: dict[str, Any]) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.details = details


class ConnectionLost(SimulatorError):
    """The WebSocket went away (or was never there) while a CALL waited for its answer."""


class FrameError(SimulatorError):
    """An incoming frame is not valid OCPP-J.

    Attributes:
        unique_id: The frame's unique id when one could be read, so the caller can answer with a CALLERROR.
        code: The OCPP 1.6 error code to answer with.
    """

    def __init__(self, message: str, *, unique_id: str | None, code: str = "FormationViolation") -> None:
        super().__init__(message)
        self.unique_id = unique_id
        self.code = code


@dataclass(frozen=True)
class Frame:
    """One decoded OCPP-J frame. Fields that do not apply to the frame's type are empty."""

    type: int
    unique_id: str
    action: str = ""
    payload: dict[str, Any] | None = None
    error_code: str = ""
    error_description: str = ""
    error_details: dict[str, Any] | None = None


def new_uid() -> str:
    """Return a fresh message unique id (a uuid4 string)."""
    return str(uuid.uuid4())


def now_iso() -> str:
    """Return the current UTC time as ISO-8601 with a ``Z`` suffix, the form OCPP servers expect."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def encode_call(unique_id: str, action: str, payload: dict[str, Any]) -> str:
    """Encode a CALL frame."""
    return json.dumps([CALL, unique_id, action, payload], separators=(",", ":"))


def encode_result(unique_id: str, payload: dict[str, Any]) -> str:
    """Encode a CALLRESULT frame."""
    return json.dumps([CALLRESULT, unique_id, payload], separators=(",", ":"))


def encode_error(
    unique_id: str, code: str, description: str = "", details: dict[str, Any] | None = None
) -> str:
    """Encode a CALLERROR frame."""
    return json.dumps([CALLERROR, unique_id, code, description, details or {}], separators=(",", ":"))


def peek_unique_id(text: str) -> str | None:
    """Best-effort read of a frame's unique id, even if the rest of the frame is broken."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, list) and len(data) >= 2 and isinstance(data[1], str):
        return data[1]
    return None


def decode(text: str | bytes) -> Frame:
    """Decode and validate one frame.

    Raises:
        FrameError: The frame is not JSON, not an array, has an unknown message type or wrong field types.
    """
    if isinstance(text, bytes):
        # OCPP-J uses text frames only; a binary frame is a protocol violation, not something to decode.
        raise FrameError("binary frame", unique_id=None)
    uid = peek_unique_id(text)
    try:
        data = json.loads(text)
    except ValueError:
        raise FrameError("not JSON", unique_id=None) from None
    if not isinstance(data, list) or len(data) < 3 or not isinstance(data[1], str):
        raise FrameError("not an OCPP-J array", unique_id=uid)
    kind = data[0]
    if kind == CALL and len(data) == 4 and isinstance(data[2], str) and isinstance(data[3], dict):
        return Frame(CALL, data[1], action=data[2], payload=data[3])
    if kind == CALLRESULT and len(data) == 3 and isinstance(data[2], dict):
        return Frame(CALLRESULT, data[1], payload=data[2])
    if (
        kind == CALLERROR
        and len(data) == 5
        and isinstance(data[2], str)
        and isinstance(data[3], str)
        and isinstance(data[4], dict)
    ):
        return Frame(CALLERROR, data[1], error_code=data[2], error_description=data[3], error_details=data[4])
    if kind not in (CALL, CALLRESULT, CALLERROR):
        raise FrameError(f"unknown message type {kind!r}", unique_id=uid, code="ProtocolError")
    raise FrameError(f"malformed message of type {kind!r}", unique_id=uid)


def status_payload(connector_id: int, status: str, error_code: str = "NoError") -> dict[str, Any]:
    """Build a StatusNotification request."""
    return {"connectorId": connector_id, "errorCode": error_code, "status": status, "timestamp": now_iso()}


def meter_sample(energy_wh: float, power_w: float, soc: float | None, context: str) -> dict[str, Any]:
    """Build one ``MeterValue`` entry with energy register, power and (if known) state of charge."""
    values: list[dict[str, Any]] = [
        {
            "value": f"{energy_wh:.1f}",
            "context": context,
            "measurand": "Energy.Active.Import.Register",
            "location": "Outlet",
            "unit": "Wh",
        },
        {
            "value": f"{power_w:.0f}",
            "context": context,
            "measurand": "Power.Active.Import",
            "location": "Outlet",
            "unit": "W",
        },
    ]
    if soc is not None:
        values.append(
            {"value": f"{soc:.0f}", "context": context, "measurand": "SoC", "location": "EV",
             "unit": "Percent"}
        )
    return {"timestamp": now_iso(), "sampledValue": values}


#: Configuration keys of the Core profile: key → (read-only, kind). ``kind`` drives value validation in
#: ChangeConfiguration: "int" must parse as a non-negative number, "bool" as true/false, "str" is free text.
CONFIG_KEYS: dict[str, tuple[bool, str]] = {
    "AllowOfflineTxForUnknownId": (False, "bool"),
    "AuthorizeRemoteTxRequests": (False, "bool"),
    "ClockAlignedDataInterval": (False, "int"),
    "ConnectionTimeOut": (False, "int"),
    "GetConfigurationMaxKeys": (True, "int"),
    "HeartbeatInterval": (False, "int"),
    "LocalAuthorizeOffline": (False, "bool"),
    "LocalPreAuthorize": (False, "bool"),
    "MeterValuesAlignedData": (False, "str"),
    "MeterValuesSampledData": (False, "str"),
    "MeterValueSampleInterval": (False, "int"),
    "NumberOfConnectors": (True, "int"),
    "ResetRetries": (False, "int"),
    "StopTransactionOnEVSideDisconnect": (False, "bool"),
    "StopTransactionOnInvalidId": (False, "bool"),
    "StopTxnAlignedData": (False, "str"),
    "StopTxnSampledData": (False, "str"),
    "SupportedFeatureProfiles": (True, "str"),
    "TransactionMessageAttempts": (False, "int"),
    "TransactionMessageRetryInterval": (False, "int"),
    "UnlockConnectorOnEVSideDisconnect": (False, "bool"),
    "WebSocketPingInterval": (False, "int"),
}


def default_config(connectors: int, heartbeat_s: int, meter_interval_s: float) -> dict[str, str]:
    """Return the factory configuration values, as OCPP strings."""
    return {
        "AllowOfflineTxForUnknownId": "false",
        "AuthorizeRemoteTxRequests": "false",
        "ClockAlignedDataInterval": "0",
        "ConnectionTimeOut": "60",
        "GetConfigurationMaxKeys": "50",
        "HeartbeatInterval": str(heartbeat_s),
        "LocalAuthorizeOffline": "true",
        "LocalPreAuthorize": "false",
        "MeterValuesAlignedData": "Energy.Active.Import.Register",
        "MeterValuesSampledData": "Energy.Active.Import.Register,Power.Active.Import,SoC",
        "MeterValueSampleInterval": format_number(meter_interval_s),
        "NumberOfConnectors": str(connectors),
        "ResetRetries": "3",
        "StopTransactionOnEVSideDisconnect": "true",
        "StopTransactionOnInvalidId": "true",
        "StopTxnAlignedData": "",
        "StopTxnSampledData": "Energy.Active.Import.Register",
        "SupportedFeatureProfiles": "Core,RemoteTrigger",
        "TransactionMessageAttempts": "3",
        "TransactionMessageRetryInterval": "60",
        "UnlockConnectorOnEVSideDisconnect": "true",
        "WebSocketPingInterval": "0",
    }


def format_number(value: float) -> str:
    """Format a number as OCPP prefers it: integers without a decimal point."""
    return str(int(value)) if float(value).is_integer() else str(value)


def valid_config_value(kind: str, value: str) -> bool:
    """Return whether ``value`` is acceptable for a configuration key of ``kind``."""
    if kind == "bool":
        return value.lower() in ("true", "false")
    if kind == "int":
        try:
            return float(value) >= 0
        except ValueError:
            return False
    return True
