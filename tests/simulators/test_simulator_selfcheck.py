"""Self-check of the charge-point simulator against a tiny fake central system on a real socket.

The real server is tested *with* the simulator elsewhere; here the simulator itself is under test, so the
central system is a deliberately dumb trio-websocket server that records every frame and answers by rule.
"""

from __future__ import annotations

import base64
import contextlib
import json
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio_websocket

from simulators.charger import CallErrorReceived, ChargePoint, parse_args
from simulators.ocppj import now_iso

if TYPE_CHECKING:
    from collections.abc import Callable


class FakeCentral:
    """Records (station, frame) pairs, answers CP→CS CALLs by rule and can send CS→CP frames."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, list[Any]]] = []
        self.conns: dict[str, trio_websocket.WebSocketConnection] = {}
        self.requests: list[trio_websocket.WebSocketRequest] = []
        self.boot_status = "Accepted"
        self.interval: float = 60
        self.next_tx = 100
        self.error_for: set[str] = set()
        self.port = 0

    def calls(self, action: str | None = None) -> list[dict[str, Any]]:
        """Payloads of the CP→CS CALLs received, optionally only of one action."""
        return [f[3] for _, f in self.frames if f[0] == 2 and (action is None or f[2] == action)]

    def actions(self) -> list[str]:
        return [f[2] for _, f in self.frames if f[0] == 2]

    def answer_for(self, uid: str) -> list[Any] | None:
        for _, f in self.frames:
            if f[0] in (3, 4) and f[1] == uid:
                return f
        return None

    def _respond(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        if action == "BootNotification":
            return {"status": self.boot_status, "currentTime": now_iso(), "interval": self.interval}
        if action == "Heartbeat":
            return {"currentTime": now_iso()}
        if action == "StartTransaction":
            self.next_tx += 1
            return {"transactionId": self.next_tx, "idTagInfo": {"status": "Accepted"}}
        if action in ("Authorize", "StopTransaction"):
            return {"idTagInfo": {"status": "Accepted"}}
        return {}

    async def handler(self, request: trio_websocket.WebSocketRequest) -> None:
        self.requests.append(request)
        ws = await request.accept(subprotocol="ocpp1.6")
        station = request.path.rsplit("/", 1)[-1]
        self.conns[station] = ws
        try:
            while True:
                text = await ws.get_message()
                try:
                    frame = json.loads(text)
                except ValueError:
                    frame = [0, "", str(text)]
                    await ws.send_message(json.dumps([4, "-1", "FormationViolation", "not JSON", {}]))
                self.frames.append((station, frame))
                if frame[0] == 2:
                    if frame[2] in self.error_for:
                        reply: list[Any] = [4, frame[1], "InternalError", "told to fail", {}]
                    else:
                        reply = [3, frame[1], self._respond(frame[2], frame[3])]
                    await ws.send_message(json.dumps(reply))
        except trio_websocket.ConnectionClosed:
            pass

    async def send(self, station: str, text: str) -> None:
        await self.conns[station].send_message(text)

    async def call(self, station: str, action: str, payload: dict[str, Any]) -> list[Any]:
        """Send a CS→CP CALL and return the CP's answer frame."""
        uid = f"cs-{len(self.frames)}-{action}"
        await self.send(station, json.dumps([2, uid, action, payload]))
        answer: list[Any] = await wait_for(lambda: self.answer_for(uid))
        return answer


async def ask(central: FakeCentral, action: str, payload: dict[str, Any]) -> Any:
    """Send a CS→CP CALL to SIM-1 and return the answer's payload (or error code for a CALLERROR)."""
    return (await central.call("SIM-1", action, payload))[2]


