"""The ledger service: checking the books, operators' balance adjustments, wallets and owner revenue.

Money is integer tyiyn. The database enforces the ledger's invariants (``migrations/0004`` and
``0006``): a transfer id is used once, a wallet never goes below zero, a hold resolves once and for no
more than it holds, transfers never change. :func:`check_ledger` verifies all of that from the outside,
plus that every charging session was billed what its tariff says (``csms.services.tariffs``, the only
place cost is computed).

Every function takes a connection and runs inside the caller's transaction (``Database.run``).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from csms.services.tariffs import Price, energy_cost
from csms.store import audit, events, ledger_integrity
from csms.store import ledger as store
from csms.store.ledger import ADJUSTMENTS, Balance, InsufficientFunds
from csms.store.sessions import OPEN_STATUSES
from csms.store.users import user_exists

if TYPE_CHECKING:
    from datetime import datetime

    from csms.store.db import Conn
    from csms.store.ledger_integrity import SessionHold

__all__ = [
    "MAX_ADJUSTMENT_TYIYN",
    "AdjustmentResult",
    "InsufficientFunds",
    "InvalidAdjustment",
    "LedgerReport",
    "TransferIdConflict",
    "UnknownUser",
    "adjust_balance",
    "adjustment_transfer_id",
    "check_ledger",
    "owner_revenue",
    "wallet_balance",
]

MAX_ADJUSTMENT_TYIYN = 10_000_000  # 100,000 som
MAX_REASON_CHARS = 500
MAX_KEY_CHARS = 200
# A report lists at most this many problems; the rest are counted.
MAX_PROBLEMS = 1000
ACTIVE_STATUSES = frozenset(OPEN_STATUSES)


class InvalidAdjustment(ValueError):
    """The adjustment's amount, reason, user id or idempotency key is malformed or out of range."""


class UnknownUser(LookupError):
    """No user has this id."""


class TransferIdConflict(Exception):
    """The transfer id (or the idempotency key it came from) was already used for a different transfer."""


# --- Balance adjustments ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdjustmentResult:
    """What an adjustment did: ``applied`` is False when the transfer id had already been applied."""

    transfer_id: str
    applied: bool
    wallet: Balance


def adjustment_transfer_id(scope: str, idempotency_key: str | None) -> str:
    """The transfer id of an adjustment: random, or derived from ``(scope, idempotency_key)``.

    The same key from the same caller (``scope``: e.g. ``api_key:<id>``) always gives the same id, so a
    retried request finds its first transfer instead of adjusting twice. Hashing keeps the id short
    and keeps the client's key out of the ledger.

    Raises:
        InvalidAdjustment: the key is empty or longer than 200 characters.
    """
    if idempotency_key is None:
        return f"adjust:{uuid.uuid4()}"
    if not 1 <= len(idempotency_key) <= MAX_KEY_CHARS:
        raise InvalidAdjustment(f"an Idempotency-Key has 1 to {MAX_KEY_CHARS} characters")
    digest = hashlib.sha256(f"{scope}\0{idempotency_key}".encode()).hexdigest()
    return f"adjust:{digest}"


def _validate_adjustment(user_id: str, amount_tyiyn: int, reason: str) -> str:
    """The cleaned reason, or InvalidAdjustment."""
    try:
        uuid.UUID(user_id)
    except ValueError:
        raise InvalidAdjustment("userId is not a valid user id") from None
    if isinstance(amount_tyiyn, bool) or not isinstance(amount_tyiyn, int):
        raise InvalidAdjustment("the amount must be an integer number of tyiyn")
    if amount_tyiyn == 0 or abs(amount_tyiyn) > MAX_ADJUSTMENT_TYIYN:
        raise InvalidAdjustment(f"the amount must be non-zero and at most {MAX_ADJUSTMENT_TYIYN} tyiyn either way")
    cleaned = reason.strip()
    if not 1 <= len(cleaned) <= MAX_REASON_CHARS:
        raise InvalidAdjustment(f"a reason of 1 to {MAX_REASON_CHARS} characters is required")
    if "\x00" in cleaned:  # PostgreSQL text cannot store it; a clear error instead of an internal one
        raise InvalidAdjustment("the reason may not contain U+0000")
    return cleaned


