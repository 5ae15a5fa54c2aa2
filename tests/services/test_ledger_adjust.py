"""Operators' balance adjustments: audited, announced, idempotent, refused when they would overdraw."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
import trio

from csms.services import ledger as service
from csms.store import ledger
from csms.store.db import open_database
from csms.store.events import CHANNEL
from tests.conftest import make_user
from tests.ledger_check import assert_ledger_clean
from tests.ledger_scenarios import funded_driver, owner_account

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from csms.store.db import Conn, Database

ACTOR = {"actor_kind": "api_key", "actor_id": "key-1"}


def adjust(user_id: str, amount: int, reason: str = "goodwill", transfer_id: str = "adj-1"
           ) -> Callable[[Conn], service.AdjustmentResult]:
    def run(conn: Conn) -> service.AdjustmentResult:
        return service.adjust_balance(conn, **ACTOR, user_id=user_id, amount_tyiyn=amount, reason=reason,
                                      transfer_id=transfer_id)
    return run


def audit_rows(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT actor_kind, actor_id, action, target, detail FROM audit_log ORDER BY id").fetchall()


class Listener:
    """A LISTEN connection on the events channel, read in a worker thread."""

    def __init__(self, db_url: str) -> None:
        self.conn = psycopg.connect(db_url, autocommit=True)
        self.conn.execute(f"LISTEN {CHANNEL}")

    async def events(self, expected: int) -> list[dict[str, Any]]:
        """The events received: returns once ``expected`` arrived, or after a short wait for more."""
        def read() -> list[dict[str, Any]]:
            notes = self.conn.notifies(timeout=5.0 if expected else 0.2, stop_after=expected or None)
            received = [json.loads(n.payload) for n in notes]
            # Anything beyond what was expected would be a bug: look briefly for it.
            received += [json.loads(n.payload) for n in self.conn.notifies(timeout=0.05)]
            return received
        return await trio.to_thread.run_sync(read)


@pytest.fixture
async def listener(db_url: str) -> AsyncIterator[Listener]:
    listen = Listener(db_url)
    try:
        yield listen
    finally:
        listen.conn.close()


async def test_credit_and_debit_are_audited_and_announced(db: Database, listener: Listener) -> None:
    user, _ = await make_user(db)
    credit = await db.run(adjust(user, 2_500, "  refund for a broken connector  ", "adj-1"))
    assert credit.applied
    assert (credit.wallet.available, credit.wallet.posted) == (2_500, 2_500)
    debit = await db.run(adjust(user, -1_000, "duplicate top-up", "adj-2"))
    assert debit.wallet.available == 1_500
    assert await db.run(ledger.wallet_available, user) == 1_500
    assert await db.run(audit_rows) == [
        ("api_key", "key-1", "ledger.adjust", user,
         {"transfer_id": "adj-1", "amount_tyiyn": 2_500, "reason": "refund for a broken connector"}),
        ("api_key", "key-1", "ledger.adjust", user,
         {"transfer_id": "adj-2", "amount_tyiyn": -1_000, "reason": "duplicate top-up"}),
    ]
    stored = await db.run(ledger.get_transfer, "adj-2")
    assert stored is not None
    assert (stored.kind, stored.amount, stored.reason) == ("single", 1_000, "duplicate top-up")
    assert await listener.events(2) == [{"topic": "balance", "user_id": user}] * 2
    await assert_ledger_clean(db)


async def test_a_debit_beyond_the_available_balance_is_refused_and_changes_nothing(
        db: Database, listener: Listener) -> None:
    user, wallet = await funded_driver(db, 5_000)
    _, revenue = await owner_account(db)
    await db.run(ledger.hold, "hold", wallet, revenue, 3_000)  # posted 5,000, available 2,000
    with pytest.raises(service.InsufficientFunds):
        await db.run(adjust(user, -2_001))
    assert await db.run(ledger.get_transfer, "adj-1") is None
    assert await db.run(audit_rows) == []
    assert await listener.events(0) == []
    assert (await db.run(adjust(user, -2_000))).wallet.available == 0
    await assert_ledger_clean(db)


async def test_the_same_transfer_id_adjusts_once(db: Database, listener: Listener) -> None:
    user, _ = await make_user(db)
    first = await db.run(adjust(user, 700))
    again = await db.run(adjust(user, 700))
    assert (first.applied, again.applied) == (True, False)
    assert again.wallet.available == 700
    assert len(await db.run(audit_rows)) == 1
    assert len(await listener.events(1)) == 1
    # The same id for a different adjustment is a conflict, not a silent no-op.
    for amount, reason in ((800, "goodwill"), (-700, "goodwill"), (700, "other reason")):
        with pytest.raises(service.TransferIdConflict):
            await db.run(adjust(user, amount, reason))
    other, _ = await make_user(db)
    with pytest.raises(service.TransferIdConflict):
        await db.run(adjust(other, 700))
    assert await db.run(ledger.wallet_available, user) == 700
    await assert_ledger_clean(db)


@pytest.mark.parametrize(
    ("amount", "reason", "message"),
    [
        (0, "r", "non-zero"),
        (10_000_001, "r", "at most 10000000"),
        (-10_000_001, "r", "at most 10000000"),
        (100, "", "reason of 1 to 500"),
        (100, "   ", "reason of 1 to 500"),
        (100, "x" * 501, "reason of 1 to 500"),
        (100, "goodwill\x00", "U\\+0000"),
    ],
)
async def test_invalid_adjustments_change_nothing(db: Database, amount: int, reason: str, message: str) -> None:
    user, _ = await make_user(db)
    with pytest.raises(service.InvalidAdjustment, match=message):
        await db.run(adjust(user, amount, reason))
    assert await db.run(audit_rows) == []
    assert await db.run(ledger.find_user_account, user) is None


async def test_the_limits_themselves_are_allowed(db: Database) -> None:
    user, _ = await make_user(db)
    assert (await db.run(adjust(user, 10_000_000, "x" * 500, "a"))).wallet.available == 10_000_000
    assert (await db.run(adjust(user, -10_000_000, "y", "b"))).wallet.available == 0
    await assert_ledger_clean(db)


async def test_unknown_or_malformed_users(db: Database) -> None:
    with pytest.raises(service.UnknownUser):
        await db.run(adjust("00000000-0000-0000-0000-000000000000", 100))
    with pytest.raises(service.InvalidAdjustment, match="user id"):
        await db.run(adjust("not-a-uuid", 100))
    assert await db.run(audit_rows) == []


def test_transfer_ids_from_idempotency_keys() -> None:
    key_id = service.adjustment_transfer_id("api_key:1", "key-abc")
    assert key_id == service.adjustment_transfer_id("api_key:1", "key-abc")
    assert key_id != service.adjustment_transfer_id("api_key:2", "key-abc")
    assert key_id != service.adjustment_transfer_id("api_key:1", "key-abd")
    assert "key-abc" not in key_id
    assert len(key_id) <= 200
    random_ids = {service.adjustment_transfer_id("api_key:1", None) for _ in range(3)}
    assert len(random_ids) == 3
    for bad in ("", "k" * 201):
        with pytest.raises(service.InvalidAdjustment):
            service.adjustment_transfer_id("api_key:1", bad)


async def test_wallet_reads_and_owner_revenue(db: Database) -> None:
    user, wallet = await funded_driver(db, 9_000)
    owner, revenue = await owner_account(db)
    await db.run(ledger.hold, "h", wallet, revenue, 4_000)
    balance = await db.run(service.wallet_balance, user)
    assert balance is not None
    assert (balance.available, balance.posted, balance.debits_pending) == (5_000, 9_000, 4_000)
    newcomer, _ = await make_user(db)
    empty = await db.run(service.wallet_balance, newcomer)
    assert empty is not None
    assert (empty.available, empty.posted) == (0, 0)
    assert await db.run(ledger.find_user_account, newcomer) is None  # reading created nothing
    assert await db.run(service.wallet_balance, "00000000-0000-0000-0000-000000000000") is None
    await db.run(ledger.post, "p", "h", 3_100)
    now = await db.run(lambda conn: conn.execute("SELECT now()").fetchone()[0])
    assert await db.run(service.owner_revenue, owner, now - timedelta(hours=1), now + timedelta(hours=1)) == (
        3_100, 0)
    assert await db.run(service.owner_revenue, owner, now + timedelta(hours=1), now + timedelta(hours=2)) == (0, 0)
    assert await db.run(service.owner_revenue, newcomer, now - timedelta(hours=1), now) == (0, 0)
    await assert_ledger_clean(db)


async def test_concurrent_retries_of_one_adjustment_apply_once(db_url: str, db: Database) -> None:
    user, _ = await make_user(db)
    applied: list[bool] = []
    async with open_database(db_url, size=8) as wide:

        async def retry() -> None:
            applied.append((await wide.run(adjust(user, 1_500, "refund", "same-key"))).applied)

        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(retry)
    assert sorted(applied) == [False] * 7 + [True]
    assert await db.run(ledger.wallet_available, user) == 1_500
    assert len(await db.run(audit_rows)) == 1
    await assert_ledger_clean(db)
