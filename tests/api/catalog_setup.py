"""Helpers for the catalog tests: the cast of callers, and the client operations of graphql/catalog.graphql.

Everything goes through the real API over HTTP, with the operation documents a phone app would send.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.api.conftest import document, error_codes, gql
from tests.conftest import make_user

if TYPE_CHECKING:
    import httpx

    from csms.store.db import Conn, Database

CATALOG = document("catalog.graphql")


@dataclass
class Cast:
    """Access tokens (and user ids) of everyone who calls the API in these tests."""

    admin: str
    admin_id: str
    owner_a: str
    owner_a_id: str
    owner_b: str
    owner_b_id: str
    driver: str
    driver_id: str


async def cast(db: Database) -> Cast:
    """An admin, two owners and a driver."""
    admin_id, admin = await make_user(db, "admin")
    a_id, a = await make_user(db, "owner")
    b_id, b = await make_user(db, "owner")
    driver_id, driver = await make_user(db, "driver")
    return Cast(admin, admin_id, a, a_id, b, b_id, driver, driver_id)


async def op(client: httpx.AsyncClient, operation: str, token: str | None = None, **variables: Any) -> dict[str, Any]:
    """Run one operation of graphql/catalog.graphql; returns the whole response."""
    return await gql(client, CATALOG, variables, token=token, operation=operation)


async def ok(client: httpx.AsyncClient, operation: str, token: str | None = None, **variables: Any) -> Any:
    """Run an operation that must succeed; returns its one root field's data."""
    result = await op(client, operation, token, **variables)
    assert "errors" not in result, result
    (value,) = result["data"].values()
    return value


async def refused(client: httpx.AsyncClient, operation: str, token: str | None = None, **variables: Any) -> str:
    """Run an operation that must fail with exactly one typed error; returns its code."""
    result = await op(client, operation, token, **variables)
    codes = error_codes(result)
    assert len(codes) == 1, result
    # A nullable root field is null next to the error; a non-null one nulls the whole data.
    assert result["data"] is None or all(v is None for v in result["data"].values()), result
    return codes[0]


async def location(client: httpx.AsyncClient, token: str, name: str, **fields: Any) -> dict[str, Any]:
    """Create a location (Bishkek by default) and return it."""
    values = {"name": name, "city": "Bishkek", "address": "Chui 1", "latitude": 42.87, "longitude": 74.6, **fields}
    return await ok(client, "CreateLocation", token, input=values)  # type: ignore[no-any-return]


async def station(client: httpx.AsyncClient, token: str, station_id: str, location_id: str | None,
                  connectors: int = 2, **fields: Any) -> dict[str, Any]:
    """Create a station and return it."""
    values = {"id": station_id, "connectorCount": connectors, "locationId": location_id, **fields}
    return await ok(client, "CreateStation", token, input=values)  # type: ignore[no-any-return]


async def tariff(client: httpx.AsyncClient, token: str, name: str, price: int, fee: int = 0,
                 **fields: Any) -> dict[str, Any]:
    """Create a tariff and return it."""
    values = {"name": name, "pricePerKwhTyiyn": price, "sessionFeeTyiyn": fee, **fields}
    return await ok(client, "CreateTariff", token, input=values)  # type: ignore[no-any-return]


def catalog_rows(conn: Conn) -> tuple[Any, ...]:
    """Everything the catalog mutations may write, to prove that a refused call changed nothing."""
    queries = (
        "SELECT id, name, address, city, latitude, longitude, owner_id FROM locations ORDER BY id",
        "SELECT id, location_id, connector_count, tariff_id, password_hash FROM stations ORDER BY id",
        "SELECT station_id, connector_id, tariff_id FROM connectors ORDER BY 1, 2",
        "SELECT id, owner_id, name, price_per_kwh_tyiyn, session_fee_tyiyn, updated_at FROM tariffs ORDER BY id",
        "SELECT count(*) FROM audit_log",
    )
    return tuple(tuple(conn.execute(q).fetchall()) for q in queries)


def audit_entries(conn: Conn) -> list[tuple[Any, ...]]:
    """``(actor_kind, actor_id, action, target, detail)`` of every audit row, oldest first."""
    return conn.execute("SELECT actor_kind, actor_id, action, target, detail FROM audit_log ORDER BY id").fetchall()
