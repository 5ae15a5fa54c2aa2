"""The HTTP application: ``/graphql`` (strawberry's Quart view on quart-trio), GraphiQL, ``/healthz``, ``/metrics``.

strawberry's HTTP path runs under Trio once graphql-core's gather is replaced (``trio_gather``), which
:func:`create_app` does. Its WebSocket subscription handlers are asyncio-only, so they are switched off
here; WebSockets on ``/graphql`` go to our Trio ``graphql-transport-ws`` server (``csms.api.ws``).

Credentials: ``Authorization: Bearer`` (API keys, our access tokens, an external provider's tokens)
or, for browsers, session cookies with a CSRF header (``credentials``, ``browser``, ``csrf_guard``).
CORS follows ``CSMS_CORS_ORIGINS`` (``cors``).
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING

import trio
from quart import Response, request
from quart_trio import QuartTrio
from strawberry.quart.views import GraphQLView

from csms.api import graphiql, trio_gather, webhooks
from csms.api.browser import BrowserSession
from csms.api.client_address import ClientAddress
from csms.api.context import ApiContext, ApiServices
from csms.api.cors import CorsPolicy, install_cors
from csms.api.credentials import (
    authenticate_bearer,
    authenticate_cookies,
    authenticate_websocket_cookies,
    bearer_token,
)
from csms.api.schema import schema as default_schema
from csms.api.ws import graphql_ws_endpoint
from csms.services.external_tokens import ExternalTokenVerifier

if TYPE_CHECKING:
    from quart import Request, Websocket
    from strawberry.schema.base import BaseSchema

    from csms.store.db import Conn

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 5.0
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# GraphQL documents are small; refuse big bodies before parsing them.
MAX_BODY_BYTES = 1 << 20


class CsmsGraphQLView(GraphQLView[ApiContext, None]):
    """strawberry's Quart view with our context, our GraphiQL page and no WebSocket protocols."""

    # One view object serves every request: it holds only the schema and the database.
    init_every_request = False

    def __init__(self, schema: BaseSchema, services: ApiServices, addresses: ClientAddress) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql",  # truthy so strawberry calls render_graphql_ide (ours, below)
            allow_queries_via_get=True,
            subscription_protocols=(),  # strawberry's handlers need asyncio
        )
        self.services = services
        self.addresses = addresses

    async def get_context(self, request: Request | Websocket, response: Response) -> ApiContext:
        """Authenticate the request once; resolvers read ``info.context.principal``.

        An ``Authorization`` header wins; without one, the access-token cookie is used (mutations then
        need the CSRF header, see ``csrf_guard``). A missing, malformed, unknown, expired or revoked
        credential gives an anonymous context: the fields themselves answer UNAUTHENTICATED, so the
        client gets a GraphQL error rather than a bare HTTP status. ``response`` is where resolvers
        set cookies.
        """
        headers = {k.lower(): v for k, v in request.headers.items()}
        cookies = dict(request.cookies)
        cookie_user: str | None = None
        if "authorization" in headers:
            principal = await authenticate_bearer(self.services, headers["authorization"])
        else:
            principal = await authenticate_cookies(self.services, cookies)
            cookie_user = principal.user_id if principal is not None else None
        origin = headers.get("origin") or f"{request.scheme}://{request.host}"
        browser = BrowserSession(self.services, cookies, headers, origin, response, cookie_user)
        client_ip = self.addresses.client_ip(request.remote_addr or "", headers.get("x-forwarded-for"))
        return ApiContext(db=self.services.db, principal=principal, services=self.services,
                          request_headers=headers, client_ip=client_ip, browser=browser)

    async def render_graphql_ide(self, request: Request) -> Response:
        """The local GraphiQL page (never a CDN), or a 503 page saying how to fetch its assets."""
        body, status = graphiql.page(graphiql.graphiql_dir())
        response = Response(body, status=status, content_type="text/html; charset=utf-8")
        response.headers["Content-Security-Policy"] = graphiql.CONTENT_SECURITY_POLICY
        response.headers["Cache-Control"] = "no-store"
        return response


def _is_local(req: Request) -> bool:
    """A direct request from this host: a loopback peer and no proxy forwarding headers."""
    if any(h in req.headers for h in ("X-Forwarded-For", "Forwarded", "X-Real-IP")):
        return False
    try:
        return ipaddress.ip_address(req.remote_addr or "").is_loopback
    except ValueError:
        return False


