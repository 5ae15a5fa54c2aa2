"""The web push area of the API: the VAPID public key, and a user's browser subscriptions.

A web app subscribes like this: read ``vapidPublicKey``, call ``PushManager.subscribe({userVisibleOnly:
true, applicationServerKey: <that key>})`` in the browser, and send ``subscription.toJSON()``'s
``endpoint`` and ``keys`` to ``subscribePush`` (again on every start of the app: that keeps the
subscription from being pruned as unused after 90 days). What csms then sends is described in
``csms.services.push_messages``.

Who may call what: ``vapidPublicKey`` is public; the rest act on the caller's own subscriptions and
need a user (drivers, owners and admins logged in; owner API keys act for their owner; an admin API
key has no user and gets ``FORBIDDEN``).

Error codes (``extensions.code``): ``INVALID_PUSH_ENDPOINT`` (not https, not a URL, credentials in it,
not a public push service in production, not an allowed host), ``INVALID_PUSH_KEYS`` (not base64url,
wrong size, not a P-256 point), ``BAD_USER_INPUT`` (userAgent), ``NO_PUSH_SUBSCRIPTION``
(``sendTestPush`` with none), ``PUSH_UNAVAILABLE`` (the push service is not running here, or its
queue is full), ``RATE_LIMITED``, ``UNAUTHENTICATED``, ``FORBIDDEN``.
"""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 (strawberry resolves annotations at runtime)
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import strawberry
from strawberry import Info

from csms.api.access import LOGGED_IN, PUBLIC
from csms.api.context import ApiContext  # noqa: TC001 (strawberry resolves annotations at runtime)
from csms.api.errors import BadUserInput, DomainError, Forbidden
from csms.api.ratelimits import enforce_rate_limit
from csms.services import push_subscriptions as subscriptions
from csms.services.push_keys import public_key_b64
from csms.store import push as store

if TYPE_CHECKING:
    from csms.services.push import PushService
    from csms.store.push import PushSubscriptionRow

TEST_PUSHES_PER_MINUTE = 5


@strawberry.input(description="The browser's push subscription keys, as PushSubscription.toJSON() gives them.")
class PushSubscriptionKeysInput:
    p256dh: str = strawberry.field(description="The browser's P-256 public key (65 bytes, base64url).")
    auth: str = strawberry.field(description="The authentication secret (16 bytes, base64url).")


@strawberry.input(description="A browser push subscription: PushSubscription.toJSON() without expirationTime.")
class PushSubscriptionInput:
    endpoint: str = strawberry.field(description="The push service URL for this browser (https).")
    keys: PushSubscriptionKeysInput


@strawberry.type(description="A browser subscribed to the caller's notifications.")
class PushSubscription:
    id: strawberry.ID
    endpoint_origin: str = strawberry.field(description="The push service, e.g. https://fcm.googleapis.com.")
    user_agent: str = strawberry.field(description="What the app sent as userAgent when it subscribed.")
    created_at: datetime
    last_used_at: datetime = strawberry.field(description="Last renewed by the app or delivered to (UTC).")

    @classmethod
    def from_row(cls, row: PushSubscriptionRow) -> PushSubscription:
        """From a stored subscription (the endpoint itself is a secret URL and is not echoed)."""
        parts = urlsplit(row.endpoint)
        return cls(id=strawberry.ID(row.id), endpoint_origin=f"{parts.scheme}://{parts.netloc}",
                   user_agent=row.user_agent, created_at=row.created_at, last_used_at=row.last_used_at)


def _own_user(info: Info[ApiContext, None]) -> str:
    principal = info.context.require()
    if principal.user_id is None:
        raise Forbidden("Push subscriptions belong to a user; this credential has none.")
    return principal.user_id


def _push(info: Info[ApiContext, None]) -> PushService:
    push = info.context.require_services().push
    if push is None or not push.running:
        raise DomainError("PUSH_UNAVAILABLE", "Push notifications are not available right now.")
    return push


