"""Every Query field refuses anonymous callers and bad keys with UNAUTHENTICATED."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from csms.api.schema import schema
from csms.store.apikeys import parse_token, revoke_api_key
from graphql import build_schema
from tests.api.conftest import error_codes, gql

if TYPE_CHECKING:
    import httpx

    from csms.store.db import Database

ROOT_FIELDS = {
    "stations": "{ stations { id } }",
    "transactions": "{ transactions { edges { cursor } } }",
    "meterValues": "{ meterValues(transactionId: 1) { value } }",
    "myLocations": "{ myLocations { id } }",
    "myTariffs": "{ myTariffs { id } }",
    "myWallet": "{ myWallet { availableTyiyn } }",
    "myWalletHistory": "{ myWalletHistory { pageInfo { hasNextPage } } }",
    "wallet": '{ wallet(userId: "00000000-0000-0000-0000-000000000001") { availableTyiyn } }',
    "auditLog": "{ auditLog { pageInfo { hasNextPage } } }",
    "myRevenue": '{ myRevenue(from: "2026-01-01T00:00:00Z", to: "2026-02-01T00:00:00Z") { revenueTyiyn } }',
    "session": '{ session(id: "00000000-0000-0000-0000-000000000000") { id } }',
    "mySessions": "{ mySessions { edges { cursor } } }",
    "sessions": "{ sessions { edges { cursor } } }",
    "me": "{ me { id } }",
    "invoice": '{ invoice(id: "00000000-0000-0000-0000-000000000000") { id } }',
    "myInvoices": "{ myInvoices { edges { cursor } } }",
    "invoices": "{ invoices { edges { cursor } } }",
    "paymentAnomalies": "{ paymentAnomalies { items { id } } }",
    "myPushSubscriptions": "{ myPushSubscriptions { id } }",
}
# The public map: anyone may ask (field-level hiding is tested in test_catalog_access.py).
PUBLIC_FIELDS = {
    "locations": "{ locations { id } }",
    "location": '{ location(id: "00000000-0000-0000-0000-000000000000") { id } }',
    "station": '{ station(id: "CP1") { id } }',
    "csrfToken": "{ csrfToken }",
    "vapidPublicKey": "{ vapidPublicKey }",
}


def test_every_root_field_is_covered_here() -> None:
    query_type = build_schema(schema.as_str()).query_type
    assert query_type is not None
    assert set(query_type.fields) == set(ROOT_FIELDS) | set(PUBLIC_FIELDS)


@pytest.mark.parametrize("field", sorted(PUBLIC_FIELDS))
async def test_public_fields_answer_anonymous_callers(client: httpx.AsyncClient, field: str) -> None:
    result = await gql(client, PUBLIC_FIELDS[field])
    assert "errors" not in result, result
    assert field in result["data"]


@pytest.mark.parametrize("field", sorted(ROOT_FIELDS))
async def test_anonymous_is_unauthenticated(client: httpx.AsyncClient, field: str) -> None:
    result = await gql(client, ROOT_FIELDS[field])
    assert error_codes(result) == ["UNAUTHENTICATED"]
    assert result["data"] is None or result["data"].get(field) is None


@pytest.mark.parametrize(
    "bad",
    [
        "not-a-token",
        "csms_short_secret",
        "csms_AAAAAAAA_" + "A" * 43,  # well-formed, unknown prefix
        "Basic dXNlcjpwYXNz",
    ],
)
async def test_bad_key_is_unauthenticated(client: httpx.AsyncClient, bad: str) -> None:
    result = await gql(client, ROOT_FIELDS["stations"], token=bad)
    assert error_codes(result) == ["UNAUTHENTICATED"]


async def test_wrong_secret_is_unauthenticated(client: httpx.AsyncClient, token: str) -> None:
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    result = await gql(client, ROOT_FIELDS["stations"], token=forged)
    assert error_codes(result) == ["UNAUTHENTICATED"]


async def test_revoked_key_is_unauthenticated(client: httpx.AsyncClient, db: Database, token: str) -> None:
    assert (await gql(client, ROOT_FIELDS["stations"], token=token))["data"] == {"stations": []}
    parsed = parse_token(token)
    assert parsed is not None
    assert await db.run(revoke_api_key, parsed[0])
    result = await gql(client, ROOT_FIELDS["stations"], token=token)
    assert error_codes(result) == ["UNAUTHENTICATED"]


async def test_valid_key_in_get_request(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get(
        "/graphql", params={"query": "{ stations { id } }"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"stations": []}}
