"""CS→CP commands through the ChargerCommands interface, answered by the simulator."""

from __future__ import annotations

import pytest
import trio
import trio_websocket

from csms.services.commands import ChargerCommands, ChargerOffline, ChargerRejected, ChargerTimeout
from csms.store.stations import upsert_id_tag
from tests.conftest import Node, add_station, charger


def _commands(node: Node) -> ChargerCommands:
    assert node.csms.commands is not None
    return node.csms.commands


async def test_remote_start_and_stop(node: Node) -> None:
    await add_station(node, "CMD-1")
    await node.db.run(upsert_id_tag, "REMOTE-TAG", "Accepted", None, None)
    cmd = _commands(node)
    async with charger(node, "CMD-1", power_w=360_000, meter_interval_s=0.05) as cp:
        assert await cmd.remote_start("CMD-1", "REMOTE-TAG", connector_id=2) == {"status": "Accepted"}
        await cp.wait_for_status(2, "Charging")
        tx_id = cp.connectors[2].transaction_id
        assert tx_id is not None and tx_id > 0
        await trio.sleep(0.2)
        assert await cmd.remote_stop("CMD-1", tx_id) == {"status": "Accepted"}
        await cp.wait_for_status(2, "Available")
        # Unknown transaction: the charger rejects.
        assert await cmd.remote_stop("CMD-1", 424242) == {"status": "Rejected"}
    rows = await node.db.run(lambda c: c.execute("SELECT stop_reason, energy_wh > 0 FROM transactions").fetchall())
    assert rows == [("Remote", True)]


async def test_every_command_gets_the_chargers_answer(node: Node) -> None:
    await add_station(node, "CMD-2")
    cmd = _commands(node)
    async with charger(node, "CMD-2") as cp:
        assert (await cmd.unlock_connector("CMD-2", 1))["status"] == "Unlocked"
        assert (await cmd.change_availability("CMD-2", 1, "Inoperative"))["status"] == "Accepted"
        assert (await cmd.change_configuration("CMD-2", "HeartbeatInterval", "120"))["status"] == "Accepted"
        assert (await cmd.change_configuration("CMD-2", "NoSuchKey", "1"))["status"] == "NotSupported"
        conf = await cmd.get_configuration("CMD-2", ["HeartbeatInterval", "Bogus"])
        assert conf["configurationKey"][0]["value"] == "120"
        assert conf["unknownKey"] == ["Bogus"]
        assert (await cmd.clear_cache("CMD-2"))["status"] == "Accepted"
        assert (await cmd.trigger_message("CMD-2", "Heartbeat"))["status"] == "Accepted"
        assert (await cmd.data_transfer("CMD-2", "com.example"))["status"] == "UnknownVendorId"
        assert (await cmd.reset("CMD-2", "Soft"))["status"] == "Accepted"
        await cp.wait_connected()
    actions = [a for a, _ in cp.received]
    assert actions[:4] == ["UnlockConnector", "ChangeAvailability", "ChangeConfiguration", "ChangeConfiguration"]


async def test_offline_and_timeout(node: Node) -> None:
    await add_station(node, "CMD-3")
    cmd = _commands(node)
    with pytest.raises(ChargerOffline):
        await cmd.clear_cache("CMD-3")
    # A charger that never answers: the call times out and the slot is free again afterwards.
    async with trio_websocket.open_websocket_url(node.ocpp_url + "CMD-3", subprotocols=["ocpp1.6"]) as ws:
        with pytest.raises(ChargerTimeout):
            await cmd.call("CMD-3", "ClearCache", {}, timeout_s=0.3)
        late = await ws.get_message()
        await ws.send_message(f'[3,"{late.split(chr(34))[1]}",{{"status":"Accepted"}}]')  # too late: ignored

        async def answer(frame: str) -> None:
            text = await ws.get_message()
            await ws.send_message(frame.replace("UID", text.split('"')[1]))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer, '[4,"UID","NotSupported","no cache",{}]')
            with pytest.raises(ChargerRejected) as rejected:
                await cmd.clear_cache("CMD-3")
        assert rejected.value.code == "NotSupported"
        async with trio.open_nursery() as nursery:
            # A result that breaks the action's schema is refused too.
            nursery.start_soon(answer, '[3,"UID",{"status":"Maybe"}]')
            with pytest.raises(ChargerRejected):
                await cmd.clear_cache("CMD-3")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer, '[3,"UID",{"status":"Accepted"}]')
            assert await cmd.clear_cache("CMD-3") == {"status": "Accepted"}


async def test_a_command_that_meets_a_reconnect_goes_out_on_the_new_connection(node: Node) -> None:
    await add_station(node, "CMD-6")
    cmd = _commands(node)
    outcomes: dict[str, object] = {}

    async def ask(name: str, action: str) -> None:
        try:
            outcomes[name] = await cmd.call("CMD-6", action, {})
        except ChargerOffline as exc:
            outcomes[name] = exc

    # The charger holds on to GetConfiguration, so ClearCache queues behind it (one CALL in flight).
    async with charger(node, "CMD-6", unanswered={"GetConfiguration"}) as cp, trio.open_nursery() as nursery:
        nursery.start_soon(ask, "sent", "GetConfiguration")
        with trio.fail_after(5):
            while ("GetConfiguration", {}) not in cp.received:
                await trio.sleep(0.01)
        nursery.start_soon(ask, "queued", "ClearCache")
        await trio.sleep(0.2)
        assert "queued" not in outcomes
        cp.disconnect()  # the connection drops; the simulator reconnects 0.2 s later
    sent, queued = outcomes["sent"], outcomes["queued"]
    # The CALL that had left may have been acted on: reported, never sent again.
    assert isinstance(sent, ChargerOffline) and sent.sent and sent.interrupted
    # The one that had not left waited for the charger to be back and went out on the new connection.
    assert queued == {"status": "Accepted"}
    actions = [action for action, _ in cp.received]
    assert actions.count("GetConfiguration") == 1 and actions.count("ClearCache") == 1


async def test_a_charger_that_does_not_come_back_is_offline_after_the_grace(node: Node) -> None:
    await add_station(node, "CMD-7")
    cmd = _commands(node)
    cmd.reconnect_grace_s = 0.5
    started = trio.current_time()
    with pytest.raises(ChargerOffline) as never:  # never connected: no wait at all
        await cmd.clear_cache("CMD-7")
    assert not never.value.interrupted and trio.current_time() - started < 0.4
    outcomes: dict[str, BaseException] = {}

    async def ask(name: str, action: str) -> None:
        try:
            await cmd.call("CMD-7", action, {})
        except ChargerOffline as exc:
            outcomes[name] = exc

    async with trio.open_nursery() as nursery:
        async with trio_websocket.open_websocket_url(node.ocpp_url + "CMD-7", subprotocols=["ocpp1.6"]) as ws:
            nursery.start_soon(ask, "sent", "ClearCache")
            await ws.get_message()  # it left; never answered
            nursery.start_soon(ask, "queued", "GetConfiguration")
            await trio.sleep(0.2)
        started = trio.current_time()  # the socket closed: nobody comes back
    queued = outcomes["queued"]
    assert isinstance(queued, ChargerOffline) and queued.interrupted and not queued.sent
    assert 0.4 <= trio.current_time() - started < 2
    assert isinstance(outcomes["sent"], ChargerOffline) and outcomes["sent"].sent  # type: ignore[attr-defined]
