"""Helpers for the charging-session tests: stations with tariffs, wallets, GraphQL calls, ledger checks.

Locations, tariffs and tariff assignments are created with SQL (their management API is built
elsewhere); wallets are credited from the ``adjustments`` account, as an operator's top-up would be.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from csms.store import ledger
from tests.conftest import add_station

if TYPE_CHECKING:
    import httpx

    from csms.store.db import Conn, Database
    from tests.conftest import Node

_counter = itertools.count()

SESSION_FIELDS = """id stationId connectorId status limitTyiyn energyLimitWh pricePerKwhTyiyn sessionFeeTyiyn
    holdTyiyn energyWh powerW soc costTyiyn chargedTyiyn stopReason failureReason createdAt startedAt endedAt"""

START = f"""mutation($input: StartChargingInput!) {{ startCharging(input: $input) {{ {SESSION_FIELDS} }} }}"""
STOP = f"""mutation($id: ID!) {{ stopCharging(sessionId: $id) {{ {SESSION_FIELDS} }} }}"""
GET = f"""query($id: ID!) {{ session(id: $id) {{ {SESSION_FIELDS} }} }}"""


@dataclass(frozen=True)
class Tariff:
    """A tariff row as created by :func:`setup_station`."""

    id: str
    per_kwh: int
    fee: int


async def rows(db: Database, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Run a query and return its rows."""

    def q(conn: Conn) -> list[tuple[Any, ...]]:
        return conn.execute(sql, args).fetchall()

    return await db.run(q)


async def setup_station(node: Node, station_id: str, *, per_kwh: int = 1000, fee: int = 0,
                        owner_id: str | None = None, tariff: bool = True) -> Tariff | None:
    """Register a station in a location (owned by ``owner_id``, if given) with its own tariff."""
    await add_station(node, station_id)

    def write(conn: Conn) -> Tariff | None:
        name = f"loc-{os.getpid()}-{next(_counter)}"
        loc = conn.execute("INSERT INTO locations (name, owner_id) VALUES (%s, %s) RETURNING id",
                           (name, owner_id)).fetchone()
        assert loc is not None
        conn.execute("UPDATE stations SET location_id = %s WHERE id = %s", (loc[0], station_id))
        if not tariff:
            return None
        row = conn.execute(
            """INSERT INTO tariffs (owner_id, name, price_per_kwh_tyiyn, session_fee_tyiyn)
               VALUES (%s, %s, %s, %s) RETURNING id::text""", (owner_id, name, per_kwh, fee)).fetchone()
        assert row is not None
        conn.execute("UPDATE stations SET tariff_id = %s WHERE id = %s", (row[0], station_id))
        return Tariff(row[0], per_kwh, fee)

    return await node.db.run(write)


async def credit(db: Database, user_id: str, amount: int) -> None:
    """Top a wallet up from the adjustments account."""

    def write(conn: Conn) -> None:
        ledger.transfer(conn, f"test-credit:{user_id}:{next(_counter)}", ledger.system_account(conn, "adjustments"),
                        ledger.user_account(conn, user_id), amount, reason="test top-up")

    await db.run(write)


async def wallet(db: Database, user_id: str) -> ledger.Balance:
    """The totals of a user's wallet."""
    return await db.run(lambda conn: ledger.balance(conn, ledger.user_account(conn, user_id)))


async def revenue(db: Database, owner_id: str | None) -> ledger.Balance:
    """The totals of an owner's revenue account, or the operator's."""

    def read(conn: Conn) -> ledger.Balance:
        account = (ledger.user_account(conn, owner_id, "owner_revenue") if owner_id
                   else ledger.system_account(conn, ledger.OPERATOR_REVENUE))
        return ledger.balance(conn, account)

    return await db.run(read)




async def gql(client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None, *,
              token: str | None = None, idempotency_key: str | None = None) -> dict[str, Any]:
    """POST a GraphQL operation (with an optional Idempotency-Key header); the decoded body."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    response = await client.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def codes(result: dict[str, Any]) -> list[str]:
    """The ``extensions.code`` of every error in a response."""
    return [e.get("extensions", {}).get("code") for e in result.get("errors", [])]


async def start(client: httpx.AsyncClient, token: str, station_id: str, connector_id: int = 1, *,
                limit: int | None = None, energy: int | None = None, key: str | None = None) -> dict[str, Any]:
    """Call startCharging; the whole response."""
    data: dict[str, Any] = {"stationId": station_id, "connectorId": connector_id}
    if limit is not None:
        data["limitTyiyn"] = limit
    if energy is not None:
        data["energyWh"] = energy
    return await gql(client, START, {"input": data}, token=token, idempotency_key=key)


async def started(client: httpx.AsyncClient, token: str, station_id: str, connector_id: int = 1,
                  **kwargs: Any) -> dict[str, Any]:
    """Call startCharging and return the session, asserting it succeeded."""
    result = await start(client, token, station_id, connector_id, **kwargs)
    assert "errors" not in result, result
    session: dict[str, Any] = result["data"]["startCharging"]
    return session


async def session(client: httpx.AsyncClient, token: str, session_id: str) -> dict[str, Any] | None:
    """Read one session through the API."""
    result = await gql(client, GET, {"id": session_id}, token=token)
    assert "errors" not in result, result
    found: dict[str, Any] | None = result["data"]["session"]
    return found


async def wait_session(client: httpx.AsyncClient, token: str, session_id: str, *, status: str | None = None,
                       energy_above: int | None = None, timeout: float = 10.0) -> dict[str, Any]:
    """Poll a session until it has ``status`` (and more than ``energy_above`` Wh, if given)."""
    with trio.fail_after(timeout):
        while True:
            found = await session(client, token, session_id)
            assert found is not None
            if (status is None or found["status"] == status) and (
                    energy_above is None or found["energyWh"] > energy_above):
                return found
            await trio.sleep(0.05)
