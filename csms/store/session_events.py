"""A charging session's change event carries the session's live state, so subscribers need no read.

:func:`notify_session` publishes the ``session`` event (see :mod:`csms.store.events`) with a ``state``
object built by PostgreSQL from the row itself, inside the writing transaction and under the row lock
every writer of a session holds (``csms.services.session_billing``). Each state has a ``version``: the
database clock at that moment. Writers of one session are serialized by its lock, so versions grow
in commit order, and events arrive in commit order too.

A subscriber that last read the session from the database (:func:`read_session`, which returns the
database clock when its statement started) may apply an event's state only if the state's version is
newer than that read; otherwise the event may describe a change the read already showed (its
notification was still on the way), and the subscriber reads again instead.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from csms.store.events import CHANNEL
from csms.store.session_views import SESSION_COLUMNS, SESSION_FROM, SessionView

if TYPE_CHECKING:
    from collections.abc import Mapping

    from csms.store.db import Conn

# The fields of SessionView that change after a session is created (the rest never do).
_INTS = ("energy_wh", "cost_tyiyn")
_OPTIONAL_INTS = ("transaction_id", "power_w", "soc", "charged_tyiyn")
_OPTIONAL_TEXTS = ("stop_reason", "failure_reason")
_OPTIONAL_TIMES = ("started_at", "ended_at")



def event_json(row: str, received_us: str) -> str:
    """The SQL expression of a session's change event (JSON text) built from the columns of ``row`` (an
    alias for a ``charging_sessions`` row in its new state); ``received_us`` is an SQL expression."""
    return f"""json_build_object(
    'topic', 'session', 'session_id', {row}.id, 'user_id', {row}.user_id, 'station_id', {row}.station_id,
    'status', {row}.status, 'received_us', {received_us},
    'state', json_build_object(
        'version', (extract(epoch FROM clock_timestamp()) * 1000000)::bigint,
        'status', {row}.status, 'updated_at', {row}.updated_at,
        {", ".join(f"'{name}', {row}.{name}" for name in (*_INTS, *_OPTIONAL_INTS, *_OPTIONAL_TEXTS, *_OPTIONAL_TIMES))}
    ))::text"""


_NOTIFY = f"""SELECT e.payload, pg_notify(%(channel)s, e.payload) FROM (
    SELECT {event_json("s", "%(received_us)s::bigint")} AS payload
    FROM charging_sessions s WHERE s.id = %(session_id)s) AS e"""


def notify_session(conn: Conn, session_id: str, received_us: int | None = None) -> str | None:
    """Publish the ``session`` event of a session the caller has changed and holds locked.

    Args:
        received_us: when csms received the charger message behind the change (epoch microseconds),
            for the live-latency metrics; None for changes no charger message caused.

    Returns:
        The notification's payload (None for an unknown session), so that the writer may hand it to
        this process's subscribers as soon as it commits (``EventHub.publish_committed``).
    """
    row = conn.execute(_NOTIFY, {"channel": CHANNEL, "received_us": received_us, "session_id": session_id}).fetchone()
    return str(row[0]) if row else None


def read_session(conn: Conn, session_id: str) -> tuple[int, SessionView] | None:
    """``(database clock in epoch µs when the read started, the session)``, or None if unknown."""
    try:
        uuid.UUID(session_id)
    except ValueError:
        return None
    row = conn.execute(
        f"""SELECT (extract(epoch FROM statement_timestamp()) * 1000000)::bigint, {SESSION_COLUMNS}
            FROM {SESSION_FROM} WHERE s.id = %s""", (session_id,)).fetchone()
    return (int(row[0]), SessionView(*row[1:])) if row else None


def state_version(data: Mapping[str, Any]) -> int | None:
    """The version of the state an event carries, or None (an event without one)."""
    state = data.get("state")
    version = state.get("version") if isinstance(state, dict) else None
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def apply_state(view: SessionView, data: Mapping[str, Any]) -> SessionView | None:
    """``view`` with the live state carried by an event; None if the event has no usable state."""
    state = data.get("state")
    if not isinstance(state, dict) or state_version(data) is None:
        return None
    try:
        fields: dict[str, Any] = {"status": str(state["status"]),
                                  "updated_at": datetime.fromisoformat(str(state["updated_at"]))}
        for name in _INTS:
            fields[name] = int(state[name])
        for name in _OPTIONAL_INTS:
            fields[name] = None if state[name] is None else int(state[name])
        for name in _OPTIONAL_TEXTS:
            fields[name] = None if state[name] is None else str(state[name])
        for name in _OPTIONAL_TIMES:
            fields[name] = None if state[name] is None else datetime.fromisoformat(str(state[name]))
    except (KeyError, TypeError, ValueError):
        return None
    return dataclasses.replace(view, **fields)


__all__ = ["apply_state", "event_json", "notify_session", "read_session", "state_version"]
