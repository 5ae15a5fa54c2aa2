"""The database itself enforces the ledger's rules, whoever writes and however concurrently.

Some tests write through ``csms.store.ledger``; others write raw SQL to show that the refusal comes
from PostgreSQL (constraints and triggers), not from Python.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg
import pytest
import trio

from csms.store import ledger
from csms.store.db import open_database
from tests.ledger_check import assert_ledger_clean
from tests.ledger_scenarios import fresh_id, fund, funded_driver, owner_account

if TYPE_CHECKING:
    from csms.store.db import Conn, Database


def raw_insert(conn: Conn, transfer_id: str, kind: str, debit: int, credit: int, amount: int,
               pending_id: str | None = None) -> Any:
    """INSERT a transfer with plain SQL, bypassing the store's checks; returns the RETURNING row."""
    return conn.execute(
        """INSERT INTO ledger_transfers (id, kind, debit_account_id, credit_account_id, amount, pending_id)
           VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING RETURNING id""",
        (transfer_id, kind, debit, credit, amount, pending_id),
    ).fetchone()


async def test_replaying_a_transfer_id_moves_nothing(db: Database) -> None:
    user, wallet = await funded_driver(db, 10_000)
    _, revenue = await owner_account(db)

    def scenario(conn: Conn) -> list[bool]:
        first = [
            ledger.transfer(conn, "pay-1", wallet, revenue, 1_000),
            ledger.hold(conn, "hold-1", wallet, revenue, 3_000),
            ledger.post(conn, "post-1", "hold-1", 2_000),
            ledger.hold(conn, "hold-2", wallet, revenue, 500),
            ledger.void(conn, "void-2", "hold-2"),
        ]
        replays = [
            ledger.transfer(conn, "pay-1", wallet, revenue, 1_000),
            ledger.hold(conn, "hold-1", wallet, revenue, 3_000),
            ledger.post(conn, "post-1", "hold-1", 2_000),
            ledger.hold(conn, "hold-2", wallet, revenue, 500),
            ledger.void(conn, "void-2", "hold-2"),
            # The same id with other values is still the first transfer: ids are the idempotency key.
            ledger.transfer(conn, "pay-1", wallet, revenue, 9_999),
        ]
        return first + replays

    assert await db.run(scenario) == [True] * 5 + [False] * 6
    # A replay in a later transaction (a retry after a cancelled call that had committed) too.
    assert await db.run(lambda conn: ledger.transfer(conn, "pay-1", wallet, revenue, 1_000)) is False
    assert await db.run(ledger.wallet_available, user) == 10_000 - 1_000 - 2_000
    got = await db.run(ledger.balance, revenue)
    assert (got.credits_posted, got.credits_pending) == (3_000, 0)
    await assert_ledger_clean(db)


async def test_raw_sql_replay_is_a_no_op_in_the_database(db: Database) -> None:
    """ON CONFLICT DO NOTHING skips a replayed row; the balance trigger must not count it (migration 0006)."""
    user, wallet = await funded_driver(db, 5_000)
    _, revenue = await owner_account(db)

    def replay(conn: Conn) -> list[Any]:
        return [raw_insert(conn, "raw-1", "single", wallet, revenue, 700) for _ in range(3)]

    assert await db.run(replay) == [("raw-1",), None, None]
    assert await db.run(ledger.wallet_available, user) == 4_300
    await assert_ledger_clean(db)


async def test_concurrent_replays_apply_once(db_url: str, db: Database) -> None:
    user, wallet = await funded_driver(db, 5_000)
    _, revenue = await owner_account(db)
    results: list[bool] = []
    async with open_database(db_url, size=10) as wide:

        async def write() -> None:
            results.append(await wide.run(ledger.transfer, "same-id", wallet, revenue, 400))

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(write)
    assert sorted(results) == [False] * 9 + [True]
    assert await db.run(ledger.wallet_available, user) == 4_600
    await assert_ledger_clean(db)


@pytest.mark.parametrize("affordable", [0, 7, 20])
async def test_concurrent_holds_never_overdraw(db_url: str, db: Database, affordable: int) -> None:
    """20 holds at once against a balance that affords exactly ``affordable`` of them."""
    hold = 1_234
    user, wallet = await funded_driver(db, hold * affordable + hold - 1)
    _, revenue = await owner_account(db)
    outcomes: list[str] = []
    async with open_database(db_url, size=20) as wide:

        async def place(i: int) -> None:
            try:
                await wide.run(ledger.hold, f"c-hold-{i}", wallet, revenue, hold)
            except ledger.InsufficientFunds:
                outcomes.append("refused")
            else:
                outcomes.append("held")

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(place, i)
    assert outcomes.count("held") == affordable
    assert outcomes.count("refused") == 20 - affordable
    assert await db.run(ledger.wallet_available, user) == hold - 1
    await assert_ledger_clean(db)


