"""Building ledger scenarios in tests: funded wallets, owner revenue accounts, billed sessions.

Everything goes through the real ledger store (``csms.store.ledger``) on the test's database;
sessions are plain ``charging_sessions`` rows, so a test can build exactly the case it checks,
including wrong ones.
"""

from __future__ import annotations

import itertools
import os
from typing import TYPE_CHECKING

from csms.store import ledger
from tests.conftest import make_user

if TYPE_CHECKING:
    from csms.store.db import Conn, Database

_ids = itertools.count()


def fresh_id(prefix: str = "t") -> str:
    """A transfer id (or other name) that nothing else in the test run uses."""
    return f"{prefix}:{os.getpid()}:{next(_ids)}"


def fund(conn: Conn, user_id: str, amount: int) -> int:
    """Credit ``amount`` tyiyn from the adjustments account to the user's wallet; return the wallet id."""
    wallet = ledger.user_account(conn, user_id)
    adjustments = ledger.system_account(conn, ledger.ADJUSTMENTS)
    assert ledger.transfer(conn, fresh_id("fund"), adjustments, wallet, amount, reason="test funds")
    return wallet


async def funded_driver(db: Database, amount: int) -> tuple[str, int]:
    """A new driver whose wallet holds ``amount`` tyiyn: ``(user_id, wallet account id)``."""
    user_id, _ = await make_user(db, "driver")
    wallet = await db.run(fund, user_id, amount)
    return user_id, wallet


async def owner_account(db: Database) -> tuple[str, int]:
    """A new owner and their revenue account: ``(user_id, account id)``."""
    user_id, _ = await make_user(db, "owner")
    account = await db.run(ledger.user_account, user_id, "owner_revenue")
    return user_id, account


def insert_session(conn: Conn, *, user_id: str, revenue_account: int, status: str = "completed",
                   energy_wh: int = 0, price_per_kwh: int = 0, fee: int = 0, hold: int = 1000,
                   charged: int | None = None, settle: int | None = None) -> tuple[str, str]:
    """A charging session with its hold placed on the user's wallet; returns ``(session id, hold id)``.

    Args:
        charged: the session's ``charged_tyiyn``, as the session engine would have stored it.
        settle: post the hold for this amount (0 voids it); None leaves the hold pending.
    """
    n = next(_ids)
    station = f"LEDGER-{os.getpid()}-{n}"
    conn.execute("INSERT INTO stations (id) VALUES (%s)", (station,))
    hold_id = fresh_id("hold")
    assert ledger.hold(conn, hold_id, ledger.user_account(conn, user_id), revenue_account, hold, reason="charging")
    row = conn.execute(
        """INSERT INTO charging_sessions (user_id, station_id, connector_id, status, id_tag, limit_tyiyn,
                                          price_per_kwh_tyiyn, session_fee_tyiyn, hold_tyiyn, hold_transfer_id,
                                          revenue_account_id, energy_wh, cost_tyiyn, charged_tyiyn)
           VALUES (%s, %s, 1, %s, %s, %s, %s, %s, %s, %s, %s, %s, 0, %s) RETURNING id::text""",
        (user_id, station, status, f"S{os.getpid() % 1000}-{n}", hold, price_per_kwh, fee, hold, hold_id,
         revenue_account, energy_wh, charged),
    ).fetchone()
    assert row is not None
    if settle is not None:
        assert ledger.post(conn, fresh_id("settle"), hold_id, settle, reason="charging")
    return row[0], hold_id
