"""Two csms processes on one database: a subscription on either one sees what a charger does on the other.

Events travel only through PostgreSQL (NOTIFY inside the writing transaction, one LISTEN per process),
so no other broker is needed for live updates when csms runs on several nodes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

import httpx
import trio

from csms.supervisor import Ready
from tests.api.ws_client import WsClient, on_the_map
from tests.conftest import TEST_JWT_KEY, add_station, charger

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import Node

STATUS = "subscription S($id: String!) { stationStatusChanged(stationId: $id) { connectorId status } }"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_healthy(http_port: int, proc: trio.Process, log: Path) -> None:
    async with httpx.AsyncClient() as http:
        with trio.fail_after(30):
            while True:
                assert proc.returncode is None, log.read_text()
                try:
                    if (await http.get(f"http://127.0.0.1:{http_port}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await trio.sleep(0.05)


async def _status_changes(ws: WsClient, op_id: str, want: dict[int, str]) -> None:
    """Read ``stationStatusChanged`` messages until every connector in ``want`` has its status."""
    seen: dict[int, str] = {}
    while any(seen.get(c) != s for c, s in want.items()):
        change = (await ws.next_data(op_id, timeout=10))["stationStatusChanged"]
        seen[change["connectorId"]] = change["status"]


async def test_subscriptions_see_changes_made_by_the_other_process(node: Node, db_url: str, tmp_path: Path) -> None:
    ocpp_port, http_port = _free_port(), _free_port()
    env = dict(os.environ, CSMS_DATABASE_URL=db_url, CSMS_OCPP_PORT=str(ocpp_port), CSMS_HTTP_PORT=str(http_port),
               CSMS_DB_POOL_SIZE="3", CSMS_JWT_PRIVATE_KEY_FILE=str(TEST_JWT_KEY), CSMS_SHUTDOWN_GRACE="3")
    log = tmp_path / "other-csms.log"
    with log.open("wb") as out:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "csms.cli", "--log-level", "WARNING", "serve"], env=env,
            stdout=subprocess.DEVNULL, stderr=out,
        )
    try:
        await _wait_healthy(http_port, proc, log)
        for station_id in ("NODE-A", "NODE-B"):
            await add_station(node, station_id)
            await node.db.run(on_the_map, station_id)
        other_ws = f"ws://127.0.0.1:{http_port}/graphql"
        this_ws = node.graphql_url.replace("http://", "ws://")
        async with WsClient.connect(other_ws) as on_other, WsClient.connect(this_ws) as on_this:
            await on_other.init()
            await on_this.init()
            await on_other.subscribe("a", STATUS, {"id": "NODE-A"})
            await on_this.subscribe("b", STATUS, {"id": "NODE-B"})
            # NODE-A charges on this process and is watched on the other; NODE-B the other way round.
            async with charger(node, "NODE-A", connectors=1) as cp:
                await _status_changes(on_other, "a", {0: "Available", 1: "Available"})
                await cp.send_status(1, "Preparing")
                await _status_changes(on_other, "a", {1: "Preparing"})
            # The other process's gateway, as a charger sees it.
            other_node = replace(node, ready=Ready(ocpp_port, http_port))
            async with charger(other_node, "NODE-B", connectors=1) as cp:
                await _status_changes(on_this, "b", {0: "Available", 1: "Available"})
                await cp.send_status(1, "Faulted")
                await _status_changes(on_this, "b", {1: "Faulted"})
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            with trio.move_on_after(15):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0, log.read_text()
