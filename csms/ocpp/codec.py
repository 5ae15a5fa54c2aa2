"""OCPP-J 1.6 frames: parse, validate and encode, without I/O.

A frame is a JSON array: ``[2, id, action, payload]`` (CALL), ``[3, id, payload]`` (CALLRESULT) or
``[4, id, code, description, details]`` (CALLERROR). Payloads are checked against the JSON schemas bundled
with the ``ocpp`` package, compiled once per action with fastjsonschema (the package's own
``validate_payload`` is asyncio-bound and about 15 times slower).

Every failure raises :class:`OcppError` with the CALLERROR code to answer with. The mapping follows the
wording of OCPP-J 1.6 §4.2.3: "incomplete" is ``ProtocolError``, "not conform the PDU structure" is
``FormationViolation``, and a payload that is syntactically correct but breaks a schema rule gets the
matching constraint code.

============================================================  ===============================
failure                                                       code
============================================================  ===============================
not UTF-8, not JSON, NaN/Infinity, nesting too deep           FormationViolation
not an array, or an empty one                                 FormationViolation
unique id not a string of 1-36 characters (id becomes "-1")   FormationViolation
message type id not the integer 2, 3 or 4                     FormationViolation
too few elements for the message type                         ProtocolError
too many elements, or an element of the wrong JSON type       FormationViolation
payload not a JSON object                                     FormationViolation
action unknown to OCPP 1.6                                    NotImplemented
action known to 1.6 but not sent by a charge point            NotSupported
schema ``required`` (a field is missing)                      ProtocolError
schema ``type``                                               TypeConstraintViolation
schema ``minItems`` / ``maxItems``                            OccurenceConstraintViolation
schema ``enum``, ``maxLength``, ``format``, ``minimum``, …    PropertyConstraintViolation
schema ``additionalProperties`` (an unknown field)            PropertyConstraintViolation
a CALL payload string with U+0000 (unstorable)                PropertyConstraintViolation
============================================================  ===============================

The unique id in an error is the frame's id whenever it could be read, else ``"-1"``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from importlib import resources
from typing import Any, Final

import fastjsonschema

from csms.ocpp.fastcheck import FAST_CHECKS
from csms.ocpp.jsonio import contains_nul, dumps, loads

__all__ = [
    "CP_TO_CS_ACTIONS",
    "CS_TO_CP_ACTIONS",
    "KNOWN_ACTIONS",
    "Call",
    "CallError",
    "CallErrorCode",
    "CallResult",
    "MessageTypeId",
    "OcppError",
    "encode_call",
    "encode_error",
    "encode_result",
    "parse_frame",
    "validate_request",
    "validate_response",
]

MAX_UNIQUE_ID_LENGTH: Final = 36
UNKNOWN_ID: Final = "-1"
_MAX_DESCRIPTION: Final = 512


class MessageTypeId(IntEnum):
    """The first element of a frame; ``ocpp.messages.MessageType`` would import jsonschema (120 ms)."""

    CALL = 2
    CALL_RESULT = 3
    CALL_ERROR = 4


# Plain ints for the hot path: an enum member lookup costs more than the comparison it feeds.
_CALL: Final = 2
_CALL_RESULT: Final = 3
_CALL_ERROR: Final = 4


class CallErrorCode(StrEnum):
    """CALLERROR codes of OCPP-J 1.6 §4.2.3, spelled as 1.6 does (``Occurence``, ``FormationViolation``)."""

    NotImplemented = "NotImplemented"
    NotSupported = "NotSupported"
    InternalError = "InternalError"
    ProtocolError = "ProtocolError"
    SecurityError = "SecurityError"
    FormationViolation = "FormationViolation"
    PropertyConstraintViolation = "PropertyConstraintViolation"
    OccurenceConstraintViolation = "OccurenceConstraintViolation"
    TypeConstraintViolation = "TypeConstraintViolation"
    GenericError = "GenericError"


class OcppError(Exception):
    """Base of the OCPP boundary: anything that should be answered with a CALLERROR.

    Args:
        code: the CALLERROR code.
        description: a short human-readable reason; never echo a whole payload here.
        details: a small JSON object with more detail; ``{}`` by default.
        unique_id: id of the CALL being answered; ``"-1"`` when the frame's id could not be read.
    """

    def __init__(
        self,
        code: CallErrorCode,
        description: str = "",
        *,
        details: dict[str, Any] | None = None,
        unique_id: str = UNKNOWN_ID,
    ) -> None:
        super().__init__(f"{code}: {description}" if description else str(code))
        self.code = code
        self.description = description
        self.details: dict[str, Any] = details if details is not None else {}
        self.unique_id = unique_id


@dataclass(frozen=True, slots=True)
class Call:
    """A request: ``[2, unique_id, action, payload]``."""

    unique_id: str
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallResult:
    """A successful answer: ``[3, unique_id, payload]``."""

    unique_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallError:
    """An error answer: ``[4, unique_id, code, description, details]``.

    ``code`` stays a plain string: a peer may send a code we do not know, and that is still a valid answer.
    """

    unique_id: str
    code: str
    description: str
    details: dict[str, Any]


# One action per line would take 31 lines.
# fmt: off
#: Actions a charge point initiates (OCPP 1.6 core and profiles).
CP_TO_CS_ACTIONS: Final = frozenset({
    "Authorize", "BootNotification", "DataTransfer", "DiagnosticsStatusNotification",
    "FirmwareStatusNotification", "Heartbeat", "MeterValues", "StartTransaction", "StatusNotification",
    "StopTransaction",
})

#: Actions the central system initiates (OCPP 1.6 core and profiles; DataTransfer goes both ways).
CS_TO_CP_ACTIONS: Final = frozenset({
    "CancelReservation", "ChangeAvailability", "ChangeConfiguration", "ClearCache", "ClearChargingProfile",
    "DataTransfer", "GetCompositeSchedule", "GetConfiguration", "GetDiagnostics", "GetLocalListVersion",
    "RemoteStartTransaction", "RemoteStopTransaction", "ReserveNow", "Reset", "SendLocalList",
    "SetChargingProfile", "TriggerMessage", "UnlockConnector", "UpdateFirmware",
})
# fmt: on

_SCHEMA_DIR = resources.files("ocpp") / "v16" / "schemas"

#: Every action with a bundled 1.6 schema: the core set plus the security whitepaper's actions. A charge
#: point sending one of the latter is "recognized but not supported", not "unknown".
KNOWN_ACTIONS: Final = frozenset(
    entry.name.removesuffix(".json")
    for entry in _SCHEMA_DIR.iterdir()
    if entry.name.endswith(".json") and not entry.name.endswith("Response.json")
)

_Validator = Any  # fastjsonschema returns an untyped generated function
_validators: dict[str, _Validator] = {}


def _validator(schema_name: str) -> _Validator:
    """Return the compiled validator of one bundled schema; compiled on first use (all 78 take 0.2 s)."""
    validator = _validators.get(schema_name)
    if validator is None:
        # The bundled files start with a BOM; the draft-04 meta keys only slow compilation down.
        text = (_SCHEMA_DIR / f"{schema_name}.json").read_text(encoding="utf-8-sig")
        schema = json.loads(text)
        schema.pop("$schema", None)
        schema.pop("$id", None)
        # use_default=False: validation must never write defaults into the caller's payload.
        validator = fastjsonschema.compile(schema, use_default=False)
        _validators[schema_name] = validator
    return validator


# By schema keyword; anything not listed (pattern, minimum, format, …) is a property constraint.
_RULE_CODES: Final = {
    "required": CallErrorCode.ProtocolError,
    "type": CallErrorCode.TypeConstraintViolation,
    "minItems": CallErrorCode.OccurenceConstraintViolation,
    "maxItems": CallErrorCode.OccurenceConstraintViolation,
}


def _schema_error(exc: fastjsonschema.JsonSchemaValueException, unique_id: str) -> OcppError:
    """Translate a fastjsonschema failure into the OcppError to answer with."""
    if exc.rule == "type" and exc.name == "data":
        # The payload itself is not an object: the PDU structure is wrong, not a field's type.
        code = CallErrorCode.FormationViolation
    else:
        code = _RULE_CODES.get(exc.rule or "", CallErrorCode.PropertyConstraintViolation)
    # fastjsonschema names the root "data"; say "payload" so the charger's log reads naturally.
    message = exc.message.replace("data", "payload", 1) if exc.message.startswith("data") else exc.message
    field = (exc.name or "data").replace("data", "", 1).lstrip(".")
    # Truncated: an unknown property's name or an enum's list comes from the schema or the peer.
    return OcppError(
        code,
        message[:_MAX_DESCRIPTION],
        details={"field": field[:_MAX_DESCRIPTION], "rule": exc.rule},
        unique_id=unique_id,
    )


def validate_request(action: str, payload: dict[str, Any], *, unique_id: str = UNKNOWN_ID) -> None:
    """Check a CALL sent by a charge point against the 1.6 request schema of its action.

    Args:
        action: the CALL's action.
        payload: the CALL's payload, as parsed.
        unique_id: the CALL's id, copied into the raised error so the caller can answer with it.

    Raises:
        OcppError: ``NotImplemented`` for an action unknown to 1.6, ``NotSupported`` for one a charge point
            may not send (or that we do not implement), else the code of the failed schema rule (see the
            module docstring).
    """
    if action not in CP_TO_CS_ACTIONS:
        if action in KNOWN_ACTIONS:
            raise OcppError(
                CallErrorCode.NotSupported,
                f"{action} is not supported from a charge point",
                unique_id=unique_id,
            )
        raise OcppError(CallErrorCode.NotImplemented, "unknown action", unique_id=unique_id)
    fast = FAST_CHECKS.get(action)
    if fast is not None and fast(payload):
        return
    try:
        _validator(action)(payload)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise _schema_error(exc, unique_id) from None


def validate_response(action: str, payload: dict[str, Any], *, unique_id: str = UNKNOWN_ID) -> None:
    """Check a CALLRESULT from a charge point against the 1.6 response schema of the action we called.

    Args:
        action: the action of the CALL we sent.
        payload: the CALLRESULT's payload, as parsed.
        unique_id: the id shared by our CALL and its result, copied into the raised error.

    Raises:
        ValueError: ``action`` has no 1.6 schema; we only call actions we know, so this is a bug.
        OcppError: the code of the failed schema rule (see the module docstring). The error is for logging:
            OCPP-J never answers a CALLRESULT.
    """
    if action not in KNOWN_ACTIONS:
        raise ValueError(f"no OCPP 1.6 schema for action {action!r}")
    try:
        _validator(action + "Response")(payload)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise _schema_error(exc, unique_id) from None


def _formation(description: str, unique_id: str) -> OcppError:
    """Build the error for a frame that does not conform to the OCPP-J PDU structure."""
    return OcppError(CallErrorCode.FormationViolation, description, unique_id=unique_id)


def parse_frame(text: str | bytes) -> Call | CallResult | CallError:
    """Parse one OCPP-J message into a frame; payloads are not schema-checked here.

    Args:
        text: the WebSocket text message (``bytes`` must be UTF-8).

    Returns:
        A :class:`Call`, :class:`CallResult` or :class:`CallError`.

    Raises:
        OcppError: ``FormationViolation`` or ``ProtocolError`` as tabled in the module docstring, carrying the
            frame's unique id when it could be read, else ``"-1"``.
    """
    try:
        source = text.decode() if isinstance(text, bytes) else text
        msg = loads(source)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _formation("message is not valid JSON", UNKNOWN_ID) from None
    if type(msg) is not list or not msg:
        raise _formation("message is not a non-empty JSON array", UNKNOWN_ID)

    count = len(msg)
    unique_id = msg[1] if count > 1 else None
    if type(unique_id) is not str or not 0 < len(unique_id) <= MAX_UNIQUE_ID_LENGTH:
        if count > 1:
            raise _formation("unique id must be a string of 1 to 36 characters", UNKNOWN_ID)
        unique_id = UNKNOWN_ID  # a lone message type id: report "incomplete" below, if the type is valid

    # Exact type checks (not isinstance): True == 1 and 2.0 == 2 must not pass as message type ids.
    type_id = msg[0]
    if type(type_id) is not int or not _CALL <= type_id <= _CALL_ERROR:
        raise _formation(f"unknown message type id {type_id!r}"[:80], unique_id)

    if type_id == _CALL:
        _check_count(count, 4, unique_id)
        action, payload = msg[2], msg[3]
        if type(action) is not str:
            raise _formation("action must be a string", unique_id)
        if type(payload) is not dict:
            raise _formation("payload must be a JSON object", unique_id)
        if "\\u0000" in source and contains_nul(payload):  # the scan is cheap; the walk is rare
            raise OcppError(CallErrorCode.PropertyConstraintViolation, "text must not contain U+0000",
                            unique_id=unique_id)
        return Call(unique_id, action, payload)

    if type_id == _CALL_RESULT:
        _check_count(count, 3, unique_id)
        payload = msg[2]
        if type(payload) is not dict:
            raise _formation("payload must be a JSON object", unique_id)
        return CallResult(unique_id, payload)

    _check_count(count, 5, unique_id)
    code, description, details = msg[2], msg[3], msg[4]
    if type(code) is not str or type(description) is not str or type(details) is not dict:
        raise _formation("error code and description must be strings, details an object", unique_id)
    return CallError(unique_id, code, description, details)


def _check_count(count: int, expected: int, unique_id: str) -> None:
    """Raise unless a frame has exactly ``expected`` elements: fewer is incomplete, more is malformed."""
    if count < expected:
        raise OcppError(
            CallErrorCode.ProtocolError,
            f"frame has {count} elements, expected {expected}",
            unique_id=unique_id,
        )
    if count > expected:
        raise _formation(f"frame has {count} elements, expected {expected}", unique_id)


def encode_call(unique_id: str, action: str, payload: dict[str, Any]) -> str:
    """Encode a CALL.

    Args:
        unique_id: at most 36 characters, unique among our outstanding calls on this connection.
        action: the OCPP action.
        payload: a JSON-serialisable object.

    Returns:
        The text message to send.

    Raises:
        TypeError: the payload holds something JSON cannot encode (the same for the other encoders).
    """
    return dumps([_CALL, unique_id, action, payload])


def encode_result(unique_id: str, payload: dict[str, Any]) -> str:
    """Encode a CALLRESULT answering the CALL with ``unique_id``; see :func:`encode_call`."""
    return dumps([_CALL_RESULT, unique_id, payload])


def encode_error(unique_id: str, code: str, description: str = "", details: dict[str, Any] | None = None) -> str:
    """Encode a CALLERROR; see :func:`encode_call`.

    Args:
        unique_id: the id of the CALL being answered, or ``"-1"`` when it could not be read.
        code: a :class:`CallErrorCode` (a plain string is accepted for codes relayed from elsewhere).
        description: a short reason.
        details: a small JSON object; ``{}`` when omitted, as the frame requires an object.

    Returns:
        The text message to send.
    """
    return dumps([_CALL_ERROR, unique_id, str(code), description, details or {}])
