"""Helpers for the account and authentication tests: an API with chosen auth settings, and GraphQL calls.

Cookies are passed explicitly in a ``Cookie`` header (never through httpx's jar), so every test says
exactly what the browser would send.
"""

from __future__ import annotations

from dataclasses import replace
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any

from csms.api.app import create_app
from csms.api.context import ApiServices
from csms.api.server import serve_api
from csms.config import AuthSettings, Settings
from tests.conftest import TEST_SIGNER

if TYPE_CHECKING:
    import httpx
    import trio

    from csms.store.db import Database

COOKIE_SECRET = "test-cookie-secret-0123456789abcdef"
PASSWORD = "correct horse battery"

REGISTER = """
mutation Register($input: RegisterInput!, $cookie: Boolean! = false) {
  register(input: $input, cookie: $cookie) {
    user { id phone email name role status balanceTyiyn }
    accessToken refreshToken csrfToken accessTokenExpiresAt refreshTokenExpiresAt
  }
}"""
LOGIN = """
mutation Login($input: LoginInput!, $cookie: Boolean! = false) {
  login(input: $input, cookie: $cookie) {
    user { id phone email role status }
    accessToken refreshToken csrfToken accessTokenExpiresAt refreshTokenExpiresAt
  }
}"""
REFRESH = """
mutation Refresh($token: String, $cookie: Boolean! = false) {
  refresh(refreshToken: $token, cookie: $cookie) { user { id } accessToken refreshToken csrfToken }
}"""
LOGOUT = "mutation Logout($token: String, $cookie: Boolean! = false) { logout(refreshToken: $token, cookie: $cookie) }"
ME = "{ me { id phone email name role status balanceTyiyn } }"


async def start_auth_api(db: Database, nursery: trio.Nursery, **auth: Any) -> str:
    """Serve the app with these ``AuthSettings`` overrides; return its base URL."""
    settings = Settings(http_host="127.0.0.1", http_port=0, shutdown_grace_s=1.0,
                        auth=replace(AuthSettings(cookie_secret=COOKIE_SECRET), **auth))
    services = ApiServices(db=db, settings=settings, signer=TEST_SIGNER)
    binds: list[str] = await nursery.start(serve_api, create_app(services), settings)
    return binds[0]


async def post(client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None, *,
               headers: dict[str, str] | None = None) -> tuple[httpx.Response, dict[str, Any]]:
    """POST one operation; return the HTTP response and its decoded body."""
    response = await client.post("/graphql", json={"query": query, "variables": variables or {}},
                                 headers=headers or {})
    assert response.status_code == 200, response.text
    return response, response.json()


def set_cookies(response: httpx.Response) -> dict[str, SimpleCookie]:
    """Each ``Set-Cookie`` of a response, parsed, by cookie name."""
    parsed: dict[str, SimpleCookie] = {}
    for header in response.headers.get_list("set-cookie"):
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(header)
        for name in cookie:
            parsed[name] = cookie
    return parsed


def cookie_header(response: httpx.Response) -> str:
    """The ``Cookie`` header a browser would send back after ``response`` (non-empty cookies only)."""
    pairs = [f"{name}={jar[name].value}" for name, jar in set_cookies(response).items() if jar[name].value]
    return "; ".join(pairs)


async def register(client: httpx.AsyncClient, *, email: str | None = None, phone: str | None = None,
                   password: str = PASSWORD, name: str = "Driver") -> dict[str, Any]:
    """Register a driver in bearer mode and return the payload (asserting success)."""
    _, body = await post(client, REGISTER, {"input": {"email": email, "phone": phone, "password": password,
                                                       "name": name}})
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"]["register"]
    return payload
