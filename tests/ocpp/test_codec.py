"""Tests for csms.ocpp.codec: frame parsing, schema validation and the CallError code of every failure."""

from __future__ import annotations

import json
from typing import Any

import pytest

from csms.ocpp.codec import (
    CP_TO_CS_ACTIONS,
    CS_TO_CP_ACTIONS,
    KNOWN_ACTIONS,
    Call,
    CallError,
    CallErrorCode,
    CallResult,
    OcppError,
    encode_call,
    encode_error,
    encode_result,
    parse_frame,
    validate_request,
    validate_response,
)

UID = "0b8e7c1a-4f1e-4c44-9a4e-7c1f0d2b9e11"  # 36 characters, the maximum

VALID_REQUESTS: dict[str, dict[str, Any]] = {
    "Authorize": {"idTag": "RFID0001"},
    "BootNotification": {"chargePointVendor": "Acme", "chargePointModel": "AC22", "firmwareVersion": "1.2"},
    "DataTransfer": {"vendorId": "com.acme", "messageId": "x", "data": "{}"},
    "DiagnosticsStatusNotification": {"status": "Uploaded"},
    "FirmwareStatusNotification": {"status": "Installed"},
    "Heartbeat": {},
    "MeterValues": {
        "connectorId": 1,
        "transactionId": 42,
        "meterValue": [
            {
                "timestamp": "2026-11-26T10:00:00.123+06:00",
                "sampledValue": [
                    {"value": "1234.5", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                    {"value": "7.2", "measurand": "Power.Active.Import", "unit": "kW"},
                    {"value": "231", "measurand": "Voltage", "unit": "V", "phase": "L1"},
                ],
            }
        ],
    },
    "StartTransaction": {"connectorId": 1, "idTag": "RFID0001", "meterStart": 0, "timestamp": "2026-11-26T10:00:00Z"},
    "StatusNotification": {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
    "StopTransaction": {"transactionId": 42, "meterStop": 1500, "timestamp": "2026-11-26T11:00:00Z", "reason": "Local"},
}


def error_of(text: str | bytes) -> OcppError:
    """Parse and validate a frame the way the gateway does, returning the error it raises."""
    try:
        frame = parse_frame(text)
        assert isinstance(frame, Call)
        validate_request(frame.action, frame.payload, unique_id=frame.unique_id)
    except OcppError as error:
        return error
    raise AssertionError(f"no OcppError for {text!r}")


def call(action: str, payload: Any, unique_id: Any = UID) -> str:
    return json.dumps([2, unique_id, action, payload])


def test_the_action_sets_cover_ocpp_16() -> None:
    assert len(CP_TO_CS_ACTIONS) == 10
    assert set(VALID_REQUESTS) == CP_TO_CS_ACTIONS
    assert {"DataTransfer"} == CP_TO_CS_ACTIONS & CS_TO_CP_ACTIONS
    assert CP_TO_CS_ACTIONS | CS_TO_CP_ACTIONS <= KNOWN_ACTIONS


@pytest.mark.parametrize("action", sorted(VALID_REQUESTS))
def test_valid_requests_of_every_charger_action_pass(action: str) -> None:
    frame = parse_frame(call(action, VALID_REQUESTS[action]))
    assert frame == Call(UID, action, VALID_REQUESTS[action])
    validate_request(frame.action, frame.payload)


def test_parse_accepts_bytes() -> None:
    assert parse_frame(call("Heartbeat", {}).encode()) == Call(UID, "Heartbeat", {})


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-11-26T10:00:00Z",
        "2026-11-26T10:00:00.123Z",
        "2026-11-26T10:00:00.123456+06:00",
        "2026-11-26T10:00:00-0130",
    ],
)
def test_timestamps_with_fractions_and_offsets_are_accepted(timestamp: str) -> None:
    validate_request("StatusNotification", {**VALID_REQUESTS["StatusNotification"], "timestamp": timestamp})


@pytest.mark.parametrize("timestamp", ["yesterday", "2026-11-26", "2026-13-01T00:00:00Z", "2026-11-26 10:00:00Z", ""])
def test_garbage_timestamps_are_rejected(timestamp: str) -> None:
    error = error_of(call("StatusNotification", {**VALID_REQUESTS["StatusNotification"], "timestamp": timestamp}))
    assert error.code is CallErrorCode.PropertyConstraintViolation
    assert error.details["field"] == "timestamp"


