"""Refresh tokens over real HTTP: rotation, safe retries, reuse revoking the family, expiry, logout."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

from tests.api.auth_support import LOGIN, LOGOUT, ME, PASSWORD, REFRESH, post, register, start_auth_api
from tests.api.conftest import error_codes

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from csms.store.db import Database


@pytest.fixture
async def client(db: Database, nursery: trio.Nursery) -> AsyncIterator[httpx.AsyncClient]:
    url = await start_auth_api(db, nursery, refresh_reuse_grace_s=0.0)
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        yield http


async def refresh(client: httpx.AsyncClient, token: str | None) -> dict[str, Any]:
    _, body = await post(client, REFRESH, {"token": token})
    return body


async def test_refresh_rotates_and_the_new_pair_works(client: httpx.AsyncClient, db: Database) -> None:
    session = await register(client, email="rotate@example.kg")
    first = await refresh(client, session["refreshToken"])
    new = first["data"]["refresh"]
    assert new["user"]["id"] == session["user"]["id"]
    assert new["refreshToken"] != session["refreshToken"]
    assert new["accessToken"] != session["accessToken"]
    _, me = await post(client, ME, headers={"Authorization": f"Bearer {new['accessToken']}"})
    assert me["data"]["me"]["id"] == session["user"]["id"]
    second = await refresh(client, new["refreshToken"])
    assert "errors" not in second
    # Only hashes are stored, one row per token, all in one family.
    rows = await db.run(lambda conn: conn.execute(
        "SELECT token_sha256, family_id FROM refresh_tokens ORDER BY created_at").fetchall())
    assert len(rows) == 3
    assert len({family for _, family in rows}) == 1
    tokens = (session["refreshToken"], new["refreshToken"], second["data"]["refresh"]["refreshToken"])
    assert {bytes(sha) for sha, _ in rows} == {hashlib.sha256(t.encode()).digest() for t in tokens}


async def test_reusing_a_rotated_token_revokes_the_family(client: httpx.AsyncClient) -> None:
    session = await register(client, email="stolen@example.kg")
    other_device = (await post(client, LOGIN, {"input": {"email": "stolen@example.kg", "password": PASSWORD}}))[1]
    legit = (await refresh(client, session["refreshToken"]))["data"]["refresh"]
    # A thief replays the old token: refused, and the whole family dies with it...
    assert error_codes(await refresh(client, session["refreshToken"])) == ["INVALID_REFRESH_TOKEN"]
    # ...so the legitimate holder's next refresh fails too, and they must log in again.
    assert error_codes(await refresh(client, legit["refreshToken"])) == ["INVALID_REFRESH_TOKEN"]
    # Another login (another family) is untouched.
    assert "errors" not in await refresh(client, other_device["data"]["login"]["refreshToken"])


@pytest.mark.parametrize("token", [None, "", "garbage", "x" * 5000])
async def test_bad_refresh_tokens(client: httpx.AsyncClient, token: str | None) -> None:
    codes = error_codes(await refresh(client, token))
    assert codes == (["BAD_USER_INPUT"] if not token else ["INVALID_REFRESH_TOKEN"])


async def test_expired_refresh_token_is_refused(client: httpx.AsyncClient, db: Database) -> None:
    session = await register(client, email="old@example.kg")
    await db.run(lambda conn: conn.execute("UPDATE refresh_tokens SET expires_at = now() - interval '1 second'"))
    assert error_codes(await refresh(client, session["refreshToken"])) == ["INVALID_REFRESH_TOKEN"]


async def test_logout_ends_the_session(client: httpx.AsyncClient, db: Database) -> None:
    session = await register(client, email="bye@example.kg")
    rotated = (await refresh(client, session["refreshToken"]))["data"]["refresh"]
    _, body = await post(client, LOGOUT, {"token": rotated["refreshToken"]})
    assert body == {"data": {"logout": True}}
    assert error_codes(await refresh(client, rotated["refreshToken"])) == ["INVALID_REFRESH_TOKEN"]
    revoked = await db.run(lambda conn: conn.execute(
        "SELECT count(*) FILTER (WHERE revoked_at IS NOT NULL), count(*) FROM refresh_tokens").fetchone())
    assert revoked == (2, 2)
    # Logging out again, or with an unknown token, is fine and says nothing.
    assert (await post(client, LOGOUT, {"token": rotated["refreshToken"]}))[1] == {"data": {"logout": True}}
    assert (await post(client, LOGOUT, {"token": "unknown"}))[1] == {"data": {"logout": True}}
    assert error_codes((await post(client, LOGOUT))[1]) == ["BAD_USER_INPUT"]


async def test_a_retried_refresh_gets_the_same_successor(db: Database, nursery: trio.Nursery) -> None:
    """A refresh whose answer was lost is repeated: within the grace period it gets the same token back."""
    url = await start_auth_api(db, nursery, refresh_reuse_grace_s=30.0)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        session = await register(client, email="retry@example.kg")
        first = (await refresh(client, session["refreshToken"]))["data"]["refresh"]
        retried = (await refresh(client, session["refreshToken"]))["data"]["refresh"]
        assert retried["refreshToken"] == first["refreshToken"]
        assert await db.run(lambda conn: conn.execute("SELECT count(*) FROM refresh_tokens").fetchone()) == (2,)
        # Once the successor is used, the old token is a reuse again: the family is revoked.
        third = (await refresh(client, first["refreshToken"]))["data"]["refresh"]
        assert error_codes(await refresh(client, session["refreshToken"])) == ["INVALID_REFRESH_TOKEN"]
        assert error_codes(await refresh(client, third["refreshToken"])) == ["INVALID_REFRESH_TOKEN"]


async def test_concurrent_refreshes_of_one_token_yield_one_successor(db: Database, nursery: trio.Nursery) -> None:
    url = await start_auth_api(db, nursery, refresh_reuse_grace_s=30.0)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        session = await register(client, email="race@example.kg")
        results: list[dict[str, Any]] = []

        async def one() -> None:
            results.append(await refresh(client, session["refreshToken"]))

        async with trio.open_nursery() as racers:
            for _ in range(4):
                racers.start_soon(one)
        assert {r["data"]["refresh"]["refreshToken"] for r in results} == {
            results[0]["data"]["refresh"]["refreshToken"]}
        assert await db.run(lambda conn: conn.execute("SELECT count(*) FROM refresh_tokens").fetchone()) == (2,)