def _api_error(exc: subscriptions.PushInputError) -> Exception:
    return BadUserInput(exc.message) if exc.code == "BAD_USER_INPUT" else DomainError(exc.code, exc.message)


# Resolvers are plain typed functions passed as resolver=: strawberry's decorator form is untyped.
async def resolve_vapid_public_key(info: Info[ApiContext, None]) -> str:
    """The key browsers pass to PushManager.subscribe as applicationServerKey."""
    services = info.context.require_services()
    if services.push is not None:
        return services.push.public_key
    # An API served without the push service (API-only processes, tests) still tells the key the
    # process's settings name: browsers may subscribe before push runs anywhere.
    return public_key_b64(services.settings.vapid_key())


async def resolve_my_push_subscriptions(info: Info[ApiContext, None]) -> list[PushSubscription]:
    """The caller's subscribed browsers, most recently used first."""
    rows = await info.context.db.run(store.user_subscriptions, _own_user(info))
    return [PushSubscription.from_row(row) for row in rows]


async def resolve_subscribe_push(info: Info[ApiContext, None], subscription: PushSubscriptionInput,
                                 user_agent: str | None = None) -> PushSubscription:
    """Store (or renew) the browser's subscription for the caller."""
    user_id = _own_user(info)
    services = info.context.require_services()
    try:
        row = await subscriptions.subscribe(services.db, services.settings, user_id, subscription.endpoint,
                                            subscription.keys.p256dh, subscription.keys.auth, user_agent)
    except subscriptions.PushInputError as exc:
        raise _api_error(exc) from None
    return PushSubscription.from_row(row)


async def resolve_unsubscribe_push(info: Info[ApiContext, None], endpoint: str) -> bool:
    """Remove the caller's subscription with this endpoint; false if there was none."""
    user_id = _own_user(info)
    try:
        return await subscriptions.unsubscribe(info.context.db, user_id, endpoint)
    except subscriptions.PushInputError as exc:
        raise _api_error(exc) from None


async def resolve_send_test_push(info: Info[ApiContext, None]) -> int:
    """Queue a test notification to each of the caller's browsers; how many."""
    user_id = _own_user(info)
    push = _push(info)
    enforce_rate_limit(info.context, "sendTestPush:user", user_id, limit=TEST_PUSHES_PER_MINUTE)
    if not await info.context.db.run(store.has_subscriptions, user_id):
        raise DomainError("NO_PUSH_SUBSCRIPTION", "No browser is subscribed: call subscribePush first.")
    queued = await push.send_test(user_id)
    if queued == 0:
        raise DomainError("PUSH_UNAVAILABLE", "The push queue is full; try again shortly.")
    return queued


@strawberry.type
class PushQuery:
    vapid_public_key: str = strawberry.field(
        resolver=resolve_vapid_public_key, permission_classes=PUBLIC,
        description="The VAPID public key (base64url) to pass to PushManager.subscribe as applicationServerKey.",
    )
    my_push_subscriptions: list[PushSubscription] = strawberry.field(
        resolver=resolve_my_push_subscriptions, permission_classes=LOGGED_IN,
        description="The browsers subscribed to the caller's notifications.",
    )


@strawberry.type
class PushMutation:
    subscribe_push: PushSubscription = strawberry.field(
        resolver=resolve_subscribe_push, permission_classes=LOGGED_IN,
        description="Subscribe this browser to the caller's notifications (an upsert per endpoint: call it on "
        "every app start). An endpoint subscribed by another account moves to the caller.",
    )
    unsubscribe_push: bool = strawberry.field(
        resolver=resolve_unsubscribe_push, permission_classes=LOGGED_IN,
        description="Stop notifications to this endpoint; false if it was not subscribed.",
    )
    send_test_push: int = strawberry.field(
        resolver=resolve_send_test_push, permission_classes=LOGGED_IN,
        description="Send a test notification to each of the caller's browsers; returns how many were queued. "
        "At most 5 a minute.",
    )


QUERIES: list[type] = [PushQuery]
MUTATIONS: list[type] = [PushMutation]
SUBSCRIPTIONS: list[type] = []
