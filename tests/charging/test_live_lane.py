"""A charging session's MeterValues in the fast lane (``csms.services.live_meter``): exact values, one
event per change in order, and a fallback to the locked write whenever the session changed meanwhile."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import psycopg

from csms.services.tariffs import Price, energy_cost
from csms.store.events import CHANNEL
from tests.charging.support import credit, rows, setup_station, started, wait_session
from tests.conftest import charger, make_user
from tests.ledger_check import assert_ledger_clean

if TYPE_CHECKING:
    from simulators.chargepoint import ChargePoint
    from tests.conftest import Node

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _reading(tx: int, register_wh: int, second: int, power_w: int, soc: int) -> dict[str, Any]:
    at = (T0 + timedelta(seconds=second)).isoformat().replace("+00:00", "Z")
    return {"connectorId": 1, "transactionId": tx, "meterValue": [{"timestamp": at, "sampledValue": [
        {"value": str(register_wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
        {"value": str(power_w), "measurand": "Power.Active.Import", "unit": "W"},
        {"value": str(soc), "measurand": "SoC", "unit": "Percent", "location": "EV"}]}]}


async def _lane_counts(node: Node) -> tuple[int, int, int]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.ready.http_port}") as http:
        text = (await http.get("/metrics")).text
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return (int(values["csms_live_updates_written_total"]), int(values["csms_live_updates_conflicts_total"]),
            int(values["csms_live_updates_failed_total"]))


async def _charging(node: Node, api: httpx.AsyncClient, station: str, cp: ChargePoint,
                    token: str) -> tuple[str, int, int]:
    """Start a session on connector 1: its id, transaction id and meterStart."""
    s = await started(api, token, station, 1, limit=50_000)
    await wait_session(api, token, s["id"], status="charging")
    [(tx, start)] = await rows(node.db, "SELECT transaction_id, meter_start_wh FROM charging_sessions WHERE id = %s",
                               s["id"])
    assert cp.connectors[1].transaction_id == tx
    return s["id"], tx, start


async def _session(node: Node, session_id: str) -> tuple[Any, ...]:
    [row] = await rows(node.db, """SELECT status, energy_wh, meter_last_wh, cost_tyiyn, power_w, soc, meter_sampled_at
                                   FROM charging_sessions WHERE id = %s""", session_id)
    return row


async def test_readings_take_the_fast_lane_with_exact_values_and_ordered_events(
        snode: Node, api: httpx.AsyncClient) -> None:
    price = Price(1500, 0)
    await setup_station(snode, "LANE-1", per_kwh=price.per_kwh_tyiyn, fee=price.session_fee_tyiyn)
    driver_id, token = await make_user(snode.db)
    await credit(snode.db, driver_id, 100_000)
    listener = psycopg.connect(snode.settings.database_url or "", autocommit=True)
    try:
        async with charger(snode, "LANE-1", meter_interval_s=0) as cp:  # readings sent by hand only
            session_id, tx, start = await _charging(snode, api, "LANE-1", cp, token)
            before = await _lane_counts(snode)
            listener.execute(f"LISTEN {CHANNEL}")
            # Growing, repeated, lower (an old register with a newer time) and growing again.
            for second, wh in enumerate((120, 300, 300, 250, 700)):
                await cp.call("MeterValues", _reading(tx, start + wh, second, 7000 + second, 20 + second))
            assert await _session(snode, session_id) == (
                "charging", 700, start + 700, energy_cost(700, price), 7004, 24, T0 + timedelta(seconds=4))
            written, conflicts, failed = await _lane_counts(snode)
            # The first reading takes the locked path (csms has not written the row yet); the rest do not.
            assert (written - before[0], conflicts - before[1], failed - before[2]) == (4, 0, 0)
            events = [json.loads(n.payload) for n in listener.notifies(timeout=0.5)]
        sessions = [e["state"] for e in events if e["topic"] == "session" and e["session_id"] == session_id]
        assert [(s["energy_wh"], s["power_w"], s["soc"]) for s in sessions] == [
            (120, 7000, 20), (300, 7001, 21), (300, 7002, 22), (300, 7003, 23), (700, 7004, 24)]
        assert all(s["cost_tyiyn"] == energy_cost(s["energy_wh"], price) for s in sessions)
        versions = [s["version"] for s in sessions]
        assert versions == sorted(versions) and len(set(versions)) == len(versions)
        # Stored samples: three per reading, none twice.
        assert await rows(snode.db, "SELECT count(*) FROM meter_values WHERE transaction_id = %s", tx) == [(15,)]
    finally:
        listener.close()
    await assert_ledger_clean(snode.db)


async def test_a_session_changed_meanwhile_is_written_under_the_lock(snode: Node, api: httpx.AsyncClient) -> None:
    price = Price(1000, 0)
    await setup_station(snode, "LANE-2", per_kwh=price.per_kwh_tyiyn, fee=0)
    driver_id, token = await make_user(snode.db)
    await credit(snode.db, driver_id, 100_000)
    async with charger(snode, "LANE-2", meter_interval_s=0) as cp:
        session_id, tx, start = await _charging(snode, api, "LANE-2", cp, token)
        await cp.call("MeterValues", _reading(tx, start + 100, 0, 5000, 30))  # locked path: csms learns the row
        await cp.call("MeterValues", _reading(tx, start + 200, 1, 5000, 31))  # fast lane
        before = await _lane_counts(snode)
        # Another writer (another node after a reconnect, say) moves the session on behind this node's back.
        await rows(snode.db, """UPDATE charging_sessions SET energy_wh = 250, meter_last_wh = %s, cost_tyiyn = 250,
                                    meter_sampled_at = %s WHERE id = %s RETURNING id""",
                   start + 250, T0 + timedelta(seconds=2), session_id)
        await cp.call("MeterValues", _reading(tx, start + 240, 3, 6000, 32))  # compare fails: locked path
        assert await _session(snode, session_id) == (
            "charging", 250, start + 250, 250, 6000, 32, T0 + timedelta(seconds=3))
        after = await _lane_counts(snode)
        assert (after[0] - before[0], after[1] - before[1]) == (0, 1)
        # The locked write taught csms the new row: the next reading takes the fast lane again.
        await cp.call("MeterValues", _reading(tx, start + 400, 4, 6000, 33))
        assert (await _session(snode, session_id))[1:4] == (400, start + 400, energy_cost(400, price))
        assert (await _lane_counts(snode))[0] - after[0] == 1
        # A status change (the reaper, a driver's stop on another node) is a conflict too, and the reading
        # is applied under the lock in the new status.
        await rows(snode.db, "UPDATE charging_sessions SET status = 'stopping' WHERE id = %s RETURNING id", session_id)
        await cp.call("MeterValues", _reading(tx, start + 500, 5, 6000, 34))
        assert (await _session(snode, session_id))[:2] == ("stopping", 500)
        assert (await _lane_counts(snode))[1] - after[1] == 1


async def test_only_a_charging_sessions_meter_values_skip_the_turn_queue(snode: Node, api: httpx.AsyncClient) -> None:
    await setup_station(snode, "LANE-3")
    driver_id, token = await make_user(snode.db)
    await credit(snode.db, driver_id, 100_000)
    transactions = snode.csms._transactions
    assert transactions is not None
    async with charger(snode, "LANE-3", meter_interval_s=0) as cp:
        _, tx, start = await _charging(snode, api, "LANE-3", cp, token)
        reading = _reading(tx, start + 10, 0, 1000, 50)
        assert transactions.is_watched("MeterValues", reading)
        assert not transactions.is_watched("Heartbeat", {})
        assert not transactions.is_watched("MeterValues", {**reading, "transactionId": tx + 1})
        assert not transactions.is_watched("MeterValues", {k: v for k, v in reading.items() if k != "transactionId"})
        assert not transactions.is_watched("MeterValues", {**reading, "transactionId": str(tx)})
