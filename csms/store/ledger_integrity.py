"""Read-only SQL behind ``csms ledger check``: the ledger's totals recomputed from its transfers.

The database keeps running totals on each account (the transfer triggers); these queries recompute
them from ``ledger_transfers`` and list what disagrees, so the check trusts nothing it is checking.
They return facts; the judgement (and the readable report) is in ``csms.services.ledger_check``.

Run them in one REPEATABLE READ transaction so that every query sees the same snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

    from csms.store.db import Conn

# Rows fetched per round trip when streaming sessions through a server-side cursor.
SESSION_BATCH = 2000


@dataclass(frozen=True, slots=True)
class LedgerTotals:
    """Sums over every account and the size of the ledger."""

    accounts: int
    transfers: int
    posted_sum: int  # Σ (credits_posted - debits_posted): 0 in a sound ledger
    credits_pending: int
    debits_pending: int
    open_holds: int  # pending transfers not yet posted or voided


@dataclass(frozen=True, slots=True)
class AccountDrift:
    """An account whose stored totals differ from the sums of its transfers."""

    account_id: int
    kind: str
    owner: str  # the system account's code or the user's id
    stored: tuple[int, int, int, int]  # debits_pending, debits_posted, credits_pending, credits_posted
    recomputed: tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class SessionHold:
    """A charging session with its hold transfer and whatever resolved it."""

    session_id: str
    user_id: str
    status: str
    energy_wh: int
    price_per_kwh_tyiyn: int
    session_fee_tyiyn: int
    hold_tyiyn: int
    charged_tyiyn: int | None
    revenue_account_id: int
    wallet_account_id: int | None  # the driver's wallet
    hold_kind: str | None  # None: the hold transfer is missing
    hold_amount: int | None
    hold_debit_account_id: int | None
    hold_credit_account_id: int | None
    resolution_kind: str | None  # 'post', 'void' or None while the hold is pending
    resolution_amount: int | None


def snapshot(conn: Conn) -> None:
    """Make the current transaction one read-only snapshot (must be its first statement)."""
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")


def totals(conn: Conn) -> LedgerTotals:
    """Account sums, transfer count and open holds."""
    row = conn.execute(
        """SELECT (SELECT count(*) FROM ledger_accounts),
                  (SELECT count(*) FROM ledger_transfers),
                  COALESCE(sum(credits_posted - debits_posted), 0),
                  COALESCE(sum(credits_pending), 0), COALESCE(sum(debits_pending), 0),
                  (SELECT count(*) FROM ledger_transfers h WHERE h.kind = 'pending'
                     AND NOT EXISTS (SELECT 1 FROM ledger_transfers r WHERE r.pending_id = h.id))
           FROM ledger_accounts"""
    ).fetchone()
    assert row is not None
    return LedgerTotals(*(int(v) for v in row))


def drifted_accounts(conn: Conn) -> list[AccountDrift]:
    """Accounts whose four stored totals differ from the sums recomputed from ``ledger_transfers``.

    A pending transfer counts as pending until a post or void names it; posts and singles count as
    posted; a void moves nothing.
    """
    rows = conn.execute(
        """WITH t AS (
               SELECT t.*, CASE WHEN t.kind = 'pending' AND NOT EXISTS
                                (SELECT 1 FROM ledger_transfers r WHERE r.pending_id = t.id)
                           THEN t.amount ELSE 0 END AS open_amount,
                      CASE WHEN t.kind IN ('single', 'post') THEN t.amount ELSE 0 END AS posted_amount
               FROM ledger_transfers t),
           legs AS (
               SELECT debit_account_id AS account_id, open_amount AS dp, posted_amount AS dd, 0 AS cp, 0 AS cd
               FROM t
               UNION ALL
               SELECT credit_account_id, 0, 0, open_amount, posted_amount FROM t)
           SELECT a.id, a.kind, COALESCE(a.code, a.user_id::text),
                  a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted,
                  COALESCE(sum(l.dp), 0), COALESCE(sum(l.dd), 0), COALESCE(sum(l.cp), 0), COALESCE(sum(l.cd), 0)
           FROM ledger_accounts a LEFT JOIN legs l ON l.account_id = a.id
           GROUP BY a.id
           HAVING (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
               <> (COALESCE(sum(l.dp), 0), COALESCE(sum(l.dd), 0), COALESCE(sum(l.cp), 0), COALESCE(sum(l.cd), 0))
           ORDER BY a.id"""
    ).fetchall()
    return [AccountDrift(int(r[0]), r[1], r[2], (int(r[3]), int(r[4]), int(r[5]), int(r[6])),
                         (int(r[7]), int(r[8]), int(r[9]), int(r[10]))) for r in rows]


def unsound_wallets(conn: Conn) -> list[tuple[int, str, int, bool]]:
    """Wallets that are overdrawn or not protected: ``(account_id, user_id, available, no_overdraft)``."""
    rows = conn.execute(
        """SELECT id, user_id::text, credits_posted - debits_posted - debits_pending, no_overdraft
           FROM ledger_accounts
           WHERE kind = 'wallet' AND (credits_posted - debits_posted - debits_pending < 0 OR NOT no_overdraft)
           ORDER BY id"""
    ).fetchall()
    return [(int(r[0]), r[1], int(r[2]), bool(r[3])) for r in rows]


def unsound_resolutions(conn: Conn) -> list[tuple[str, str, str]]:
    """Posts and voids that do not match their hold: ``(transfer_id, kind, what is wrong)``."""
    rows = conn.execute(
        """SELECT r.id, r.kind,
                  CASE WHEN h.kind <> 'pending' THEN 'resolves ' || h.id || ', which is not a hold'
                       WHEN (r.debit_account_id, r.credit_account_id) <> (h.debit_account_id, h.credit_account_id)
                           THEN 'moves between other accounts than its hold ' || h.id
                       WHEN r.kind = 'void' AND r.amount <> h.amount
                           THEN 'voids ' || r.amount || ' of a hold of ' || h.amount
                       WHEN r.kind = 'post' AND r.amount > h.amount
                           THEN 'posts ' || r.amount || ', more than the hold of ' || h.amount
                  END
           FROM ledger_transfers r JOIN ledger_transfers h ON h.id = r.pending_id
           WHERE r.kind IN ('post', 'void') AND (
                 h.kind <> 'pending'
              OR (r.debit_account_id, r.credit_account_id) <> (h.debit_account_id, h.credit_account_id)
              OR (r.kind = 'void' AND r.amount <> h.amount)
              OR (r.kind = 'post' AND r.amount > h.amount))
           ORDER BY r.id"""
    ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def session_holds(conn: Conn) -> Iterator[SessionHold]:
    """Every charging session with its hold and resolution, streamed (a server-side cursor)."""
    with conn.cursor(name="ledger_check_sessions") as cur:
        cur.itersize = SESSION_BATCH
        cur.execute(
            """SELECT s.id::text, s.user_id::text, s.status, s.energy_wh, s.price_per_kwh_tyiyn,
                      s.session_fee_tyiyn, s.hold_tyiyn, s.charged_tyiyn, s.revenue_account_id, w.id,
                      h.kind, h.amount, h.debit_account_id, h.credit_account_id, r.kind, r.amount
               FROM charging_sessions s
               LEFT JOIN ledger_accounts w ON w.kind = 'wallet' AND w.user_id = s.user_id
               LEFT JOIN ledger_transfers h ON h.id = s.hold_transfer_id
               LEFT JOIN ledger_transfers r ON r.pending_id = s.hold_transfer_id
               ORDER BY s.created_at, s.id"""
        )
        for row in cur:
            yield SessionHold(*row)
