"""Every CALLERROR code the gateway answers, over a real socket; a bad frame never ends the connection."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Node, add_station, charger

VALID_BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}

CASES = [
    ("not json", "-1", "FormationViolation"),
    ('{"an": "object"}', "-1", "FormationViolation"),
    ('[2, 17, "Heartbeat", {}]', "-1", "FormationViolation"),
    ('[9, "u1", "Heartbeat", {}]', "u1", "FormationViolation"),
    ('[2, "u2", "Heartbeat"]', "u2", "ProtocolError"),
    ('[2, "u3", "BootNotification", {"chargePointVendor": "V"}]', "u3", "ProtocolError"),
    ('[2, "u4", "BootNotification", {"chargePointVendor": 5, "chargePointModel": "M"}]', "u4",
     "TypeConstraintViolation"),
    ('[2, "u5", "BootNotification", {"chargePointVendor": "' + "x" * 21 + '", "chargePointModel": "M"}]', "u5",
     "PropertyConstraintViolation"),
    ('[2, "u6", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Sleeping"}]', "u6",
     "PropertyConstraintViolation"),
    ('[2, "u7", "FlyToTheMoon", {}]', "u7", "NotImplemented"),
    ('[2, "u8", "RemoteStartTransaction", {"idTag": "A"}]', "u8", "NotSupported"),
    # Valid JSON, but PostgreSQL text cannot store U+0000: refused before it can fail a group commit.
    ('[2, "u9", "MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": "2026-11-26T10:00:00Z", '
     '"sampledValue": [{"value": "1\\u0000"}]}]}]', "u9", "PropertyConstraintViolation"),
]


@pytest.mark.parametrize(("frame", "uid", "code"), CASES)
async def test_call_error_codes(node: Node, frame: str, uid: str, code: str) -> None:
    await add_station(node, "ERR-1")
    async with charger(node, "ERR-1") as cp:
        answer = json.loads(await cp.send_raw(frame))
        assert answer[0] == 4
        assert answer[1] == uid
        assert answer[2] == code
        # The connection is still good.
        assert "currentTime" in await cp.call("Heartbeat", {})


async def test_internal_error_when_database_refuses(node: Node) -> None:
    await add_station(node, "ERR-2")
    async with charger(node, "ERR-2") as cp:
        # A meter value on a connector id beyond int4 passes the schema but not the database.
        payload = {"connectorId": 1, "meterValue": [{"timestamp": "2026-11-26T10:00:00Z",
                                                     "sampledValue": [{"value": "1"}]}]}
        await cp.call("MeterValues", payload)
        bad = dict(payload, connectorId=2**40)
        answer = json.loads(await cp.send_raw(json.dumps([2, "big", "MeterValues", bad])))
        assert answer[:3] == [4, "big", "InternalError"]
        assert "Traceback" not in answer[3]
        assert "currentTime" in await cp.call("Heartbeat", {})
        # Beyond 64 bits (read as a float by the fast JSON decoder): the same answer, nothing stored.
        for number in ("123456789012345678901234567890", "-9223372036854775809"):
            text = json.dumps([2, "huge", "MeterValues", payload]).replace('"connectorId": 1', f'"connectorId": {number}')
            answer = json.loads(await cp.send_raw(text))
            assert answer[:3] == [4, "huge", "InternalError"]
        assert "currentTime" in await cp.call("Heartbeat", {})


async def test_bad_frames_do_not_affect_other_stations(node: Node) -> None:
    await add_station(node, "BAD-1")
    await add_station(node, "GOOD-1")
    async with charger(node, "BAD-1") as bad, charger(node, "GOOD-1") as good:
        for _ in range(20):
            await bad.send_raw("][")
            assert "currentTime" in await good.call("Heartbeat", {})
        assert "currentTime" in await bad.call("Heartbeat", {})


async def test_backslash_u0000_as_text_is_stored(node: Node) -> None:
    # The six characters \u0000 (an escaped backslash in JSON) are ordinary text, not U+0000.
    await add_station(node, "ERR-3")
    async with charger(node, "ERR-3") as cp:
        payload = {"connectorId": 1, "meterValue": [{"timestamp": "2026-11-26T10:00:00Z",
                                                     "sampledValue": [{"value": "\\u0000"}]}]}
        assert await cp.call("MeterValues", payload) == {}
    rows = await node.db.run(lambda c: c.execute(
        "SELECT value FROM meter_values WHERE station_id = 'ERR-3'").fetchall())
    assert rows == [("\\u0000",)]
