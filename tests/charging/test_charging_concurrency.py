"""Races: concurrent starts against one balance, and Idempotency-Key retries."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from tests.charging.support import (
    STOP,
    codes,
    credit,
    gql,
    rows,
    setup_station,
    start,
    started,
    wallet,
)
from tests.conftest import charger, make_user
from tests.ledger_check import assert_ledger_clean

if TYPE_CHECKING:
    import httpx

    from tests.conftest import Node


async def test_concurrent_starts_beyond_the_balance_only_the_affordable_succeed(
        snode: Node, api: httpx.AsyncClient) -> None:
    for station in ("RACE-1", "RACE-2", "RACE-3"):
        await setup_station(snode, station)
    driver_id, token = await make_user(snode.db)
    await credit(snode.db, driver_id, 10_000)
    results: list[dict[str, object]] = []

    async def one(station: str, connector: int) -> None:
        results.append(await start(api, token, station, connector, limit=3_000))

    async with charger(snode, "RACE-1", remote_start_mode="accept_no_start"), \
            charger(snode, "RACE-2", remote_start_mode="accept_no_start"), \
            charger(snode, "RACE-3", remote_start_mode="accept_no_start"):
        async with trio.open_nursery() as nursery:
            for station in ("RACE-1", "RACE-2", "RACE-3"):
                for connector in (1, 2):
                    nursery.start_soon(one, station, connector)
        ok = [r for r in results if "errors" not in r]
        refused = [codes(r) for r in results if "errors" in r]
        assert len(ok) == 3  # three of 3,000 fit in 10,000; a fourth does not
        assert refused == [["INSUFFICIENT_BALANCE"]] * 3
        held = await wallet(snode.db, driver_id)
        assert (held.available, held.debits_pending) == (1_000, 9_000)
        assert await rows(snode.db, "SELECT count(*) FROM charging_sessions") == [(3,)]
        # Cancelling them before they start returns everything.
        for r in ok:
            session_id = r["data"]["startCharging"]["id"]  # type: ignore[index]
            assert (await gql(api, STOP, {"id": session_id}, token=token))["data"]["stopCharging"]["status"] == "failed"
    after = await wallet(snode.db, driver_id)
    assert (after.posted, after.available) == (10_000, 10_000)
    await assert_ledger_clean(snode.db)


async def test_idempotency_key_replays_the_first_result_and_refuses_other_input(
        snode: Node, api: httpx.AsyncClient) -> None:
    await setup_station(snode, "IDEM-1")
    driver_id, token = await make_user(snode.db)
    _, other = await make_user(snode.db)
    await credit(snode.db, driver_id, 10_000)
    async with charger(snode, "IDEM-1", remote_start_mode="accept_no_start") as cp:
        first = await started(api, token, "IDEM-1", 1, limit=4_000, key="key-1")
        # The same request again (a client retry), even concurrently: the same session, one hold.
        again: list[dict[str, object]] = []

        async def retry() -> None:
            again.append(await started(api, token, "IDEM-1", 1, limit=4_000, key="key-1"))

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(retry)
        assert {a["id"] for a in again} == {first["id"]}  # type: ignore[misc]
        reused = await start(api, token, "IDEM-1", 2, limit=4_000, key="key-1")
        assert codes(reused) == ["IDEMPOTENCY_KEY_REUSED"]
        # Keys belong to their caller: another driver's "key-1" is theirs alone.
        assert codes(await start(api, other, "IDEM-1", 2, limit=4_000, key="key-1")) == ["INSUFFICIENT_BALANCE"]
        assert sum(1 for a, _ in cp.received if a == "RemoteStartTransaction") == 1
        assert (await wallet(snode.db, driver_id)).available == 6_000
        # stopCharging with a key: the retry returns the same outcome and does nothing more.
        stop_vars = {"id": first["id"]}
        stopped = await gql(api, STOP, stop_vars, token=token, idempotency_key="stop-1")
        retried = await gql(api, STOP, stop_vars, token=token, idempotency_key="stop-1")
        assert stopped["data"]["stopCharging"]["status"] == retried["data"]["stopCharging"]["status"] == "failed"
    assert await rows(snode.db, "SELECT count(*) FROM charging_sessions") == [(1,)]
    assert await rows(snode.db, "SELECT count(*) FROM ledger_transfers WHERE kind IN ('pending', 'void')") == [(2,)]
    assert (await wallet(snode.db, driver_id)).available == 10_000
    assert await rows(snode.db, "SELECT operation, key, response IS NOT NULL FROM idempotency_keys "
                                "ORDER BY operation") == [("startCharging", "key-1", True),
                                                          ("stopCharging", "stop-1", True)]
    await assert_ledger_clean(snode.db)


async def test_old_idempotency_keys_are_pruned_by_the_reaper(snode: Node) -> None:
    await rows(snode.db, """INSERT INTO idempotency_keys (principal, key, operation, request_sha256, response,
                                created_at)
                            VALUES ('user:x', 'old', 'startCharging', '\\x00', '{}', now() - interval '25 hours'),
                                   ('user:x', 'new', 'startCharging', '\\x00', '{}', now()) RETURNING key""")
    with trio.fail_after(5):
        while await rows(snode.db, "SELECT key FROM idempotency_keys ORDER BY key") != [("new",)]:
            await trio.sleep(0.05)
