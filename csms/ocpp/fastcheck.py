"""Exact checks for the two messages that make up almost all charger traffic, MeterValues and Heartbeat.

The generic validators (fastjsonschema, :mod:`csms.ocpp.codec`) cost ~12% of the gateway's CPU under the
S1 flood, most of it on MeterValues. These functions answer one question cheaply: does the payload
certainly satisfy the action's 1.6 schema? They return True only when every rule of the schema holds
(the enumerations and the date-time rule are taken from the bundled schema and from fastjsonschema
itself, not copied); anything else, including valid but unusual shapes such as an integer written as
``1.0``, returns False, and the caller runs the generic validator, which accepts it or raises the exact
CALLERROR. A test checks that True is never returned for a payload the schema rejects.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

from fastjsonschema.draft04 import CodeGeneratorDraft04

# fastjsonschema checks "format": "date-time" with this expression's match(); so does this module.
_DATE_TIME = re.compile(CodeGeneratorDraft04.FORMAT_REGEXS["date-time"])


def _meter_values_schema() -> dict[str, Any]:
    text = (resources.files("ocpp") / "v16" / "schemas" / "MeterValues.json").read_text(encoding="utf-8-sig")
    return json.loads(text)  # type: ignore[no-any-return]


_SCHEMA = _meter_values_schema()
_METER_VALUE = _SCHEMA["properties"]["meterValue"]["items"]
_SAMPLED = _METER_VALUE["properties"]["sampledValue"]["items"]
_TOP_KEYS = frozenset(_SCHEMA["properties"])  # connectorId, transactionId, meterValue
_METER_VALUE_KEYS = frozenset(_METER_VALUE["properties"])  # timestamp, sampledValue
# Every sampledValue property but "value" is an enumerated string.
_ENUMS = {name: frozenset(spec["enum"]) for name, spec in _SAMPLED["properties"].items() if name != "value"}


def _check_rules() -> None:
    """Fail at import if the bundled schema is not the one this module implements."""
    same = (set(_SCHEMA["required"]) == {"connectorId", "meterValue"}
            and set(_SCHEMA["properties"]) == {"connectorId", "transactionId", "meterValue"}
            and _SCHEMA["additionalProperties"] is False
            and {_SCHEMA["properties"][k]["type"] for k in ("connectorId", "transactionId")} == {"integer"}
            and _SCHEMA["properties"]["meterValue"].get("minItems") == 1
            and set(_METER_VALUE["required"]) == _METER_VALUE_KEYS == {"timestamp", "sampledValue"}
            and _METER_VALUE["additionalProperties"] is False
            and _METER_VALUE["properties"]["timestamp"] == {"type": "string", "format": "date-time"}
            and _METER_VALUE["properties"]["sampledValue"].get("minItems") == 1
            and _SAMPLED["required"] == ["value"] and _SAMPLED["additionalProperties"] is False
            and _SAMPLED["properties"]["value"] == {"type": "string"}
            and all(spec.get("type") == "string" and set(spec) <= {"type", "enum", "additionalProperties"}
                    for name, spec in _SAMPLED["properties"].items() if name != "value"))
    if not same:
        raise RuntimeError("the bundled MeterValues schema changed: update csms/ocpp/fastcheck.py")


_check_rules()


def meter_values_ok(payload: dict[str, Any]) -> bool:
    """True only if ``payload`` satisfies the MeterValues request schema (False: validate it the usual way)."""
    if type(payload) is not dict or not _TOP_KEYS.issuperset(payload) or type(payload.get("connectorId")) is not int:
        return False
    if "transactionId" in payload and type(payload["transactionId"]) is not int:
        return False
    meter_values = payload.get("meterValue")
    if type(meter_values) is not list or not meter_values:
        return False
    for meter_value in meter_values:
        if type(meter_value) is not dict or len(meter_value) != 2 or not _METER_VALUE_KEYS.issuperset(meter_value):
            return False
        timestamp, sampled = meter_value["timestamp"], meter_value["sampledValue"]
        if type(timestamp) is not str or _DATE_TIME.match(timestamp) is None:
            return False
        if type(sampled) is not list or not sampled:
            return False
        for value in sampled:
            if type(value) is not dict or type(value.get("value")) is not str:
                return False
            for name, field in value.items():
                if name != "value" and (type(field) is not str or field not in _ENUMS.get(name, ())):
                    return False
    return True


def heartbeat_ok(payload: dict[str, Any]) -> bool:
    """True only if ``payload`` satisfies the Heartbeat request schema (an empty object)."""
    return type(payload) is dict and not payload


# By action: the CALLs a charger sends most (see the module docstring).
FAST_CHECKS = {"MeterValues": meter_values_ok, "Heartbeat": heartbeat_ok}
