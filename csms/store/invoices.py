"""SQL for top-up invoices, the provider's webhook events and payment anomalies (migration 0010).

Jobs that two csms nodes may run at once take their rows with ``FOR UPDATE SKIP LOCKED``: a node skips
an invoice another node (or a webhook) is working on instead of waiting for it or doing it twice.

Every function runs inside the caller's transaction (call them through ``Database.run``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime, timedelta

    from csms.store.db import Conn

MAX_PAGE = 100
OPEN = ("creating", "pending")
STATUSES = ("creating", "pending", "paid", "declined", "cancelled", "expired", "failed")

_COLUMNS = """id::text, user_id::text, provider, amount_tyiyn, status, provider_invoice_id, qr_payload, pay_url,
    payment_id, credited_tyiyn, refunded_tyiyn, flags, provider_final, failure_reason, expires_at, paid_at,
    created_at, updated_at"""


@dataclass(frozen=True, slots=True)
class Invoice:
    """One top-up invoice (column meanings: ``migrations/0010_payments.sql``)."""

    id: str
    user_id: str
    provider: str
    amount_tyiyn: int
    status: str
    provider_invoice_id: str | None
    qr_payload: str | None
    pay_url: str | None
    payment_id: str | None
    credited_tyiyn: int
    refunded_tyiyn: int
    flags: list[str]
    provider_final: bool
    failure_reason: str | None
    expires_at: datetime
    paid_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class InvoicePage:
    """Up to ``first`` invoices, newest first, and whether older ones exist."""

    items: list[Invoice]
    has_next_page: bool


@dataclass(frozen=True, slots=True)
class InvoiceFilter:
    """Which invoices to list; None means any."""

    user_id: str | None = None
    status: str | None = None
    flagged: bool | None = None


@dataclass(frozen=True, slots=True)
class Anomaly:
    """Something about a payment that operators should look at."""

    id: int
    provider: str
    invoice_id: str | None
    kind: str
    detail: dict[str, Any]
    created_at: datetime


def _one(conn: Conn, query: str, params: Sequence[Any] | Mapping[str, Any]) -> Invoice | None:
    row = conn.execute(query, params).fetchone()
    return Invoice(*row) if row else None


def insert_invoice(conn: Conn, invoice_id: str, user_id: str, provider: str, amount_tyiyn: int,
                   ttl: timedelta) -> Invoice:
    """A new invoice in ``creating`` that expires ``ttl`` after the database's now()."""
    row = _one(conn, f"""INSERT INTO payment_invoices (id, user_id, provider, amount_tyiyn, expires_at)
                         VALUES (%s, %s, %s, %s, now() + %s) RETURNING {_COLUMNS}""",
               (invoice_id, user_id, provider, amount_tyiyn, ttl))
    assert row is not None
    return row


def get_invoice(conn: Conn, invoice_id: str) -> Invoice | None:
    """The invoice with this id, or None."""
    return _one(conn, f"SELECT {_COLUMNS} FROM payment_invoices WHERE id = %s", (invoice_id,))


def lock_invoice(conn: Conn, invoice_id: str) -> Invoice | None:
    """The invoice with this id, row-locked until the transaction ends, or None."""
    return _one(conn, f"SELECT {_COLUMNS} FROM payment_invoices WHERE id = %s FOR UPDATE", (invoice_id,))


def update_invoice(conn: Conn, invoice_id: str, **fields: object) -> Invoice:
    """Set columns of an invoice (names are this module's own, never a client's) and return it."""
    assignments = ", ".join(f"{name} = %s" for name in fields)
    row = _one(conn, f"UPDATE payment_invoices SET {assignments}, updated_at = now() WHERE id = %s "
                     f"RETURNING {_COLUMNS}", (*fields.values(), invoice_id))
    assert row is not None
    return row


def expire_due(conn: Conn, limit: int = 500) -> list[Invoice]:
    """Mark open invoices past their expiry ``expired``; returns them (others' locked rows are skipped)."""
    rows = conn.execute(
        f"""UPDATE payment_invoices SET status = 'expired', updated_at = now()
            WHERE id IN (SELECT id FROM payment_invoices WHERE status IN ('creating', 'pending')
                         AND expires_at <= now() ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED)
            RETURNING {_COLUMNS}""",
        (limit,),
    ).fetchall()
    return [Invoice(*row) for row in rows]


