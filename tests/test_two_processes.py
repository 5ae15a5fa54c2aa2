"""Two csms processes on one database: a subscription on either one sees what a charger does on the other.

Events travel only through PostgreSQL (NOTIFY inside the writing transaction, one LISTEN per process),
so no other broker is needed for live updates when csms runs on several nodes.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING

from csms.supervisor import Ready
from tests.api.ws_client import WsClient, on_the_map
from tests.conftest import TEST_JWT_KEY, add_station, charger
from tests.processes import free_port, start_csms, stop, wait_healthy

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import Node

STATUS = "subscription S($id: String!) { stationStatusChanged(stationId: $id) { connectorId status } }"


async def _status_changes(ws: WsClient, op_id: str, want: dict[int, str]) -> None:
    """Read ``stationStatusChanged`` messages until every connector in ``want`` has its status."""
    seen: dict[int, str] = {}
    while any(seen.get(c) != s for c, s in want.items()):
        change = (await ws.next_data(op_id, timeout=10))["stationStatusChanged"]
        seen[change["connectorId"]] = change["status"]


async def test_subscriptions_see_changes_made_by_the_other_process(node: Node, db_url: str, tmp_path: Path) -> None:
    ocpp_port, http_port = free_port(), free_port()
    env = dict(os.environ, CSMS_DATABASE_URL=db_url, CSMS_OCPP_PORT=str(ocpp_port), CSMS_HTTP_PORT=str(http_port),
               CSMS_DB_POOL_SIZE="3", CSMS_JWT_PRIVATE_KEY_FILE=str(TEST_JWT_KEY), CSMS_SHUTDOWN_GRACE="3")
    log = tmp_path / "other-csms.log"
    proc = await start_csms(env, ocpp_port, log=log)
    try:
        await wait_healthy(proc, http_port, log)
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
        await stop(proc)
    assert proc.returncode == 0, log.read_text()
