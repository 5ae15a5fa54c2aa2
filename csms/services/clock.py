"""Time: always UTC, and a charger's clock is only trusted within reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

# Chargers with a flat RTC battery report 1970 or 2000; anything before this is not a real time.
EARLIEST_PLAUSIBLE = datetime(2010, 1, 1, tzinfo=UTC)
# A clock running ahead by more than this is also treated as wrong.
MAX_FUTURE_SKEW = timedelta(days=1)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    """Format as OCPP likes it: UTC with a ``Z`` and millisecond precision."""
    if ts.tzinfo is not UTC:
        ts = ts.astimezone(UTC)
    # orjson writes '"YYYY-MM-DDTHH:MM:SS.ffffffZ"' in C, a tenth of isoformat's time (every Heartbeat
    # answer carries one); it leaves the fraction out when it is zero.
    text = orjson.dumps(ts, option=orjson.OPT_UTC_Z)
    if len(text) == 29:
        return text[1:24].decode() + "Z"
    if len(text) == 22:
        return text[1:20].decode() + ".000Z"
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")  # a year before 1000 (never seen)


def parse_timestamp(raw: str) -> datetime:
    """Parse an ISO 8601 timestamp with optional fraction and offset; naive means UTC.

    Raises:
        ValueError: not a timestamp.
    """
    ts = datetime.fromisoformat(raw)
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


def charger_time(raw: str, received_at: datetime) -> tuple[datetime, datetime, bool]:
    """Interpret a charger's timestamp.

    Returns:
        ``(as_sent, trusted, replaced)``: the parsed value, the value to use (the receive time when
        the sent one is absurd), and whether it was replaced (the caller records an anomaly).
    """
    try:
        sent = parse_timestamp(raw)
    except ValueError:
        return received_at, received_at, True
    if sent < EARLIEST_PLAUSIBLE or sent > received_at + MAX_FUTURE_SKEW:
        return sent, received_at, True
    return sent, sent, False
