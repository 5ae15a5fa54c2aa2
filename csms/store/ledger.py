"""SQL for the double-entry ledger (tables ``ledger_accounts`` and ``ledger_transfers``).

The database does the bookkeeping: inserting a transfer runs the ``ledger_apply_transfer`` trigger,
which updates both accounts' running totals under row locks, and the ``ledger_accounts_no_overdraft``
check refuses a wallet debit that would spend more than is available. So these functions only insert
transfers and translate the database's refusals into :class:`InsufficientFunds` and friends.

Every transfer id is chosen by the caller and is unique: writing the same transfer twice is a no-op
that returns ``False``, which makes every money-moving caller idempotent. (The balances are applied by
an AFTER INSERT trigger, migration 0006, because BEFORE INSERT triggers also run for the rows that
``ON CONFLICT DO NOTHING`` then skips: a replay used to move the money a second time.)

Every function runs inside the caller's transaction (call them through ``Database.run``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import psycopg
from psycopg.types.json import Jsonb

from csms.store.balances import wallet_totals

if TYPE_CHECKING:
    from datetime import datetime

    from csms.store.db import Conn

AccountKind = Literal["wallet", "owner_revenue", "operator_revenue", "provider_clearing", "adjustments"]

ADJUSTMENTS = "adjustments"
OPERATOR_REVENUE = "operator_revenue"


class LedgerError(Exception):
    """A transfer the ledger refuses."""


class InsufficientFunds(LedgerError):
    """The debit would take a wallet's available balance below zero."""


class PostExceedsHold(LedgerError):
    """A post asked for more than its pending transfer holds."""


class AlreadyResolved(LedgerError):
    """The pending transfer was already posted or voided (by another transfer id)."""


@dataclass(frozen=True, slots=True)
class Balance:
    """An account's totals, in tyiyn.

    ``available`` is what a wallet may still spend: posted credits - posted debits - pending debits.
    """

    account_id: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int

    @property
    def posted(self) -> int:
        """Credits minus debits, counting only posted transfers."""
        return self.credits_posted - self.debits_posted

    @property
    def available(self) -> int:
        """What the owner may still spend: posted balance minus holds."""
        return self.credits_posted - self.debits_posted - self.debits_pending


def user_account(conn: Conn, user_id: str, kind: AccountKind = "wallet") -> int:
    """The id of a user's wallet or owner-revenue account, created on first use."""
    row = conn.execute(
        """INSERT INTO ledger_accounts (kind, user_id, no_overdraft) VALUES (%s, %s, %s)
           ON CONFLICT (kind, user_id) DO NOTHING RETURNING id""",
        (kind, user_id, kind == "wallet"),
    ).fetchone()
    if row is None:
        row = conn.execute(
            "SELECT id FROM ledger_accounts WHERE kind = %s AND user_id = %s", (kind, user_id)
        ).fetchone()
    assert row is not None
    return int(row[0])


def system_account(conn: Conn, code: str, kind: AccountKind | None = None) -> int:
    """The id of a system account by code (``adjustments``, ``operator_revenue``, ``provider_clearing:<p>``).

    Args:
        kind: the kind to create it with when it does not exist yet (``provider_clearing`` accounts
            are created per provider on first use); None means it must already exist.
    """
    row = conn.execute("SELECT id FROM ledger_accounts WHERE code = %s", (code,)).fetchone()
    if row is None:
        if kind is None:
            raise LedgerError(f"no system account {code!r}")
        row = conn.execute(
            """INSERT INTO ledger_accounts (kind, code, no_overdraft) VALUES (%s, %s, false)
               ON CONFLICT (code) DO UPDATE SET code = EXCLUDED.code RETURNING id""",
            (kind, code),
        ).fetchone()
    assert row is not None
    return int(row[0])


def balance(conn: Conn, account_id: int) -> Balance:
    """The current totals of one account."""
    row = conn.execute(
        """SELECT id, debits_pending, debits_posted, credits_pending, credits_posted
           FROM ledger_accounts WHERE id = %s""",
        (account_id,),
    ).fetchone()
    if row is None:
        raise LedgerError(f"no ledger account {account_id}")
    return Balance(*(int(v) for v in row))