def claim_for_reconcile(conn: Conn, after: timedelta, lease: timedelta, limit: int = 50) -> list[Invoice]:
    """Invoices the provider may still report on, expired at least ``after`` ago and not checked lately.

    Open invoices are left to the expiry job first, so that one closed here reads ``expired``.

    Each is leased for ``lease`` (``next_check_at``), so another node asks about other invoices.
    """
    rows = conn.execute(
        f"""UPDATE payment_invoices SET next_check_at = now() + %s
            WHERE id IN (SELECT id FROM payment_invoices
                         WHERE NOT provider_final AND status IN ('expired', 'declined', 'cancelled')
                         AND expires_at <= now() - %s AND (next_check_at IS NULL OR next_check_at <= now())
                         ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED)
            RETURNING {_COLUMNS}""",
        (lease, after, limit),
    ).fetchall()
    return [Invoice(*row) for row in rows]


def give_up_reconciling(conn: Conn, older_than: timedelta) -> list[Invoice]:
    """Stop reconciling invoices expired more than ``older_than`` ago; returns them."""
    rows = conn.execute(
        f"""UPDATE payment_invoices SET provider_final = true, flags = array_append(flags, 'unreconciled'),
                   updated_at = now()
            WHERE id IN (SELECT id FROM payment_invoices WHERE NOT provider_final AND expires_at <= now() - %s
                         FOR UPDATE SKIP LOCKED)
            RETURNING {_COLUMNS}""",
        (older_than,),
    ).fetchall()
    return [Invoice(*row) for row in rows]


def record_event(conn: Conn, provider: str, event_id: str) -> bool:
    """Claim a webhook event id; False when it was already received (a replay)."""
    row = conn.execute(
        """INSERT INTO payment_webhook_events (provider, event_id, status, outcome) VALUES (%s, %s, '', 'received')
           ON CONFLICT DO NOTHING RETURNING 1""",
        (provider, event_id),
    ).fetchone()
    return row is not None


def finish_event(conn: Conn, provider: str, event_id: str, *, invoice_id: str, status: str,
                 payment_id: str | None, amount_tyiyn: int | None, outcome: str) -> None:
    """Store what a claimed event said and what it did."""
    conn.execute(
        """UPDATE payment_webhook_events SET invoice_id = %s, status = %s, payment_id = %s, amount_tyiyn = %s,
                  outcome = %s WHERE provider = %s AND event_id = %s""",
        (invoice_id, status, payment_id, amount_tyiyn, outcome, provider, event_id),
    )


def count_events(conn: Conn, provider: str) -> int:
    """How many webhook events were accepted from ``provider`` (tests and diagnostics)."""
    row = conn.execute("SELECT count(*) FROM payment_webhook_events WHERE provider = %s", (provider,)).fetchone()
    assert row is not None
    return int(row[0])


def record_anomaly(conn: Conn, provider: str, invoice_id: str | None, kind: str, detail: dict[str, Any]) -> None:
    """Record an anomaly once per invoice and kind."""
    conn.execute(
        """INSERT INTO payment_anomalies (provider, invoice_id, kind, detail) VALUES (%s, %s, %s, %s)
           ON CONFLICT DO NOTHING""",
        (provider, invoice_id, kind, Jsonb(detail)),
    )


def list_invoices(conn: Conn, where: InvoiceFilter, first: int,
                  after: tuple[datetime, str] | None = None) -> InvoicePage:
    """Invoices newest first (by creation time, then id), after the cursor position ``after``."""
    after_at: object = "infinity" if after is None else after[0]
    after_id = "ffffffff-ffff-ffff-ffff-ffffffffffff" if after is None else after[1]
    rows = conn.execute(
        f"""SELECT {_COLUMNS} FROM payment_invoices
            WHERE (%(user)s::uuid IS NULL OR user_id = %(user)s::uuid)
              AND (%(status)s::text IS NULL OR status = %(status)s)
              AND (%(flagged)s::boolean IS NULL OR (flags <> '{{}}') = %(flagged)s)
              AND (created_at, id) < (%(after_at)s::timestamptz, %(after_id)s::uuid)
            ORDER BY created_at DESC, id DESC LIMIT %(limit)s""",
        {"user": where.user_id, "status": where.status, "flagged": where.flagged, "after_at": after_at,
         "after_id": after_id, "limit": first + 1},
    ).fetchall()
    return InvoicePage([Invoice(*row) for row in rows[:first]], len(rows) > first)


def list_anomalies(conn: Conn, first: int, before_id: int | None = None) -> tuple[list[Anomaly], bool]:
    """Anomalies newest first, below ``before_id``; and whether older ones exist."""
    rows = conn.execute(
        """SELECT id, provider, invoice_id::text, kind, detail, created_at FROM payment_anomalies
           WHERE %(before)s::bigint IS NULL OR id < %(before)s ORDER BY id DESC LIMIT %(limit)s""",
        {"before": before_id, "limit": first + 1},
    ).fetchall()
    return [Anomaly(*row) for row in rows[:first]], len(rows) > first
