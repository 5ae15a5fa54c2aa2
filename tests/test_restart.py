"""A csms process killed with SIGKILL and restarted loses no confirmed message and bills once."""

from __future__ import annotations

import os
import signal
from typing import Any

import psycopg
import trio

from simulators.chargepoint import ChargePoint
from tests.processes import free_port, start_csms, stop


def _rows(db_url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(sql).fetchall()


async def test_sigkill_loses_no_confirmed_message(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO stations (id) VALUES ('KILL-1')")
        conn.execute("INSERT INTO id_tags (id_tag) VALUES ('KILL-TAG')")
    ocpp_port = free_port()
    env = dict(os.environ, CSMS_DATABASE_URL=db_url, CSMS_OCPP_PORT=str(ocpp_port),
               CSMS_HTTP_PORT=str(free_port()), CSMS_DB_POOL_SIZE="3")
    proc = await start_csms(env, ocpp_port)
    try:
        cp = ChargePoint(f"ws://127.0.0.1:{ocpp_port}/ocpp/", "KILL-1", power_w=360_000, meter_interval_s=0.05,
                         response_timeout_s=5, reconnect_delay_s=0.1)
        async with trio.open_nursery() as nursery:
            await nursery.start(cp.run)
            tx_id = await cp.start_transaction(1, "KILL-TAG")
            await trio.sleep(0.3)
            # Everything the charger got an answer for is committed: kill the server without warning.
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            assert _rows(db_url, f"SELECT id FROM transactions WHERE id = {tx_id}") == [(tx_id,)]
            confirmed = _rows(db_url, f"SELECT count(*) FROM meter_values WHERE transaction_id = {tx_id}")[0][0]
            assert confirmed > 0
            # While the server is down the charger stops; the StopTransaction is queued and replayed.
            await cp.stop_transaction(1)
            proc = await start_csms(env, ocpp_port)
            with trio.fail_after(20):
                while _rows(db_url, "SELECT stopped_at IS NOT NULL FROM transactions") != [(True,)]:
                    await trio.sleep(0.1)
            # A duplicate of the stop after the restart is confirmed and changes nothing.
            await cp.call("StopTransaction", {"transactionId": tx_id, "meterStop": 1,
                                              "timestamp": "2026-11-26T12:00:00Z"})
            meter_stop = int(cp.connectors[1].meter_wh)
            nursery.cancel_scope.cancel()
        assert _rows(db_url, "SELECT id, meter_stop_wh FROM transactions") == [(tx_id, meter_stop)]
        after = _rows(db_url, f"SELECT count(*) FROM meter_values WHERE transaction_id = {tx_id}")[0][0]
        assert after >= confirmed
    finally:
        await stop(proc)


async def test_repeated_signals_still_stop_gracefully(db_url: str) -> None:
    ocpp_port = free_port()
    env = dict(os.environ, CSMS_DATABASE_URL=db_url, CSMS_OCPP_PORT=str(ocpp_port),
               CSMS_HTTP_PORT=str(free_port()), CSMS_DB_POOL_SIZE="3")
    proc = await start_csms(env, ocpp_port)
    # A terminal's Ctrl-C and a supervisor's SIGTERM often arrive together: the second must not kill it.
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGTERM)
    with trio.fail_after(20):
        assert await proc.wait() == 0
