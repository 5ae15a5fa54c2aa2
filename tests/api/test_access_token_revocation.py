"""Access tokens end with their login session: logout, a reused refresh token, account deletion.

Over real HTTP, with two API processes' worth of services on one database for the cross-node case.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

from csms.services import logins
from csms.services.session_revocation import RECHECK_S
from tests.api.auth_support import LOGIN, LOGOUT, ME, PASSWORD, REFRESH, post, register, start_auth_api
from tests.api.conftest import error_codes
from tests.api.ws_client import WsClient, start_live_api
from tests.conftest import make_user

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from csms.store.db import Database


@pytest.fixture
async def client(db: Database, nursery: trio.Nursery) -> AsyncIterator[httpx.AsyncClient]:
    url = await start_auth_api(db, nursery, refresh_reuse_grace_s=0.0)
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        yield http


async def me(client: httpx.AsyncClient, access_token: str) -> dict[str, Any]:
    return (await post(client, ME, headers={"Authorization": f"Bearer {access_token}"}))[1]


async def works(client: httpx.AsyncClient, access_token: str) -> bool:
    body = await me(client, access_token)
    if "errors" in body:
        assert error_codes(body) == ["UNAUTHENTICATED"], body
        return False
    return True


async def login(client: httpx.AsyncClient, email: str) -> dict[str, Any]:
    body = (await post(client, LOGIN, {"input": {"email": email, "password": PASSWORD}}))[1]
    payload: dict[str, Any] = body["data"]["login"]
    return payload


async def test_logging_out_ends_the_sessions_access_tokens_at_once(client: httpx.AsyncClient) -> None:
    phone = await register(client, email="out@example.kg")
    laptop = await login(client, "out@example.kg")
    refreshed = (await post(client, REFRESH, {"token": phone["refreshToken"]}))[1]["data"]["refresh"]
    assert await works(client, phone["accessToken"]) and await works(client, refreshed["accessToken"])
    assert (await post(client, LOGOUT, {"token": refreshed["refreshToken"]}))[1] == {"data": {"logout": True}}
    # Every access token of the phone's session, from before and after its refresh, is refused now...
    assert not await works(client, phone["accessToken"])
    assert not await works(client, refreshed["accessToken"])
    # ...and the laptop's session is another one: untouched.
    assert await works(client, laptop["accessToken"])


async def test_a_reused_refresh_token_ends_the_sessions_access_tokens(client: httpx.AsyncClient) -> None:
    victim = await register(client, email="victim@example.kg")
    legit = (await post(client, REFRESH, {"token": victim["refreshToken"]}))[1]["data"]["refresh"]
    assert await works(client, legit["accessToken"])
    # A thief replays the old refresh token: the session is revoked, and with it every access token the
    # thief (or anyone) got from it.
    assert error_codes((await post(client, REFRESH, {"token": victim["refreshToken"]}))[1]) == ["INVALID_REFRESH_TOKEN"]
    assert not await works(client, legit["accessToken"])
    assert not await works(client, victim["accessToken"])


async def test_another_node_sees_a_logout_within_seconds(db: Database, nursery: trio.Nursery) -> None:
    url_a = await start_auth_api(db, nursery)
    url_b = await start_auth_api(db, nursery)
    async with httpx.AsyncClient(base_url=url_a, timeout=10) as a, httpx.AsyncClient(base_url=url_b, timeout=10) as b:
        session = await register(a, email="nodes@example.kg")
        assert await works(b, session["accessToken"])  # node B has now checked (and cached) the session
        await post(a, LOGOUT, {"token": session["refreshToken"]})
        assert not await works(a, session["accessToken"])
        started = trio.current_time()
        with trio.fail_after(RECHECK_S + 3):
            while await works(b, session["accessToken"]):
                await trio.sleep(0.1)
        assert trio.current_time() - started <= RECHECK_S + 1


async def test_asking_for_deletion_ends_every_sessions_access_tokens(client: httpx.AsyncClient) -> None:
    phone = await register(client, email="gone@example.kg")
    laptop = await login(client, "gone@example.kg")
    body = (await post(client, "mutation { requestAccountDeletion { status } }",
                       headers={"Authorization": f"Bearer {phone['accessToken']}"}))[1]
    assert body["data"]["requestAccountDeletion"]["status"] == "PENDING_DELETION"
    with trio.fail_after(RECHECK_S + 3):
        while await works(client, phone["accessToken"]) or await works(client, laptop["accessToken"]):
            await trio.sleep(0.1)


async def test_a_token_without_a_session_still_works_until_it_expires(client: httpx.AsyncClient, db: Database) -> None:
    # Tokens issued before sessions were named in them (and operator tooling) carry no sid.
    _, token = await make_user(db)
    assert await works(client, token)


async def test_an_open_subscription_closes_when_its_session_ends(db: Database, nursery: trio.Nursery) -> None:
    api = await start_live_api(db, nursery)
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
        session = await register(http, email="socket@example.kg")
        async with WsClient.connect(api.ws_url) as ws:
            await ws.init({"Authorization": f"Bearer {session['accessToken']}"})
            await ws.subscribe("b", "subscription { balanceChanged { availableTyiyn } }")
            assert await ws.next_data("b") == {"balanceChanged": {"availableTyiyn": 0}}
            await post(http, LOGOUT, {"token": session["refreshToken"]})
            assert await ws.wait_closed(timeout=2) == (4403, "Forbidden: the session ended")


async def test_a_subscription_closes_when_another_node_ends_its_session(db: Database, nursery: trio.Nursery) -> None:
    api = await start_live_api(db, nursery)
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
        session = await register(http, email="socket2@example.kg")
        laptop = await login(http, "socket2@example.kg")
        async with WsClient.connect(api.ws_url) as ws, WsClient.connect(api.ws_url) as other:
            await ws.init({"Authorization": f"Bearer {session['accessToken']}"})
            await other.init({"Authorization": f"Bearer {laptop['accessToken']}"})
            # Logged out through another node: this one finds out on its next sweep.
            await logins.logout(db, session["refreshToken"])
            assert await ws.wait_closed(timeout=RECHECK_S + 3) == (4403, "Forbidden: the session ended")
            # The laptop's session goes on.
            await other.subscribe("b", "subscription { balanceChanged { availableTyiyn } }")
            assert await other.next_data("b") == {"balanceChanged": {"availableTyiyn": 0}}
