"""What each push notification says: title, body, deep link, tag and urgency. No I/O.

The browser receives the JSON of :meth:`Notification.payload` (decrypted by the service worker), shows
``title`` and ``body``, replaces an earlier notification with the same ``tag``, and opens ``url`` (a
path of the app) on a click. ``kind`` lets the app tell them apart.

Money is integer tyiyn and energy integer Wh: they are formatted with integer arithmetic only
(:func:`som`, :func:`kwh`), never through floats.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from csms.store.session_views import SessionView

# RFC 8030 Urgency values a push service understands.
URGENCIES = ("very-low", "low", "normal", "high")

# Why a session failed (``charging_sessions.failure_reason``), as the driver reads it.
FAILURE_TEXT = {
    "offline": "{station} is offline.",
    "timeout": "{station} did not answer.",
    "rejected": "{station} refused to start.",
    "error": "{station} could not start charging.",
    "start_timeout": "Charging did not begin at {station} in time.",
    "cancelled": "You cancelled charging at {station}.",
}


@dataclass(frozen=True, slots=True)
class Notification:
    """One notification as the browser shows it."""

    kind: str
    title: str
    body: str
    url: str
    tag: str
    urgency: str = "normal"

    def payload(self) -> bytes:
        """The JSON the service worker receives (a few hundred bytes; push allows 4 KB)."""
        doc = {"kind": self.kind, "title": self.title, "body": self.body, "url": self.url, "tag": self.tag}
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def som(tyiyn: int) -> str:
    """``12345`` → ``"123.45 som"`` (two decimals, thousands separated by commas)."""
    sign = "-" if tyiyn < 0 else ""
    whole, cents = divmod(abs(tyiyn), 100)
    return f"{sign}{whole:,}.{cents:02d} som"


def kwh(wh: int) -> str:
    """``12345`` → ``"12.3 kWh"`` (one decimal, rounded half up)."""
    tenths = (max(wh, 0) + 50) // 100
    return f"{tenths // 10:,}.{tenths % 10} kWh"


def duration(seconds: float) -> str:
    """``300`` → ``"5 min"``; under a minute in seconds."""
    whole = int(seconds)
    return f"{whole // 60} min" if whole >= 60 else f"{whole} s"


def _session_url(session_id: str) -> str:
    return f"/sessions/{session_id}"


def _limit(view: SessionView) -> str:
    if view.energy_limit_wh is not None:
        return f"up to {kwh(view.energy_limit_wh)}"
    return f"up to {som(view.hold_tyiyn)}"


def charging_started(view: SessionView) -> Notification:
    """To the driver: the charger started (session → ``charging``)."""
    return Notification("charging_started", "Charging started",
                        f"{view.station_id}, connector {view.connector_id}: charging {_limit(view)}.",
                        _session_url(view.id), f"session-{view.id}")


def charging_completed(view: SessionView) -> Notification:
    """To the driver: the session was billed (energy and what it cost)."""
    charged = view.charged_tyiyn or 0
    return Notification("charging_completed", "Charging complete",
                        f"{kwh(view.energy_wh)} at {view.station_id} cost {som(charged)}.",
                        _session_url(view.id), f"session-{view.id}")


def charging_failed(view: SessionView) -> Notification:
    """To the driver: the session never charged (its hold was released in full)."""
    reason = view.failure_reason or "error"
    text = FAILURE_TEXT.get(reason, "Charging at {station} failed.").format(station=view.station_id)
    title = "Charging cancelled" if reason == "cancelled" else "Charging did not start"
    return Notification("charging_failed", title, f"{text} Nothing was charged.",
                        _session_url(view.id), f"session-{view.id}", urgency="high")


def charging_fault(view: SessionView, error_code: str) -> Notification:
    """To the driver: the charger reported a fault while the session was charging."""
    code = f" ({error_code})" if error_code and error_code != "NoError" else ""
    return Notification("charging_fault", "Charger fault",
                        f"{view.station_id}, connector {view.connector_id} reported a fault{code}.",
                        _session_url(view.id), f"session-{view.id}", urgency="high")


def low_balance(available_tyiyn: int) -> Notification:
    """To the driver: the wallet's available balance fell below the threshold."""
    return Notification("low_balance", "Low balance",
                        f"{som(available_tyiyn)} left in your wallet. Top up to keep charging.",
                        "/wallet", "low-balance")


def payment_confirmed(invoice_id: str, amount_tyiyn: int | None, available_tyiyn: int) -> Notification:
    """To the driver: a top-up was paid and credited."""
    credited = f"{som(amount_tyiyn)} added" if amount_tyiyn is not None else "Your top-up was credited"
    return Notification("payment_confirmed", "Payment confirmed",
                        f"{credited}. Balance: {som(available_tyiyn)}.", "/wallet", f"invoice-{invoice_id}")


def owner_session_started(view: SessionView) -> Notification:
    """To the station's owner: a session began charging at their station."""
    return Notification("owner_session_started", "New charging session",
                        f"{view.station_id}, connector {view.connector_id} started charging.",
                        _session_url(view.id), f"owner-session-{view.id}", urgency="low")


def owner_session_completed(view: SessionView) -> Notification:
    """To the station's owner: a session at their station was billed (the revenue)."""
    charged = view.charged_tyiyn or 0
    return Notification("owner_session_completed", "Session completed",
                        f"{view.station_id}: {kwh(view.energy_wh)}, revenue {som(charged)}.",
                        _session_url(view.id), f"owner-session-{view.id}", urgency="low")


def station_offline(station_id: str, offline_after_s: float) -> Notification:
    """To the station's owner: no connection for the configured time."""
    return Notification("station_offline", "Station offline",
                        f"{station_id} has had no connection for {duration(offline_after_s)}.",
                        f"/stations/{station_id}", f"station-{station_id}", urgency="high")


def station_online(station_id: str) -> Notification:
    """To the station's owner: a station reported offline is connected again."""
    return Notification("station_online", "Station back online", f"{station_id} is connected again.",
                        f"/stations/{station_id}", f"station-{station_id}")


def device_check() -> Notification:
    """``sendTestPush``: proves the device receives our notifications."""
    return Notification("test", "Test notification", "Push notifications work on this device.", "/", "test")
