"""The non-transaction handlers: boot, heartbeat, status history, notifications, data transfer."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone

import trio_websocket

from csms.services.clock import iso, parse_timestamp
from tests.conftest import add_station, charger, node_settings, running_node


async def test_boot_persists_identity_and_answers_utc_time(db_url: str) -> None:
    async with running_node(node_settings(db_url, heartbeat_interval_s=42)) as node:
        await add_station(node, "CORE-1")
        async with charger(node, "CORE-1") as cp:
            boot = await cp.call("BootNotification", {
                "chargePointVendor": "ACME", "chargePointModel": "Fast-50", "chargePointSerialNumber": "SN-9",
                "firmwareVersion": "2.1.0", "meterType": "DC"})
            assert boot["status"] == "Accepted"
            assert boot["interval"] == 42
            now = datetime.now(UTC)
            assert boot["currentTime"].endswith("Z")
            assert abs(parse_timestamp(boot["currentTime"]) - now) < timedelta(seconds=5)
            beat = await cp.call("Heartbeat", {})
            assert beat["currentTime"].endswith("Z")
        row = await node.db.run(lambda c: c.execute(
            "SELECT vendor, model, serial_number, firmware_version, meter_type, last_boot_at IS NOT NULL "
            "FROM stations WHERE id = 'CORE-1'").fetchone())
        assert row == ("ACME", "Fast-50", "SN-9", "2.1.0", "DC", True)


async def test_pending_and_rejected_registration(db_url: str) -> None:
    async with running_node(node_settings(db_url)) as node:
        await add_station(node, "CORE-2")
        await node.db.run(lambda c: c.execute("UPDATE stations SET registration_status = 'Pending'"))
        boot = '[2,"%s","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'
        async with trio_websocket.open_websocket_url(node.ocpp_url + "CORE-2", subprotocols=["ocpp1.6"]) as ws:
            await ws.send_message(boot % "b1")
            pending = json.loads(await ws.get_message())[2]
            assert pending["status"] == "Pending"
            assert pending["interval"] > 0  # when to retry
            await node.db.run(lambda c: c.execute("UPDATE stations SET registration_status = 'Rejected'"))
            await ws.send_message(boot % "b2")
            assert json.loads(await ws.get_message())[2]["status"] == "Rejected"


async def test_status_history_notifications_and_data_transfer(db_url: str) -> None:
    async def vendor(station_id: str, message_id: str | None, data: str | None) -> tuple[str, str | None]:
        return "Accepted", f"{station_id}:{message_id}:{data}"

    async with running_node(node_settings(db_url), vendors={"com.acme": vendor}) as node:
        await add_station(node, "CORE-3")
        async with charger(node, "CORE-3") as cp:
            soon = (datetime.now(timezone(timedelta(hours=6))) + timedelta(seconds=30)).isoformat()
            for status in ("Unavailable", "Faulted"):
                await cp.call("StatusNotification", {"connectorId": 2, "errorCode": "GroundFailure",
                                                     "status": status, "info": "rcd",
                                                     "timestamp": soon})
            # An older notification replayed late goes to the history, not to the current status.
            await cp.call("StatusNotification", {"connectorId": 2, "errorCode": "NoError", "status": "Available",
                                                 "timestamp": "2020-11-26T03:00:00Z"})
            assert await cp.call("DiagnosticsStatusNotification", {"status": "Uploading"}) == {}
            assert await cp.call("FirmwareStatusNotification", {"status": "Installed"}) == {}
            assert await cp.call("DataTransfer", {"vendorId": "com.other"}) == {"status": "UnknownVendorId"}
            assert await cp.call("DataTransfer", {"vendorId": "com.acme", "messageId": "m", "data": "d"}) == {
                "status": "Accepted", "data": "CORE-3:m:d"}
        current = await node.db.run(lambda c: c.execute(
            "SELECT status, error_code, info FROM connectors WHERE station_id = 'CORE-3' AND connector_id = 2"
        ).fetchone())
        assert current == ("Faulted", "GroundFailure", "rcd")
        history = await node.db.run(lambda c: c.execute(
            "SELECT status FROM connector_status_history WHERE station_id = 'CORE-3' AND connector_id = 2 "
            "ORDER BY id").fetchall())
        assert [s for (s,) in history][-3:] == ["Unavailable", "Faulted", "Available"]
        notes = await node.db.run(lambda c: c.execute(
            "SELECT diagnostics_status, firmware_status FROM stations WHERE id = 'CORE-3'").fetchone())
        assert notes == ("Uploading", "Installed")


def test_iso_is_utc_with_milliseconds_whatever_the_input() -> None:
    rng = random.Random(3)
    zones = [UTC, timezone(timedelta(hours=6)), timezone(timedelta(hours=-3, minutes=-30))]
    for _ in range(2000):
        ts = datetime(2010, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(10**9),
                                                          microseconds=rng.choice([0, 999, 1000, rng.randrange(10**6)]))
        local = ts.astimezone(rng.choice(zones))
        expected = ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert iso(local) == expected
    assert iso(datetime(2026, 11, 26, 23, 5, 57, tzinfo=UTC)) == "2026-11-26T23:05:57.000Z"
    assert iso(datetime(999, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)) == "0999-01-02T03:04:05.006Z"
