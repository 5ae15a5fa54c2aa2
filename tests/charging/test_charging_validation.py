"""startCharging refuses bad or impossible requests with a typed code and changes nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.charging.support import START, codes, credit, gql, rows, setup_station, start, wallet
from tests.conftest import add_station, charger, make_user
from tests.ledger_check import assert_ledger_clean

if TYPE_CHECKING:
    import httpx

    from tests.conftest import Node


async def _nothing_changed(node: Node, user_id: str, balance: int) -> None:
    assert await rows(node.db, "SELECT count(*) FROM charging_sessions") == [(0,)]
    assert await rows(node.db, "SELECT count(*) FROM ledger_transfers WHERE kind <> 'single'") == [(0,)]
    assert await rows(node.db, "SELECT count(*) FROM id_tags") == [(0,)]
    assert (await wallet(node.db, user_id)).available == balance
    await assert_ledger_clean(node.db)


REFUSALS: list[tuple[dict[str, Any], str]] = [
        ({"stationId": "val-1", "connectorId": 1, "limitTyiyn": 100}, "BAD_USER_INPUT"),  # lower case
        ({"stationId": "VAL_1", "connectorId": 1, "limitTyiyn": 100}, "BAD_USER_INPUT"),
        ({"stationId": "", "connectorId": 1, "limitTyiyn": 100}, "BAD_USER_INPUT"),
        ({"stationId": "V" * 51, "connectorId": 1, "limitTyiyn": 100}, "BAD_USER_INPUT"),
        ({"stationId": "VAL-1", "connectorId": 0, "limitTyiyn": 100}, "BAD_USER_INPUT"),
        ({"stationId": "VAL-1", "connectorId": 11, "limitTyiyn": 100}, "BAD_USER_INPUT"),
        ({"stationId": "VAL-1", "connectorId": 1}, "BAD_USER_INPUT"),
        ({"stationId": "VAL-1", "connectorId": 1, "limitTyiyn": 100, "energyWh": 100}, "BAD_USER_INPUT"),
        ({"stationId": "VAL-1", "connectorId": 1, "limitTyiyn": 0}, "LIMIT_OUT_OF_RANGE"),
        ({"stationId": "VAL-1", "connectorId": 1, "limitTyiyn": -5}, "LIMIT_OUT_OF_RANGE"),
        ({"stationId": "VAL-1", "connectorId": 1, "limitTyiyn": 10_000_001}, "LIMIT_OUT_OF_RANGE"),
        ({"stationId": "VAL-1", "connectorId": 1, "energyWh": 0}, "LIMIT_OUT_OF_RANGE"),
        ({"stationId": "VAL-1", "connectorId": 1, "energyWh": 1_000_001}, "LIMIT_OUT_OF_RANGE"),
        ({"stationId": "VAL-1", "connectorId": 1, "limitTyiyn": 200}, "LIMIT_OUT_OF_RANGE"),  # ≤ the fee
        ({"stationId": "NOPE-1", "connectorId": 1, "limitTyiyn": 1_000}, "NOT_FOUND"),
        ({"stationId": "VAL-1", "connectorId": 3, "limitTyiyn": 1_000}, "CONNECTOR_UNAVAILABLE"),  # no such
        ({"stationId": "VAL-1", "connectorId": 2, "limitTyiyn": 1_000}, "CONNECTOR_UNAVAILABLE"),  # Faulted
        ({"stationId": "VAL-1", "connectorId": 1, "limitTyiyn": 60_000}, "INSUFFICIENT_BALANCE"),
        ({"stationId": "OFF-1", "connectorId": 1, "limitTyiyn": 1_000}, "STATION_OFFLINE"),
        ({"stationId": "FREE-1", "connectorId": 1, "limitTyiyn": 1_000}, "NO_TARIFF"),
]


async def test_refusals(snode: Node, api: httpx.AsyncClient) -> None:
    # One node and one pair of chargers for every case (each case is checked to have changed nothing).
    await setup_station(snode, "VAL-1", per_kwh=1_000, fee=200)
    await setup_station(snode, "OFF-1")
    await setup_station(snode, "FREE-1", tariff=False)
    driver_id, token = await make_user(snode.db)
    await credit(snode.db, driver_id, 50_000)
    async with charger(snode, "VAL-1") as cp, charger(snode, "FREE-1"):
        await cp.send_status(2, "Faulted")
        for data, code in REFUSALS:
            result = await gql(api, START, {"input": data}, token=token)
            assert codes(result) == [code], (data, result)
            assert result["data"] is None
            await _nothing_changed(snode, driver_id, 50_000)


@pytest.mark.parametrize(("status", "code"), [("blocked", "ACCOUNT_BLOCKED"),
                                              ("pending_deletion", "ACCOUNT_PENDING_DELETION")])
async def test_accounts_that_may_not_transact(snode: Node, api: httpx.AsyncClient, status: str, code: str) -> None:
    await setup_station(snode, "ACC-1")
    driver_id, token = await make_user(snode.db)
    await credit(snode.db, driver_id, 10_000)
    await rows(snode.db, "UPDATE users SET status = %s WHERE id = %s RETURNING id", status, driver_id)
    async with charger(snode, "ACC-1"):
        result = await start(api, token, "ACC-1", 1, limit=1_000)
    assert codes(result) == [code]
    await _nothing_changed(snode, driver_id, 10_000)


async def test_anonymous_and_api_keys_cannot_start(snode: Node, api: httpx.AsyncClient) -> None:
    from csms.store.apikeys import create_api_key

    await add_station(snode, "ANON-1")
    assert codes(await start(api, "", "ANON-1", 1, limit=1_000)) == ["UNAUTHENTICATED"]
    key = await snode.db.run(create_api_key, "ops")
    # An admin API key is not a person with a wallet.
    assert codes(await start(api, key, "ANON-1", 1, limit=1_000)) == ["FORBIDDEN"]


async def test_a_busy_connector_is_unavailable(snode: Node, api: httpx.AsyncClient) -> None:
    await setup_station(snode, "BUSY-1")
    first_id, first = await make_user(snode.db)
    second_id, second = await make_user(snode.db)
    await credit(snode.db, first_id, 10_000)
    await credit(snode.db, second_id, 10_000)
    async with charger(snode, "BUSY-1", remote_start_mode="accept_no_start"):
        ok = await start(api, first, "BUSY-1", 1, limit=5_000)
        assert ok["data"]["startCharging"]["status"] == "accepted"
        refused = await start(api, second, "BUSY-1", 1, limit=5_000)
    assert codes(refused) == ["CONNECTOR_UNAVAILABLE"]
    assert (await wallet(snode.db, second_id)).available == 10_000
    await assert_ledger_clean(snode.db)


async def test_bad_idempotency_key_is_bad_input(snode: Node, api: httpx.AsyncClient) -> None:
    await setup_station(snode, "IDEM-0")
    driver_id, token = await make_user(snode.db)
    await credit(snode.db, driver_id, 10_000)
    async with charger(snode, "IDEM-0"):
        result = await start(api, token, "IDEM-0", 1, limit=1_000, key="k" * 201)
    assert codes(result) == ["BAD_USER_INPUT"]
    await _nothing_changed(snode, driver_id, 10_000)
