"""Browser sessions: HttpOnly cookies for the tokens, and a double-submit CSRF token.

A browser client (the PWA) asks for cookie mode with ``cookie: true`` on ``register``, ``login``,
``refresh`` and ``logout``. The tokens then travel only as cookies that scripts cannot read:

- ``csms_access``: the access token, HttpOnly, ``Path=/``, lives as long as the token (15 minutes);
- ``csms_refresh``: the refresh token, HttpOnly, ``Path=/graphql``, lives as long as the token;
- ``csms_csrf``: the CSRF token, readable by scripts, ``Path=/``, same lifetime as the refresh token.

The CSRF token is also returned in the mutation payload (``csrfToken``) and by the ``csrfToken``
query, because a PWA on another origin cannot read the API's cookies. Every mutation whose request
carries live credentials in cookies must send it back in ``X-CSRF-Token``; the header must equal the
cookie (compared in constant time) and the token must be signed for the cookie's user (HMAC with
``CSMS_COOKIE_SECRET``), so a cookie planted by a sibling subdomain is worthless. Queries need no
header. A request with an ``Authorization`` header is a bearer request: its cookies are ignored.

Cookie attributes follow the page's origin (the ``Origin`` header): ``http://localhost`` and
``http://127.0.0.1`` (any port) get ``SameSite=Lax`` without ``Secure``, so development works over
plain HTTP; every other origin gets ``SameSite=None; Secure``, so a PWA on another site of an HTTPS
deployment can use them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import TYPE_CHECKING

from csms.services import logins

if TYPE_CHECKING:
    from datetime import datetime

    from quart import Response

    from csms.api.context import ApiServices
    from csms.services.logins import AuthSession

ACCESS_COOKIE = "csms_access"
REFRESH_COOKIE = "csms_refresh"
CSRF_COOKIE = "csms_csrf"
CSRF_HEADER = "x-csrf-token"
REFRESH_PATH = "/graphql"
_LOCAL_ORIGIN = re.compile(r"http://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?")
_MAX_CSRF = 100


def is_local_origin(origin: str) -> bool:
    """True for ``http://localhost``, ``http://127.0.0.1`` and ``http://[::1]``, any port."""
    return bool(_LOCAL_ORIGIN.fullmatch(origin.lower()))


