"""Operators read a station's OCPP frames and the anomalies csms recorded, through the real API."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import trio

from csms.store.apikeys import create_api_key
from tests.api.conftest import document, error_codes, gql
from tests.conftest import add_station, charger

if TYPE_CHECKING:
    from tests.conftest import Node


async def _messages(http: httpx.AsyncClient, token: str, **variables: Any) -> dict[str, Any]:
    result = await gql(http, document("ocpp_log.graphql"), variables, token=token, operation="OcppMessages")
    assert "errors" not in result, result
    page: dict[str, Any] = result["data"]["ocppMessages"]
    return page


async def test_a_stations_frames_and_anomalies_newest_first(node: Node) -> None:
    token = await node.db.run(create_api_key, "ops")
    await add_station(node, "LOG-1")
    async with charger(node, "LOG-1") as cp:
        heartbeat = await cp.call("Heartbeat", {})
        error = json.loads(await cp.send_raw('[2,"bad-1","Heartbeat"]'))
        stop = await cp.call("StopTransaction", {"transactionId": 424242, "meterStop": 10,
                                                 "timestamp": datetime.now(UTC).isoformat()})
    assert stop == {}  # an unknown transaction is confirmed (and flagged below)
    async with httpx.AsyncClient(base_url=node.graphql_url.removesuffix("/graphql"), timeout=10) as http:
        with trio.fail_after(5):  # the journal is written in the background
            while True:
                newest = await _messages(http, token, stationId="LOG-1", first=2)
                if newest["edges"] and newest["edges"][0]["node"]["action"] == "StopTransaction":
                    break
                await trio.sleep(0.05)
        stop_row, bad_row = (edge["node"] for edge in newest["edges"])
        assert (stop_row["direction"], stop_row["messageType"], stop_row["answerType"]) == ("in", 2, 3)
        assert json.loads(stop_row["payload"])[3]["transactionId"] == 424242
        assert json.loads(stop_row["answerPayload"])[2] == {}
        assert datetime.fromisoformat(stop_row["answeredAt"]) >= datetime.fromisoformat(stop_row["receivedAt"])
        # A frame csms could not take is kept verbatim with the CALLERROR it got.
        assert (bad_row["messageType"], bad_row["payload"], bad_row["answerType"]) == (None, '[2,"bad-1","Heartbeat"]', 4)
        assert json.loads(bad_row["answerPayload"]) == error
        assert newest["pageInfo"]["hasNextPage"] is True

        older = await _messages(http, token, stationId="LOG-1", first=100, after=newest["pageInfo"]["endCursor"])
        ids = [int(edge["node"]["id"]) for edge in newest["edges"] + older["edges"]]
        assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)
        rows = [edge["node"] for edge in older["edges"]]
        beat = next(row for row in rows if row["action"] == "Heartbeat")
        assert json.loads(beat["answerPayload"])[2] == heartbeat
        assert rows[-1]["action"] == "BootNotification"
        assert older["pageInfo"] == {"hasNextPage": False, "endCursor": older["edges"][-1]["cursor"]}

        anomalies = await gql(http, document("ocpp_log.graphql"), {"stationId": "LOG-1"}, token=token,
                              operation="OcppAnomalies")
        [anomaly] = [edge["node"] for edge in anomalies["data"]["ocppAnomalies"]["edges"]]
        assert anomaly["kind"] == "stop_unknown_transaction"
        assert anomaly["detail"]["transactionId"] == 424242
        other = await gql(http, document("ocpp_log.graphql"), {"stationId": "NOT-THERE"}, token=token,
                          operation="OcppAnomalies")
        assert other["data"]["ocppAnomalies"]["edges"] == []

        # Bad arguments get BAD_USER_INPUT: a cursor of another list, a made-up one, a page size of 0.
        anomaly_cursor = anomalies["data"]["ocppAnomalies"]["edges"][0]["cursor"]
        for variables in ({"after": anomaly_cursor}, {"after": "bm9wZQ=="}, {"first": 0}):
            result = await gql(http, document("ocpp_log.graphql"), {"stationId": "LOG-1", **variables},
                               token=token, operation="OcppMessages")
            assert error_codes(result) == ["BAD_USER_INPUT"], variables
