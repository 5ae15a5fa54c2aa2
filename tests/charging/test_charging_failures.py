"""Sessions that go wrong: every failure returns the whole hold, every late message bills nothing twice."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from csms.services.tariffs import Price, energy_cost
from tests.charging.conftest import FAST
from tests.charging.support import (
    STOP,
    credit,
    gql,
    rows,
    setup_station,
    started,
    wait_session,
    wallet,
)
from tests.conftest import charger, make_user, node_settings, running_node
from tests.ledger_check import assert_ledger_clean

if TYPE_CHECKING:
    from tests.conftest import Node


async def _refunded(node: Node, user_id: str, amount: int) -> None:
    after = await wallet(node.db, user_id)
    assert (after.posted, after.available, after.debits_pending) == (amount, amount, 0)
    await assert_ledger_clean(node.db)


async def test_remote_start_rejected_fails_with_full_refund(snode: Node, api: httpx.AsyncClient) -> None:
    await setup_station(snode, "REJ-1")
    driver_id, token = await make_user(snode.db)
    await credit(snode.db, driver_id, 20_000)
    async with charger(snode, "REJ-1", remote_start_mode="reject"):
        s = await started(api, token, "REJ-1", 1, limit=15_000)
    assert (s["status"], s["failureReason"], s["chargedTyiyn"]) == ("failed", "rejected", 0)
    await _refunded(snode, driver_id, 20_000)
    # The connector is free again for the next try.
    assert await rows(snode.db, "SELECT count(*) FROM charging_sessions WHERE status = 'failed'") == [(1,)]


async def test_charger_that_never_starts_is_reaped_with_full_refund(snode: Node, api: httpx.AsyncClient) -> None:
    await setup_station(snode, "NOSTART-1")
    driver_id, token = await make_user(snode.db)
    await credit(snode.db, driver_id, 20_000)
    async with charger(snode, "NOSTART-1", remote_start_mode="accept_no_start"):
        s = await started(api, token, "NOSTART-1", 1, limit=15_000)
        assert s["status"] == "accepted"
        assert (await wallet(snode.db, driver_id)).available == 5_000
        done = await wait_session(api, token, s["id"], status="failed", timeout=FAST["session_start_timeout_s"] + 5)
    assert done["failureReason"] == "start_timeout"
    await _refunded(snode, driver_id, 20_000)


async def test_charger_that_never_answers_remote_start_fails_after_the_call_timeout(
        db_url: str) -> None:
    settings = node_settings(db_url, **{**FAST, "call_timeout_s": 0.5})
    async with running_node(settings) as node, httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{node.ready.http_port}", timeout=15) as api:
        await setup_station(node, "HUNG-1")
        driver_id, token = await make_user(node.db)
        await credit(node.db, driver_id, 9_000)
        async with charger(node, "HUNG-1", unanswered={"RemoteStartTransaction"}):
            s = await started(api, token, "HUNG-1", 1, limit=9_000)
        assert (s["status"], s["failureReason"]) == ("failed", "timeout")
        await _refunded(node, driver_id, 9_000)


async def test_late_start_after_a_failed_session_is_refused_and_bills_nothing(
        snode: Node, api: httpx.AsyncClient) -> None:
    await setup_station(snode, "LATE-1")
    driver_id, token = await make_user(snode.db)
    await credit(snode.db, driver_id, 10_000)
    async with charger(snode, "LATE-1", remote_start_mode="accept_no_start", power_w=360_000,
                       meter_interval_s=0.05) as cp:
        s = await started(api, token, "LATE-1", 1, limit=5_000)
        cancelled = await gql(api, STOP, {"id": s["id"]}, token=token)
        assert cancelled["data"]["stopCharging"]["status"] == "failed"
        assert cancelled["data"]["stopCharging"]["failureReason"] == "cancelled"
        [(tag,)] = await rows(snode.db, "SELECT id_tag FROM charging_sessions")
        # The EV is plugged in after all: the charger starts with the session's tag, is told Expired and
        # stops (StopTransactionOnInvalidId).
        cp.connectors[1].status = "Available"
        await cp.start_transaction(1, tag)
        await cp.wait_for_status(1, "Available")
    [(status, reason)] = await rows(snode.db, "SELECT id_tag_status, stop_reason FROM transactions")
    assert (status, reason) == ("Expired", "DeAuthorized")
    assert await rows(snode.db, "SELECT status, transaction_id FROM charging_sessions") == [("failed", None)]
    kinds = [k for (k,) in await rows(snode.db, "SELECT kind FROM ocpp_anomalies")]
    assert "session_tag_not_accepted" in kinds
    await _refunded(snode, driver_id, 10_000)


async def test_no_stop_transaction_bills_the_last_durable_reading_once(snode: Node, api: httpx.AsyncClient) -> None:
    await setup_station(snode, "NOSTOP-1", per_kwh=800)
    driver_id, token = await make_user(snode.db)
    await credit(snode.db, driver_id, 100_000)
    async with charger(snode, "NOSTOP-1", remote_stop_mode="accept_no_stop", power_w=360_000,
                       meter_interval_s=0.05) as cp:
        s = await started(api, token, "NOSTOP-1", 1, limit=50_000)
        seen = await wait_session(api, token, s["id"], status="charging", energy_above=30)
        await gql(api, STOP, {"id": s["id"]}, token=token)
        # The charger said Accepted but keeps charging; after the grace the reaper bills what is durable.
        done = await wait_session(api, token, s["id"], status="completed", timeout=FAST["session_stop_grace_s"] + 5)
        [(tx_id, start_wh)] = await rows(snode.db, "SELECT id, meter_start_wh FROM transactions")
        registers = {int(v) for (v,) in await rows(
            snode.db, """SELECT floor(value::numeric) FROM meter_values
                         WHERE transaction_id = %s AND measurand = 'Energy.Active.Import.Register'""", tx_id)}
        # Billed: a reading that was stored, at least what the driver saw before stopping.
        assert start_wh + done["energyWh"] in registers
        assert done["energyWh"] >= seen["energyWh"]
        billed = done["chargedTyiyn"]
        assert billed == energy_cost(done["energyWh"], Price(800))
        # The StopTransaction finally comes, with more energy: it is recorded, not billed again.
        await cp.stop_transaction(1)
    [(stop_wh,)] = await rows(snode.db, "SELECT meter_stop_wh FROM transactions")
    assert stop_wh - start_wh > done["energyWh"]
    [(settled_by, charged)] = await rows(snode.db, "SELECT settled_by, charged_tyiyn FROM charging_sessions")
    assert (settled_by, charged) == ("meter_values", billed)
    kinds = [k for (k,) in await rows(snode.db, "SELECT kind FROM ocpp_anomalies")]
    assert "session_settled_without_stop" in kinds and "stop_after_session_settled" in kinds
    assert (await wallet(snode.db, driver_id)).posted == 100_000 - billed
    await assert_ledger_clean(snode.db)


async def test_max_duration_stops_and_bills_what_was_delivered(db_url: str) -> None:
    settings = node_settings(db_url, **{**FAST, "session_max_duration_s": 0.5})
    async with running_node(settings) as node, httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{node.ready.http_port}", timeout=15) as api:
        await setup_station(node, "MAXDUR-1", per_kwh=500)
        driver_id, token = await make_user(node.db)
        await credit(node.db, driver_id, 100_000)
        async with charger(node, "MAXDUR-1", power_w=36_000, meter_interval_s=0.05):
            s = await started(api, token, "MAXDUR-1", 2, limit=90_000)
            done = await wait_session(api, token, s["id"], status="completed")
        [(energy,)] = await rows(node.db, "SELECT energy_wh FROM transactions")
        assert done["stopReason"] == "MaxDuration"
        assert done["chargedTyiyn"] == energy_cost(energy, Price(500))
        assert (await wallet(node.db, driver_id)).posted == 100_000 - done["chargedTyiyn"]
        await assert_ledger_clean(node.db)