def _select_one(conn: Conn) -> None:
    conn.execute("SELECT 1")


def create_app(services: ApiServices, *, schema: BaseSchema | None = None) -> QuartTrio:
    """Build the quart-trio application serving the API.

    Args:
        services: the database, settings, token signer and charger commands the API uses.
        schema: a different schema, for tests; the real one by default.

    Returns:
        The ASGI app; serve it with :func:`csms.api.server.serve_api`.
    """
    trio_gather.install()
    settings = services.settings
    if not services.cookie_secret:
        services.cookie_secret = settings.cookie_secret()
    auth = settings.auth
    if services.external_tokens is None and auth.external_enabled:
        assert auth.external_jwt_issuer is not None
        assert auth.external_jwt_audience is not None
        services.external_tokens = ExternalTokenVerifier(
            issuer=auth.external_jwt_issuer, audience=auth.external_jwt_audience, jwks_url=auth.external_jwks_url,
            hs256_secret=auth.external_jwt_hs256_secret, cache_ttl_s=auth.external_jwks_cache_s,
            min_refetch_s=auth.external_jwks_refetch_s)
    app = QuartTrio(__name__)
    install_cors(app, CorsPolicy.from_settings(settings))
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.extensions["csms.services"] = services
    db = services.db
    app.add_url_rule(
        "/graphql",
        view_func=CsmsGraphQLView.as_view("graphql", schema or default_schema, services,
                                          ClientAddress(auth.trusted_proxies)),
        methods=["GET", "POST"],
    )
    # Subscriptions (and queries and mutations) over graphql-transport-ws; credentials come in the
    # connection_init payload and are checked like the Authorization header.
    app.add_websocket(
        "/graphql", "graphql_ws",
        graphql_ws_endpoint(services, schema or default_schema, authenticate=authenticate_bearer,
                            cookie_authenticate=authenticate_websocket_cookies),
    )
    # The payment provider's signed notifications (csms.api.webhooks).
    app.add_url_rule(webhooks.PATH, methods=["POST"],
                     view_func=webhooks.odengi_webhook_view(services, ClientAddress(auth.trusted_proxies)))

    @app.get("/.well-known/jwks.json")
    async def jwks() -> tuple[dict[str, object], int, dict[str, str]]:
        return services.signer.jwks(), 200, {"Cache-Control": "public, max-age=300"}

    @app.get("/metrics")
    async def metrics() -> Response:
        # Loopback (a Prometheus agent on the host) or an admin credential; a request relayed by a
        # proxy on this host carries forwarding headers and needs the credential like any other.
        header = request.headers.get("Authorization")
        if not (header is None and _is_local(request)):
            principal = await authenticate_bearer(services, header) if header else None
            if principal is None or not principal.is_admin:
                status = 401 if principal is None else 403
                return Response("metrics are for loopback clients and admins\n", status=status,
                                content_type="text/plain; charset=utf-8",
                                headers={"WWW-Authenticate": "Bearer"} if status == 401 else {})
        lines = services.events.render_metrics() if services.events is not None else []
        for source in services.metrics:
            lines += source()
        response = Response("\n".join(lines) + "\n", content_type=METRICS_CONTENT_TYPE)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/healthz")
    async def healthz() -> tuple[dict[str, str], int]:
        try:
            with trio.fail_after(HEALTH_TIMEOUT_S):
                await db.run(_select_one)
        except (trio.TooSlowError, Exception) as exc:
            # Only the class name: a driver message could carry connection details.
            log.warning("health check: database unavailable (%s)", type(exc).__name__)
            return {"status": "unavailable", "database": "unavailable"}, 503
        return {"status": "ok", "database": "ok"}, 200

    @app.get(graphiql.STATIC_PREFIX + "<name>")
    async def graphiql_static(name: str) -> Response:
        asset = await graphiql.read_asset(graphiql.graphiql_dir(), name)
        if asset is None:
            return Response("not found\n", status=404, content_type="text/plain; charset=utf-8")
        data, content_type = asset
        response = Response(data, content_type=content_type)
        response.headers["Cache-Control"] = "public, max-age=3600"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    return app


__all__ = ["CsmsGraphQLView", "authenticate_bearer", "authenticate_cookies", "authenticate_websocket_cookies",
           "bearer_token", "create_app"]
