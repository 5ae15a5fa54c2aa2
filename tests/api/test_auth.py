"""Bad credentials are UNAUTHENTICATED: malformed, unknown, forged and revoked API keys."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from csms.store.apikeys import parse_token, revoke_api_key
from tests.api.conftest import error_codes, gql

if TYPE_CHECKING:
    import httpx

    from csms.store.db import Database

# Who may call which root field is the authorization matrix's job (test_authz_matrix.py); this module
# checks the credential itself: malformed, unknown, forged and revoked keys, and keys in GET requests.
STATIONS = "{ stations { id } }"


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
    result = await gql(client, STATIONS, token=bad)
    assert error_codes(result) == ["UNAUTHENTICATED"]


async def test_wrong_secret_is_unauthenticated(client: httpx.AsyncClient, token: str) -> None:
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    result = await gql(client, STATIONS, token=forged)
    assert error_codes(result) == ["UNAUTHENTICATED"]


async def test_revoked_key_is_unauthenticated(client: httpx.AsyncClient, db: Database, token: str) -> None:
    assert (await gql(client, STATIONS, token=token))["data"] == {"stations": []}
    parsed = parse_token(token)
    assert parsed is not None
    assert await db.run(revoke_api_key, parsed[0])
    result = await gql(client, STATIONS, token=token)
    assert error_codes(result) == ["UNAUTHENTICATED"]


async def test_valid_key_in_get_request(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get(
        "/graphql", params={"query": "{ stations { id } }"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"stations": []}}
