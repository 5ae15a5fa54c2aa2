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
    "station": '{ station(id: "CP1") { id } }',
    "transactions": "{ transactions { edges { cursor } } }",
    "meterValues": "{ meterValues(transactionId: 1) { value } }",
    "me": "{ me { id } }",
}
# Open to everyone on purpose (tested in tests/api/test_cookies.py).
PUBLIC_FIELDS = {"csrfToken"}


def test_every_root_field_is_covered_here() -> None:
    query_type = build_schema(schema.as_str()).query_type
    assert query_type is not None
    assert set(query_type.fields) == set(ROOT_FIELDS) | PUBLIC_FIELDS


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
