"""``check_ledger`` passes a sound ledger and names every kind of damage readably.

Each corrupted case is built with SQL on a real database: wrong session charges, resolutions that
do not match, account totals edited behind the triggers' back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from csms.services.ledger import MAX_PROBLEMS, LedgerReport, check_ledger
from csms.services.tariffs import Price, energy_cost
from csms.store import ledger
from tests.ledger_check import assert_ledger_clean
from tests.ledger_scenarios import fresh_id, funded_driver, insert_session, owner_account

if TYPE_CHECKING:
    from csms.store.db import Conn, Database

PRICE = 1_500  # tyiyn per kWh
FEE = 200


def cost(wh: int) -> int:
    return energy_cost(wh, Price(PRICE, FEE))


async def check(db: Database) -> LedgerReport:
    return await db.run(check_ledger)


async def test_a_sound_ledger_with_sessions_in_every_state(db: Database) -> None:
    driver, _ = await funded_driver(db, 200_000)
    _, revenue = await owner_account(db)

    def sessions(conn: Conn) -> None:
        billed = dict(user_id=driver, revenue_account=revenue, price_per_kwh=PRICE, fee=FEE, hold=20_000)
        # Completed under the hold: charged the cost (7,777 Wh -> ceil(11,665.5) + 200 = 11,866).
        insert_session(conn, **billed, energy_wh=7_777, charged=cost(7_777), settle=cost(7_777))
        # Completed over the hold: charged the hold, no more.
        insert_session(conn, **billed, energy_wh=50_000, charged=20_000, settle=20_000)
        # Completed free of charge (no energy, no fee): charged 0 and the hold voided.
        insert_session(conn, user_id=driver, revenue_account=revenue, price_per_kwh=PRICE, fee=0, hold=5_000,
                       charged=0, settle=0)
        insert_session(conn, **billed, status="failed", settle=0)
        for status in ("requested", "accepted", "charging", "stopping"):
            insert_session(conn, **billed, status=status, energy_wh=1_000)

    await db.run(sessions)
    assert cost(7_777) == 11_866
    report = await assert_ledger_clean(db)
    assert report.sessions_checked == 8
    assert report.open_holds == 4
    assert report.pending_tyiyn == 80_000
    assert report.posted_sum == 0
    assert "ledger consistent" in report.summary()
    assert report.render() == report.summary()


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("overcharged", "charged 12000 tyiyn, but 7777 Wh at 1500/kWh + fee 200 costs 11866, capped by the hold "
                        "of 20000: 11866"),
        ("undercharged_over_hold", "charged 19000 tyiyn, but 50000 Wh at 1500/kWh + fee 200 costs 75200, "
                                   "capped by the hold of 20000: 20000"),
        ("posted_other_amount", "charged 11866, but the hold is post 11000"),
        ("not_posted", "charged 11866, but the hold is still pending"),
        ("voided_but_charged", "charged 11866, but the hold is void 20000"),
        ("zero_but_posted", "charged 0, so the hold must be voided, but it is post 100"),
        ("no_charge_recorded", "completed without charged_tyiyn"),
        ("failed_posted", "a failed session's hold must be voided, but it is post 500"),
        ("failed_pending", "a failed session's hold must be voided, but it is still pending"),
        ("active_voided", "the session is still open but its hold was already resolved (void 20000)"),
        ("active_posted", "the session is still open but its hold was already resolved (post 20000)"),
    ],
)
async def test_wrong_session_billing_is_reported(db: Database, case: str, expected: str) -> None:
    driver, _ = await funded_driver(db, 100_000)
    _, revenue = await owner_account(db)
    billed = dict(user_id=driver, revenue_account=revenue, price_per_kwh=PRICE, fee=FEE, hold=20_000)
    due = cost(7_777)
    setups = {
        "overcharged": dict(energy_wh=7_777, charged=12_000, settle=12_000),
        "undercharged_over_hold": dict(energy_wh=50_000, charged=19_000, settle=19_000),
        "posted_other_amount": dict(energy_wh=7_777, charged=due, settle=11_000),
        "not_posted": dict(energy_wh=7_777, charged=due),
        "voided_but_charged": dict(energy_wh=7_777, charged=due, settle=0),
        "zero_but_posted": dict(energy_wh=0, charged=0, settle=100),
        "no_charge_recorded": dict(energy_wh=10, settle=215),
        "failed_posted": dict(status="failed", settle=500),
        "failed_pending": dict(status="failed"),
        "active_voided": dict(status="charging", settle=0),
        "active_posted": dict(status="stopping", settle=20_000),
    }
    # A sound session next to it must not be reported.
    await db.run(lambda conn: insert_session(conn, **billed, energy_wh=100, charged=cost(100), settle=cost(100)))
    if case == "zero_but_posted":
        billed["fee"] = 0
    session_id, _ = await db.run(lambda conn: insert_session(conn, **billed, **setups[case]))
    report = await check(db)
    assert not report.ok
    status = setups[case].get("status", "completed")
    assert report.problems == [f"session {session_id} ({status}): {expected}"]
    assert report.sessions_checked == 2
    assert "1 PROBLEM(S)" in report.render()


async def test_a_session_whose_hold_is_not_what_it_claims(db: Database) -> None:
    driver, _ = await funded_driver(db, 100_000)
    other_driver, _ = await funded_driver(db, 100_000)
    _, revenue = await owner_account(db)
    _, other_revenue = await owner_account(db)

    def corrupt(conn: Conn) -> list[str]:
        ids = [insert_session(conn, user_id=driver, revenue_account=revenue, status="charging")[0]
               for _ in range(4)]
        conn.execute("UPDATE charging_sessions SET hold_tyiyn = 999 WHERE id = %s", (ids[0],))
        conn.execute("UPDATE charging_sessions SET revenue_account_id = %s WHERE id = %s", (other_revenue, ids[1]))
        conn.execute("UPDATE charging_sessions SET user_id = %s WHERE id = %s", (other_driver, ids[2]))
        single = fresh_id()
        ledger.transfer(conn, single, ledger.user_account(conn, driver), revenue, 10)
        conn.execute("UPDATE charging_sessions SET hold_transfer_id = %s WHERE id = %s", (single, ids[3]))
        return ids

    ids = await db.run(corrupt)
    report = await check(db)
    # Sessions are checked in creation order; these four were created in one transaction (same time).
    assert sorted(report.problems) == sorted([
        f"session {ids[0]} (charging): hold_tyiyn is 999 but the hold transfer is for 1000",
        f"session {ids[1]} (charging): the hold credits account {revenue}, not the session's revenue account "
        f"{other_revenue}",
        f"session {ids[2]} (charging): the hold does not debit the driver's wallet",
        f"session {ids[3]} (charging): its hold is a single transfer",
    ])


async def test_account_totals_edited_behind_the_ledgers_back(db: Database) -> None:
    driver, wallet = await funded_driver(db, 10_000)
    _, revenue = await owner_account(db)
    await db.run(ledger.hold, "h", wallet, revenue, 3_000)

    def corrupt(conn: Conn) -> None:
        conn.execute("UPDATE ledger_accounts SET credits_posted = credits_posted + 100 WHERE id = %s", (wallet,))
        conn.execute("UPDATE ledger_accounts SET credits_pending = credits_pending + 5 WHERE id = %s", (revenue,))

    await db.run(corrupt)
    report = await check(db)
    assert report.problems == [
        "posted balances sum to 100 tyiyn, not 0",
        "pending credits (3005) differ from pending debits (3000)",
        f"account {wallet} (wallet {driver}): credits_posted 10100 but transfers say 10000",
        f"account {revenue} (owner_revenue {(await owner_of(db, revenue))}): credits_pending 3005 but transfers "
        "say 3000",
    ]


async def owner_of(db: Database, account: int) -> str:
    row = await db.run(lambda conn: conn.execute("SELECT user_id::text FROM ledger_accounts WHERE id = %s",
                                                 (account,)).fetchone())
    assert row is not None
    return str(row[0])


async def test_an_overdrawn_or_unprotected_wallet(db: Database) -> None:
    driver, wallet = await funded_driver(db, 1_000)

    def corrupt(conn: Conn) -> None:
        # Only possible by switching the protection off first (the CHECK refuses it otherwise).
        conn.execute("UPDATE ledger_accounts SET no_overdraft = false, debits_pending = 1500 WHERE id = %s",
                     (wallet,))

    await db.run(corrupt)
    report = await check(db)
    assert f"wallet {wallet} of user {driver} is overdrawn: available -500 tyiyn" in report.problems
    assert f"wallet {wallet} of user {driver} has no overdraft protection" in report.problems
    assert f"account {wallet} (wallet {driver}): debits_pending 1500 but transfers say 0" in report.problems


async def test_resolutions_that_bypassed_the_trigger(db: Database) -> None:
    _, wallet = await funded_driver(db, 10_000)
    _, revenue = await owner_account(db)
    await db.run(ledger.hold, "h1", wallet, revenue, 1_000)
    await db.run(ledger.hold, "h2", wallet, revenue, 1_000)
    await db.run(ledger.hold, "h3", wallet, revenue, 1_000)

    def corrupt(conn: Conn) -> None:
        # With the validating trigger switched off, a post may exceed its hold and a void may lie.
        insert = """INSERT INTO ledger_transfers (id, kind, debit_account_id, credit_account_id, amount, pending_id)
                    VALUES (%s, %s, %s, %s, %s, %s)"""
        conn.execute("ALTER TABLE ledger_transfers DISABLE TRIGGER ledger_transfers_resolve")
        conn.execute(insert, ("p1", "post", wallet, revenue, 1500, "h1"))
        conn.execute(insert, ("v2", "void", wallet, revenue, 10, "h2"))
        # With every trigger off, a post can even move between other accounts (and no totals change).
        conn.execute("ALTER TABLE ledger_transfers DISABLE TRIGGER USER")
        conn.execute(insert, ("p3", "post", revenue, wallet, 1000, "h3"))
        conn.execute("ALTER TABLE ledger_transfers ENABLE TRIGGER USER")

    await db.run(corrupt)
    report = await check(db)
    assert "post p1 posts 1500, more than the hold of 1000" in report.problems
    assert "void v2 voids 10 of a hold of 1000" in report.problems
    assert "post p3 moves between other accounts than its hold h3" in report.problems
    # p3 changed no totals, so the recomputed ones disagree with the stored ones.
    assert any(p.startswith(f"account {wallet} (wallet ") for p in report.problems)


def test_a_long_report_lists_the_first_problems_and_counts_the_rest() -> None:
    report = LedgerReport()
    for i in range(MAX_PROBLEMS + 5):
        report.problem(f"problem {i}")
    assert len(report.problems) == MAX_PROBLEMS
    assert not report.ok
    text = report.render()
    assert f"{MAX_PROBLEMS + 5} PROBLEM(S)" in text
    assert text.endswith("... and 5 more")
