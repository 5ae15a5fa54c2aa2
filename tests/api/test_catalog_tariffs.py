"""Tariffs: who sees and edits them, assignment to stations and connectors, the effective tariff."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio

from csms.services.tariffs import Price, energy_cost
from csms.store.catalog import effective_tariff, station_owner
from tests.api.catalog_setup import audit_entries, cast, catalog_rows, location, ok, op, refused, station, tariff
from tests.api.conftest import error_codes

if TYPE_CHECKING:
    import httpx

    from csms.store.db import Database


def connector_prices(station_data: dict) -> dict[int, tuple[str | None, bool]]:
    """Connector id → (effective tariff name, whether it is the connector's own)."""
    return {c["connectorId"]: (c["tariff"]["name"] if c["tariff"] else None, c["hasOwnTariff"])
            for c in station_data["connectors"]}


async def test_effective_tariff_is_the_connectors_else_the_stations(client: httpx.AsyncClient, db: Database) -> None:
    people = await cast(db)
    loc = await location(client, people.owner_a, "A Hub")
    base = await tariff(client, people.owner_a, "Base", 1000)
    fast = await tariff(client, people.owner_a, "Fast", 1500, 2000)
    await station(client, people.owner_a, "A-1", loc["id"], connectors=2)
    await db.run(lambda conn: conn.execute("INSERT INTO connectors (station_id, connector_id) VALUES ('A-1', 0)"))

    async def assign(**variables: object) -> dict:
        return await ok(client, "AssignTariff", people.owner_a, stationId="A-1", **variables)  # type: ignore[no-any-return]

    assert await db.run(effective_tariff, "A-1", 1) is None
    assert connector_prices(await assign(tariffId=base["id"])) == {0: (None, False), 1: ("Base", False),
                                                                   2: ("Base", False)}
    after = await assign(connectorId=2, tariffId=fast["id"])
    assert connector_prices(after) == {0: (None, False), 1: ("Base", False), 2: ("Fast", True)}
    assert after["tariff"]["name"] == "Base"
    assert await db.run(effective_tariff, "A-1", 1) == (base["id"], 1000, 0)
    assert await db.run(effective_tariff, "A-1", 2) == (fast["id"], 1500, 2000)
    assert await db.run(effective_tariff, "A-1", 0) is None  # the charge point itself never charges
    assert await db.run(effective_tariff, "A-1", 7) == (base["id"], 1000, 0)  # no row: the station's
    assert await db.run(effective_tariff, "NOPE", 1) is None
    # The public map shows the same thing anonymously.
    [public] = (await ok(client, "Map"))[0]["stations"]
    assert connector_prices(public) == connector_prices(after)
    assert public["connectors"][2]["tariff"]["ownerId"] is None  # owner identity stays hidden
    assert connector_prices(await assign(tariffId=None)) == {0: (None, False), 1: (None, False), 2: ("Fast", True)}
    assert connector_prices(await assign(connectorId=2, tariffId=None)) == {0: (None, False), 1: (None, False),
                                                                            2: (None, False)}
    assert await db.run(effective_tariff, "A-1", 2) is None
    assert await db.run(station_owner, "A-1") == people.owner_a_id
    await station(client, people.admin, "LOOSE-1", None)
    assert await db.run(station_owner, "LOOSE-1") is None
    assert await db.run(station_owner, "NOPE") is None


async def test_stations_use_their_owners_or_operator_tariffs_only(client: httpx.AsyncClient, db: Database) -> None:
    people = await cast(db)
    loc = await location(client, people.owner_a, "A Hub")
    await station(client, people.owner_a, "A-1", loc["id"])
    operator = await tariff(client, people.admin, "Operator", 1200)
    b_price = await tariff(client, people.owner_b, "B price", 900)
    before = await db.run(catalog_rows)
    assert await refused(client, "AssignTariff", people.owner_a, stationId="A-1", tariffId=b_price["id"]) \
        == "NOT_FOUND"  # A may not even know B's tariff exists
    assert await refused(client, "AssignTariff", people.admin, stationId="A-1", tariffId=b_price["id"]) \
        == "BAD_USER_INPUT"
    assert await refused(client, "AssignTariff", people.owner_a, stationId="A-1", connectorId=3,
                         tariffId=operator["id"]) == "NOT_FOUND"
    assert await refused(client, "AssignTariff", people.owner_a, stationId="A-1", connectorId=0,
                         tariffId=operator["id"]) == "BAD_USER_INPUT"
    assert await refused(client, "AssignTariff", people.owner_a, stationId="A-1", tariffId="bad") == "BAD_USER_INPUT"
    assert await refused(client, "CreateStation", people.owner_a, input={
        "id": "A-2", "connectorCount": 1, "locationId": loc["id"], "tariffId": b_price["id"]}) == "NOT_FOUND"
    assert await refused(client, "UpdateStation", people.admin,
                         input={"id": "A-1", "tariffId": b_price["id"]}) == "BAD_USER_INPUT"
    assert await db.run(catalog_rows) == before
    assigned = await ok(client, "AssignTariff", people.owner_a, stationId="A-1", tariffId=operator["id"])
    assert assigned["tariff"]["isOperatorTariff"] is True

    # Moving a station or a location to another owner cannot strand a tariff of the old owner.
    a_price = await tariff(client, people.owner_a, "A price", 1000)
    await ok(client, "AssignTariff", people.owner_a, stationId="A-1", connectorId=1, tariffId=a_price["id"])
    b_loc = await location(client, people.owner_b, "B Hub")
    before = await db.run(catalog_rows)
    assert await refused(client, "UpdateStation", people.admin, input={"id": "A-1", "locationId": b_loc["id"]}) \
        == "BAD_USER_INPUT"
    assert await refused(client, "UpdateLocation", people.admin,
                         input={"id": loc["id"], "ownerId": people.owner_b_id}) == "BAD_USER_INPUT"
    assert await refused(client, "UpdateStation", people.owner_a, input={"id": "A-1", "locationId": b_loc["id"]}) \
        == "NOT_FOUND"
    assert await db.run(catalog_rows) == before
    await ok(client, "AssignTariff", people.owner_a, stationId="A-1", connectorId=1, tariffId=None)
    moved = await ok(client, "UpdateStation", people.admin, input={"id": "A-1", "locationId": b_loc["id"]})
    assert moved["locationId"] == b_loc["id"]
    assert (await ok(client, "StationDetails", people.owner_b, id="A-1"))["viewerCanManage"] is True
    assert (await ok(client, "StationDetails", people.owner_a, id="A-1"))["viewerCanManage"] is False


async def test_tariff_visibility_and_edits(client: httpx.AsyncClient, db: Database) -> None:
    people = await cast(db)
    operator = await tariff(client, people.admin, "Operator", 1200)
    mine = await tariff(client, people.owner_a, "Mine", 1500, 100)
    assert (mine["ownerId"], mine["isOperatorTariff"]) == (people.owner_a_id, False)
    theirs = await tariff(client, people.admin, "Theirs", 900, ownerId=people.owner_b_id)
    assert theirs["ownerId"] == people.owner_b_id

    async def names(token: str, **variables: object) -> list[str]:
        return [t["name"] for t in await ok(client, "MyTariffs", token, **variables)]

    assert await names(people.owner_a) == ["Operator", "Mine"]
    assert await names(people.owner_a, includeOperatorTariffs=False) == ["Mine"]
    assert await names(people.owner_b) == ["Operator", "Theirs"]
    assert sorted(await names(people.admin)) == ["Mine", "Operator", "Theirs"]
    assert await names(people.admin, ownerId=people.owner_a_id, includeOperatorTariffs=False) == ["Mine"]
    assert await refused(client, "MyTariffs", people.owner_a, ownerId=people.owner_b_id) == "FORBIDDEN"
    assert await refused(client, "MyTariffs", people.driver) == "FORBIDDEN"
    assert await refused(client, "MyTariffs") == "UNAUTHENTICATED"

    updated = await ok(client, "UpdateTariff", people.owner_a, input={"id": mine["id"], "pricePerKwhTyiyn": 1600})
    assert (updated["name"], updated["pricePerKwhTyiyn"], updated["sessionFeeTyiyn"]) == ("Mine", 1600, 100)
    before = await db.run(catalog_rows)
    assert await refused(client, "UpdateTariff", people.owner_a, input={"id": operator["id"], "name": "Hijack"}) \
        == "FORBIDDEN"
    assert await refused(client, "UpdateTariff", people.owner_a, input={"id": theirs["id"], "name": "Hijack"}) \
        == "NOT_FOUND"
    assert await refused(client, "UpdateTariff", people.owner_a,
                         input={"id": mine["id"], "ownerId": people.owner_b_id}) == "FORBIDDEN"
    assert await db.run(catalog_rows) == before
    # Names are unique per owner: the operator's "Operator" does not clash with one of A's.
    renamed = await ok(client, "UpdateTariff", people.owner_a, input={"id": mine["id"], "name": "operator"})
    assert renamed["name"] == "operator"
    await ok(client, "UpdateTariff", people.owner_a, input={"id": mine["id"], "name": "Mine"})
    await tariff(client, people.owner_a, "Second", 1)
    before = await db.run(catalog_rows)
    assert await refused(client, "UpdateTariff", people.owner_a, input={"id": mine["id"], "name": "SECOND"}) \
        == "CONFLICT"
    assert await refused(client, "CreateTariff", people.owner_a,
                         input={"name": "mine", "pricePerKwhTyiyn": 1}) == "CONFLICT"
    assert (await tariff(client, people.owner_a, "Mine", 1600, 100))["id"] == mine["id"]  # identical repeat
    assert await db.run(catalog_rows) == before

    # Admin edits of an owner's tariff are audited; a tariff in use keeps its owner.
    await ok(client, "UpdateTariff", people.admin, input={"id": theirs["id"], "sessionFeeTyiyn": 50})
    b_loc = await location(client, people.owner_b, "B Hub")
    await station(client, people.owner_b, "B-1", b_loc["id"], tariffId=theirs["id"])
    assert await refused(client, "UpdateTariff", people.admin,
                         input={"id": theirs["id"], "ownerId": people.owner_a_id}) == "BAD_USER_INPUT"
    unused = await ok(client, "UpdateTariff", people.admin, input={"id": mine["id"], "ownerId": None})
    assert unused["isOperatorTariff"] is True
    actions = [(e[2], e[3], e[4]) for e in await db.run(audit_entries)]
    assert actions == [
        ("tariff.create", f"tariff:{theirs['id']}", {"owner_id": people.owner_b_id, "name": "Theirs",
                                                     "price_per_kwh_tyiyn": 900, "session_fee_tyiyn": 0}),
        ("tariff.update", f"tariff:{theirs['id']}", {"session_fee_tyiyn": 50}),
        ("tariff.update", f"tariff:{mine['id']}", {"owner_id": None}),
    ]


@pytest.mark.parametrize(
    "values",
    [
        {"name": "Neg", "pricePerKwhTyiyn": -1},
        {"name": "Huge", "pricePerKwhTyiyn": 10_000_001},
        {"name": "Fee", "pricePerKwhTyiyn": 1, "sessionFeeTyiyn": -5},
        {"name": "Fee", "pricePerKwhTyiyn": 1, "sessionFeeTyiyn": 10_000_001},
        {"name": "", "pricePerKwhTyiyn": 1},
        {"name": "n" * 101, "pricePerKwhTyiyn": 1},
        {"name": "Owned", "pricePerKwhTyiyn": 1, "ownerId": "xyz"},
    ],
)
async def test_bad_tariffs_are_refused(client: httpx.AsyncClient, db: Database, values: dict) -> None:
    people = await cast(db)
    existing = await tariff(client, people.owner_a, "Existing", 10)
    before = await db.run(catalog_rows)
    assert await refused(client, "CreateTariff", people.owner_a, input=values) == "BAD_USER_INPUT"
    assert await refused(client, "UpdateTariff", people.admin, input={**values, "id": existing["id"]}) \
        == "BAD_USER_INPUT"
    assert await db.run(catalog_rows) == before


async def test_boundary_prices_and_cost_estimates(client: httpx.AsyncClient, db: Database) -> None:
    people = await cast(db)
    free = await tariff(client, people.owner_a, "Free", 0)
    top = await tariff(client, people.owner_a, "Top", 10_000_000, 10_000_000)
    assert (free["pricePerKwhTyiyn"], top["pricePerKwhTyiyn"], top["sessionFeeTyiyn"]) == (0, 10_000_000, 10_000_000)
    loc = await location(client, people.owner_a, "A Hub")
    odd = await tariff(client, people.owner_a, "Odd", 1234, 50)
    await station(client, people.owner_a, "A-1", loc["id"], tariffId=odd["id"])
    result = await ok(client, "StationPrice", id="A-1", energyWh=1001)  # anonymous: a driver checking prices
    prices = [c["tariff"]["estimateCost"] for c in result["connectors"]]
    # ceil(1001 * 1234 / 1000) + 50 = ceil(1235.234) + 50
    assert prices == [1286, 1286] == [energy_cost(1001, Price(1234, 50))] * 2
    huge = await ok(client, "StationPrice", id="A-1", energyWh=10_000_000)
    assert huge["connectors"][0]["tariff"]["estimateCost"] == 12_340_050
    for bad in (-1, 10_000_001):
        result = await op(client, "StationPrice", id="A-1", energyWh=bad)
        assert error_codes(result) == ["BAD_USER_INPUT", "BAD_USER_INPUT"]  # one per connector
        assert [c["tariff"] for c in result["data"]["station"]["connectors"]] == [None, None]


async def test_concurrent_identical_creates_make_one_object(client: httpx.AsyncClient, db: Database) -> None:
    """Retries racing each other (a client that timed out and resent) still create one row each."""
    people = await cast(db)
    tariffs: list[str] = []
    locations: list[str] = []

    async def create_both() -> None:
        tariffs.append((await tariff(client, people.owner_a, "Raced", 700))["id"])
        locations.append((await location(client, people.owner_a, "Raced Hub"))["id"])

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(create_both)
    assert len(set(tariffs)) == 1
    assert len(set(locations)) == 1
    counts = await db.run(lambda conn: conn.execute(
        "SELECT (SELECT count(*) FROM tariffs), (SELECT count(*) FROM locations)").fetchone())
    assert counts == (1, 1)
