"""Who may stop and see a session, and the session lists (mySessions, sessions) with their cursors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from csms.store.apikeys import create_api_key
from tests.charging.support import (
    STOP,
    codes,
    credit,
    gql,
    session,
    setup_station,
    started,
    wait_session,
    wallet,
)
from tests.conftest import charger, make_user
from tests.ledger_check import assert_ledger_clean

if TYPE_CHECKING:
    import httpx

    from tests.conftest import Node

MY = """query($first: Int, $after: String) { mySessions(first: $first, after: $after) {
    edges { cursor node { id stationId status } } pageInfo { hasNextPage endCursor } } }"""
ALL = """query($filter: SessionFilter, $first: Int, $after: String) {
    sessions(filter: $filter, first: $first, after: $after) {
    edges { node { id stationId status } } pageInfo { hasNextPage endCursor } } }"""


async def test_only_the_driver_or_an_admin_may_stop(snode: Node, api: httpx.AsyncClient) -> None:
    owner_id, owner = await make_user(snode.db, "owner")
    await setup_station(snode, "ACL-1", owner_id=owner_id)
    driver_id, driver = await make_user(snode.db)
    _, stranger = await make_user(snode.db)
    admin_key = await snode.db.run(create_api_key, "ops")
    await credit(snode.db, driver_id, 30_000)
    async with charger(snode, "ACL-1", power_w=360_000, meter_interval_s=0.05):
        s = await started(api, driver, "ACL-1", 1, limit=20_000)
        await wait_session(api, driver, s["id"], status="charging")
        for token in (stranger, owner):
            refused = await gql(api, STOP, {"id": s["id"]}, token=token)
            assert codes(refused) == ["FORBIDDEN"]
        assert (await session(api, driver, s["id"]))["status"] == "charging"  # type: ignore[index]
        unknown = await gql(api, STOP, {"id": "6a1f3a0e-0000-4000-8000-000000000000"}, token=admin_key)
        assert codes(unknown) == ["NOT_FOUND"]
        assert codes(await gql(api, STOP, {"id": "not-a-uuid"}, token=admin_key)) == ["NOT_FOUND"]
        by_admin = await gql(api, STOP, {"id": s["id"]}, token=admin_key)
        assert by_admin["data"]["stopCharging"]["status"] in ("stopping", "completed")
        done = await wait_session(api, driver, s["id"], status="completed")
    assert (await wallet(snode.db, driver_id)).posted == 30_000 - done["chargedTyiyn"]
    await assert_ledger_clean(snode.db)


async def test_who_sees_a_session(snode: Node, api: httpx.AsyncClient) -> None:
    owner_id, owner = await make_user(snode.db, "owner")
    _, other_owner = await make_user(snode.db, "owner")
    await setup_station(snode, "SEE-1", owner_id=owner_id)
    driver_id, driver = await make_user(snode.db)
    _, stranger = await make_user(snode.db)
    admin_key = await snode.db.run(create_api_key, "ops")
    await credit(snode.db, driver_id, 10_000)
    async with charger(snode, "SEE-1", remote_start_mode="reject"):
        s = await started(api, driver, "SEE-1", 1, limit=1_000)
    for token in (driver, owner, admin_key):
        seen = await session(api, token, s["id"])
        assert seen is not None and seen["id"] == s["id"]
    for token in (stranger, other_owner):
        assert await session(api, token, s["id"]) is None
    assert codes(await gql(api, "query($id: ID!) { session(id: $id) { id } }", {"id": s["id"]})) == [
        "UNAUTHENTICATED"]
    await assert_ledger_clean(snode.db)


async def _page(api: httpx.AsyncClient, query: str, token: str, **variables: Any) -> dict[str, Any]:
    result = await gql(api, query, variables, token=token)
    assert "errors" not in result, result
    page: dict[str, Any] = next(iter(result["data"].values()))
    return page


async def test_lists_are_newest_first_with_cursors_and_scoped(snode: Node, api: httpx.AsyncClient) -> None:
    owner_id, owner = await make_user(snode.db, "owner")
    owner_key = await snode.db.run(lambda conn: create_api_key(conn, "owner key", role="owner", user_id=owner_id))
    await setup_station(snode, "LIST-1", owner_id=owner_id)
    await setup_station(snode, "LIST-2")  # the operator's
    driver_id, driver = await make_user(snode.db)
    other_id, other = await make_user(snode.db)
    admin_key = await snode.db.run(create_api_key, "ops")
    await credit(snode.db, driver_id, 10_000)
    await credit(snode.db, other_id, 10_000)
    mine: list[str] = []
    async with charger(snode, "LIST-1", remote_start_mode="reject"), \
            charger(snode, "LIST-2", remote_start_mode="reject"):
        for station in ("LIST-1", "LIST-2", "LIST-1", "LIST-2", "LIST-1"):
            mine.append((await started(api, driver, station, 1, limit=1_000))["id"])
        theirs = (await started(api, other, "LIST-1", 2, limit=1_000))["id"]
    # mySessions: only the caller's, newest first, two at a time.
    seen: list[str] = []
    after = None
    while True:
        page = await _page(api, MY, driver, first=2, after=after)
        seen += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == mine[::-1]
    # Owners see their stations' sessions (every driver's), nothing else; admins see everything.
    for token in (owner, owner_key):
        page = await _page(api, ALL, token, first=100)
        assert {e["node"]["id"] for e in page["edges"]} == {mine[0], mine[2], mine[4], theirs}
    page = await _page(api, ALL, admin_key, first=100)
    assert len(page["edges"]) == 6
    page = await _page(api, ALL, admin_key, filter={"stationId": "LIST-2", "status": "failed"})
    assert [e["node"]["id"] for e in page["edges"]] == [mine[3], mine[1]]
    page = await _page(api, ALL, admin_key, filter={"from": "2100-01-01T00:00:00Z"})
    assert page["edges"] == []
    # Drivers have no station list; bad arguments are typed errors.
    assert codes(await gql(api, ALL, {}, token=driver)) == ["FORBIDDEN"]
    assert codes(await gql(api, ALL, {"filter": {"status": "nope"}}, token=admin_key)) == ["BAD_USER_INPUT"]
    assert codes(await gql(api, MY, {"first": 0}, token=driver)) == ["BAD_USER_INPUT"]
    assert codes(await gql(api, MY, {"after": "garbage"}, token=driver)) == ["BAD_USER_INPUT"]
    assert codes(await gql(api, MY, {}, token=admin_key)) == ["FORBIDDEN"]
    await assert_ledger_clean(snode.db)