async def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll ``predicate`` until it returns something truthy."""
    with trio.fail_after(timeout):
        while not (value := predicate()):
            await trio.sleep(0.01)
        return value


@pytest.fixture
async def central(nursery: trio.Nursery) -> FakeCentral:
    fake = FakeCentral()
    server = await nursery.start(trio_websocket.serve_websocket, fake.handler, "127.0.0.1", 0, None)
    fake.port = server.port
    return fake


def make_cp(central: FakeCentral, **kwargs: Any) -> ChargePoint:
    defaults: dict[str, Any] = {"meter_interval_s": 0.05, "power_w": 3_600_000, "response_timeout_s": 2.0}
    return ChargePoint(f"ws://127.0.0.1:{central.port}/ocpp/", "SIM-1", **(defaults | kwargs))


async def test_boot_status_heartbeat(central: FakeCentral, nursery: trio.Nursery) -> None:
    central.interval = 0.1  # not valid OCPP (an int), but keeps the test fast
    cp = make_cp(central, password="s3cret")
    await nursery.start(cp.run)

    boot = central.calls("BootNotification")[0]
    assert boot == {"chargePointVendor": "csms-sim", "chargePointModel": "SimCharger",
                    "chargePointSerialNumber": "SIM-1", "firmwareVersion": "1.0"}
    assert [(s["connectorId"], s["status"]) for s in central.calls("StatusNotification")] == [
        (0, "Available"), (1, "Available"), (2, "Available")]
    assert cp.boot_response is not None
    assert cp.boot_response["status"] == "Accepted"
    request = central.requests[0]
    assert request.path == "/ocpp/SIM-1"
    assert "ocpp1.6" in request.proposed_subprotocols
    token = base64.b64encode(b"SIM-1:s3cret")
    assert (b"authorization", b"Basic " + token) in request.headers
    await wait_for(lambda: len(central.calls("Heartbeat")) >= 2)


async def test_boot_pending_is_retried(central: FakeCentral, nursery: trio.Nursery) -> None:
    central.boot_status, central.interval = "Pending", 0.05
    cp = make_cp(central)
    nursery.start_soon(cp.run)
    await wait_for(lambda: len(central.calls("BootNotification")) >= 2)
    assert not central.calls("StatusNotification")  # nothing but boots before Accepted
    central.boot_status = "Accepted"
    with trio.fail_after(2):
        await cp.wait_connected()


async def test_remote_start_meter_values_remote_stop(central: FakeCentral, nursery: trio.Nursery) -> None:
    cp = make_cp(central)
    await nursery.start(cp.run)

    answer = await central.call("SIM-1", "RemoteStartTransaction", {"idTag": "TAG-1"})
    assert answer[2] == {"status": "Accepted"}
    start = (await wait_for(lambda: central.calls("StartTransaction")))[0]
    assert start["connectorId"] == 1
    assert start["idTag"] == "TAG-1"
    assert start["meterStart"] == 0
    assert start["timestamp"].endswith("Z")
    await wait_for(lambda: len(central.calls("MeterValues")) >= 3)
    tx_id = cp.connectors[1].transaction_id
    assert tx_id == 101

    meters = central.calls("MeterValues")
    assert all(m["transactionId"] == tx_id for m in meters)
    energy = []
    for m in meters:
        values = {v["measurand"]: v for v in m["meterValue"][0]["sampledValue"]}
        assert values["Power.Active.Import"]["unit"] == "W"
        assert values["SoC"]["unit"] == "Percent"
        assert values["Energy.Active.Import.Register"]["context"] == "Sample.Periodic"
        energy.append(float(values["Energy.Active.Import.Register"]["value"]))
    assert energy == sorted(energy)
    assert energy[-1] > energy[0]

    assert await ask(central, "RemoteStopTransaction", {"transactionId": 999}) == {
        "status": "Rejected"}
    answer = await central.call("SIM-1", "RemoteStopTransaction", {"transactionId": tx_id})
    assert answer[2] == {"status": "Accepted"}
    stop = (await wait_for(lambda: central.calls("StopTransaction")))[0]
    assert stop["transactionId"] == tx_id
    assert stop["reason"] == "Remote"
    assert stop["meterStop"] >= int(energy[-1])
    assert stop["transactionData"][0]["sampledValue"][0]["context"] == "Transaction.End"
    await cp.wait_for_status(1, "Available", timeout=2)
    statuses = [s["status"] for s in central.calls("StatusNotification") if s["connectorId"] == 1]
    assert statuses == ["Available", "Preparing", "Charging", "Finishing", "Available"]
    # No MeterValues after the StopTransaction.
    assert central.actions()[-2:] == ["StatusNotification", "StatusNotification"]


async def test_offline_queue_replayed_in_order_with_real_id(
    central: FakeCentral, nursery: trio.Nursery
) -> None:
    cp = make_cp(central)
    await nursery.start(cp.run)
    cp.go_offline()
    assert cp.offline
    placeholder = await cp.start_transaction(1, "TAG-OFF")
    assert placeholder < 0
    await trio.sleep(0.2)  # a few MeterValues get queued
    await cp.stop_transaction(1)
    before = len(central.frames)
    assert not central.calls("StartTransaction")

    cp.go_online()
    stop = (await wait_for(lambda: central.calls("StopTransaction")))[0]
    after = [f[2] for _, f in central.frames[before:] if f[0] == 2]
    assert after[0] == "BootNotification"
    tx_actions = [a for a in after if a in ("StartTransaction", "MeterValues", "StopTransaction")]
    assert tx_actions[0] == "StartTransaction"
    assert tx_actions[-1] == "StopTransaction"
    assert len(tx_actions) >= 4
    real_id = 101
    assert stop["transactionId"] == real_id
    assert all(m["transactionId"] == real_id for m in central.calls("MeterValues"))
    assert after.index("StartTransaction") > after.index("BootNotification")


async def test_disconnect_mid_transaction_reconnects_and_keeps_messages(
    central: FakeCentral, nursery: trio.Nursery
) -> None:
    cp = make_cp(central, reconnect_delay_s=0.1)
    await nursery.start(cp.run)
    tx_id = await cp.start_transaction(2, "TAG-2")
    await wait_for(lambda: central.calls("MeterValues"))
    cp.disconnect()
    await wait_for(lambda: len(central.calls("BootNotification")) == 2)
    await cp.wait_connected()
    await cp.stop_transaction(2)
    stop = (await wait_for(lambda: central.calls("StopTransaction")))[0]
    assert stop["transactionId"] == tx_id


async def test_configuration(central: FakeCentral, nursery: trio.Nursery) -> None:
    cp = make_cp(central)
    await nursery.start(cp.run)
    everything = await ask(central, "GetConfiguration", {})
    keys = {k["key"]: k for k in everything["configurationKey"]}
    assert keys["NumberOfConnectors"] == {"key": "NumberOfConnectors", "readonly": True, "value": "2"}
    assert "unknownKey" not in everything
    some = await ask(central, "GetConfiguration", {"key": ["HeartbeatInterval", "Nope"]})
    assert [k["key"] for k in some["configurationKey"]] == ["HeartbeatInterval"]
    assert some["unknownKey"] == ["Nope"]

    async def change(key: str, value: str) -> str:
        return str((await ask(central, "ChangeConfiguration", {"key": key, "value": value}))["status"])

    assert await change("Nope", "1") == "NotSupported"
    assert await change("NumberOfConnectors", "4") == "Rejected"
    assert await change("HeartbeatInterval", "abc") == "Rejected"
    assert await change("HeartbeatInterval", "42") == "Accepted"
    assert await change("MeterValueSampleInterval", "7") == "Accepted"
    assert cp.heartbeat_interval == 42
    assert cp.meter_interval_s == 7.0
    got = await ask(central, "GetConfiguration", {"key": ["HeartbeatInterval"]})
    assert got["configurationKey"][0]["value"] == "42"


async def test_malformed_and_unknown_frames_from_server(central: FakeCentral, nursery: trio.Nursery) -> None:
    cp = make_cp(central)
    await nursery.start(cp.run)
    await central.send("SIM-1", "this is not json")
    await central.send("SIM-1", '[2, "bad-1", "Reset"]')
    assert (await wait_for(lambda: central.answer_for("bad-1")))[2] == "FormationViolation"
    await central.send("SIM-1", '[7, "bad-2", {}]')
    assert (await wait_for(lambda: central.answer_for("bad-2")))[2] == "ProtocolError"
    assert await ask(central, "FancyAction", {}) == "NotImplemented"
    assert await ask(central, "RemoteStartTransaction", {}) == "OccurenceConstraintViolation"
    assert await ask(central, "UnlockConnector", {"connectorId": "1"}) == "TypeConstraintViolation"
    assert ("FancyAction", {}) in cp.received
    # Still alive and answering.
    assert await ask(central, "ClearCache", {}) == {"status": "Accepted"}


async def test_other_commands(central: FakeCentral, nursery: trio.Nursery) -> None:
    cp = make_cp(central)
    await nursery.start(cp.run)
    assert await ask(central, "DataTransfer", {"vendorId": "x"}) == {"status": "UnknownVendorId"}
    assert await ask(central, "UnlockConnector", {"connectorId": 1}) == {"status": "Unlocked"}
    assert await ask(central, "UnlockConnector", {"connectorId": 9}) == {"status": "NotSupported"}

    answer = await central.call("SIM-1", "ChangeAvailability", {"connectorId": 2, "type": "Inoperative"})
    assert answer[2] == {"status": "Accepted"}
    await cp.wait_for_status(2, "Unavailable", timeout=2)
    tx_id = await cp.start_transaction(1, "TAG")
    answer = await central.call("SIM-1", "ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    assert answer[2] == {"status": "Scheduled"}

    for message in ("Heartbeat", "StatusNotification", "DiagnosticsStatusNotification", "MeterValues"):
        answer = await ask(central, "TriggerMessage", {"requestedMessage": message, "connectorId": 1})
        assert answer == {"status": "Accepted"}
    await wait_for(lambda: central.calls("DiagnosticsStatusNotification") == [{"status": "Idle"}])
    await wait_for(lambda: any(m["meterValue"][0]["sampledValue"][0]["context"] == "Trigger"
                               for m in central.calls("MeterValues")))

    answer = await central.call("SIM-1", "Reset", {"type": "Soft"})
    assert answer[2] == {"status": "Accepted"}
    stop = (await wait_for(lambda: central.calls("StopTransaction")))[0]
    assert (stop["transactionId"], stop["reason"]) == (tx_id, "SoftReset")
    await wait_for(lambda: len(central.calls("BootNotification")) == 2)
    assert cp.connectors[1].status == "Unavailable"  # the scheduled change applied when the transaction ended


async def test_call_send_raw_duplicates(central: FakeCentral, nursery: trio.Nursery) -> None:
    cp = make_cp(central)
    await nursery.start(cp.run)
    assert "currentTime" in await cp.call("Heartbeat", {})
    central.error_for.add("DataTransfer")
    with pytest.raises(CallErrorReceived) as err:
        await cp.call("DataTransfer", {"vendorId": "x"})
    assert err.value.code == "InternalError"

    raw = await cp.send_raw('[2, "raw-1", "Heartbeat", {}]')
    assert json.loads(raw)[:2] == [3, "raw-1"]
    raw = await cp.send_raw("garbage")
    assert json.loads(raw)[2] == "FormationViolation"

    cp.duplicate_next = 1
    await cp.start_transaction(1, "TAG-D")
    starts = [f for _, f in central.frames if f[0] == 2 and f[2] == "StartTransaction"]
    assert len(starts) == 2
    assert starts[0][1] != starts[1][1]
    assert starts[0][3] == starts[1][3]
    assert len(cp.duplicate_responses) == 1

    await cp.resend_last(same_uid=True)
    await cp.resend_last(same_uid=False)
    last_three = [f for _, f in central.frames if f[0] == 2][-3:]
    assert last_three[0][1] == last_three[1][1] != last_three[2][1]
    assert last_three[0][3] == last_three[2][3]


async def test_response_timeout(nursery: trio.Nursery) -> None:
    async def silent(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept(subprotocol="ocpp1.6")
        with contextlib.suppress(trio_websocket.ConnectionClosed):
            while True:
                await ws.get_message()

    server = await nursery.start(trio_websocket.serve_websocket, silent, "127.0.0.1", 0, None)
    cp = ChargePoint(f"ws://127.0.0.1:{server.port}/", "SIM-1", response_timeout_s=0.1, reconnect=False)
    with pytest.raises(trio.TooSlowError):
        await cp.call("Heartbeat", {})  # never connected: waits for the boot, then gives up
    with trio.fail_after(2):
        await cp.run()  # the boot times out, the connection ends and, without reconnect, run() returns
    assert cp.boot_response is None


def test_cli_args() -> None:
    args = parse_args(["--url", "ws://h/ocpp/", "--count", "3", "--meter-interval", "0.5"])
    assert (args.count, args.id_prefix, args.meter_interval, args.power_w) == (3, "SIM-", 0.5, 11000)
