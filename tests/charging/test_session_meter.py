"""Reading session values out of MeterValues: units, phases, locations, order and garbage."""

from __future__ import annotations

from datetime import UTC, datetime

from csms.services.session_meter import Reading, read_meter_values


def _entry(ts: str, *values: dict[str, str]) -> dict[str, object]:
    return {"timestamp": ts, "sampledValue": list(values)}


def test_units_and_defaults() -> None:
    reading = read_meter_values([_entry(
        "2026-11-26T10:00:00Z",
        {"value": "12.3456", "unit": "kWh", "measurand": "Energy.Active.Import.Register"},
        {"value": "7.4", "unit": "kW", "measurand": "Power.Active.Import"},
        {"value": "41.6", "measurand": "SoC", "unit": "Percent", "location": "EV"},
    )])
    assert reading == Reading(12_345, 7_400, 42, datetime(2026, 11, 26, 10, tzinfo=UTC))
    # An omitted measurand is the energy register, an omitted unit is Wh; fractions of a Wh are not yet due.
    assert read_meter_values([_entry("2026-11-26T10:00:00Z", {"value": "999.9"})]).register_wh == 999


def test_phases_other_locations_and_garbage_are_ignored() -> None:
    reading = read_meter_values([_entry(
        "2026-11-26T10:00:00Z",
        {"value": "5000", "phase": "L1"},
        {"value": "6000", "location": "Inlet"},
        {"value": "NaN"},
        {"value": "-3"},
        {"value": "12", "unit": "varh"},
        {"value": "abc", "measurand": "Power.Active.Import"},
        {"value": "150", "measurand": "SoC"},
    )])
    assert reading == Reading(None, None, None, None)


def test_highest_register_and_newest_power_win_whatever_the_order() -> None:
    reading = read_meter_values([
        _entry("2026-11-26T10:00:10Z", {"value": "2000"}, {"value": "11000", "measurand": "Power.Active.Import"}),
        _entry("2026-11-26T10:00:00Z", {"value": "1000"}, {"value": "3000", "measurand": "Power.Active.Import"}),
    ])
    assert (reading.register_wh, reading.power_w) == (2000, 11000)
    assert reading.sampled_at == datetime(2026, 11, 26, 10, 0, 10, tzinfo=UTC)
