"""JSON for OCPP frames: orjson where it can, the standard library where it cannot.

orjson reads and writes JSON several times faster than ``json``. Where it refuses something, ``json``
takes over, so nothing that ``json`` accepted before is refused now.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def _reject_constant(name: str) -> Any:
    """``parse_constant`` hook: JSON has no NaN or Infinity, so a frame using them is malformed."""
    raise ValueError(f"{name} is not JSON")


# One decoder for all frames: json.loads with any keyword builds a new decoder per call (about 1 µs).
_json_decode = json.JSONDecoder(parse_constant=_reject_constant).decode


def loads(text: str) -> Any:
    """orjson (three times faster than json); json for what orjson refuses.

    The two read every JSON document the same way except numbers: orjson refuses numbers beyond float
    range (json reads them as infinity: the fallback keeps that) and reads integers beyond 64 bits as
    floats (json keeps them exact). No OCPP 1.6 field can hold such an integer: either way the write
    fails and the charger gets the same InternalError (tests/ocpp/test_call_errors.py). Spotting those
    integers first would cost more than parsing (a regular expression over the frame: ~25 µs against
    orjson's ~3 µs for a MeterValues).
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return _json_decode(text)


# Compact separators: chargers on metered cellular links pay per byte. Non-ASCII stays UTF-8. One encoder
# for all frames, as json.dumps with keywords builds a new one per call.
_json_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(value: Any) -> str:
    """orjson writes the same compact UTF-8 JSON, faster; json takes what it refuses (integers beyond
    64 bits), so the output never depends on which one ran."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return _json_dumps(value)


def contains_nul(value: object) -> bool:
    """Whether any string in a parsed JSON value (keys included) contains U+0000.

    Valid JSON may carry it as ``\\u0000``, but PostgreSQL text cannot store it.
    """
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(contains_nul(v) for v in value)
    return False


__all__ = ["contains_nul", "dumps", "loads"]

