"""A driver starts charging from the app, watches it, stops it, and pays exactly for the energy."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import psycopg

from csms.services.tariffs import Price, energy_cost
from csms.store.events import CHANNEL
from tests.charging.support import (
    STOP,
    credit,
    gql,
    revenue,
    rows,
    setup_station,
    started,
    wait_session,
    wallet,
)
from tests.conftest import charger, make_user
from tests.ledger_check import assert_ledger_clean

if TYPE_CHECKING:
    import httpx

    from tests.conftest import Node


async def test_start_watch_stop_pays_exactly_for_the_energy(snode: Node, api: httpx.AsyncClient) -> None:
    owner_id, _ = await make_user(snode.db, "owner")
    tariff = await setup_station(snode, "FLOW-1", per_kwh=1234, fee=150, owner_id=owner_id)
    assert tariff is not None
    driver_id, token = await make_user(snode.db)
    await credit(snode.db, driver_id, 500_000)
    listener = psycopg.connect(snode.settings.database_url or "", autocommit=True)
    try:
        listener.execute(f"LISTEN {CHANNEL}")
        async with charger(snode, "FLOW-1", power_w=360_000, meter_interval_s=0.05) as cp:
            s = await started(api, token, "FLOW-1", 1, limit=200_000)
            assert s["status"] in ("accepted", "charging")
            assert s["holdTyiyn"] == 200_000
            assert (s["pricePerKwhTyiyn"], s["sessionFeeTyiyn"]) == (1234, 150)
            held = await wallet(snode.db, driver_id)
            assert held.available == 300_000 and held.posted == 500_000
            # Live values arrive with the MeterValues.
            live = await wait_session(api, token, s["id"], status="charging", energy_above=20)
            assert live["powerW"] == 360_000
            assert live["soc"] is not None and 20 <= live["soc"] <= 100
            assert live["costTyiyn"] == energy_cost(live["energyWh"], Price(1234, 150))
            stopping = await gql(api, STOP, {"id": s["id"]}, token=token)
            assert stopping["data"]["stopCharging"]["status"] in ("stopping", "completed")
            done = await wait_session(api, token, s["id"], status="completed")
            await cp.wait_for_status(1, "Available")
        remote = [a for a, _ in cp.received if a in ("RemoteStartTransaction", "RemoteStopTransaction")]
        assert remote == ["RemoteStartTransaction", "RemoteStopTransaction"]
        [(start_wh, stop_wh, reason)] = await rows(snode.db, "SELECT meter_start_wh, meter_stop_wh, stop_reason "
                                                             "FROM transactions")
        energy = stop_wh - start_wh
        assert energy > 20
        cost = energy_cost(energy, Price(1234, 150))
        assert done["energyWh"] == energy
        assert done["chargedTyiyn"] == cost == done["costTyiyn"]
        assert done["stopReason"] == "UserStopped" and reason == "Remote"
        after = await wallet(snode.db, driver_id)
        assert after.posted == 500_000 - cost
        assert after.available == 500_000 - cost
        assert after.debits_pending == 0
        owner = await revenue(snode.db, owner_id)
        assert (owner.credits_posted, owner.credits_pending) == (cost, 0)
        await assert_ledger_clean(snode.db)
        # The session's tag no longer starts anything.
        [(expired,)] = await rows(snode.db, "SELECT expiry_date <= now() FROM id_tags")
        assert expired
        events = [json.loads(n.payload) for n in listener.notifies(timeout=0.5)]
    finally:
        listener.close()
    statuses = [e["status"] for e in events if e["topic"] == "session"]
    assert statuses[0] == "requested"
    assert {"accepted", "charging", "stopping", "completed"} <= set(statuses)
    assert statuses[-1] == "completed"
    assert all(e["session_id"] == s["id"] and e["user_id"] == driver_id and e["station_id"] == "FLOW-1"
               for e in events if e["topic"] == "session")
    balances = [e["user_id"] for e in events if e["topic"] == "balance"]
    assert balances.count(driver_id) >= 2 and owner_id in balances  # hold placed, hold posted


async def test_money_limit_stops_the_charger_once_and_bills_at_most_the_hold(
        snode: Node, api: httpx.AsyncClient) -> None:
    await setup_station(snode, "LIMIT-1", per_kwh=10_000)  # 100 som per kWh: 1,000 tyiyn is 100 Wh
    driver_id, token = await make_user(snode.db)
    await credit(snode.db, driver_id, 50_000)
    async with charger(snode, "LIMIT-1", power_w=360_000, meter_interval_s=0.05) as cp:
        s = await started(api, token, "LIMIT-1", 2, limit=1_000)
        done = await wait_session(api, token, s["id"], status="completed")
    stops = [p for a, p in cp.received if a == "RemoteStopTransaction"]
    assert len(stops) == 1
    [(tx_id, energy)] = await rows(snode.db, "SELECT id, energy_wh FROM transactions")
    assert stops[0] == {"transactionId": tx_id}
    assert energy >= 100  # it reached the limit
    assert done["stopReason"] == "LimitReached"
    assert done["chargedTyiyn"] == min(energy_cost(energy, Price(10_000)), 1_000) == 1_000
    assert (await wallet(snode.db, driver_id)).posted == 49_000
    assert (await revenue(snode.db, None)).credits_posted == 1_000
    await assert_ledger_clean(snode.db)


async def test_energy_limit_holds_its_cost_and_stops_there(snode: Node, api: httpx.AsyncClient) -> None:
    await setup_station(snode, "ENERGY-1", per_kwh=1_500, fee=100)
    driver_id, token = await make_user(snode.db)
    await credit(snode.db, driver_id, 10_000)
    async with charger(snode, "ENERGY-1", power_w=360_000, meter_interval_s=0.05):
        s = await started(api, token, "ENERGY-1", 1, energy=150)
        assert s["holdTyiyn"] == energy_cost(150, Price(1_500, 100)) == 325
        assert s["energyLimitWh"] == 150 and s["limitTyiyn"] is None
        done = await wait_session(api, token, s["id"], status="completed")
    [(energy,)] = await rows(snode.db, "SELECT energy_wh FROM transactions")
    assert energy >= 150
    assert done["chargedTyiyn"] == min(energy_cost(energy, Price(1_500, 100)), 325)
    assert (await wallet(snode.db, driver_id)).posted == 10_000 - done["chargedTyiyn"]
    await assert_ledger_clean(snode.db)
