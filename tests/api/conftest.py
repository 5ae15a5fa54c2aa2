"""Fixtures for API tests: the real app served by hypercorn on a free port, and an httpx client.

Tests talk to it over a real socket, as a client would. httpx runs on Trio through its anyio backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from csms.api.app import create_app
from csms.api.context import ApiServices
from csms.api.server import serve_api
from csms.config import Settings
from csms.store.apikeys import create_api_key
from tests.conftest import TEST_SIGNER

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import trio

    from csms.store.db import Database

DOCUMENTS = Path(__file__).resolve().parents[2] / "graphql"


def document(name: str) -> str:
    """A client operation document from the repo's ``graphql/`` folder."""
    return (DOCUMENTS / name).read_text(encoding="utf-8")


async def start_api(db: Database, nursery: trio.Nursery) -> str:
    """Serve the app on 127.0.0.1, port chosen by the OS, in ``nursery``; return its base URL."""
    settings = Settings(http_host="127.0.0.1", http_port=0, shutdown_grace_s=1.0)
    services = ApiServices(db=db, settings=settings, signer=TEST_SIGNER)
    binds: list[str] = await nursery.start(serve_api, create_app(services), settings)
    return binds[0]


@pytest.fixture
async def api_url(db: Database, nursery: trio.Nursery) -> str:
    """Base URL of a running API on the test's database."""
    return await start_api(db, nursery)


@pytest.fixture
async def client(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client pointed at the running API."""
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as http:
        yield http


@pytest.fixture
async def token(db: Database) -> str:
    """A valid operator API key."""
    return await db.run(create_api_key, "tests")


async def gql(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    operation: str | None = None,
) -> dict[str, Any]:
    """POST a GraphQL operation and return the decoded JSON body (asserting HTTP 200)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body: dict[str, Any] = {"query": query, "variables": variables or {}}
    if operation:
        body["operationName"] = operation
    response = await client.post("/graphql", json=body, headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def error_codes(result: dict[str, Any]) -> list[str]:
    """The ``extensions.code`` of every error in a GraphQL response."""
    return [e.get("extensions", {}).get("code") for e in result.get("errors", [])]
