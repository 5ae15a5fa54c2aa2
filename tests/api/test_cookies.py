"""Browser cookie sessions over real HTTP: cookie attributes by origin, CSRF on mutations, refresh and logout."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio_websocket
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import websocket
from quart_trio import QuartTrio

from csms.api.browser import mint_csrf
from csms.api.context import ApiServices
from csms.api.credentials import authenticate_websocket_cookies
from csms.config import AuthSettings, Settings
from tests.api.auth_support import (
    COOKIE_SECRET,
    LOGIN,
    LOGOUT,
    ME,
    PASSWORD,
    REFRESH,
    cookie_header,
    post,
    register,
    set_cookies,
    start_auth_api,
)
from tests.api.conftest import error_codes
from tests.conftest import TEST_SIGNER, make_user

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import trio

    from csms.store.db import Database

LOCAL = "http://localhost:5173"
REMOTE = "https://app.example.com"
DELETE = "mutation { requestAccountDeletion { status } }"


@pytest.fixture
async def client(db: Database, nursery: trio.Nursery) -> AsyncIterator[httpx.AsyncClient]:
    url = await start_auth_api(db, nursery, cors_origins=(LOCAL, REMOTE))
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        yield http


async def cookie_login(client: httpx.AsyncClient, email: str, origin: str = LOCAL) -> tuple[httpx.Response, Any]:
    await register(client, email=email)
    response, body = await post(client, LOGIN, {"input": {"email": email, "password": PASSWORD}, "cookie": True},
                                headers={"Origin": origin})
    assert "errors" not in body, body
    return response, body["data"]["login"]


async def test_localhost_origin_gets_lax_cookies_without_secure(client: httpx.AsyncClient) -> None:
    response, payload = await cookie_login(client, "local@example.kg")
    assert payload["accessToken"] is None
    assert payload["refreshToken"] is None
    cookies = set_cookies(response)
    assert set(cookies) == {"csms_access", "csms_refresh", "csms_csrf"}
    access = cookies["csms_access"]["csms_access"]
    refresh = cookies["csms_refresh"]["csms_refresh"]
    csrf = cookies["csms_csrf"]["csms_csrf"]
    for morsel in (access, refresh, csrf):
        assert morsel["samesite"] == "Lax"
        assert not morsel["secure"]
    assert access["httponly"]
    assert refresh["httponly"]
    assert not csrf["httponly"]  # the page's script reads it
    assert (access["path"], refresh["path"], csrf["path"]) == ("/", "/graphql", "/")
    assert 890 <= int(access["max-age"]) <= 900
    assert 30 * 86400 - 10 <= int(refresh["max-age"]) <= 30 * 86400
    assert csrf.value == payload["csrfToken"]
    assert response.headers["cache-control"] == "no-store"


async def test_other_origins_get_samesite_none_and_secure(client: httpx.AsyncClient) -> None:
    response, _ = await cookie_login(client, "remote@example.kg", origin=REMOTE)
    for name, jar in set_cookies(response).items():
        assert jar[name]["samesite"] == "None", name
        assert jar[name]["secure"], name
    assert response.headers["access-control-allow-origin"] == REMOTE
    assert response.headers["access-control-allow-credentials"] == "true"


async def test_queries_by_cookie_need_no_csrf_header(client: httpx.AsyncClient) -> None:
    response, payload = await cookie_login(client, "reader@example.kg")
    _, body = await post(client, ME, headers={"Cookie": cookie_header(response)})
    assert body["data"]["me"]["id"] == payload["user"]["id"]


async def test_mutations_by_cookie_need_the_csrf_header(client: httpx.AsyncClient, db: Database) -> None:
    response, payload = await cookie_login(client, "careful@example.kg")
    cookies = cookie_header(response)
    other_users_token = mint_csrf(COOKIE_SECRET.encode(), "00000000-0000-0000-0000-000000000000")
    refused: list[dict[str, str]] = [
        {"Cookie": cookies},  # no header
        {"Cookie": cookies, "X-CSRF-Token": "wrong"},
        {"Cookie": cookies, "X-CSRF-Token": payload["csrfToken"] + "x"},
        # A cookie planted by a sibling subdomain, with a matching header: signed for someone else.
        {"Cookie": cookies.replace(payload["csrfToken"], other_users_token), "X-CSRF-Token": other_users_token},
    ]
    for headers in refused:
        _, body = await post(client, DELETE, headers=headers)
        assert error_codes(body) == ["CSRF_FAILED"], headers
        assert body["data"] is None
    status = await db.run(lambda conn: conn.execute("SELECT status FROM users").fetchone())
    assert status == ("active",)
    _, body = await post(client, DELETE, headers={"Cookie": cookies, "X-CSRF-Token": payload["csrfToken"]})
    assert body == {"data": {"requestAccountDeletion": {"status": "PENDING_DELETION"}}}


async def test_bearer_requests_ignore_cookies_and_need_no_csrf(client: httpx.AsyncClient) -> None:
    response, _ = await cookie_login(client, "cookies@example.kg")
    bearer_session = await register(client, email="bearer@example.kg")
    headers = {"Cookie": cookie_header(response), "Authorization": f"Bearer {bearer_session['accessToken']}"}
    _, body = await post(client, ME, headers=headers)
    assert body["data"]["me"]["id"] == bearer_session["user"]["id"]
    _, body = await post(client, DELETE, headers=headers)
    assert body == {"data": {"requestAccountDeletion": {"status": "PENDING_DELETION"}}}
    # Cookie mode refresh never reads the cookie of a bearer request.
    _, body = await post(client, REFRESH, {"cookie": True}, headers=headers)
    assert error_codes(body) == ["INVALID_REFRESH_TOKEN"]


async def test_refresh_and_logout_in_cookie_mode(client: httpx.AsyncClient, db: Database) -> None:
    response, payload = await cookie_login(client, "browser@example.kg")
    csrf = payload["csrfToken"]
    # The access cookie expired (the browser dropped it); only the refresh and CSRF cookies remain.
    only_refresh = "; ".join(part for part in cookie_header(response).split("; ") if not part.startswith("csms_access="))
    _, body = await post(client, REFRESH, {"cookie": True}, headers={"Cookie": only_refresh})
    assert error_codes(body) == ["CSRF_FAILED"]
    refreshed, body = await post(client, REFRESH, {"cookie": True},
                                 headers={"Cookie": only_refresh, "X-CSRF-Token": csrf})
    assert body["data"]["refresh"]["accessToken"] is None
    assert body["data"]["refresh"]["csrfToken"] == csrf  # stable across refreshes: other tabs keep working
    new_cookies = set_cookies(refreshed)
    assert new_cookies["csms_refresh"]["csms_refresh"].value not in only_refresh
    # The old refresh cookie is now a reuse: it would revoke the family, so use the new ones.
    after = cookie_header(refreshed)
    _, me = await post(client, ME, headers={"Cookie": after})
    assert me["data"]["me"]["id"] == payload["user"]["id"]
    logged_out, body = await post(client, LOGOUT, {"cookie": True}, headers={"Cookie": after, "X-CSRF-Token": csrf})
    assert body == {"data": {"logout": True}}
    cleared = set_cookies(logged_out)
    assert {name: jar[name]["max-age"] for name, jar in cleared.items()} == {
        "csms_access": "0", "csms_refresh": "0", "csms_csrf": "0"}
    counts = await db.run(lambda conn: conn.execute(
        "SELECT count(*) FILTER (WHERE revoked_at IS NOT NULL), count(*) FILTER (WHERE revoked_at IS NULL)"
        " FROM refresh_tokens").fetchone())
    # The cookie login's token and its successor are revoked; the bearer session of `register` lives on.
    assert counts == (2, 1)


async def test_login_is_exempt_but_not_when_mixed_with_other_mutations(client: httpx.AsyncClient) -> None:
    response, _ = await cookie_login(client, "again@example.kg")
    stale = {"Cookie": cookie_header(response)}  # no CSRF header, e.g. the page lost its memory
    variables = {"input": {"email": "again@example.kg", "password": PASSWORD}, "cookie": True}
    _, body = await post(client, LOGIN, variables, headers=stale)
    assert "errors" not in body
    mixed = ("mutation M($input: LoginInput!) { login(input: $input) { csrfToken } "
             "requestAccountDeletion { status } }")
    _, body = await post(client, mixed, {"input": variables["input"]}, headers=stale)
    assert error_codes(body) == ["CSRF_FAILED"]
    aliased = "mutation { login: requestAccountDeletion { status } }"
    assert error_codes((await post(client, aliased, headers=stale))[1]) == ["CSRF_FAILED"]


async def test_csrf_token_query(client: httpx.AsyncClient) -> None:
    assert (await post(client, "{ csrfToken }"))[1] == {"data": {"csrfToken": None}}
    response, payload = await cookie_login(client, "reload@example.kg")
    cookies = cookie_header(response)
    _, body = await post(client, "{ csrfToken }", headers={"Cookie": cookies})
    assert body == {"data": {"csrfToken": payload["csrfToken"]}}
    # The CSRF cookie went missing: the query mints a valid one and sets it.
    without_csrf = "; ".join(p for p in cookies.split("; ") if not p.startswith("csms_csrf="))
    repaired, body = await post(client, "{ csrfToken }", headers={"Cookie": without_csrf})
    token = body["data"]["csrfToken"]
    assert token
    assert set_cookies(repaired)["csms_csrf"]["csms_csrf"].value == token
    _, body = await post(client, DELETE, headers={"Cookie": f"{without_csrf}; csms_csrf={token}",
                                                  "X-CSRF-Token": token})
    assert body == {"data": {"requestAccountDeletion": {"status": "PENDING_DELETION"}}}


async def test_websocket_cookie_authentication_checks_the_origin(db: Database, nursery: trio.Nursery) -> None:
    """The helper the GraphQL WebSocket endpoint uses: cookies count only from an allowed or the own origin."""
    services = ApiServices(db=db, settings=Settings(auth=AuthSettings(cors_origins=(REMOTE,))), signer=TEST_SIGNER)
    app = QuartTrio(__name__)

    @app.websocket("/ws")
    async def ws() -> None:
        principal = await authenticate_websocket_cookies(services, websocket._get_current_object())
        await websocket.send(principal.user_id if principal and principal.user_id else "anonymous")
        await websocket.receive()  # the client closes first (trio-websocket leaks otherwise)

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    binds = await nursery.start(lambda task_status: serve(app, config, task_status=task_status))
    port = int(binds[0].rsplit(":", 1)[1])
    user_id, token = await make_user(db)

    async def who(origin: str | None, cookie: str = f"csms_access={token}") -> str:
        headers = [("Cookie", cookie)] + ([("Origin", origin)] if origin else [])
        async with trio_websocket.open_websocket("127.0.0.1", port, "/ws", use_ssl=False,
                                                 extra_headers=headers) as conn:
            return str(await conn.get_message())

    assert await who(REMOTE) == user_id
    assert await who(f"http://127.0.0.1:{port}") == user_id  # the server's own pages
    assert await who("https://evil.example.net") == "anonymous"
    assert await who(None) == "anonymous"
    assert await who(REMOTE, cookie="csms_access=forged") == "anonymous"