def adjust_balance(conn: Conn, *, actor_kind: str, actor_id: str, user_id: str, amount_tyiyn: int, reason: str,
                   transfer_id: str) -> AdjustmentResult:
    """Credit (amount > 0) or debit (amount < 0) a user's wallet against the adjustments account.

    The transfer, its audit record (who, why, how much) and a ``balance`` event are written in the
    caller's transaction, so they commit together or not at all. Writing the same ``transfer_id``
    again changes nothing and records nothing: it returns the current balance with ``applied=False``.

    Raises:
        InvalidAdjustment: zero or out-of-range amount, missing or too long reason, malformed user id.
        UnknownUser: no such user.
        InsufficientFunds: a debit larger than the wallet's available balance.
        TransferIdConflict: ``transfer_id`` already names a different transfer.
    """
    cleaned = _validate_adjustment(user_id, amount_tyiyn, reason)
    if not user_exists(conn, user_id):
        raise UnknownUser(user_id)
    wallet = store.user_account(conn, user_id)
    adjustments = store.system_account(conn, ADJUSTMENTS)
    debit, credit = (adjustments, wallet) if amount_tyiyn > 0 else (wallet, adjustments)
    amount = abs(amount_tyiyn)
    applied = store.transfer(conn, transfer_id, debit, credit, amount, reason=cleaned,
                             metadata={"actor_kind": actor_kind, "actor_id": actor_id})
    if not applied:
        existing = store.get_transfer(conn, transfer_id)
        assert existing is not None
        same = (existing.kind, existing.debit_account_id, existing.credit_account_id, existing.amount,
                existing.reason) == ("single", debit, credit, amount, cleaned)
        if not same:
            raise TransferIdConflict(transfer_id)
        return AdjustmentResult(transfer_id, False, store.balance(conn, wallet))
    audit.record(conn, actor_kind=actor_kind, actor_id=actor_id, action="ledger.adjust", target=user_id,
                 detail={"transfer_id": transfer_id, "amount_tyiyn": amount_tyiyn, "reason": cleaned})
    events.notify(conn, "balance", user_id=user_id)
    return AdjustmentResult(transfer_id, True, store.balance(conn, wallet))


# --- Reads -----------------------------------------------------------------------------------------


def wallet_balance(conn: Conn, user_id: str) -> Balance | None:
    """A user's wallet totals (all zero if they never had a wallet), or None if there is no such user."""
    if not user_exists(conn, user_id):
        return None
    account = store.find_user_account(conn, user_id)
    return store.balance(conn, account) if account is not None else Balance(0, 0, 0, 0, 0)


def owner_revenue(conn: Conn, owner_id: str, start: datetime, end: datetime) -> tuple[int, int]:
    """``(tyiyn, sessions)`` credited to an owner's revenue account in ``[start, end)`` (0, 0 if none)."""
    account = store.find_user_account(conn, owner_id, "owner_revenue")
    if account is None:
        return 0, 0
    return store.credited_between(conn, account, start, end)


# --- The check -------------------------------------------------------------------------------------


@dataclass
class LedgerReport:
    """The outcome of :func:`check_ledger`: the ledger's size and every problem found, readably."""

    accounts: int = 0
    transfers: int = 0
    posted_sum: int = 0
    pending_tyiyn: int = 0
    open_holds: int = 0
    sessions_checked: int = 0
    problems: list[str] = field(default_factory=list)
    unlisted: int = 0  # problems beyond MAX_PROBLEMS, counted but not listed

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems and not self.unlisted

    def problem(self, text: str) -> None:
        """Record one problem."""
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
        else:
            self.unlisted += 1

    def summary(self) -> str:
        """One line: the size of the ledger and the verdict."""
        verdict = "consistent" if self.ok else f"{len(self.problems) + self.unlisted} PROBLEM(S)"
        return (f"ledger {verdict}: {self.accounts} accounts, {self.transfers} transfers, "
                f"posted balances sum to {self.posted_sum} tyiyn, {self.open_holds} open hold(s) of "
                f"{self.pending_tyiyn} tyiyn in total, {self.sessions_checked} charging session(s) checked")

    def render(self) -> str:
        """The summary followed by one line per problem."""
        lines = [self.summary(), *(f"  - {p}" for p in self.problems)]
        if self.unlisted:
            lines.append(f"  ... and {self.unlisted} more")
        return "\n".join(lines)