def find_user_account(conn: Conn, user_id: str, kind: AccountKind = "wallet") -> int | None:
    """The id of a user's account of ``kind``, or None if it was never created (reads create nothing)."""
    row = conn.execute(
        "SELECT id FROM ledger_accounts WHERE kind = %s AND user_id = %s", (kind, user_id)
    ).fetchone()
    return int(row[0]) if row else None


def wallet_available(conn: Conn, user_id: str) -> int:
    """A user's spendable balance in tyiyn (0 when the user has no wallet yet)."""
    return wallet_totals(conn, user_id).available_tyiyn


def _insert(conn: Conn, transfer_id: str, kind: str, debit: int, credit: int, amount: int,
            pending_id: str | None, reason: str, metadata: dict[str, Any] | None) -> bool:
    """Insert one transfer; False if a transfer with this id already exists (idempotent replay)."""
    if amount <= 0:
        raise LedgerError("a transfer amount must be positive")
    try:
        # A savepoint keeps the caller's transaction usable when the database refuses the transfer.
        with conn.transaction():
            row = conn.execute(
                """INSERT INTO ledger_transfers (id, kind, debit_account_id, credit_account_id, amount,
                                                 pending_id, reason, metadata)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (id) DO NOTHING RETURNING id""",
                (transfer_id, kind, debit, credit, amount, pending_id, reason, Jsonb(metadata or {})),
            ).fetchone()
    except psycopg.errors.CheckViolation as exc:
        constraint = exc.diag.constraint_name
        if constraint == "ledger_accounts_no_overdraft":
            raise InsufficientFunds() from None
        if constraint == "ledger_post_exceeds_hold":
            raise PostExceedsHold() from None
        raise
    except psycopg.errors.UniqueViolation as exc:
        if exc.diag.constraint_name == "ledger_transfers_pending_id_key":
            raise AlreadyResolved() from None
        raise
    return row is not None


def transfer(conn: Conn, transfer_id: str, debit: int, credit: int, amount: int, *, reason: str = "",
             metadata: dict[str, Any] | None = None) -> bool:
    """Move ``amount`` tyiyn from ``debit`` to ``credit`` now. False if ``transfer_id`` was already used.

    Raises:
        InsufficientFunds: ``debit`` is a wallet without that much available.
    """
    return _insert(conn, transfer_id, "single", debit, credit, amount, None, reason, metadata)


def hold(conn: Conn, transfer_id: str, debit: int, credit: int, amount: int, *, reason: str = "",
         metadata: dict[str, Any] | None = None) -> bool:
    """Reserve ``amount`` (a pending transfer) to be posted or voided later. False if already placed.

    Raises:
        InsufficientFunds: ``debit`` is a wallet without that much available.
    """
    return _insert(conn, transfer_id, "pending", debit, credit, amount, None, reason, metadata)


def post(conn: Conn, transfer_id: str, pending_id: str, amount: int, *, reason: str = "",
         metadata: dict[str, Any] | None = None) -> bool:
    """Settle a hold for ``amount`` ≤ the hold; the rest returns to the debit account.

    An amount of 0 voids the hold instead (a transfer amount is always positive). Returns False if
    ``transfer_id`` was already written.

    Raises:
        PostExceedsHold: ``amount`` is more than the hold.
        AlreadyResolved: the hold was already settled under another transfer id.
    """
    if amount == 0:
        return void(conn, transfer_id, pending_id, reason=reason, metadata=metadata)
    return _resolve(conn, transfer_id, "post", pending_id, amount, reason, metadata)


def void(conn: Conn, transfer_id: str, pending_id: str, *, reason: str = "",
         metadata: dict[str, Any] | None = None) -> bool:
    """Release a hold in full. False if ``transfer_id`` was already written.

    Raises:
        AlreadyResolved: the hold was already settled under another transfer id.
    """
    return _resolve(conn, transfer_id, "void", pending_id, None, reason, metadata)


