"""Managing locations and stations: who may do what, validation, duplicates, connector counts, the audit log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from csms.services.stations import verify_password
from tests.api.catalog_setup import (
    audit_entries,
    cast,
    catalog_rows,
    location,
    ok,
    refused,
    station,
    tariff,
)

if TYPE_CHECKING:
    import httpx

    from csms.store.db import Conn, Database

# Every catalog mutation with valid-looking arguments (ids filled in by the test).
MUTATIONS: dict[str, dict[str, Any]] = {
    "CreateLocation": {"input": {"name": "Intruder"}},
    "UpdateLocation": {"input": {"id": "{location}", "name": "Renamed"}},
    "CreateStation": {"input": {"id": "NEW-1", "connectorCount": 2, "locationId": "{location}"}},
    "UpdateStation": {"input": {"id": "A-1", "connectorCount": 4}},
    "CreateTariff": {"input": {"name": "Cheap", "pricePerKwhTyiyn": 1}},
    "UpdateTariff": {"input": {"id": "{tariff}", "pricePerKwhTyiyn": 1}},
    "AssignTariff": {"stationId": "A-1", "tariffId": None},
}


def fill(value: Any, ids: dict[str, str]) -> Any:
    """Replace ``{name}`` placeholders with real ids."""
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("{"):
        return ids[value.strip("{}")]
    return value


async def world(client: httpx.AsyncClient, db: Database) -> tuple[Any, dict[str, str]]:
    """Owner A with a location, a tariff and station A-1 using it."""
    people = await cast(db)
    loc = await location(client, people.owner_a, "A Hub")
    own = await tariff(client, people.owner_a, "A price", 1500)
    await station(client, people.owner_a, "A-1", loc["id"], tariffId=own["id"])
    return people, {"location": loc["id"], "tariff": own["id"]}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
async def test_anonymous_and_drivers_may_not_change_anything(
        client: httpx.AsyncClient, db: Database, mutation: str) -> None:
    people, ids = await world(client, db)
    before = await db.run(catalog_rows)
    variables = fill(MUTATIONS[mutation], ids)
    assert await refused(client, mutation, None, **variables) == "UNAUTHENTICATED"
    assert await refused(client, mutation, people.driver, **variables) == "FORBIDDEN"
    assert await db.run(catalog_rows) == before


@pytest.mark.parametrize("mutation", sorted(set(MUTATIONS) - {"CreateLocation", "CreateTariff"}))
async def test_another_owner_gets_not_found(client: httpx.AsyncClient, db: Database, mutation: str) -> None:
    people, ids = await world(client, db)
    before = await db.run(catalog_rows)
    assert await refused(client, mutation, people.owner_b, **fill(MUTATIONS[mutation], ids)) == "NOT_FOUND"
    assert await db.run(catalog_rows) == before


async def test_owner_manages_own_location_and_station(client: httpx.AsyncClient, db: Database) -> None:
    people = await cast(db)
    loc = await location(client, people.owner_a, "A Hub", address=" Chui 5 ", latitude=42.876412, longitude=74.6)
    assert loc["ownerId"] == people.owner_a_id
    assert loc["viewerCanManage"] is True
    assert loc["address"] == "Chui 5"  # trimmed
    assert loc["latitude"] == 42.876412
    created = await station(client, people.owner_a, "A-1", loc["id"], connectors=3, password="s3cret-charger-pw")
    assert created["viewerCanManage"] is True
    assert created["hasPassword"] is True
    assert created["connectorCount"] == 3
    assert [c["status"] for c in created["connectors"]] == ["Unknown"] * 3
    stored = await db.run(lambda conn: conn.execute("SELECT password_hash FROM stations WHERE id = 'A-1'").fetchone())
    assert stored[0].startswith("$argon2id$")
    assert verify_password(stored[0], "s3cret-charger-pw")

    renamed = await ok(client, "UpdateLocation", people.owner_a, input={"id": loc["id"], "name": "A Hub 2"})
    assert (renamed["name"], renamed["address"], renamed["city"]) == ("A Hub 2", "Chui 5", "Bishkek")
    cleared = await ok(client, "UpdateLocation", people.owner_a,
                       input={"id": loc["id"], "latitude": None, "longitude": None})
    assert (cleared["latitude"], cleared["longitude"], cleared["name"]) == (None, None, "A Hub 2")

    mine = await ok(client, "MyLocations", people.owner_a)
    assert [m["name"] for m in mine] == ["A Hub 2"]
    assert await ok(client, "MyLocations", people.owner_b) == []
    assert len(await ok(client, "MyLocations", people.admin)) == 1
    assert await ok(client, "MyLocations", people.admin, ownerId=people.owner_b_id) == []
    assert await refused(client, "MyLocations", people.owner_b, ownerId=people.owner_a_id) == "FORBIDDEN"
    assert await refused(client, "MyLocations", people.driver) == "FORBIDDEN"
    assert await refused(client, "MyLocations") == "UNAUTHENTICATED"
    # Owners never edit each other's objects, and never see that they exist.
    assert await refused(client, "UpdateLocation", people.owner_b, input={"id": loc["id"], "city": "Osh"}) == "NOT_FOUND"
    assert await refused(client, "CreateStation", people.owner_b,
                         input={"id": "B-1", "connectorCount": 1, "locationId": loc["id"]}) == "NOT_FOUND"
    assert await db.run(audit_entries) == []  # owners editing their own objects are not audited


async def test_only_admins_choose_owners(client: httpx.AsyncClient, db: Database) -> None:
    people = await cast(db)
    before = await db.run(catalog_rows)
    assert await refused(client, "CreateLocation", people.owner_a,
                         input={"name": "Gift", "ownerId": people.owner_b_id}) == "FORBIDDEN"
    assert await refused(client, "CreateStation", people.owner_a, input={"id": "A-9", "connectorCount": 1}) \
        == "BAD_USER_INPUT"  # an owner's station needs one of their locations
    for not_an_owner in (people.driver_id, people.admin_id, "00000000-0000-0000-0000-000000000001"):
        assert await refused(client, "CreateLocation", people.admin,
                             input={"name": "Nobody's", "ownerId": not_an_owner}) == "BAD_USER_INPUT"
    assert await db.run(catalog_rows) == before
    loc = await location(client, people.owner_a, "A Hub")
    assert await refused(client, "UpdateLocation", people.owner_a,
                         input={"id": loc["id"], "ownerId": people.owner_b_id}) == "FORBIDDEN"
    # Repeating one's own id is not a change, so it is allowed.
    assert (await ok(client, "UpdateLocation", people.owner_a,
                     input={"id": loc["id"], "ownerId": people.owner_a_id}))["ownerId"] == people.owner_a_id


async def test_admin_edits_of_others_objects_are_audited(client: httpx.AsyncClient, db: Database) -> None:
    people = await cast(db)
    loc = await location(client, people.admin, "Given", ownerId=people.owner_a_id)
    assert loc["ownerId"] == people.owner_a_id
    operator_price = await tariff(client, people.admin, "Operator", 1000)
    await station(client, people.admin, "GIVEN-1", loc["id"], tariffId=operator_price["id"], password="q" * 16)
    moved = await ok(client, "UpdateLocation", people.admin, input={"id": loc["id"], "ownerId": people.owner_b_id})
    assert moved["ownerId"] == people.owner_b_id
    assert [m["name"] for m in await ok(client, "MyLocations", people.owner_b)] == ["Given"]
    assert await ok(client, "MyLocations", people.owner_a) == []
    await ok(client, "UpdateStation", people.admin, input={"id": "GIVEN-1", "connectorCount": 3})
    entries = await db.run(audit_entries)
    assert [(e[0], e[1], e[2], e[3]) for e in entries] == [
        ("user", people.admin_id, "location.create", f"location:{loc['id']}"),
        ("user", people.admin_id, "station.create", "station:GIVEN-1"),
        ("user", people.admin_id, "location.update", f"location:{loc['id']}"),
        ("user", people.admin_id, "station.update", "station:GIVEN-1"),
    ]
    assert entries[0][4]["owner_id"] == people.owner_a_id
    assert entries[1][4] == {"location_id": loc["id"], "connector_count": 2, "tariff_id": operator_price["id"],
                             "password_set": True}
    assert entries[2][4] == {"owner_id": people.owner_b_id}
    assert entries[3][4] == {"connector_count": 3}
    assert "q" * 16 not in str(entries)
    # Repeating the same change changes nothing, so nothing more is audited.
    await ok(client, "UpdateStation", people.admin, input={"id": "GIVEN-1", "connectorCount": 3})
    assert len(await db.run(audit_entries)) == 4


@pytest.mark.parametrize(
    ("operation", "variables"),
    [
        ("CreateLocation", {"input": {"name": ""}}),
        ("CreateLocation", {"input": {"name": "x" * 201}}),
        ("CreateLocation", {"input": {"name": "Tab\there"}}),
        ("CreateLocation", {"input": {"name": "Half", "latitude": 42.0}}),
        ("CreateLocation", {"input": {"name": "Far", "latitude": 91.0, "longitude": 0.0}}),
        ("CreateLocation", {"input": {"name": "Far", "latitude": 0.0, "longitude": -180.5}}),
        ("CreateLocation", {"input": {"name": "Owned", "ownerId": "nope"}}),
        ("UpdateLocation", {"input": {"id": "{location}", "name": None}}),
        ("UpdateLocation", {"input": {"id": "{location}", "latitude": None}}),
        ("UpdateLocation", {"input": {"id": "junk", "name": "x"}}),
        ("CreateStation", {"input": {"id": "lower-1", "connectorCount": 1, "locationId": "{location}"}}),
        ("CreateStation", {"input": {"id": "A" * 49, "connectorCount": 1, "locationId": "{location}"}}),
        ("CreateStation", {"input": {"id": "A/1", "connectorCount": 1, "locationId": "{location}"}}),
        ("CreateStation", {"input": {"id": "OK-1", "connectorCount": 0, "locationId": "{location}"}}),
        ("CreateStation", {"input": {"id": "OK-1", "connectorCount": 11, "locationId": "{location}"}}),
        ("CreateStation", {"input": {"id": "OK-1", "connectorCount": 1, "locationId": "{location}",
                                     "password": "short"}}),
        ("CreateStation", {"input": {"id": "OK-1", "connectorCount": 1, "locationId": "{location}",
                                     "password": "sixteen-chars-é!"}}),
        ("CreateStation", {"input": {"id": "OK-1", "connectorCount": 1, "locationId": "bad"}}),
        ("UpdateStation", {"input": {"id": "A-1", "connectorCount": None}}),
        ("UpdateStation", {"input": {"id": "A-1", "connectorCount": 11}}),
        ("UpdateStation", {"input": {"id": "A-1", "locationId": None}}),  # owners keep stations at a location
    ],
)
async def test_bad_input_is_refused_and_changes_nothing(
        client: httpx.AsyncClient, db: Database, operation: str, variables: dict[str, Any]) -> None:
    people, ids = await world(client, db)
    before = await db.run(catalog_rows)
    assert await refused(client, operation, people.owner_a, **fill(variables, ids)) == "BAD_USER_INPUT"
    assert await db.run(catalog_rows) == before


async def test_duplicates_conflict_and_identical_repeats_are_idempotent(
        client: httpx.AsyncClient, db: Database) -> None:
    people = await cast(db)
    first = await location(client, people.owner_a, "Hub")
    again = await location(client, people.owner_a, "Hub")  # a client retry after a timeout
    assert again["id"] == first["id"]
    first_station = await station(client, people.owner_a, "HUB-1", first["id"], password="r" * 16)
    assert (await station(client, people.owner_a, "HUB-1", first["id"], password="r" * 16))["id"] == first_station["id"]
    before = await db.run(catalog_rows)
    assert await refused(client, "CreateLocation", people.owner_a,
                         input={"name": "Hub", "city": "Osh"}) == "CONFLICT"
    assert await refused(client, "CreateLocation", people.owner_b, input={"name": "Hub", "city": "Bishkek",
                         "address": "Chui 1", "latitude": 42.87, "longitude": 74.6}) == "CONFLICT"
    for changed in ({"connectorCount": 3}, {"password": "s" * 16}, {"password": None}):
        assert await refused(client, "CreateStation", people.owner_a,
                             input={"id": "HUB-1", "connectorCount": 2, "locationId": first["id"],
                                    "password": "r" * 16, **changed}) == "CONFLICT"
    other = await location(client, people.owner_b, "B Hub")
    assert await refused(client, "CreateStation", people.owner_b,
                         input={"id": "HUB-1", "connectorCount": 2, "locationId": other["id"]}) == "CONFLICT"
    second = await location(client, people.owner_a, "Hub 2")
    assert await refused(client, "UpdateLocation", people.owner_a,
                         input={"id": second["id"], "name": "Hub"}) == "CONFLICT"
    after = await db.run(catalog_rows)
    assert after[1:] == before[1:]  # only the two new locations were added
    assert len(after[0]) == len(before[0]) + 2


def open_transaction(conn: Conn) -> None:
    conn.execute("INSERT INTO id_tags (id_tag) VALUES ('TAG')")
    conn.execute("INSERT INTO transactions (station_id, connector_id, id_tag, id_tag_status, meter_start_wh,"
                 " started_at, start_key_ts) VALUES ('A-1', 3, 'TAG', 'Accepted', 0, now(), now())")


async def test_connector_count_changes_connector_rows(client: httpx.AsyncClient, db: Database) -> None:
    people, ids = await world(client, db)

    async def connectors(count: int) -> list[int]:
        updated = await ok(client, "UpdateStation", people.owner_a, input={"id": "A-1", "connectorCount": count})
        assert updated["connectorCount"] == count
        return [c["connectorId"] for c in updated["connectors"]]

    assert await connectors(4) == [1, 2, 3, 4]
    assert await connectors(3) == [1, 2, 3]
    await db.run(open_transaction)
    before = await db.run(catalog_rows)
    assert await refused(client, "UpdateStation", people.owner_a,
                         input={"id": "A-1", "connectorCount": 2}) == "CONFLICT"
    assert await db.run(catalog_rows) == before
    assert await connectors(5) == [1, 2, 3, 4, 5]  # growing is always fine
    other = await location(client, people.owner_a, "A Second Hub")
    moved = await ok(client, "UpdateStation", people.owner_a, input={"id": "A-1", "locationId": other["id"]})
    assert moved["locationId"] == other["id"]
    assert moved["tariff"]["id"] == ids["tariff"]
