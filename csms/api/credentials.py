"""Turning a request's credentials into a :class:`Principal`: bearer tokens and session cookies.

A bearer token is one of three things, tried in this order:

1. an operator API key (``csms_<prefix>_<secret>``): admin, or an owner acting for one user;
2. our own access token (ES256, our key id);
3. an external identity provider's token, when one is configured (``csms.services.external_tokens``);
   its user is created as a driver on first sight.

A browser's ``csms_access`` cookie holds our own access token. WebSocket handshakes reuse
:func:`authenticate_bearer` and :func:`authenticate_cookies`.

Anything missing, malformed, unknown, expired or revoked (an API key, or the login session an access
token belongs to) gives None: the fields then answer
``UNAUTHENTICATED``, and the reason is never exposed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jwt

from csms.api.browser import ACCESS_COOKIE
from csms.api.context import Principal
from csms.api.cors import CorsPolicy
from csms.services import external_tokens
from csms.services.tokens import InvalidToken
from csms.store.apikeys import TOKEN_PREFIX, verify_api_key

if TYPE_CHECKING:
    from collections.abc import Mapping

    from quart import Websocket

    from csms.api.context import ApiServices
    from csms.services.tokens import AccessClaims


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


async def authenticate_bearer(services: ApiServices, header: str | None) -> Principal | None:
    """The principal of an ``Authorization: Bearer`` header (API key, our token, or an external token)."""
    token = bearer_token(header)
    if token is None:
        return None
    if token.startswith(TOKEN_PREFIX + "_"):
        key = await services.db.run(verify_api_key, token)
        return Principal.from_api_key(key, key.user_id) if key is not None else None
    try:
        claims = services.signer.verify(token)
    except InvalidToken:
        pass
    else:
        return await _our_token(services, claims)
    verifier = services.external_tokens
    if verifier is None or _names_our_key(token, services.signer.kid):
        return None  # an expired or forged token of ours is not the provider's business
    try:
        identity = await verifier.verify(token)
    except InvalidToken:
        return None
    user = await external_tokens.user_for(services.db, identity)
    return Principal.from_user(user.id, user.role, kind="external")


def _names_our_key(token: str, kid: str) -> bool:
    try:
        return bool(jwt.get_unverified_header(token).get("kid") == kid)
    except jwt.PyJWTError:
        return False


async def authenticate_cookies(services: ApiServices, cookies: Mapping[str, str]) -> Principal | None:
    """The principal of a browser's access-token cookie (``csms_access``), or None.

    For HTTP mutations the CSRF header is checked separately (``csms.api.csrf_guard``); a WebSocket
    handler using this must check the ``Origin`` instead (``csms.api.cors.CorsPolicy.allows``).
    """
    token = cookies.get(ACCESS_COOKIE)
    if not token:
        return None
    try:
        claims = services.signer.verify(token)
    except InvalidToken:
        return None
    return await _our_token(services, claims)


async def _our_token(services: ApiServices, claims: AccessClaims) -> Principal | None:
    """The principal of a valid access token of ours, unless its login session was revoked since."""
    if claims.session_id is not None and await services.revocations.is_revoked(claims.session_id):
        return None
    return Principal.from_user(claims.user_id, claims.role)


async def authenticate_websocket_cookies(services: ApiServices, websocket: Websocket) -> Principal | None:
    """The principal of a WebSocket upgrade's access-token cookie, if its ``Origin`` may use it.

    Browsers send cookies with cross-site WebSocket handshakes and CORS does not apply to them, so the
    page's origin must be one CORS allows (``CSMS_CORS_ORIGINS``) or this server's own; otherwise the
    cookies are ignored. Fits the ``cookie_authenticate`` hook of the WebSocket endpoint.
    """
    origin = websocket.headers.get("Origin", "").lower()
    scheme = "https" if websocket.scheme in ("wss", "https") else "http"
    own = f"{scheme}://{websocket.host}".lower()
    if not origin or not (origin == own or CorsPolicy.from_settings(services.settings).allows(origin)):
        return None
    return await authenticate_cookies(services, websocket.cookies)