def _sign(secret: bytes, user_id: str, nonce: str) -> str:
    mac = hmac.new(secret, f"csrf\x00{user_id}\x00{nonce}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def mint_csrf(secret: bytes, user_id: str) -> str:
    """A new CSRF token for ``user_id``: ``<nonce>.<HMAC(secret, user_id, nonce)>``."""
    nonce = secrets.token_urlsafe(18)
    return f"{nonce}.{_sign(secret, user_id, nonce)}"


def csrf_signed_for(secret: bytes, user_id: str, token: str) -> bool:
    """True if ``token`` was minted for ``user_id`` with ``secret`` (constant-time compare)."""
    nonce, _, signature = token.partition(".")
    if not nonce or not signature or len(token) > _MAX_CSRF:
        return False
    return hmac.compare_digest(signature.encode(), _sign(secret, user_id, nonce).encode())


class BrowserSession:
    """One HTTP request's cookie credentials and CSRF header, and the response that sets cookies.

    Args:
        services: the app's services (database, cookie secret).
        cookies: the request's cookies.
        headers: the request's headers, lower-case names.
        origin: the page's origin (``Origin``, or this server's own origin when absent).
        response: strawberry's response object; ``Set-Cookie`` headers go on it.
        access_user_id: the user of a valid access-token cookie, if any.
    """

    def __init__(self, services: ApiServices, cookies: dict[str, str], headers: dict[str, str], origin: str,
                 response: Response | None, access_user_id: str | None) -> None:
        self._services = services
        self._cookies = cookies
        self.origin = origin
        self.response = response
        self.access_user_id = access_user_id
        # Bearer requests ignore cookies entirely.
        self.bearer = "authorization" in headers
        self._csrf_header = headers.get(CSRF_HEADER)
        self._user_id: str | None = None
        self._resolved = False

    @property
    def uses_cookies(self) -> bool:
        """True if the request carries credential cookies (and no Authorization header)."""
        return not self.bearer and (ACCESS_COOKIE in self._cookies or REFRESH_COOKIE in self._cookies)

    @property
    def local(self) -> bool:
        """True if the page is on localhost over HTTP (cookies get ``SameSite=Lax``, not Secure)."""
        return is_local_origin(self.origin)

    @property
    def refresh_token(self) -> str | None:
        """The refresh-token cookie (None for bearer requests)."""
        return None if self.bearer else self._cookies.get(REFRESH_COOKIE)

    async def user_id(self) -> str | None:
        """The user the cookies belong to: the access cookie's, else the live refresh cookie's (cached)."""
        if not self.uses_cookies:
            return None
        if not self._resolved:
            self._user_id = self.access_user_id
            token = self.refresh_token
            if self._user_id is None and token:
                self._user_id = await logins.refresh_token_user(self._services.db, token)
            self._resolved = True
        return self._user_id

    async def csrf_ok(self) -> bool:
        """May a mutation use this request's cookies? True if it carries no live cookie credential, or if
        ``X-CSRF-Token`` equals the CSRF cookie and that token is signed for the cookies' user."""
        user_id = await self.user_id()
        if user_id is None:
            return True  # nothing in the cookies to abuse
        cookie = self._cookies.get(CSRF_COOKIE, "")
        header = self._csrf_header or ""
        return bool(header) and hmac.compare_digest(header.encode(), cookie.encode()) and csrf_signed_for(
            self._services.cookie_secret, user_id, cookie)

    def csrf_for(self, user_id: str) -> str:
        """The request's CSRF cookie if it is valid for ``user_id``, else a new token for them."""
        current = self._cookies.get(CSRF_COOKIE, "")
        if current and csrf_signed_for(self._services.cookie_secret, user_id, current):
            return current
        return mint_csrf(self._services.cookie_secret, user_id)

    def _set(self, name: str, value: str, *, max_age: int, path: str = "/", http_only: bool = True) -> None:
        if self.response is None:
            raise RuntimeError("cookies can only be set on an HTTP response")
        self.response.set_cookie(name, value, max_age=max_age, path=path, httponly=http_only,
                                 secure=not self.local, samesite="Lax" if self.local else "None")

    def set_session(self, session: AuthSession, csrf_token: str, now: datetime) -> None:
        """Put a session's tokens and the CSRF token in cookies (lifetimes from the tokens' expiries)."""
        access_s = max(0, int((session.access_expires_at - now).total_seconds()))
        refresh_s = max(0, int((session.refresh_expires_at - now).total_seconds()))
        self._set(ACCESS_COOKIE, session.access_token, max_age=access_s)
        self._set(REFRESH_COOKIE, session.refresh_token, max_age=refresh_s, path=REFRESH_PATH)
        self._set(CSRF_COOKIE, csrf_token, max_age=refresh_s, http_only=False)
        self.no_store()

    def set_csrf(self, csrf_token: str, max_age: int) -> None:
        """Set only the CSRF cookie (the ``csrfToken`` query repairs a missing one)."""
        self._set(CSRF_COOKIE, csrf_token, max_age=max_age, http_only=False)

    def clear(self) -> None:
        """Delete the session cookies (logout, account deletion)."""
        self._set(ACCESS_COOKIE, "", max_age=0)
        self._set(REFRESH_COOKIE, "", max_age=0, path=REFRESH_PATH)
        self._set(CSRF_COOKIE, "", max_age=0, http_only=False)

    def no_store(self) -> None:
        """Keep caches from storing a response that carries tokens."""
        if self.response is not None:
            self.response.headers["Cache-Control"] = "no-store"