async def test_concurrent_spending_of_mixed_sizes_stays_within_the_balance(db_url: str, db: Database) -> None:
    user, wallet = await funded_driver(db, 10_000)
    _, revenue = await owner_account(db)
    amounts = [300 + 97 * i for i in range(20)]  # 300..2143, far more than 10,000 in total
    spent: list[int] = []
    async with open_database(db_url, size=20) as wide:

        async def spend(i: int, amount: int) -> None:
            write = ledger.hold if i % 2 else ledger.transfer
            try:
                await wide.run(write, f"mix-{i}", wallet, revenue, amount)
            except ledger.InsufficientFunds:
                return
            spent.append(amount)

        async with trio.open_nursery() as nursery:
            for i, amount in enumerate(amounts):
                nursery.start_soon(spend, i, amount)
    assert 0 < sum(spent) <= 10_000
    # Whatever was refused did not fit in what was left when it ran.
    assert await db.run(ledger.wallet_available, user) == 10_000 - sum(spent)
    assert 10_000 - sum(spent) < min(set(amounts) - set(spent))
    await assert_ledger_clean(db)


async def test_the_database_refuses_an_overdraft_written_in_raw_sql(db: Database) -> None:
    _, wallet = await funded_driver(db, 1_000)
    _, revenue = await owner_account(db)
    for kind in ("single", "pending"):
        with pytest.raises(psycopg.errors.CheckViolation) as err:
            await db.run(raw_insert, fresh_id(), kind, wallet, revenue, 1_001)
        assert err.value.diag.constraint_name == "ledger_accounts_no_overdraft"
    # Spending exactly what is there is fine; one tyiyn more is not.
    await db.run(raw_insert, fresh_id(), "pending", wallet, revenue, 600)
    await db.run(raw_insert, fresh_id(), "single", wallet, revenue, 400)
    with pytest.raises(psycopg.errors.CheckViolation):
        await db.run(raw_insert, fresh_id(), "single", wallet, revenue, 1)
    await assert_ledger_clean(db)


async def test_amounts_must_be_positive(db: Database) -> None:
    _, wallet = await funded_driver(db, 1_000)
    _, revenue = await owner_account(db)
    for amount in (0, -5):
        with pytest.raises(psycopg.errors.CheckViolation):
            await db.run(raw_insert, fresh_id(), "single", revenue, wallet, amount)
        with pytest.raises(ledger.LedgerError):
            await db.run(ledger.transfer, fresh_id(), revenue, wallet, amount)
        with pytest.raises(ledger.LedgerError):
            await db.run(ledger.hold, fresh_id(), wallet, revenue, amount)
    await db.run(ledger.hold, "h", wallet, revenue, 100)
    with pytest.raises(ledger.LedgerError):
        await db.run(ledger.post, fresh_id(), "h", -1)
    # A transfer from an account to itself is refused too.
    with pytest.raises(psycopg.errors.CheckViolation):
        await db.run(raw_insert, fresh_id(), "single", revenue, revenue, 10)
    assert (await db.run(ledger.balance, wallet)).available == 900
    await assert_ledger_clean(db)


async def test_a_post_never_exceeds_its_hold_and_returns_the_rest(db: Database) -> None:
    user, wallet = await funded_driver(db, 5_000)
    _, revenue = await owner_account(db)
    await db.run(ledger.hold, "h", wallet, revenue, 2_000)
    with pytest.raises(ledger.PostExceedsHold):
        await db.run(ledger.post, "p-too-much", "h", 2_001)
    with pytest.raises(psycopg.errors.CheckViolation):
        await db.run(raw_insert, "p-raw", "post", wallet, revenue, 2_001, "h")
    assert await db.run(ledger.pending_resolution, "h") is None
    assert await db.run(ledger.wallet_available, user) == 3_000
    assert await db.run(ledger.post, "p", "h", 1_999)
    assert await db.run(ledger.pending_resolution, "h") == ("post", 1_999)
    assert await db.run(ledger.wallet_available, user) == 5_000 - 1_999
    w = await db.run(ledger.balance, wallet)
    assert (w.debits_pending, w.debits_posted, w.posted) == (0, 1_999, 5_000 - 1_999)
    r = await db.run(ledger.balance, revenue)
    assert (r.credits_pending, r.credits_posted) == (0, 1_999)
    await assert_ledger_clean(db)


async def test_a_resolution_always_moves_between_the_holds_own_accounts(db: Database) -> None:
    _, wallet = await funded_driver(db, 5_000)
    _, revenue = await owner_account(db)
    _, other = await owner_account(db)
    await db.run(ledger.hold, "h", wallet, revenue, 1_000)
    # Naming other accounts in raw SQL does not redirect the money: the trigger takes the hold's.
    await db.run(raw_insert, "p", "post", other, wallet, 600, "h")
    stored = await db.run(ledger.get_transfer, "p")
    assert stored is not None
    assert (stored.debit_account_id, stored.credit_account_id, stored.amount) == (wallet, revenue, 600)
    assert (await db.run(ledger.balance, other)).credits_posted == 0
    await assert_ledger_clean(db)


