"""A read view of wallet balances for the ``balanceChanged`` subscription.

Reads the running totals the ledger keeps in ``ledger_accounts`` (see ``csms.store.ledger``); it never
creates an account, so watching a balance writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from csms.store.views import is_uuid

if TYPE_CHECKING:
    from csms.store.db import Conn


@dataclass(frozen=True, slots=True)
class WalletTotals:
    """A wallet's balance in tyiyn: what may be spent, and what is reserved by running sessions."""

    available_tyiyn: int
    held_tyiyn: int


def wallet_totals(conn: Conn, user_id: str) -> WalletTotals:
    """A user's wallet totals (zero when the user has no wallet yet, or the id is not a UUID)."""
    if not is_uuid(user_id):
        return WalletTotals(0, 0)
    row = conn.execute(
        """SELECT credits_posted - debits_posted - debits_pending, debits_pending FROM ledger_accounts
           WHERE kind = 'wallet' AND user_id = %s""",
        (user_id,),
    ).fetchone()
    return WalletTotals(int(row[0]), int(row[1])) if row else WalletTotals(0, 0)
