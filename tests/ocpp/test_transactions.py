"""Transactions end to end with the simulator: durable, idempotent, replay-safe."""

from __future__ import annotations

import json
from typing import Any

import trio

from csms.store.db import Conn
from tests.conftest import Node, add_station, charger


async def _tag(node: Node, tag: str, status: str = "Accepted") -> None:
    from csms.store.stations import upsert_id_tag

    await node.db.run(upsert_id_tag, tag, status, None, None)


async def _rows(node: Node, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    def q(conn: Conn) -> list[tuple[Any, ...]]:
        return conn.execute(sql, args).fetchall()

    return await node.db.run(q)


async def test_transaction_with_meter_values(node: Node) -> None:
    await add_station(node, "TX-1")
    await _tag(node, "TAG-1")
    async with charger(node, "TX-1", power_w=360_000, meter_interval_s=0.05) as cp:
        # Id tags match case-insensitively.
        tx_id = await cp.start_transaction(1, "tag-1")
        assert tx_id > 0
        await trio.sleep(0.3)
        await cp.stop_transaction(1)
    rows = await _rows(node, "SELECT station_id, connector_id, id_tag_status, meter_start_wh, meter_stop_wh, "
                             "energy_wh, stop_reason FROM transactions")
    assert len(rows) == 1
    station, connector, status, start, stop, energy, reason = rows[0]
    assert (station, connector, status, reason) == ("TX-1", 1, "Accepted", "Local")
    assert stop > start
    assert energy == stop - start
    samples = await _rows(node, "SELECT count(*), count(DISTINCT measurand) FROM meter_values "
                                "WHERE transaction_id = %s AND source = 'MeterValues'", tx_id)
    assert samples[0][0] >= 3
    assert samples[0][1] >= 2  # energy and power at least
    final = await _rows(node, "SELECT connector_id FROM meter_values WHERE source = 'StopTransaction'")
    assert final and all(c == 1 for (c,) in final)  # transactionData filed under the transaction's connector
    statuses = await _rows(node, "SELECT status FROM connector_status_history WHERE connector_id = 1 ORDER BY id")
    assert [s for (s,) in statuses][:3] == ["Available", "Preparing", "Charging"]


async def test_unknown_and_blocked_tags(node: Node) -> None:
    await add_station(node, "TX-2")
    await _tag(node, "BLOCKED-1", "Blocked")
    await _tag(node, "EXPIRED-1", "Expired")
    async with charger(node, "TX-2") as cp:
        assert (await cp.call("Authorize", {"idTag": "NOBODY"}))["idTagInfo"]["status"] == "Invalid"
        assert (await cp.call("Authorize", {"idTag": "blocked-1"}))["idTagInfo"]["status"] == "Blocked"
        assert (await cp.call("Authorize", {"idTag": "EXPIRED-1"}))["idTagInfo"]["status"] == "Expired"
        # StartTransaction re-verifies the tag, and still allocates an id so the charger can stop.
        answer = await cp.call("StartTransaction", {"connectorId": 2, "idTag": "BLOCKED-1", "meterStart": 10,
                                                    "timestamp": "2026-11-26T10:00:00Z"})
        assert answer["idTagInfo"]["status"] == "Blocked"
        assert answer["transactionId"] > 0


async def test_duplicate_start_gets_same_id_and_same_uid_is_not_executed_twice(node: Node) -> None:
    await add_station(node, "TX-3")
    await _tag(node, "TAG-3")
    async with charger(node, "TX-3") as cp:
        start = {"connectorId": 1, "idTag": "TAG-3", "meterStart": 1000,
                 "timestamp": "2026-11-26T10:00:00.123+06:00"}
        first = await cp.call("StartTransaction", start)
        again = await cp.resend_last(same_uid=False)  # a new unique id: a resend after a lost answer
        assert again == first
        replay = await cp.resend_last(same_uid=True)  # the same unique id: answered from memory
        assert replay == first
        status = {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}
        await cp.call("StatusNotification", status)
        await cp.resend_last(same_uid=True)
    assert await _rows(node, "SELECT count(*) FROM transactions") == [(1,)]
    history = await _rows(node, "SELECT count(*) FROM connector_status_history WHERE status = 'Charging'")
    assert history == [(1,)]
    kinds = await _rows(node, "SELECT kind FROM ocpp_anomalies")
    assert ("duplicate_start_transaction",) in kinds


async def test_repeated_and_unknown_stop_are_confirmed_and_recorded(node: Node) -> None:
    await add_station(node, "TX-4")
    await _tag(node, "TAG-4")
    async with charger(node, "TX-4") as cp:
        start = await cp.call("StartTransaction", {"connectorId": 1, "idTag": "TAG-4", "meterStart": 0,
                                                   "timestamp": "2026-11-26T10:00:00Z"})
        stop = {"transactionId": start["transactionId"], "meterStop": 5000, "timestamp": "2026-11-26T11:00:00Z",
                "reason": "EVDisconnected"}
        assert await cp.call("StopTransaction", stop) == {}
        later = dict(stop, meterStop=9999)
        assert await cp.call("StopTransaction", later) == {}  # repeated: confirmed, changes nothing
        unknown = dict(stop, transactionId=987654)
        assert await cp.call("StopTransaction", unknown) == {}
    assert await _rows(node, "SELECT meter_stop_wh, energy_wh FROM transactions") == [(5000, 5000)]
    kinds = sorted(k for (k,) in await _rows(node, "SELECT kind FROM ocpp_anomalies"))
    assert kinds == ["stop_repeated_transaction", "stop_unknown_transaction"]


async def test_absurd_timestamp_replaced_and_flagged(node: Node) -> None:
    await add_station(node, "TX-5")
    async with charger(node, "TX-5") as cp:
        await cp.call("StartTransaction", {"connectorId": 1, "idTag": "ANY", "meterStart": 0,
                                           "timestamp": "1970-01-01T00:00:00Z"})
    (started,), = await _rows(node, "SELECT started_at > now() - interval '1 minute' FROM transactions")
    assert started is True
    assert await _rows(node, "SELECT kind FROM ocpp_anomalies") == [("timestamp_replaced",)]


async def test_offline_replay_after_reconnect_bills_once(node: Node) -> None:
    await add_station(node, "TX-6")
    await _tag(node, "TAG-6")
    async with charger(node, "TX-6", power_w=360_000, meter_interval_s=0.05) as cp:
        tx_id = await cp.start_transaction(1, "TAG-6")
        await trio.sleep(0.2)
        cp.go_offline()  # drop the socket mid-transaction; meter values and the stop queue up
        await trio.sleep(0.3)
        await cp.stop_transaction(1)
        assert await _rows(node, "SELECT stopped_at FROM transactions") == [(None,)]
        cp.duplicate_next = 1  # and the first replayed message is sent twice
        cp.go_online()
        with trio.fail_after(10):
            while (await _rows(node, "SELECT stopped_at IS NOT NULL FROM transactions")) != [(True,)]:
                await trio.sleep(0.05)
        meter_wh = cp.connectors[1].meter_wh
    rows = await _rows(node, "SELECT id, meter_stop_wh FROM transactions")
    assert rows == [(tx_id, int(meter_wh))]
    offline = await _rows(node, "SELECT count(*) FROM meter_values WHERE transaction_id = %s "
                                "AND sampled_at > (SELECT started_at FROM transactions) + interval '0.25 s'", tx_id)
    assert offline[0][0] > 0  # samples taken while offline arrived


async def test_journal_records_frames(node: Node) -> None:
    # A CALL and its answer are one row, each frame verbatim; a frame that could not be read is kept
    # with the CALLERROR it got.
    await add_station(node, "TX-7")
    async with charger(node, "TX-7") as cp:
        answer = await cp.call("Heartbeat", {})
        error = json.loads(await cp.send_raw('[2,"bad-1","Heartbeat"]'))
    with trio.fail_after(5):
        while True:
            rows = await _rows(node, "SELECT direction, message_type, action, payload, answer_type, answer_payload, "
                                     "answered_at >= received_at FROM ocpp_journal WHERE station_id = 'TX-7' "
                                     "AND (action = 'Heartbeat' OR unique_id = 'bad-1') ORDER BY id")
            if len(rows) >= 2:
                break
            await trio.sleep(0.05)
    (direction, kind, action, frame, answer_type, answer_frame, ordered), bad = rows[-2:]
    assert (direction, kind, action, answer_type, ordered) == ("in", 2, "Heartbeat", 3, True)
    assert json.loads(frame)[2:] == ["Heartbeat", {}]
    assert json.loads(answer_frame)[2] == answer
    assert bad[:5] == ("in", None, None, '[2,"bad-1","Heartbeat"]', 4)
    assert json.loads(bad[5]) == error
    assert error[:3] == [4, "bad-1", "ProtocolError"]  # a CALL without its payload


async def test_meter_values_defaults_and_clock_rules(node: Node) -> None:
    await add_station(node, "TX-8")
    async with charger(node, "TX-8") as cp:
        await cp.call("MeterValues", {"connectorId": 1, "meterValue": [
            {"timestamp": "1999-01-01T00:00:00Z", "sampledValue": [{"value": "10"}]},
            {"timestamp": "2026-11-26T10:00:00.250+06:00",
             "sampledValue": [{"value": "7.5", "measurand": "Power.Active.Import", "unit": "kW", "phase": "L1"}]},
        ]})
    rows = await _rows(node, "SELECT measurand, unit, context, location, phase, value, transaction_id, "
                             "sampled_at > now() - interval '1 minute', sampled_at = '2026-11-26T04:00:00.25Z' "
                             "FROM meter_values ORDER BY id")
    assert rows == [
        ("Energy.Active.Import.Register", "Wh", "Sample.Periodic", "Outlet", None, "10", None, True, False),
        ("Power.Active.Import", "kW", "Sample.Periodic", "Outlet", "L1", "7.5", None, False, True),
    ]
    flagged = await _rows(node, "SELECT kind, detail->>'sent', detail->>'action' FROM ocpp_anomalies")
    assert flagged == [("timestamp_replaced", "1999-01-01T00:00:00Z", "MeterValues")]