async def test_only_a_hold_can_be_resolved(db: Database) -> None:
    _, wallet = await funded_driver(db, 5_000)
    _, revenue = await owner_account(db)
    await db.run(ledger.transfer, "single-1", wallet, revenue, 100)
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        await db.run(raw_insert, fresh_id(), "post", wallet, revenue, 50, "single-1")
    with pytest.raises(ledger.LedgerError):
        await db.run(ledger.void, fresh_id(), "single-1")
    with pytest.raises(ledger.LedgerError):
        await db.run(ledger.post, fresh_id(), "no-such-hold", 10)
    await assert_ledger_clean(db)


async def test_a_hold_resolves_once(db: Database) -> None:
    user, wallet = await funded_driver(db, 5_000)
    _, revenue = await owner_account(db)
    await db.run(ledger.hold, "h", wallet, revenue, 1_000)
    assert await db.run(ledger.post, "p1", "h", 400)
    with pytest.raises(ledger.AlreadyResolved):
        await db.run(ledger.post, "p2", "h", 400)
    with pytest.raises(ledger.AlreadyResolved):
        await db.run(ledger.void, "v1", "h")
    with pytest.raises(psycopg.errors.UniqueViolation):
        await db.run(raw_insert, "v-raw", "void", wallet, revenue, 1_000, "h")
    assert await db.run(ledger.post, "p1", "h", 400) is False  # the same resolution replayed
    assert await db.run(ledger.wallet_available, user) == 4_600
    await assert_ledger_clean(db)


async def test_concurrent_resolutions_of_one_hold_exactly_one_wins(db_url: str, db: Database) -> None:
    user, wallet = await funded_driver(db, 5_000)
    _, revenue = await owner_account(db)
    await db.run(ledger.hold, "h", wallet, revenue, 1_000)
    won: list[str] = []
    lost: list[str] = []
    async with open_database(db_url, size=12) as wide:

        async def resolve(i: int) -> None:
            tid = f"r-{i}"
            try:
                if i % 2:
                    await wide.run(ledger.void, tid, "h")
                else:
                    await wide.run(ledger.post, tid, "h", 100 + i)
            except ledger.AlreadyResolved:
                lost.append(tid)
            else:
                won.append(tid)

        async with trio.open_nursery() as nursery:
            for i in range(12):
                nursery.start_soon(resolve, i)
    assert len(won) == 1
    assert len(lost) == 11
    resolution = await db.run(ledger.pending_resolution, "h")
    assert resolution is not None
    expected = 5_000 if resolution[0] == "void" else 5_000 - resolution[1]
    assert await db.run(ledger.wallet_available, user) == expected
    await assert_ledger_clean(db)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_transfers SET amount = 1 WHERE id = 't'",
        "UPDATE ledger_transfers SET reason = 'edited'",
        "DELETE FROM ledger_transfers WHERE id = 't'",
        "TRUNCATE ledger_transfers CASCADE",
    ],
)
async def test_transfers_cannot_be_changed_or_deleted(db: Database, statement: str) -> None:
    user, wallet = await funded_driver(db, 5_000)
    _, revenue = await owner_account(db)
    await db.run(ledger.transfer, "t", wallet, revenue, 1_000)
    with pytest.raises(psycopg.errors.RaiseException, match="immutable"):
        await db.run(lambda conn: conn.execute(statement))
    stored = await db.run(ledger.get_transfer, "t")
    assert stored is not None
    assert (stored.amount, stored.reason) == (1_000, "")
    assert await db.run(ledger.wallet_available, user) == 4_000
    await assert_ledger_clean(db)


async def test_accounts_are_created_once_and_the_sum_of_everything_is_zero(db: Database) -> None:
    user, wallet = await funded_driver(db, 50_000)
    owner, revenue = await owner_account(db)

    def scenario(conn: Conn) -> None:
        assert ledger.user_account(conn, user) == wallet
        assert ledger.user_account(conn, owner, "owner_revenue") == revenue
        clearing = ledger.system_account(conn, "provider_clearing:test", "provider_clearing")
        assert ledger.system_account(conn, "provider_clearing:test", "provider_clearing") == clearing
        operator = ledger.system_account(conn, ledger.OPERATOR_REVENUE)
        assert ledger.transfer(conn, "topup-1", clearing, wallet, 20_000)
        for i in range(5):
            assert ledger.hold(conn, f"h{i}", wallet, revenue, 3_000)
        assert ledger.post(conn, "p0", "h0", 2_500)
        assert ledger.post(conn, "p1", "h1", 0)  # 0 voids
        assert ledger.void(conn, "v2", "h2")
        assert ledger.post(conn, "p3", "h3", 3_000)
        assert ledger.transfer(conn, "fee-1", revenue, operator, 550)
        fund(conn, user, 10)

    await db.run(scenario)
    with pytest.raises(ledger.LedgerError):
        await db.run(ledger.system_account, "no-such-account")
    assert await db.run(ledger.pending_resolution, "h1") == ("void", 3_000)
    assert await db.run(ledger.wallet_available, user) == 50_000 + 20_000 - 2_500 - 3_000 - 3_000 + 10
    report = await assert_ledger_clean(db)
    assert report.posted_sum == 0
    assert report.open_holds == 1
    assert report.pending_tyiyn == 3_000
