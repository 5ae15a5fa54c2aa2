"""The whole path: a simulated charger boots and charges; an operator sees it all over GraphQL."""

from __future__ import annotations

import httpx
import trio

from csms.store.apikeys import create_api_key
from csms.store.stations import upsert_id_tag
from tests.api.conftest import document, gql
from tests.conftest import Node, add_station, charger


async def test_charger_session_is_queryable_over_graphql(node: Node) -> None:
    await add_station(node, "E2E-1")
    await node.db.run(upsert_id_tag, "E2E-TAG", "Accepted", None, None)
    token = await node.db.run(create_api_key, "e2e")
    async with httpx.AsyncClient(timeout=10) as http:
        async with charger(node, "E2E-1", power_w=360_000, meter_interval_s=0.05) as cp:
            tx_id = await cp.start_transaction(2, "E2E-TAG")
            await trio.sleep(0.3)
            await cp.stop_transaction(2)
            assert node.csms.stations is not None
            await node.csms.stations.flush_presence()  # last-seen is buffered in memory for a few seconds
            http.base_url = httpx.URL(node.graphql_url.removesuffix("/graphql"))
            live = await gql(http, document("stations.graphql"), {"id": "E2E-1"}, token=token,
                             operation="Station")
            station = live["data"]["station"]
            assert station["vendor"] == "csms-sim"
            assert station["connected"] is True
            assert station["lastSeen"] is not None
            assert {c["connectorId"]: c["status"] for c in station["connectors"]}[2] == "Available"
        txs = await gql(http, document("transactions.graphql"), {"stationId": "E2E-1"}, token=token,
                        operation="Transactions")
        (edge,) = txs["data"]["transactions"]["edges"]
        node_ = edge["node"]
        assert node_["id"] == tx_id
        assert node_["connectorId"] == 2
        assert node_["idTag"] == "E2E-TAG"
        assert node_["energyWh"] == node_["meterStopWh"] - node_["meterStartWh"] > 0
        assert node_["stopReason"] == "Local"
        mv = await gql(http, document("transactions.graphql"), {"transactionId": tx_id}, token=token,
                       operation="MeterValues")
        values = mv["data"]["meterValues"]
        energy = [int(float(v["value"])) for v in values if v["measurand"] == "Energy.Active.Import.Register"]
        assert len(energy) >= 3
        assert energy == sorted(energy)  # rising, in time order
        # Without a key: a clear, typed error and no data.
        anon = await gql(http, document("stations.graphql"), operation="Stations")
        assert anon["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
