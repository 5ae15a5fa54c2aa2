"""Reading what chargers said: the OCPP journal and the anomalies csms recorded (for operators).

Both are newest first with keyset pagination on the row id, so a page stays stable while chargers keep
talking. A station's journal reads the ``(station_id, id)`` index, however long the journal is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from datetime import datetime

    from csms.store.db import Conn

T = TypeVar("T")

@dataclass(frozen=True)
class JournalEntry:
    """One ``ocpp_journal`` row: a frame, with csms's answer when it answered a charger's frame."""

    id: int
    station_id: str
    direction: str
    message_type: int | None
    action: str | None
    unique_id: str | None
    payload: str
    received_at: datetime
    answer_type: int | None
    answer_payload: str | None
    answered_at: datetime | None


@dataclass(frozen=True)
class AnomalyEntry:
    """Something a charger did that was answered but needs an operator's eye."""

    id: int
    station_id: str
    kind: str
    detail: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class Page(Generic[T]):
    """Entries newest first, and whether older ones exist."""

    items: list[T]
    has_next_page: bool


def list_journal(conn: Conn, station_id: str, first: int, after_id: int | None) -> Page[JournalEntry]:
    """A page of one station's journal, newest first, after the row ``after_id`` (exclusive)."""
    rows = conn.execute(
        """
        SELECT id, station_id, direction, message_type, action, unique_id, payload, received_at,
               answer_type, answer_payload, answered_at
        FROM ocpp_journal
        WHERE station_id = %(station)s AND (%(after)s::bigint IS NULL OR id < %(after)s)
        ORDER BY id DESC
        LIMIT %(limit)s
        """,
        {"station": station_id, "after": after_id, "limit": first + 1},
    ).fetchall()
    return Page([JournalEntry(*row) for row in rows[:first]], has_next_page=len(rows) > first)


def list_anomalies(conn: Conn, station_id: str | None, first: int, after_id: int | None) -> Page[AnomalyEntry]:
    """A page of recorded anomalies, newest first, of one station or all."""
    rows = conn.execute(
        """
        SELECT id, station_id, kind, detail, created_at
        FROM ocpp_anomalies
        WHERE (%(station)s::text IS NULL OR station_id = %(station)s)
          AND (%(after)s::bigint IS NULL OR id < %(after)s)
        ORDER BY id DESC
        LIMIT %(limit)s
        """,
        {"station": station_id, "after": after_id, "limit": first + 1},
    ).fetchall()
    return Page([AnomalyEntry(*row) for row in rows[:first]], has_next_page=len(rows) > first)
