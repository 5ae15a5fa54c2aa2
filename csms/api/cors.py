"""CORS for browser clients on other origins: an explicit origin list, with credentials (cookies).

``CSMS_CORS_ORIGINS`` lists the origins (``https://app.example.com``). An allowed origin gets
``Access-Control-Allow-Origin: <that origin>`` and ``Access-Control-Allow-Credentials: true``; a
preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered 204 with the methods and
headers the API accepts, or 403 for any other origin. Every response says ``Vary: Origin``, so a cache
never hands one origin's answer to another.

In development an empty list allows any ``http://localhost:*`` and ``http://127.0.0.1:*`` origin
(the PWA's dev server), and ``*`` allows every origin (reflected, since ``*`` itself cannot carry
credentials). Production refuses both (``AuthSettings.check_production``).

WebSocket handshakes are not subject to CORS; their handler should check the ``Origin`` with
:meth:`CorsPolicy.allows` before accepting cookie credentials.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Response, request

from csms.api.browser import is_local_origin

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from csms.config import Settings

ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type, X-CSRF-Token, Idempotency-Key"
PREFLIGHT_MAX_AGE_S = 600


class CorsPolicy:
    """Which browser origins may call the API with credentials."""

    def __init__(self, origins: tuple[str, ...], *, production: bool) -> None:
        self.origins = frozenset(o.lower().rstrip("/") for o in origins)
        self.any_origin = "*" in self.origins and not production
        self.local_default = not self.origins and not production

    @classmethod
    def from_settings(cls, settings: Settings) -> CorsPolicy:
        """The policy of ``CSMS_CORS_ORIGINS`` in this environment."""
        return cls(settings.auth.cors_origins, production=settings.production)

    def allows(self, origin: str) -> bool:
        """True if a page on ``origin`` may call the API with credentials."""
        origin = origin.lower()
        return self.any_origin or origin in self.origins or (self.local_default and is_local_origin(origin))


def install_cors(app: QuartTrio, policy: CorsPolicy) -> None:
    """Answer preflights and add the CORS headers to every response of ``app``."""

    def is_preflight() -> bool:
        return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers

    @app.before_request
    async def preflight() -> Response | None:
        if not is_preflight():
            return None
        origin = request.headers.get("Origin", "")
        method = request.headers["Access-Control-Request-Method"].upper()
        if not origin or not policy.allows(origin) or method not in ("GET", "POST"):
            return Response("", status=403, headers={"Vary": "Origin"})
        return Response("", status=204, headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            "Access-Control-Allow-Methods": ALLOWED_METHODS,
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
            "Vary": "Origin",
        })

    @app.after_request
    async def cors_headers(response: Response) -> Response:
        response.vary.add("Origin")
        origin = request.headers.get("Origin")
        # A preflight's answer is complete as built above (a refused one must stay without these headers).
        if origin and not is_preflight() and policy.allows(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
        return response
