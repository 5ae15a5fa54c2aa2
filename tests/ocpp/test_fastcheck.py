"""The fast MeterValues/Heartbeat checks never accept what the 1.6 schema rejects, and do accept the
shapes chargers send (otherwise they would save nothing)."""

from __future__ import annotations

import copy
import random
from typing import Any

import fastjsonschema
import pytest

from csms.ocpp import codec
from csms.ocpp.fastcheck import _ENUMS, FAST_CHECKS, heartbeat_ok, meter_values_ok

SAMPLED = [
    {"value": "1234", "context": "Sample.Periodic", "measurand": "Energy.Active.Import.Register",
     "location": "Outlet", "unit": "Wh"},
    {"value": "7360.0", "context": "Sample.Periodic", "measurand": "Power.Active.Import", "location": "Outlet",
     "unit": "W"},
    {"value": "32.0", "measurand": "Current.Import", "unit": "A", "phase": "L1"},
    {"value": "57", "measurand": "SoC", "location": "EV", "unit": "Percent", "format": "Raw"},
    {"value": "signed", "format": "SignedData"},
]
VALID: list[dict[str, Any]] = [
    {"connectorId": 1, "meterValue": [{"timestamp": "2026-11-26T10:00:00.123Z", "sampledValue": SAMPLED}]},
    {"connectorId": 2, "transactionId": 17, "meterValue": [
        {"timestamp": "2026-11-26T10:00:00+06:00", "sampledValue": SAMPLED[:1]},
        {"timestamp": "2024-02-29T23:59:60.5-0130", "sampledValue": SAMPLED[3:]}]},
    {"connectorId": 0, "meterValue": [{"timestamp": "2026-11-26t10:00:00z", "sampledValue": [{"value": ""}]}]},
]

# Replacement values that break one rule or another (and some that break none).
ODD_VALUES: list[Any] = [
    None, True, False, 0, -1, 1.0, 1.5, 2**70, "", "1", "Wh", "Outlet", "2026-11-26T10:00:00Z", [], [{}], {},
    {"value": "1"}, "2026-02-30T10:00:00Z", "2026-11-26 10:00:00Z", "2026-11-26T10:00:00", "2023-02-29T00:00:00Z",
    "2026-11-26T24:00:00Z", "2026-11-26T10:00:00.Z", "2026-11-26T10:00:00+0600", "Sample.Clock", "SignedData",
    "L1-N", "Celcius", "kWh", "Trigger", "bogus", *[value for values in _ENUMS.values() for value in values],
]
KEYS = ["connectorId", "transactionId", "meterValue", "timestamp", "sampledValue", "value", "context", "format",
        "measurand", "phase", "location", "unit", "extra"]


def _schema_accepts(payload: Any) -> bool:
    try:
        codec._validator("MeterValues")(payload)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


def _containers(node: Any) -> list[Any]:
    found = [node]
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for child in children:
        found += _containers(child)
    return found


def _mutate(payload: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    mutated = copy.deepcopy(payload)
    for _ in range(rng.randint(1, 3)):
        target = rng.choice([c for c in _containers(mutated) if isinstance(c, (dict, list))])
        if isinstance(target, dict):
            action = rng.choice(("set", "set", "delete", "add"))
            if action == "delete" and target:
                del target[rng.choice(list(target))]
            elif action == "add":
                target[rng.choice(KEYS)] = rng.choice(ODD_VALUES)
            elif target:
                target[rng.choice(list(target))] = copy.deepcopy(rng.choice(ODD_VALUES))
        elif target and rng.random() < 0.5:
            target[rng.randrange(len(target))] = copy.deepcopy(rng.choice(ODD_VALUES))
        elif target:
            target.append(copy.deepcopy(rng.choice([*target, *ODD_VALUES])))
    return mutated


@pytest.mark.parametrize("payload", VALID)
def test_common_shapes_take_the_fast_path(payload: dict[str, Any]) -> None:
    assert _schema_accepts(payload)
    assert meter_values_ok(payload)


def test_fast_check_never_accepts_what_the_schema_rejects() -> None:
    rng = random.Random(20261126)
    accepted = rejected = 0
    for _ in range(20_000):
        payload = _mutate(rng.choice(VALID), rng)
        if meter_values_ok(payload):
            assert _schema_accepts(payload), payload
            accepted += 1
        elif not _schema_accepts(payload):
            rejected += 1
    # Both outcomes were exercised many times (the mutations are not all harmless or all fatal).
    assert accepted > 1_000
    assert rejected > 5_000


def test_heartbeat() -> None:
    assert heartbeat_ok({})
    assert not heartbeat_ok({"extra": 1})
    assert set(FAST_CHECKS) == {"MeterValues", "Heartbeat"}


@pytest.mark.parametrize(("payload", "code"), [
    ({"connectorId": 1.0, "meterValue": [{"timestamp": "2026-11-26T10:00:00Z", "sampledValue": [{"value": "1"}]}]},
     None),  # valid for the schema, not for the fast check: the generic validator accepts it
    ({"connectorId": 1, "meterValue": []}, codec.CallErrorCode.OccurenceConstraintViolation),
    ({"connectorId": "1", "meterValue": [{"timestamp": "2026-11-26T10:00:00Z", "sampledValue": [{"value": "1"}]}]},
     codec.CallErrorCode.TypeConstraintViolation),
    ({"connectorId": 1, "meterValue": [{"timestamp": "2026-02-30T10:00:00Z", "sampledValue": [{"value": "1"}]}]},
     codec.CallErrorCode.PropertyConstraintViolation),
    ({"connectorId": 1, "meterValue": [{"timestamp": "2026-11-26T10:00:00Z", "sampledValue": [{"unit": "Wh"}]}]},
     codec.CallErrorCode.ProtocolError),
])
def test_payloads_the_fast_check_declines_get_the_generic_answer(payload: dict[str, Any],
                                                                code: codec.CallErrorCode | None) -> None:
    if code is None:
        codec.validate_request("MeterValues", payload, unique_id="u1")
        return
    with pytest.raises(codec.OcppError) as caught:
        codec.validate_request("MeterValues", payload, unique_id="u1")
    assert caught.value.code == code
