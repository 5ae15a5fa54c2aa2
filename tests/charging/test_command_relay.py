"""Commands for a charger connected to another csms process travel through PostgreSQL (DESIGN.md).

One node runs in the test's loop, the other as a separate ``csms serve`` on the same database; the
simulated charger connects to the other one, and everything is asked of this one.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest
import trio

from csms.services.command_relay import RELAY_MARGIN_S
from csms.services.commands import ChargerOffline, ChargerRejected, ChargerTimeout
from csms.supervisor import Ready
from tests.charging.support import STOP, credit, gql, rows, setup_station, started, wait_session, wallet
from tests.conftest import TEST_JWT_KEY, add_station, charger, make_user
from tests.ledger_check import assert_ledger_clean
from tests.processes import free_port, start_csms, stop, wait_healthy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    import httpx

    from csms.store.db import Conn
    from tests.conftest import Node


@pytest.fixture
async def other(snode: Node, db_url: str, tmp_path: Path) -> AsyncIterator[Node]:
    """A second csms process on the same database (its gateway, as a charger sees it)."""
    ocpp_port, http_port = free_port(), free_port()
    env = dict(os.environ, CSMS_DATABASE_URL=db_url, CSMS_OCPP_PORT=str(ocpp_port), CSMS_HTTP_PORT=str(http_port),
               CSMS_DB_POOL_SIZE="3", CSMS_JWT_PRIVATE_KEY_FILE=str(TEST_JWT_KEY), CSMS_SHUTDOWN_GRACE="3")
    log = tmp_path / "other-csms.log"
    proc = await start_csms(env, ocpp_port, log=log)
    try:
        await wait_healthy(proc, http_port, log)
        yield replace(snode, ready=Ready(ocpp_port, http_port))
    finally:
        await stop(proc)
    assert proc.returncode == 0, log.read_text()


async def _held_elsewhere(node: Node, station_id: str) -> None:
    """Wait until the other process has written that it holds the charger (presence is flushed each second)."""
    assert node.csms.commands is not None and node.csms.commands.relay is not None
    with trio.fail_after(10):
        while await node.csms.commands.relay.holder(station_id) is None:
            await trio.sleep(0.05)


async def test_a_driver_charges_through_one_node_at_a_charger_on_another(
        snode: Node, other: Node, api: httpx.AsyncClient) -> None:
    await setup_station(snode, "RELAY-1", per_kwh=1000)
    driver_id, token = await make_user(snode.db)
    await credit(snode.db, driver_id, 100_000)
    async with charger(other, "RELAY-1", power_w=360_000, meter_interval_s=0.05) as cp:
        await _held_elsewhere(snode, "RELAY-1")
        assert not snode.csms.commands.is_connected("RELAY-1")  # type: ignore[union-attr]
        s = await started(api, token, "RELAY-1", 1, limit=50_000)
        assert s["status"] in ("accepted", "charging")
        await wait_session(api, token, s["id"], status="charging", energy_above=20)
        stopping = await gql(api, STOP, {"id": s["id"]}, token=token)
        assert stopping["data"]["stopCharging"]["status"] in ("stopping", "completed")
        done = await wait_session(api, token, s["id"], status="completed")
    remote = [a for a, _ in cp.received if a in ("RemoteStartTransaction", "RemoteStopTransaction")]
    assert remote == ["RemoteStartTransaction", "RemoteStopTransaction"]
    metrics = (await api.get("/metrics")).text
    assert "csms_relay_commands_sent_total 2" in metrics
    [(energy,)] = await rows(snode.db, "SELECT meter_stop_wh - meter_start_wh FROM transactions")
    assert done["energyWh"] == energy > 20
    assert done["chargedTyiyn"] == energy  # 1,000 tyiyn per kWh: one tyiyn per Wh
    assert (await wallet(snode.db, driver_id)).posted == 100_000 - energy
    await assert_ledger_clean(snode.db)


async def test_any_command_reaches_the_charger_and_its_answer_comes_back(snode: Node, other: Node) -> None:
    commands = snode.csms.commands
    assert commands is not None
    await add_station(snode, "RELAY-2")
    async with charger(other, "RELAY-2") as cp:
        await _held_elsewhere(snode, "RELAY-2")
        assert await commands.is_online("RELAY-2")
        answer = await commands.get_configuration("RELAY-2", ["HeartbeatInterval"])
        [key] = answer["configurationKey"]
        assert key["key"] == "HeartbeatInterval" and key["value"] == cp.config["HeartbeatInterval"]
        assert (await commands.change_configuration("RELAY-2", "HeartbeatInterval", "123"))["status"] == "Accepted"
        assert cp.config["HeartbeatInterval"] == "123"
        # A CALLERROR comes back with its code (the simulator does not implement reservations).
        with pytest.raises(ChargerRejected) as rejected:
            await commands.call("RELAY-2", "ReserveNow", {"connectorId": 1, "expiryDate": "2030-01-01T00:00:00Z",
                                                          "idTag": "TAG-1", "reservationId": 7})
        assert rejected.value.code == "NotImplemented"
    # Gone from the other node: it answers that the charger is offline (or it is no longer listed).
    with pytest.raises(ChargerOffline):
        await commands.reset("RELAY-2")


async def test_a_node_that_never_answers_is_a_timeout_and_an_unknown_charger_is_offline(snode: Node) -> None:
    commands = snode.csms.commands
    assert commands is not None
    await add_station(snode, "RELAY-3")

    def listed_on_a_silent_node(conn: Conn) -> None:
        conn.execute("INSERT INTO nodes (node_id) VALUES ('silent-node')")
        conn.execute("INSERT INTO charger_connections (station_id, node_id) VALUES ('RELAY-3', 'silent-node')")

    with pytest.raises(ChargerOffline):
        await commands.reset("RELAY-3")
    assert not await commands.is_online("RELAY-3")
    await snode.db.run(listed_on_a_silent_node)
    assert await commands.is_online("RELAY-3")
    started_at = trio.current_time()
    with pytest.raises(ChargerTimeout):
        await commands.call("RELAY-3", "Reset", {"type": "Soft"}, timeout_s=0.2)
    assert trio.current_time() - started_at < 0.2 + RELAY_MARGIN_S + 2


async def test_a_relayed_command_that_meets_a_reconnect_is_sent_once_on_the_new_connection(
        snode: Node, other: Node) -> None:
    commands = snode.csms.commands
    assert commands is not None
    await add_station(snode, "RELAY-4")
    outcomes: dict[str, object] = {}

    async def ask(name: str, action: str) -> None:
        try:
            outcomes[name] = await commands.call("RELAY-4", action, {})
        except ChargerOffline as exc:
            outcomes[name] = exc

    # The charger holds on to GetConfiguration, so ClearCache waits behind it on the other node.
    async with charger(other, "RELAY-4", unanswered={"GetConfiguration"}) as cp:
        await _held_elsewhere(snode, "RELAY-4")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, "sent", "GetConfiguration")
            with trio.fail_after(10):
                while ("GetConfiguration", {}) not in cp.received:
                    await trio.sleep(0.01)
            nursery.start_soon(ask, "queued", "ClearCache")
            await trio.sleep(0.5)
            assert "queued" not in outcomes
            cp.disconnect()  # it reconnects to the other node 0.2 s later
    sent, queued = outcomes["sent"], outcomes["queued"]
    # The other node says whether the CALL had left: the one that had is reported, not resent.
    assert isinstance(sent, ChargerOffline) and sent.sent
    assert queued == {"status": "Accepted"}
    actions = [action for action, _ in cp.received]
    assert actions.count("GetConfiguration") == 1 and actions.count("ClearCache") == 1
