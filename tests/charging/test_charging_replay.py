"""Offline replays, duplicates, out-of-order messages and a killed server still bill exactly once."""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING

import httpx
import trio

from csms.services.tariffs import Price, energy_cost
from simulators.chargepoint import ChargePoint
from simulators.ocppj import SimulatorError
from tests.charging.support import (
    credit,
    rows,
    setup_station,
    started,
    wait_session,
    wallet,
)
from tests.conftest import TEST_JWT_KEY, charger, make_user
from tests.ledger_check import assert_ledger_clean
from tests.processes import free_port, start_csms, stop, wait_healthy

if TYPE_CHECKING:
    from csms.store.db import Database
    from tests.conftest import Node


async def test_offline_replay_with_duplicates_bills_once(snode: Node, api: httpx.AsyncClient) -> None:
    await setup_station(snode, "REPLAY-1", per_kwh=900, fee=50)
    driver_id, token = await make_user(snode.db)
    await credit(snode.db, driver_id, 100_000)
    async with charger(snode, "REPLAY-1", power_w=360_000, meter_interval_s=0.05) as cp:
        s = await started(api, token, "REPLAY-1", 1, limit=80_000)
        await wait_session(api, token, s["id"], status="charging", energy_above=10)
        early = cp.meter_values(1, "Sample.Periodic")  # kept for an out-of-order resend later
        cp.go_offline()
        await trio.sleep(0.3)  # MeterValues queue up while offline
        await cp.stop_transaction(1)  # the driver unplugs: queued too
        cp.duplicate_next = 100  # every replayed message is sent twice
        cp.go_online()
        done = await wait_session(api, token, s["id"], status="completed")
        # A MeterValues from before the stop, arriving late, changes nothing.
        await cp.call("MeterValues", early)
    [(energy,)] = await rows(snode.db, "SELECT energy_wh FROM transactions")
    cost = energy_cost(energy, Price(900, 50))
    assert done["energyWh"] == energy
    assert done["chargedTyiyn"] == cost
    after = await session_row(snode.db)
    assert after == ("completed", energy, cost)
    assert (await wallet(snode.db, driver_id)).posted == 100_000 - cost
    assert await rows(snode.db, "SELECT count(*) FROM ledger_transfers WHERE kind = 'post'") == [(1,)]
    await assert_ledger_clean(snode.db)


async def session_row(db: Database) -> tuple[object, ...]:
    [row] = await rows(db, "SELECT status, energy_wh, charged_tyiyn FROM charging_sessions")
    return row


async def _start(env: dict[str, str], ocpp_port: int, http_port: int) -> trio.Process:
    """Start csms and wait until its API answers too."""
    proc = await start_csms(env, ocpp_port)
    await wait_healthy(proc, http_port)
    return proc


async def test_stop_replayed_after_a_sigkill_restart_bills_once(db: Database, db_url: str) -> None:
    # The node is a separate process killed with SIGKILL, as in tests/test_restart.py.
    await rows(db, "INSERT INTO stations (id) VALUES ('KILL-S1') RETURNING id")
    await rows(db, """WITH t AS (INSERT INTO tariffs (name, price_per_kwh_tyiyn) VALUES ('kill', 700) RETURNING id)
                      UPDATE stations SET tariff_id = (SELECT id FROM t) WHERE id = 'KILL-S1' RETURNING id""")
    driver_id, token = await make_user(db)
    await credit(db, driver_id, 100_000)
    ocpp_port, http_port = free_port(), free_port()
    env = dict(os.environ, CSMS_DATABASE_URL=db_url, CSMS_OCPP_PORT=str(ocpp_port), CSMS_HTTP_PORT=str(http_port),
               CSMS_DB_POOL_SIZE="3", CSMS_JWT_PRIVATE_KEY_FILE=str(TEST_JWT_KEY), CSMS_REAPER_INTERVAL="0.2")
    proc = await _start(env, ocpp_port, http_port)
    try:
        cp = ChargePoint(f"ws://127.0.0.1:{ocpp_port}/ocpp/", "KILL-S1", power_w=360_000, meter_interval_s=0.05,
                         response_timeout_s=5, reconnect_delay_s=0.1)
        async with trio.open_nursery() as nursery, httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{http_port}", timeout=15) as api:
            await nursery.start(cp.run)
            s = await started(api, token, "KILL-S1", 1, limit=90_000)
            await wait_session(api, token, s["id"], status="charging", energy_above=10)
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            # The charger stops while the server is down; the StopTransaction waits in its queue.
            await cp.stop_transaction(1)
            proc = await _start(env, ocpp_port, http_port)
            done = await wait_session(api, token, s["id"], status="completed", timeout=20)
            [(tx_id, stop_wh, stopped_at)] = await rows(db, "SELECT id, meter_stop_wh, stopped_at FROM transactions")
            # The same StopTransaction again (its answer was lost), after another kill and restart.
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            proc = await _start(env, ocpp_port, http_port)
            replay = {"transactionId": tx_id, "meterStop": stop_wh, "reason": "Local",
                      "timestamp": stopped_at.isoformat()}
            with trio.fail_after(20):
                while True:  # the charger may not have noticed the kill yet: retry until it is back
                    await cp.wait_connected()
                    try:
                        await cp.call("StopTransaction", replay)
                        break
                    except (SimulatorError, trio.TooSlowError):
                        await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
    finally:
        await stop(proc)
    [(energy,)] = await rows(db, "SELECT energy_wh FROM transactions")
    cost = energy_cost(energy, Price(700))
    assert done["chargedTyiyn"] == cost
    assert await session_row(db) == ("completed", energy, cost)
    assert (await wallet(db, driver_id)).posted == 100_000 - cost
    assert await rows(db, "SELECT count(*) FROM ledger_transfers WHERE kind = 'post'") == [(1,)]
    await assert_ledger_clean(db)


