"""SQL for the audit log (table ``audit_log``): who did what to what, and why.

Operators' money adjustments, refunds and edits are recorded in the same transaction as the change
itself, so an audited change without its record (or the reverse) cannot exist. The log is for
operators: ``detail`` may hold an operator's free-text reason, but never secrets.

Every function runs inside the caller's transaction (call them through ``Database.run``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    from datetime import datetime

    from csms.store.db import Conn


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit record."""

    id: int
    actor_kind: str
    actor_id: str
    action: str
    target: str | None
    detail: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AuditPage:
    """Up to ``first`` records, newest first, and whether older ones exist."""

    items: list[AuditEntry]
    has_next_page: bool


def record(conn: Conn, *, actor_kind: str, actor_id: str, action: str, target: str | None,
           detail: dict[str, Any]) -> int:
    """Append a record and return its id.

    Args:
        actor_kind: ``user``, ``api_key``, ``cli`` or ``system``.
        actor_id: the actor within its kind (a user id, an API key id, an OS account name).
        action: what was done, dotted (``ledger.adjust``).
        target: what it was done to (a user id...), if anything.
        detail: JSON-serialisable facts (amounts, reasons, transfer ids).
    """
    row = conn.execute(
        """INSERT INTO audit_log (actor_kind, actor_id, action, target, detail)
           VALUES (%s, %s, %s, %s, %s) RETURNING id""",
        (actor_kind, actor_id, action, target, Jsonb(detail)),
    ).fetchone()
    assert row is not None
    return int(row[0])


def list_page(conn: Conn, first: int, before_id: int | None = None) -> AuditPage:
    """Records newest first, starting below ``before_id`` (the last id of the previous page)."""
    rows = conn.execute(
        """SELECT id, actor_kind, actor_id, action, target, detail, created_at FROM audit_log
           WHERE %(before)s::bigint IS NULL OR id < %(before)s ORDER BY id DESC LIMIT %(limit)s""",
        {"before": before_id, "limit": first + 1},
    ).fetchall()
    return AuditPage([AuditEntry(*row) for row in rows[:first]], len(rows) > first)
