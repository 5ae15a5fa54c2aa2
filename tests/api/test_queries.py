"""Admin views of stations, transactions and meter values through the real app, on rows inserted with SQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tests.api.conftest import document, error_codes, gql

if TYPE_CHECKING:
    import httpx
    import psycopg
    import pytest

    from csms.store.db import Database

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def seed_stations(conn: psycopg.Connection[Any]) -> None:
    """CP1 connected through a live node, CP2 through a stale node, CP3 not at all."""
    conn.execute(
        "INSERT INTO stations (id, vendor, model, serial_number, firmware_version, registration_status,"
        " last_seen) VALUES"
        " ('CP1', 'ACME', 'Fast-50', 'SN1', '1.2.3', 'Accepted', %s),"
        " ('CP2', 'ACME', 'Slow-7', NULL, NULL, 'Pending', NULL),"
        " ('CP3', NULL, NULL, NULL, NULL, 'Rejected', NULL)",
        (T0,),
    )
    conn.execute(
        "INSERT INTO connectors (station_id, connector_id, status, error_code, info, updated_at) VALUES"
        " ('CP1', 2, 'Charging', 'NoError', NULL, %s), ('CP1', 0, 'Available', 'NoError', NULL, %s),"
        " ('CP1', 1, 'Faulted', 'GroundFailure', 'ouch', %s), ('CP2', 1, 'Available', 'NoError', NULL, %s)",
        (T0, T0, T0, T0),
    )
    conn.execute(
        "INSERT INTO nodes (node_id, last_seen) VALUES ('live', now()), ('stale', now() - interval '5 minutes')"
    )
    conn.execute("INSERT INTO charger_connections (station_id, node_id) VALUES ('CP1', 'live'), ('CP2', 'stale')")


def seed_transactions(conn: psycopg.Connection[Any], count: int, station: str = "CP1") -> list[int]:
    """``count`` transactions on ``station``, one minute apart; returns their ids in insertion order."""
    ids = []
    for i in range(count):
        started = T0 + timedelta(minutes=i)
        row = conn.execute(
            "INSERT INTO transactions (station_id, connector_id, id_tag, id_tag_status, meter_start_wh,"
            " started_at, start_key_ts, meter_stop_wh, stopped_at, stop_reason)"
            " VALUES (%s, 1, 'TAG1', 'Accepted', %s, %s, %s, %s, %s, %s) RETURNING id",
            (
                station,
                1000 * i,
                started,
                started,
                1000 * i + 500 if i % 2 else None,
                started + timedelta(seconds=30) if i % 2 else None,
                "Local" if i % 2 else None,
            ),
        ).fetchone()
        assert row is not None
        ids.append(row[0])
    return ids


async def test_stations_list(client: httpx.AsyncClient, db: Database, token: str) -> None:
    await db.run(seed_stations)
    result = await gql(client, document("stations.graphql"), token=token, operation="Stations")
    assert "errors" not in result
    stations = {s["id"]: s for s in result["data"]["stations"]}
    assert list(stations) == ["CP1", "CP2", "CP3"]
    cp1 = stations["CP1"]
    assert cp1["vendor"] == "ACME"
    assert cp1["serialNumber"] == "SN1"
    assert cp1["firmwareVersion"] == "1.2.3"
    assert cp1["registrationStatus"] == "Accepted"
    assert datetime.fromisoformat(cp1["lastSeen"]) == T0
    assert [c["connectorId"] for c in cp1["connectors"]] == [0, 1, 2]
    assert cp1["connectors"][1] == {
        "connectorId": 1,
        "status": "Faulted",
        "errorCode": "GroundFailure",
        "info": "ouch",
        "updatedAt": T0.isoformat(),
        "hasOwnTariff": False,
        "tariff": None,
    }
    assert cp1["location"] is None
    assert cp1["hasPassword"] is False
    assert [stations[s]["connected"] for s in ("CP1", "CP2", "CP3")] == [True, False, False]
    assert stations["CP3"]["connectors"] == []
    assert stations["CP3"]["lastSeen"] is None


async def test_one_station_and_unknown_station(client: httpx.AsyncClient, db: Database, token: str) -> None:
    await db.run(seed_stations)
    query = document("stations.graphql")
    found = await gql(client, query, {"id": "CP1"}, token=token, operation="Station")
    assert found["data"]["station"]["connected"] is True
    assert [c["status"] for c in found["data"]["station"]["connectors"]] == ["Available", "Faulted", "Charging"]
    stale = await gql(client, query, {"id": "CP2"}, token=token, operation="Station")
    assert stale["data"]["station"]["connected"] is False
    missing = await gql(client, query, {"id": "NOPE"}, token=token, operation="Station")
    assert missing == {"data": {"station": None}}


async def test_sibling_async_fields_and_async_list_items(client: httpx.AsyncClient, db: Database, token: str) -> None:
    """Regression for trio_gather: graphql-core gathers sibling async root fields with asyncio unless patched
    (data: null). Station fields are preloaded (no per-station queries), so the async siblings are the roots."""
    await db.run(seed_stations)
    query = """{
      stations { id connected connectors { connectorId status } }
      a: station(id: "CP1") { connected connectors { status } }
      b: station(id: "CP2") { connected connectors { status } }
      c: station(id: "CP3") { connected connectors { status } }
    }"""
    result = await gql(client, query, token=token)
    assert "errors" not in result, result
    data = result["data"]
    assert data is not None
    assert [s["connected"] for s in data["stations"]] == [True, False, False]
    assert [len(s["connectors"]) for s in data["stations"]] == [3, 1, 0]
    assert data["a"]["connected"] is True
    assert len(data["a"]["connectors"]) == 3
    assert data["b"] == {"connected": False, "connectors": [{"status": "Available"}]}
    assert data["c"] == {"connected": False, "connectors": []}


async def test_transactions_pagination(client: httpx.AsyncClient, db: Database, token: str) -> None:
    await db.run(seed_stations)
    ids = await db.run(seed_transactions, 5)
    await db.run(seed_transactions, 2, "CP2")
    query = document("transactions.graphql")
    seen: list[int] = []
    after = None
    pages = 0
    while True:
        result = await gql(
            client, query, {"stationId": "CP1", "first": 2, "after": after}, token=token, operation="Transactions"
        )
        assert "errors" not in result, result
        conn = result["data"]["transactions"]
        seen += [e["node"]["id"] for e in conn["edges"]]
        pages += 1
        if not conn["pageInfo"]["hasNextPage"]:
            break
        assert conn["pageInfo"]["endCursor"] == conn["edges"][-1]["cursor"]
        after = conn["pageInfo"]["endCursor"]
    assert seen == sorted(ids, reverse=True)
    assert pages == 3
    everything = await gql(client, query, {}, token=token, operation="Transactions")
    assert len(everything["data"]["transactions"]["edges"]) == 7
    stopped = next(e["node"] for e in everything["data"]["transactions"]["edges"] if e["node"]["id"] == ids[1])
    assert stopped["energyWh"] == 500
    assert stopped["stopReason"] == "Local"
    assert stopped["meterStopWh"] == 1500
    running = next(e["node"] for e in everything["data"]["transactions"]["edges"] if e["node"]["id"] == ids[0])
    assert running["stoppedAt"] is None
    assert running["energyWh"] is None
    empty = await gql(client, query, {"stationId": "CP3"}, token=token, operation="Transactions")
    assert empty["data"]["transactions"] == {"edges": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}


async def test_transactions_bad_arguments(client: httpx.AsyncClient, token: str) -> None:
    query = document("transactions.graphql")
    for variables in (
        {"first": 0},
        {"first": 101},
        {"first": -5},
        {"after": "garbage!"},
        {"after": "dHg6LTE="},
        {"after": "eHg6MQ=="},
    ):
        result = await gql(client, query, variables, token=token, operation="Transactions")
        assert error_codes(result) == ["BAD_USER_INPUT"], (variables, result)
        assert result["data"] is None
    ok = await gql(client, query, {"first": 100}, token=token, operation="Transactions")
    assert "errors" not in ok


async def test_meter_values(client: httpx.AsyncClient, db: Database, token: str) -> None:
    await db.run(seed_stations)
    [tx] = await db.run(seed_transactions, 1)

    def insert(conn: psycopg.Connection[Any]) -> None:
        for sampled, measurand, value in [
            (T0 + timedelta(minutes=2), "Energy.Active.Import.Register", "1200"),
            (T0, "Energy.Active.Import.Register", "1000"),
            (T0, "Power.Active.Import", "7200.5"),
        ]:
            conn.execute(
                "INSERT INTO meter_values (station_id, connector_id, transaction_id, sampled_at, measurand,"
                " unit, context, value, source) VALUES ('CP1', 1, %s, %s, %s, 'Wh', 'Sample.Periodic', %s,"
                " 'MeterValues')",
                (tx, sampled, measurand, value),
            )

    await db.run(insert)
    result = await gql(
        client, document("transactions.graphql"), {"transactionId": tx}, token=token, operation="MeterValues"
    )
    values = result["data"]["meterValues"]
    assert [v["value"] for v in values] == ["1000", "7200.5", "1200"]
    assert values[0]["transactionId"] == tx
    assert values[0]["connectorId"] == 1
    assert values[0]["phase"] is None
    assert datetime.fromisoformat(values[2]["sampledAt"]) == T0 + timedelta(minutes=2)
    none = await gql(
        client, document("transactions.graphql"), {"transactionId": 999}, token=token, operation="MeterValues"
    )
    assert none == {"data": {"meterValues": []}}


async def test_unexpected_errors_are_masked(client: httpx.AsyncClient, db: Database, token: str) -> None:
    def break_table(conn: psycopg.Connection[Any]) -> None:
        conn.execute("DROP TABLE meter_values")

    await db.run(break_table)
    result = await gql(client, "{ meterValues(transactionId: 1) { value } }", token=token)
    assert error_codes(result) == ["INTERNAL_SERVER_ERROR"]
    [error] = result["errors"]
    assert error["message"] == "Internal server error."
    assert "meter_values" not in str(result)
    assert "Traceback" not in str(result)


async def test_text_with_u0000_is_bad_input(client: httpx.AsyncClient, token: str,
                                            caplog: pytest.LogCaptureFixture) -> None:
    # PostgreSQL text cannot hold U+0000: a typed client error, not an internal one, and nothing logged.
    result = await gql(client, document("transactions.graphql"), {"stationId": "CP\x001"}, token=token,
                       operation="Transactions")
    assert error_codes(result) == ["BAD_USER_INPUT"], result
    assert "U+0000" in result["errors"][0]["message"]
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
