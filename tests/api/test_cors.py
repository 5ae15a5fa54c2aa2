"""CORS over real HTTP: preflights, allowed and refused origins, credentials, Vary: Origin."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from tests.api.auth_support import start_auth_api

if TYPE_CHECKING:
    import trio

    from csms.store.db import Database

APP = "https://app.example.com"
EVIL = "https://evil.example.net"
QUERY = {"query": "{ csrfToken }"}


def preflight_headers(origin: str, method: str = "POST") -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "content-type, x-csrf-token"}


async def test_explicit_origin_list(db: Database, nursery: trio.Nursery) -> None:
    url = await start_auth_api(db, nursery, cors_origins=(APP,))
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        allowed = await client.options("/graphql", headers=preflight_headers(APP))
        assert allowed.status_code == 204
        assert allowed.headers["access-control-allow-origin"] == APP
        assert allowed.headers["access-control-allow-credentials"] == "true"
        assert "X-CSRF-Token" in allowed.headers["access-control-allow-headers"]
        assert "POST" in allowed.headers["access-control-allow-methods"]
        assert "Origin" in allowed.headers["vary"]

        for refused in (await client.options("/graphql", headers=preflight_headers(EVIL)),
                        await client.options("/graphql", headers=preflight_headers(APP, "DELETE")),
                        await client.options("/graphql", headers=preflight_headers("http://localhost:5173"))):
            assert refused.status_code == 403
            assert "access-control-allow-origin" not in refused.headers
            assert "Origin" in refused.headers["vary"]

        response = await client.post("/graphql", json=QUERY, headers={"Origin": APP})
        assert response.headers["access-control-allow-origin"] == APP
        assert response.headers["access-control-allow-credentials"] == "true"
        assert "Origin" in response.headers["vary"]
        response = await client.post("/graphql", json=QUERY, headers={"Origin": EVIL})
        assert response.status_code == 200  # the browser, not the server, withholds the answer
        assert "access-control-allow-origin" not in response.headers
        assert "access-control-allow-credentials" not in response.headers
        assert "Origin" in response.headers["vary"]
        # Same-origin and non-browser requests carry no Origin and get no CORS headers.
        response = await client.post("/graphql", json=QUERY)
        assert "access-control-allow-origin" not in response.headers


async def test_development_default_allows_localhost_only(db: Database, nursery: trio.Nursery) -> None:
    url = await start_auth_api(db, nursery)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for origin in ("http://localhost:5173", "http://127.0.0.1:3000", "http://localhost"):
            response = await client.options("/graphql", headers=preflight_headers(origin))
            assert response.status_code == 204, origin
            assert response.headers["access-control-allow-origin"] == origin
        for origin in (EVIL, "http://localhost.evil.net", "https://localhost:5173"):
            assert (await client.options("/graphql", headers=preflight_headers(origin))).status_code == 403, origin


async def test_wildcard_in_development_reflects_the_origin(db: Database, nursery: trio.Nursery) -> None:
    url = await start_auth_api(db, nursery, cors_origins=("*",))
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.options("/graphql", headers=preflight_headers(EVIL))
        assert response.status_code == 204
        # Never a literal "*": browsers refuse it together with credentials.
        assert response.headers["access-control-allow-origin"] == EVIL
