"""Notification texts format money and energy with integer arithmetic: exact at every edge."""

from __future__ import annotations

import json

import pytest

from csms.services.push_messages import Notification, duration, kwh, som


@pytest.mark.parametrize(("tyiyn", "text"), [
    (0, "0.00 som"), (5, "0.05 som"), (99, "0.99 som"), (100, "1.00 som"), (12_345, "123.45 som"),
    (123_456_789, "1,234,567.89 som"), (10**15 + 1, "10,000,000,000,000.01 som"), (-250, "-2.50 som"),
])
def test_som(tyiyn: int, text: str) -> None:
    assert som(tyiyn) == text


@pytest.mark.parametrize(("wh", "text"), [
    (0, "0.0 kWh"), (49, "0.0 kWh"), (50, "0.1 kWh"), (12_345, "12.3 kWh"), (12_350, "12.4 kWh"),
    (999_950, "1,000.0 kWh"), (2**53 + 1, "9,007,199,254,741.0 kWh"),
])
def test_kwh(wh: int, text: str) -> None:
    assert kwh(wh) == text


def test_duration() -> None:
    assert [duration(s) for s in (1, 59.9, 60, 300, 3600)] == ["1 s", "59 s", "1 min", "5 min", "60 min"]


def test_payload_is_compact_utf8_json() -> None:
    note = Notification("test", "Заряд", "Готово ✓", "/", "t")
    raw = note.payload()
    assert json.loads(raw) == {"kind": "test", "title": "Заряд", "body": "Готово ✓", "url": "/", "tag": "t"}
    assert "Готово".encode() in raw and len(raw) < 4096 - 103  # room for the aes128gcm header and padding