@pytest.mark.parametrize(
    ("text", "code", "unique_id"),
    [
        pytest.param("not json", CallErrorCode.FormationViolation, "-1", id="not-json"),
        pytest.param(b"\xff\xfe[2]", CallErrorCode.FormationViolation, "-1", id="not-utf8"),
        pytest.param('[2, "a", "Heartbeat", {"x": NaN}]', CallErrorCode.FormationViolation, "-1", id="nan"),
        pytest.param("[" * 100_000, CallErrorCode.FormationViolation, "-1", id="deep"),
        pytest.param('{"a": 1}', CallErrorCode.FormationViolation, "-1", id="object"),
        pytest.param("[]", CallErrorCode.FormationViolation, "-1", id="empty"),
        pytest.param('[2, 17, "Heartbeat", {}]', CallErrorCode.FormationViolation, "-1", id="numeric-id"),
        pytest.param(call("Heartbeat", {}, "x" * 37), CallErrorCode.FormationViolation, "-1", id="long-id"),
        pytest.param(call("Heartbeat", {}, ""), CallErrorCode.FormationViolation, "-1", id="empty-id"),
        pytest.param('[7, "a", "Heartbeat", {}]', CallErrorCode.FormationViolation, "a", id="type-7"),
        pytest.param('[true, "a", "Heartbeat", {}]', CallErrorCode.FormationViolation, "a", id="type-bool"),
        pytest.param('[2.0, "a", "Heartbeat", {}]', CallErrorCode.FormationViolation, "a", id="type-float"),
        pytest.param("[2]", CallErrorCode.ProtocolError, "-1", id="only-type"),
        pytest.param('[2, "a", "Heartbeat"]', CallErrorCode.ProtocolError, "a", id="no-payload"),
        pytest.param('[2, "a", "Heartbeat", {}, 1]', CallErrorCode.FormationViolation, "a", id="extra"),
        pytest.param('[2, "a", 5, {}]', CallErrorCode.FormationViolation, "a", id="numeric-action"),
        pytest.param('[2, "a", "Heartbeat", []]', CallErrorCode.FormationViolation, "a", id="list-payload"),
        pytest.param('[2, "a", "FlyToTheMoon", {}]', CallErrorCode.NotImplemented, "a", id="unknown-action"),
        pytest.param(
            '[2, "a", "RemoteStartTransaction", {"idTag": "X"}]', CallErrorCode.NotSupported, "a", id="cs-action"
        ),
        pytest.param('[2, "a", "SecurityEventNotification", {}]', CallErrorCode.NotSupported, "a", id="security-ext"),
    ],
)
def test_frame_errors_map_to_call_error_codes(text: str | bytes, code: CallErrorCode, unique_id: str) -> None:
    error = error_of(text)
    assert error.code is code
    assert error.unique_id == unique_id


BOOT = {"chargePointVendor": "Acme", "chargePointModel": "M"}
SAMPLE_NOT_A_STRING = [{"timestamp": "2026-11-26T10:00:00Z", "sampledValue": [{"value": 1}]}]


@pytest.mark.parametrize(
    ("action", "payload", "code", "field"),
    [
        ("BootNotification", {"chargePointVendor": "Acme"}, CallErrorCode.ProtocolError, ""),
        ("BootNotification", {**BOOT, "chargePointVendor": 5},
         CallErrorCode.TypeConstraintViolation, "chargePointVendor"),
        ("StartTransaction", {**VALID_REQUESTS["StartTransaction"], "connectorId": "1"},
         CallErrorCode.TypeConstraintViolation, "connectorId"),
        ("BootNotification", {**BOOT, "chargePointVendor": "V" * 21},
         CallErrorCode.PropertyConstraintViolation, "chargePointVendor"),
        ("StatusNotification", {**VALID_REQUESTS["StatusNotification"], "status": "Sleeping"},
         CallErrorCode.PropertyConstraintViolation, "status"),
        ("Heartbeat", {"extra": 1}, CallErrorCode.PropertyConstraintViolation, ""),
        ("MeterValues", {"connectorId": 1, "meterValue": []}, CallErrorCode.OccurenceConstraintViolation, "meterValue"),
        ("MeterValues", {"connectorId": 1, "meterValue": SAMPLE_NOT_A_STRING},
         CallErrorCode.TypeConstraintViolation, "meterValue[0].sampledValue[0].value"),
    ],
)  # fmt: skip
def test_schema_failures_map_by_keyword(action: str, payload: dict[str, Any], code: CallErrorCode, field: str) -> None:
    error = error_of(call(action, payload))
    assert error.code is code
    assert error.unique_id == UID
    assert error.details["field"] == field
    assert error.description  # says which field failed
    assert json.dumps(payload) not in error.description