def check_ledger(conn: Conn) -> LedgerReport:
    """Verify the books; run it as its own transaction (``db.run(check_ledger)``).

    Checks, on one read-only snapshot:

    - Σ over accounts of (credits_posted - debits_posted) is 0, and Σ credits_pending = Σ debits_pending;
    - every account's totals equal the sums recomputed from the transfers;
    - no wallet has a negative available balance or lacks overdraft protection;
    - every post and void matches its hold;
    - every charging session's hold is a hold of ``hold_tyiyn`` from the driver's wallet to the
      session's revenue account; a completed session charged
      ``min(hold, energy_cost(energy, tariff))`` and its hold was posted for exactly that (voided
      when it is 0); a failed session's hold was voided; an active session's hold is still open.
    """
    ledger_integrity.snapshot(conn)
    totals = ledger_integrity.totals(conn)
    report = LedgerReport(accounts=totals.accounts, transfers=totals.transfers, posted_sum=totals.posted_sum,
                          pending_tyiyn=totals.debits_pending, open_holds=totals.open_holds)
    if totals.posted_sum != 0:
        report.problem(f"posted balances sum to {totals.posted_sum} tyiyn, not 0")
    if totals.credits_pending != totals.debits_pending:
        report.problem(f"pending credits ({totals.credits_pending}) differ from pending debits "
                       f"({totals.debits_pending})")
    for drift in ledger_integrity.drifted_accounts(conn):
        names = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
        diffs = ", ".join(f"{n} {s} but transfers say {r}"
                          for n, s, r in zip(names, drift.stored, drift.recomputed, strict=True) if s != r)
        report.problem(f"account {drift.account_id} ({drift.kind} {drift.owner}): {diffs}")
    for account_id, user_id, available, protected in ledger_integrity.unsound_wallets(conn):
        if available < 0:
            report.problem(f"wallet {account_id} of user {user_id} is overdrawn: available {available} tyiyn")
        if not protected:
            report.problem(f"wallet {account_id} of user {user_id} has no overdraft protection")
    for transfer_id, kind, what in ledger_integrity.unsound_resolutions(conn):
        report.problem(f"{kind} {transfer_id} {what}")
    for session in ledger_integrity.session_holds(conn):
        report.sessions_checked += 1
        for text in _session_problems(session):
            report.problem(f"session {session.session_id} ({session.status}): {text}")
    return report


def _session_problems(s: SessionHold) -> list[str]:
    """What is wrong with one session's money, if anything."""
    if s.hold_kind != "pending":
        return ["its hold transfer is missing" if s.hold_kind is None else f"its hold is a {s.hold_kind} transfer"]
    found = []
    if s.hold_amount != s.hold_tyiyn:
        found.append(f"hold_tyiyn is {s.hold_tyiyn} but the hold transfer is for {s.hold_amount}")
    if s.hold_debit_account_id != s.wallet_account_id:
        found.append("the hold does not debit the driver's wallet")
    if s.hold_credit_account_id != s.revenue_account_id:
        found.append(f"the hold credits account {s.hold_credit_account_id}, "
                     f"not the session's revenue account {s.revenue_account_id}")
    resolution = "still pending" if s.resolution_kind is None else f"{s.resolution_kind} {s.resolution_amount}"
    if s.status in ACTIVE_STATUSES:
        if s.resolution_kind is not None:
            found.append(f"the session is still open but its hold was already resolved ({resolution})")
    elif s.status == "failed":
        if s.resolution_kind != "void":
            found.append(f"a failed session's hold must be voided, but it is {resolution}")
    elif s.status == "completed":
        found.extend(_completed_problems(s, resolution))
    return found


def _completed_problems(s: SessionHold, resolution: str) -> list[str]:
    if s.charged_tyiyn is None:
        return ["completed without charged_tyiyn"]
    found = []
    try:
        cost = energy_cost(s.energy_wh, Price(s.price_per_kwh_tyiyn, s.session_fee_tyiyn))
    except ValueError:
        return [f"energy {s.energy_wh} Wh or its tariff is negative"]
    due = min(s.hold_tyiyn, cost)
    if s.charged_tyiyn != due:
        found.append(f"charged {s.charged_tyiyn} tyiyn, but {s.energy_wh} Wh at {s.price_per_kwh_tyiyn}/kWh "
                     f"+ fee {s.session_fee_tyiyn} costs {cost}, capped by the hold of {s.hold_tyiyn}: {due}")
    if s.charged_tyiyn == 0:
        if s.resolution_kind != "void":
            found.append(f"charged 0, so the hold must be voided, but it is {resolution}")
    elif (s.resolution_kind, s.resolution_amount) != ("post", s.charged_tyiyn):
        found.append(f"charged {s.charged_tyiyn}, but the hold is {resolution}")
    return found