def _resolve(conn: Conn, transfer_id: str, kind: str, pending_id: str, amount: int | None, reason: str,
             metadata: dict[str, Any] | None) -> bool:
    row = conn.execute(
        "SELECT debit_account_id, credit_account_id, amount FROM ledger_transfers WHERE id = %s AND kind = 'pending'",
        (pending_id,),
    ).fetchone()
    if row is None:
        raise LedgerError(f"no pending transfer {pending_id!r}")
    debit, credit, held = int(row[0]), int(row[1]), int(row[2])
    return _insert(conn, transfer_id, kind, debit, credit, held if amount is None else amount, pending_id,
                   reason, metadata)


def pending_resolution(conn: Conn, pending_id: str) -> tuple[str, int] | None:
    """``(kind, amount)`` of the post or void that settled a hold, or None while it is still held."""
    row = conn.execute(
        "SELECT kind, amount FROM ledger_transfers WHERE pending_id = %s", (pending_id,)
    ).fetchone()
    return (str(row[0]), int(row[1])) if row else None


@dataclass(frozen=True, slots=True)
class Transfer:
    """One stored transfer (post and void carry their hold's accounts, a void its amount)."""

    id: str
    kind: str
    debit_account_id: int
    credit_account_id: int
    amount: int
    pending_id: str | None
    reason: str
    created_at: datetime


def get_transfer(conn: Conn, transfer_id: str) -> Transfer | None:
    """The transfer with this id, or None."""
    row = conn.execute(
        """SELECT id, kind, debit_account_id, credit_account_id, amount, pending_id, reason, created_at
           FROM ledger_transfers WHERE id = %s""",
        (transfer_id,),
    ).fetchone()
    return Transfer(*row) if row else None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """A transfer as one account sees it.

    ``outgoing`` is True when the account is the transfer's debit side; ``counterparty`` is the kind of
    the account on the other side (never its owner: a driver does not learn who owns a station).
    """

    id: str
    kind: str
    amount: int
    outgoing: bool
    counterparty: str
    pending_id: str | None
    reason: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Up to ``first`` entries, newest first, and whether older ones exist."""

    items: list[HistoryEntry]
    has_next_page: bool


_HISTORY_SIDE = """SELECT t.id, t.kind, t.amount, {outgoing}, o.kind, t.pending_id, t.reason, t.created_at
    FROM ledger_transfers t JOIN ledger_accounts o ON o.id = t.{other}
    WHERE t.{side} = %(account)s AND (t.created_at, t.id) < (%(after_at)s, %(after_id)s)
    ORDER BY t.created_at DESC, t.id DESC LIMIT %(limit)s"""


def account_history(conn: Conn, account_id: int, first: int,
                    after: tuple[datetime, str] | None = None) -> HistoryPage:
    """The account's transfers, newest first (by time, then id), after the cursor position ``after``.

    Each side (debits, credits) is read through its own index and the two are merged, which stays an
    index scan however long the history is.
    """
    debits = _HISTORY_SIDE.format(outgoing="true", other="credit_account_id", side="debit_account_id")
    credits = _HISTORY_SIDE.format(outgoing="false", other="debit_account_id", side="credit_account_id")
    if after is None:  # start after a position later than any transfer
        after_at: object = "infinity"
        after_id = ""
    else:
        after_at, after_id = after
    rows = conn.execute(
        f"({debits}) UNION ALL ({credits}) ORDER BY 8 DESC, 1 DESC LIMIT %(limit)s",
        {"account": account_id, "after_at": after_at, "after_id": after_id, "limit": first + 1},
    ).fetchall()
    items = [HistoryEntry(*row) for row in rows[:first]]
    return HistoryPage(items, len(rows) > first)


def credited_between(conn: Conn, account_id: int, start: datetime, end: datetime) -> tuple[int, int]:
    """``(tyiyn, sessions)``: posted credits to the account in ``[start, end)``, and how many of them
    settled a charging session's hold."""
    row = conn.execute(
        """SELECT COALESCE(sum(t.amount), 0), count(s.id)
           FROM ledger_transfers t LEFT JOIN charging_sessions s ON s.hold_transfer_id = t.pending_id
           WHERE t.credit_account_id = %s AND t.kind IN ('single', 'post')
             AND t.created_at >= %s AND t.created_at < %s""",
        (account_id, start, end),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])
