"""Who is calling, and with what: the context object every resolver receives.

A request is authenticated once, when its context is built (``app.py`` turns credentials into a
:class:`Principal`); resolvers only ask the context. The services an API call may need (database,
token signer, charger commands, events) travel in one :class:`ApiServices` object built by the
supervisor, so resolvers never reach for globals.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from csms.api.errors import Forbidden, Unauthenticated
from csms.services.ratelimit import RateLimits
from csms.services.session_revocation import SessionRevocations

if TYPE_CHECKING:
    from collections.abc import Callable

    from csms.api.browser import BrowserSession
    from csms.config import Settings
    from csms.services.commands import ChargerCommands
    from csms.services.events import EventHub
    from csms.services.external_tokens import ExternalTokenVerifier
    from csms.services.push import PushService
    from csms.services.tokens import TokenSigner
    from csms.store.apikeys import ApiKeyInfo
    from csms.store.db import Database


class Role(enum.StrEnum):
    """What a principal may do: drivers charge, owners run their stations, admins run everything."""

    DRIVER = "driver"
    OWNER = "owner"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    Attributes:
        kind: how it authenticated: ``"api_key"``, ``"user"`` (our JWT) or ``"external"`` (an
            identity provider's JWT).
        subject: a stable id of the caller within its kind (the API key's id, the user's id).
        name: a human label for logs and audits (never a secret or personal data).
        roles: what the caller may do.
        user_id: the user this caller acts as (users, owner API keys), or None (admin API keys).
    """

    kind: str
    subject: str
    name: str
    roles: frozenset[Role]
    user_id: str | None = None

    @classmethod
    def from_api_key(cls, key: ApiKeyInfo, user_id: str | None = None) -> Principal:
        """The principal of an operator API key (admin, or owner acting for ``user_id``)."""
        return cls(kind="api_key", subject=key.id, name=key.name, roles=frozenset({Role(key.role)}),
                   user_id=user_id)

    @classmethod
    def from_user(cls, user_id: str, role: str, kind: str = "user") -> Principal:
        """The principal of a logged-in user."""
        return cls(kind=kind, subject=user_id, name=f"user:{user_id}", roles=frozenset({Role(role)}),
                   user_id=user_id)

    @property
    def is_admin(self) -> bool:
        """True for operators, who may see and do everything."""
        return Role.ADMIN in self.roles

    @property
    def audit_actor(self) -> tuple[str, str]:
        """``(actor_kind, actor_id)`` for the audit log."""
        return (self.kind, self.subject)


@dataclass
class ApiServices:
    """Everything the API layer may call, built once per process.

    Attributes:
        db: the database.
        settings: process settings.
        signer: issues and verifies our access tokens.
        commands: sends commands to connected chargers (None in API-only tests).
        events: the process's change events, for subscriptions (None: subscriptions are unavailable).
        extra: room for services added later (push...).
        rate_limits: the process's rate limiters by policy name (``csms.api.ratelimits``).
        external_tokens: checks an external identity provider's tokens; None when none is configured
            (``create_app`` builds it from the settings).
        cookie_secret: signs browser CSRF tokens (``create_app`` fills it from the settings).
        push: web push (the VAPID key, test notifications); None when the push service is not running.
        metrics: more sources of ``GET /metrics`` lines (the OCPP gateway's, the group commit's).
        revocations: which login sessions were revoked, so their access tokens stop working.
    """

    db: Database
    settings: Settings
    signer: TokenSigner
    commands: ChargerCommands | None = None
    events: EventHub | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    rate_limits: RateLimits = field(default_factory=RateLimits)
    external_tokens: ExternalTokenVerifier | None = None
    cookie_secret: bytes = b""
    push: PushService | None = None
    metrics: list[Callable[[], list[str]]] = field(default_factory=list)
    revocations: SessionRevocations = field(init=False)

    def __post_init__(self) -> None:
        self.revocations = SessionRevocations(self.db)


@dataclass
class ApiContext:
    """Per-request context handed to strawberry as ``info.context``.

    Attributes:
        db: the database every resolver reads through.
        principal: the authenticated caller, or None for an anonymous request.
        services: the process's services (token signer, charger commands...).
        request_headers: the HTTP headers of the request (lower-case names), e.g. Idempotency-Key.
        client_ip: the client's address, for rate limits (behind a trusted proxy, from X-Forwarded-For).
        browser: the HTTP request's cookies, CSRF state and response (to set cookies on); None outside
            HTTP requests (WebSocket contexts build their own).
    """

    db: Database
    principal: Principal | None = None
    services: ApiServices | None = None
    request_headers: dict[str, str] = field(default_factory=dict)
    client_ip: str = ""
    # Per-request state (cookies to set on the response, a request id for logs...).
    extra: dict[str, object] = field(default_factory=dict)
    browser: BrowserSession | None = None

    def require(self, *roles: Role) -> Principal:
        """Return the principal if it has one of ``roles`` (any logged-in caller when none are given).

        Admins pass every role check: they may do everything.

        Raises:
            Unauthenticated: nobody is logged in.
            Forbidden: the caller has none of ``roles``.
        """
        if self.principal is None:
            raise Unauthenticated()
        if roles and not (self.principal.roles & {*roles, Role.ADMIN}):
            raise Forbidden()
        return self.principal

    def require_services(self) -> ApiServices:
        """The process services (always present in a served app)."""
        if self.services is None:
            raise RuntimeError("the API was built without its services")
        return self.services
