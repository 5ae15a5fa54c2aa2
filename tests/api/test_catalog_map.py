"""The public map: anonymous queries, filters, field-level hiding, fixed query counts, live status."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import httpx
import psycopg
import psycopg_pool
import pytest
import trio

from csms.store.db import Database
from tests.api.catalog_setup import cast, location, ok, op, refused, station, tariff
from tests.api.conftest import document, gql, start_api
from tests.conftest import Node, charger, make_user

if TYPE_CHECKING:
    from csms.store.db import Conn

OPERATOR_ONLY = ("serialNumber", "firmwareVersion", "registrationStatus", "lastSeen", "hasPassword")


def boot_info(conn: Conn) -> None:
    """What a charger reports at boot (the gateway's record_boot writes the same columns)."""
    conn.execute("UPDATE stations SET serial_number = 'SN-' || id, firmware_version = '1.0', last_seen = now()")
    conn.execute("UPDATE connectors SET status = 'Faulted', error_code = 'GroundFailure', info = 'relay 2 stuck'"
                 " WHERE connector_id = 2")


async def test_anonymous_sees_the_map_without_operator_data(client: httpx.AsyncClient, db: Database) -> None:
    people = await cast(db)
    hub = await location(client, people.admin, "Hub", ownerId=people.owner_a_id)
    price = await tariff(client, people.admin, "Standard", 1200)
    await station(client, people.admin, "HUB-1", hub["id"], tariffId=price["id"], password="x" * 16)
    await db.run(boot_info)

    [anonymous] = await ok(client, "Map")
    assert anonymous["name"] == "Hub"
    assert (anonymous["city"], anonymous["address"]) == ("Bishkek", "Chui 1")
    assert (anonymous["latitude"], anonymous["longitude"]) == (42.87, 74.6)
    assert anonymous["ownerId"] is None
    assert anonymous["viewerCanManage"] is False
    [hub_1] = anonymous["stations"]
    assert hub_1["id"] == "HUB-1"
    assert hub_1["viewerCanManage"] is False
    assert all(hub_1[f] is None for f in OPERATOR_ONLY), hub_1
    assert [c["connectorId"] for c in hub_1["connectors"]] == [1, 2]
    faulted = hub_1["connectors"][1]
    assert (faulted["status"], faulted["errorCode"], faulted["info"]) == ("Faulted", "GroundFailure", None)
    assert faulted["tariff"]["pricePerKwhTyiyn"] == 1200
    assert faulted["tariff"]["isOperatorTariff"] is True
    assert hub_1["tariff"]["name"] == "Standard"

    # The same document with other callers: the owner and admins see everything, others nothing more.
    for token, manages in ((people.owner_a, True), (people.admin, True), (people.owner_b, False),
                           (people.driver, False)):
        [seen] = await ok(client, "Map", token)
        assert seen["viewerCanManage"] is manages
        assert seen["ownerId"] == (people.owner_a_id if manages else None)
        st = seen["stations"][0]
        assert st["viewerCanManage"] is manages
        if manages:
            assert (st["serialNumber"], st["firmwareVersion"], st["registrationStatus"]) == ("SN-HUB-1", "1.0",
                                                                                             "Accepted")
            assert st["lastSeen"] is not None
            assert st["hasPassword"] is True
            assert st["connectors"][1]["info"] == "relay 2 stuck"
        else:
            assert all(st[f] is None for f in OPERATOR_ONLY), st
            assert st["connectors"][1]["info"] is None

    detail = await ok(client, "StationDetails", id="HUB-1")
    assert detail["location"]["name"] == "Hub"
    assert all(detail[f] is None for f in OPERATOR_ONLY)
    owner_detail = await ok(client, "StationDetails", people.owner_a, id="HUB-1")
    assert owner_detail["serialNumber"] == "SN-HUB-1"
    one = await ok(client, "LocationDetails", id=hub["id"])
    assert [s["id"] for s in one["stations"]] == ["HUB-1"]
    assert one["ownerId"] is None


async def test_stations_without_a_location_are_for_admins_only(client: httpx.AsyncClient, db: Database) -> None:
    people = await cast(db)
    await station(client, people.admin, "LOOSE-1", None)
    for token in (None, people.driver, people.owner_a):
        assert await ok(client, "StationDetails", token, id="LOOSE-1") is None
    seen = await ok(client, "StationDetails", people.admin, id="LOOSE-1")
    assert seen["location"] is None
    assert seen["registrationStatus"] == "Accepted"
    assert await ok(client, "Map") == []
    assert await ok(client, "StationDetails", id="NO-SUCH") is None


async def test_filters_by_city_and_box(client: httpx.AsyncClient, db: Database) -> None:
    people = await cast(db)
    await location(client, people.admin, "Bishkek North", city="Bishkek", latitude=42.9, longitude=74.6)
    await location(client, people.admin, "Osh Bazaar", city="Osh", latitude=40.53, longitude=72.8)
    await location(client, people.admin, "Fiji Pier", city="Suva", latitude=-18.14, longitude=178.44)
    await location(client, people.admin, "Nowhere", city="", latitude=None, longitude=None)

    async def names(**variables: Any) -> list[str]:
        return [loc["name"] for loc in await ok(client, "Map", **variables)]

    assert await names() == ["Bishkek North", "Fiji Pier", "Nowhere", "Osh Bazaar"]
    assert await names(city="bishkek") == ["Bishkek North"]
    assert await names(city="  OSH ") == ["Osh Bazaar"]
    kyrgyzstan = {"south": 39.0, "west": 69.0, "north": 43.5, "east": 80.5}
    assert await names(bbox=kyrgyzstan) == ["Bishkek North", "Osh Bazaar"]
    assert await names(bbox=kyrgyzstan, city="Osh") == ["Osh Bazaar"]
    # west > east: the box crosses the antimeridian (170°E to 170°W).
    pacific = {"south": -30.0, "west": 170.0, "north": 0.0, "east": -170.0}
    assert await names(bbox=pacific) == ["Fiji Pier"]
    for bad in ({"south": 10.0, "west": 0.0, "north": 5.0, "east": 1.0},
                {"south": -91.0, "west": 0.0, "north": 5.0, "east": 1.0},
                {"south": 0.0, "west": 0.0, "north": 5.0, "east": 181.0}):
        assert await refused(client, "Map", bbox=bad) == "BAD_USER_INPUT"
    assert await refused(client, "Map", city="") == "BAD_USER_INPUT"
    assert await refused(client, "LocationDetails", id="not-a-uuid") == "BAD_USER_INPUT"
    assert await ok(client, "LocationDetails", id="00000000-0000-0000-0000-000000000000") is None


class CountingConnection(psycopg.Connection[Any]):
    """A psycopg connection that records every statement it executes (observes, changes nothing)."""

    executed: ClassVar[list[str]] = []

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        CountingConnection.executed.append(str(query))
        return super().execute(query, params, **kwargs)


@pytest.mark.parametrize("operation", ["Map", "MyLocations", "Stations"])
async def test_list_queries_run_a_fixed_number_of_sql_statements(
        db_url: str, db: Database, nursery: trio.Nursery, operation: str) -> None:
    pool: psycopg_pool.ConnectionPool[Any] = psycopg_pool.ConnectionPool(
        db_url, min_size=1, max_size=2, open=True, kwargs={"autocommit": True}, connection_class=CountingConnection)
    counted = Database(pool, db_url)
    try:
        async with httpx.AsyncClient(base_url=await start_api(counted, nursery), timeout=10) as client:
            people = await cast(db)
            price = await tariff(client, people.admin, "Standard", 1000)
            special = await tariff(client, people.admin, "Special", 800)
            token = people.admin if operation == "Stations" else people.owner_a
            query = document("stations.graphql" if operation == "Stations" else "catalog.graphql")

            async def statements() -> int:
                CountingConnection.executed.clear()
                result = await gql(client, query, token=token, operation=operation)
                assert "errors" not in result, result
                return len(CountingConnection.executed)

            sizes = []
            for round_ in range(2):
                # Round 0: 1 location with 1 station; round 1: 4 more locations with 3 stations each.
                for i in range(1 if round_ == 0 else 4):
                    loc = await location(client, people.admin, f"L{round_}-{i}", ownerId=people.owner_a_id)
                    for j in range(1 if round_ == 0 else 3):
                        sid = f"S{round_}-{i}-{j}"
                        await station(client, people.admin, sid, loc["id"], connectors=3, tariffId=price["id"])
                        await ok(client, "AssignTariff", people.admin, stationId=sid, connectorId=2,
                                 tariffId=special["id"])
                sizes.append(await statements())
            # The snapshot: locations, stations, connectors, connection state; never one per station.
            assert sizes == [4, 4], (sizes, CountingConnection.executed)
    finally:
        await trio.to_thread.run_sync(pool.close)


async def test_live_connector_status_from_a_simulated_charger(node: Node) -> None:
    _, admin = await make_user(node.db, "admin")
    async with httpx.AsyncClient(base_url=node.graphql_url.removesuffix("/graphql"), timeout=10) as client:
        hub = await location(client, admin, "Live Hub")
        created = await station(client, admin, "LIVE-1", hub["id"], connectors=2, password="p" * 20)
        assert [c["status"] for c in created["connectors"]] == ["Unknown", "Unknown"]
        async with charger(node, "LIVE-1", password="p" * 20) as cp:
            assert node.csms.stations is not None
            await node.csms.stations.flush_presence()  # connection state is batched in memory
            [seen] = await ok(client, "Map")
            st = seen["stations"][0]
            assert st["connected"] is True
            assert {c["connectorId"]: c["status"] for c in st["connectors"]} == {0: "Available", 1: "Available",
                                                                              2: "Available"}
            assert st["vendor"] == "csms-sim"
            assert st["serialNumber"] is None  # anonymous
            await cp.send_status(2, "Preparing")
            with trio.fail_after(5):
                while True:
                    detail = await ok(client, "StationDetails", id="LIVE-1")
                    if {c["connectorId"]: c["status"] for c in detail["connectors"]}[2] == "Preparing":
                        break
                    await trio.sleep(0.02)
        # The node notices the closed socket on its own schedule; presence is flushed in batches.
        with trio.fail_after(5):
            while (await ok(client, "StationDetails", id="LIVE-1"))["connected"]:
                await node.csms.stations.flush_presence()
                await trio.sleep(0.02)
        assert (await op(client, "StationDetails", admin, id="LIVE-1"))["data"]["station"]["hasPassword"] is True
