"""Read views of charging sessions, shared by the session queries and the ``sessionUpdated`` subscription.

A view carries what access checks need (the driver's user id and the station owner's user id) next
to what clients see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from csms.store.views import is_uuid

if TYPE_CHECKING:
    from datetime import datetime

    from csms.store.db import Conn


@dataclass(frozen=True, slots=True)
class SessionView:
    """One charging session as stored, plus who may see it."""

    id: str
    user_id: str
    owner_id: str | None  # the owner of the station's location, if any
    station_id: str
    connector_id: int
    status: str
    limit_tyiyn: int | None
    energy_limit_wh: int | None
    price_per_kwh_tyiyn: int
    session_fee_tyiyn: int
    hold_tyiyn: int
    transaction_id: int | None
    energy_wh: int
    power_w: int | None
    soc: int | None
    cost_tyiyn: int
    charged_tyiyn: int | None
    stop_reason: str | None
    failure_reason: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    updated_at: datetime


SESSION_COLUMNS = """s.id::text, s.user_id::text, l.owner_id::text, s.station_id, s.connector_id, s.status,
    s.limit_tyiyn, s.energy_limit_wh, s.price_per_kwh_tyiyn, s.session_fee_tyiyn, s.hold_tyiyn,
    s.transaction_id, s.energy_wh, s.power_w, s.soc, s.cost_tyiyn, s.charged_tyiyn, s.stop_reason,
    s.failure_reason, s.created_at, s.started_at, s.ended_at, s.updated_at"""

SESSION_FROM = """charging_sessions s JOIN stations st ON st.id = s.station_id
    LEFT JOIN locations l ON l.id = st.location_id"""


def get_session(conn: Conn, session_id: str) -> SessionView | None:
    """One session by id (None if unknown or not a UUID)."""
    if not is_uuid(session_id):
        return None
    row = conn.execute(f"SELECT {SESSION_COLUMNS} FROM {SESSION_FROM} WHERE s.id = %s", (session_id,)).fetchone()
    return SessionView(*row) if row else None


MAX_PAGE = 100


@dataclass(frozen=True, slots=True)
class SessionFilter:
    """Which sessions a list shows; None means no restriction on that field."""

    user_id: str | None = None  # the driver's own sessions
    owner_id: str | None = None  # sessions at the stations of this owner's locations
    station_id: str | None = None
    status: str | None = None
    created_from: datetime | None = None  # inclusive
    created_to: datetime | None = None  # exclusive


@dataclass(frozen=True, slots=True)
class SessionPage:
    """A page of sessions, newest first, and whether more follow."""

    items: list[SessionView]
    has_next_page: bool


def list_sessions(conn: Conn, where: SessionFilter, first: int,
                  after: tuple[datetime, str] | None = None) -> SessionPage:
    """Sessions matching ``where``, newest first, ``first`` at most, after the ``(created_at, id)`` cursor."""
    clauses: list[str] = []
    args: list[object] = []
    for column, value in (("s.user_id", where.user_id), ("l.owner_id", where.owner_id),
                          ("s.station_id", where.station_id), ("s.status", where.status)):
        if value is not None:
            clauses.append(f"{column} = %s")
            args.append(value)
    if where.created_from is not None:
        clauses.append("s.created_at >= %s")
        args.append(where.created_from)
    if where.created_to is not None:
        clauses.append("s.created_at < %s")
        args.append(where.created_to)
    if after is not None:
        clauses.append("(s.created_at, s.id) < (%s, %s)")
        args.extend(after)
    condition = " AND ".join(clauses) or "true"
    rows = conn.execute(
        f"""SELECT {SESSION_COLUMNS} FROM {SESSION_FROM} WHERE {condition}
            ORDER BY s.created_at DESC, s.id DESC LIMIT %s""",
        (*args, first + 1),
    ).fetchall()
    return SessionPage([SessionView(*r) for r in rows[:first]], len(rows) > first)
