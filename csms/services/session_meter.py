"""Reading a charging session's live values out of an OCPP 1.6 MeterValues payload.

OCPP sends every value as a decimal string with a unit, and a message may carry several sampled
values per measurand (per phase, per location). A session needs three numbers: the energy register
(``Energy.Active.Import.Register``, the default measurand), the charging power
(``Power.Active.Import``) and the state of charge (``SoC``). Only whole-connector values (no
``phase``) at the outlet or with no location count: per-phase or EV-side readings are not the meter
that bills. Pure functions, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from csms.services.clock import parse_timestamp

if TYPE_CHECKING:
    from datetime import datetime

ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
SOC = "SoC"

# Values beyond these are a charger's garbage, not a reading (a register passing 10 TWh, 100 MW).
_MAX_REGISTER_WH = 10**13
_MAX_POWER_W = 10**8
_KILO = Decimal(1000)


@dataclass(frozen=True, slots=True)
class Reading:
    """The newest usable values of one MeterValues message (None where it carried none)."""

    register_wh: int | None
    power_w: int | None
    soc: int | None
    sampled_at: datetime | None


def _decimal(raw: object) -> Decimal | None:
    if not isinstance(raw, str):
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _billing_meter(sample: dict[str, Any]) -> bool:
    return sample.get("phase") is None and sample.get("location", "Outlet") == "Outlet"


def energy_wh(sample: dict[str, Any]) -> int | None:
    """The energy register of one sampled value in whole Wh (floored), or None if it is not one."""
    if sample.get("measurand", ENERGY) != ENERGY or not _billing_meter(sample):
        return None
    value = _decimal(sample.get("value"))
    unit = sample.get("unit", "Wh")
    if value is None or unit not in ("Wh", "kWh"):
        return None
    wh = value * _KILO if unit == "kWh" else value
    # Floored: a fraction of a Wh not yet completed is not yet delivered.
    out = int(wh.to_integral_value(rounding=ROUND_FLOOR))
    return out if 0 <= out <= _MAX_REGISTER_WH else None


def _power_w(sample: dict[str, Any]) -> int | None:
    if sample.get("measurand") != POWER or not _billing_meter(sample):
        return None
    value = _decimal(sample.get("value"))
    unit = sample.get("unit", "W")
    if value is None or unit not in ("W", "kW"):
        return None
    w = value * _KILO if unit == "kW" else value
    out = int(w.to_integral_value(rounding=ROUND_HALF_UP))
    return out if 0 <= out <= _MAX_POWER_W else None


def _soc(sample: dict[str, Any]) -> int | None:
    if sample.get("measurand") != SOC:
        return None
    value = _decimal(sample.get("value"))
    if value is None:
        return None
    out = int(value.to_integral_value(rounding=ROUND_HALF_UP))
    return out if 0 <= out <= 100 else None


def _time(entry: dict[str, Any]) -> datetime | None:
    try:
        return parse_timestamp(str(entry.get("timestamp", "")))
    except ValueError:
        return None


def read_meter_values(meter_value: list[dict[str, Any]]) -> Reading:
    """The session values of a ``meterValue`` list.

    The energy is the highest register in the message (a register only grows, so the highest is the
    newest even if the entries are out of order); power and SoC come from the newest entry that has
    them, and ``sampled_at`` is that entry's time.
    """
    register: int | None = None
    newest: tuple[datetime, int | None, int | None] | None = None
    for entry in meter_value:
        samples = [s for s in entry.get("sampledValue", []) if isinstance(s, dict)]
        for sample in samples:
            wh = energy_wh(sample)
            if wh is not None and (register is None or wh > register):
                register = wh
        at = _time(entry)
        power = next((p for p in map(_power_w, samples) if p is not None), None)
        soc = next((c for c in map(_soc, samples) if c is not None), None)
        if at is not None and (power is not None or soc is not None) and (newest is None or at >= newest[0]):
            newest = (at, power, soc)
    if newest is None:
        return Reading(register, None, None, None)
    return Reading(register, newest[1], newest[2], newest[0])