def test_validation_never_writes_into_the_payload() -> None:
    payload = dict(VALID_REQUESTS["StopTransaction"])
    validate_request("StopTransaction", payload)
    assert payload == VALID_REQUESTS["StopTransaction"]


def test_validate_response_checks_charger_answers() -> None:
    validate_response("RemoteStartTransaction", {"status": "Accepted"})
    # multipleOf 0.1 on a float: 21.4 / 0.1 is 213.99999999999997 in binary floating point.
    schedule = {"chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 21.4}]}
    validate_response("GetCompositeSchedule", {"status": "Accepted", "chargingSchedule": schedule})
    with pytest.raises(OcppError) as info:
        validate_response("RemoteStartTransaction", {"status": "Maybe"}, unique_id="r1")
    assert (info.value.code, info.value.unique_id) == (CallErrorCode.PropertyConstraintViolation, "r1")
    with pytest.raises(ValueError, match=r"no OCPP 1\.6 schema"):
        validate_response("FlyToTheMoon", {})


def test_result_and_error_frames_parse() -> None:
    assert parse_frame('[3, "a", {"status": "Accepted"}]') == CallResult("a", {"status": "Accepted"})
    assert parse_frame('[4, "a", "NotSupported", "no", {}]') == CallError("a", "NotSupported", "no", {})
    assert error_of('[3, "a"]').code is CallErrorCode.ProtocolError
    assert error_of('[4, "a", "NotSupported", 5, {}]').code is CallErrorCode.FormationViolation


def test_encode_round_trips() -> None:
    payload = {"idTag": "ÄБ€", "connectorId": 2}
    call_text = encode_call(UID, "RemoteStartTransaction", payload)
    assert parse_frame(call_text) == Call(UID, "RemoteStartTransaction", payload)
    assert parse_frame(encode_result(UID, payload)) == CallResult(UID, payload)
    error_text = encode_error(UID, CallErrorCode.NotImplemented, "nope")
    assert parse_frame(error_text) == CallError(UID, "NotImplemented", "nope", {})
    error_text = encode_error("-1", CallErrorCode.GenericError, "", {"a": 1})
    assert parse_frame(error_text) == CallError("-1", "GenericError", "", {"a": 1})
    assert encode_result("a", {}) == '[3,"a",{}]'


def test_ocpp_error_carries_its_fields() -> None:
    error = OcppError(CallErrorCode.InternalError, "database down")
    assert (error.code, error.description) == (CallErrorCode.InternalError, "database down")
    assert (error.details, error.unique_id) == ({}, "-1")
    assert str(CallErrorCode.OccurenceConstraintViolation) == "OccurenceConstraintViolation"


@pytest.mark.parametrize("text", [
    '[2,"huge","DataTransfer",{"vendorId":"X","f":1e400}]',  # beyond float range: inf, as json reads it
    '[2,"esc","DataTransfer",{"vendorId":"X","data":"\\ud800"}]',  # a lone surrogate escape
    '[2,"u","Heartbeat",{"b":"\\u00e9\\u4e2d","t":true,"z":null,"f":1.5,"n":-0,"i":18446744073709551615}]',
])
def test_frames_read_as_the_standard_library_reads_them(text: str) -> None:
    # The fast decoder hands what it refuses to json, so these mean what json says they mean.
    frame = parse_frame(text)
    assert isinstance(frame, Call)
    assert frame.payload == json.loads(text)[3]


def test_nan_and_infinity_are_not_json() -> None:
    for text in ('[2,"n","Heartbeat",{"x":NaN}]', '[2,"i","Heartbeat",{"x":-Infinity}]'):
        with pytest.raises(OcppError) as caught:
            parse_frame(text)
        assert caught.value.code == CallErrorCode.FormationViolation


def test_encoders_write_what_json_writes() -> None:
    payload = {"status": "Accepted", "n": 2**70, "s": "søm 中", "nested": [1, {"a": None}]}
    assert json.loads(encode_result("u1", payload)) == [3, "u1", payload]  # 2**70: json's fallback
    small = {"currentTime": "2026-11-26T00:00:00Z", "interval": 300}
    assert encode_result("u2", small) == json.dumps([3, "u2", small], separators=(",", ":"), ensure_ascii=False)
