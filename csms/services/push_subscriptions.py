"""Browser push subscriptions: what a valid one looks like, and storing or removing one for a user.

A subscription is what ``PushSubscription.toJSON()`` gives a web app: an ``endpoint`` URL at the
browser vendor's push service and two keys, ``p256dh`` (the browser's P-256 public key, 65 bytes)
and ``auth`` (a 16-byte secret), both base64url. csms POSTs to the endpoint, so it is checked with
care: https only (plain http only to a loopback address, in development), no credentials in the URL,
in production no IP literal or local name, and, when ``CSMS_PUSH_ALLOWED_HOSTS`` is set, only those
push services.

Refusals are :class:`PushInputError` with the API's error code (services never import the API).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec

from csms.store import push as store

if TYPE_CHECKING:
    from csms.config import Settings
    from csms.store.db import Database
    from csms.store.push import PushSubscriptionRow

MAX_ENDPOINT = 2048
MAX_USER_AGENT = 300
_B64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")


class PushInputError(Exception):
    """A refused subscription; ``code`` is the API's ``extensions.code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_local_name(host: str) -> bool:
    """An IP literal or a name that is not a public DNS name (push services have public names)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return "." not in host or host.endswith((".localhost", ".local", ".internal", ".lan"))


def check_endpoint(raw: str, *, production: bool, allowed_hosts: tuple[str, ...] = ()) -> str:
    """The endpoint if csms may POST to it.

    Raises:
        PushInputError: ``INVALID_PUSH_ENDPOINT``.
    """
    def refuse(why: str) -> PushInputError:
        return PushInputError("INVALID_PUSH_ENDPOINT", f"endpoint {why}.")

    if not 1 <= len(raw) <= MAX_ENDPOINT:
        raise refuse(f"must have 1 to {MAX_ENDPOINT} characters")
    try:
        parts = urlsplit(raw)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        raise refuse("is not a URL") from None
    host = (parts.hostname or "").lower()
    if not host or parts.username is not None or parts.password is not None or parts.fragment:
        raise refuse("must be an https URL with a host, without credentials or a fragment")
    if parts.scheme == "http":
        if production or not _is_loopback(host):
            raise refuse("must use https (plain http is allowed only to a loopback address in development)")
    elif parts.scheme != "https":
        raise refuse("must use https")
    if production and _is_local_name(host):
        raise refuse("must be on a public push service")
    if allowed_hosts and not any(host == h or host.endswith("." + h) for h in allowed_hosts):
        raise refuse("is not on an allowed push service")
    return raw


def _key_bytes(raw: str, name: str, size: int) -> bytes:
    if not _B64URL.match(raw):
        raise PushInputError("INVALID_PUSH_KEYS", f"keys.{name} must be base64url.")
    try:
        data = base64.urlsafe_b64decode(raw.rstrip("=") + "=" * (-len(raw.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        raise PushInputError("INVALID_PUSH_KEYS", f"keys.{name} must be base64url.") from None
    if len(data) != size:
        raise PushInputError("INVALID_PUSH_KEYS", f"keys.{name} must be {size} bytes.")
    return data


def check_keys(p256dh: str, auth: str) -> tuple[str, str]:
    """The keys, unpadded, if ``p256dh`` is a P-256 point and ``auth`` 16 bytes.

    Raises:
        PushInputError: ``INVALID_PUSH_KEYS``.
    """
    point = _key_bytes(p256dh, "p256dh", 65)
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise PushInputError("INVALID_PUSH_KEYS", "keys.p256dh is not a P-256 public key.") from None
    _key_bytes(auth, "auth", 16)
    return p256dh.rstrip("="), auth.rstrip("=")


def check_user_agent(raw: str | None) -> str:
    """A label for the device list (the browser's user agent), at most 300 characters.

    Raises:
        PushInputError: ``BAD_USER_INPUT``.
    """
    value = (raw or "").strip()
    if len(value) > MAX_USER_AGENT or any(ord(c) < 32 for c in value):
        raise PushInputError("BAD_USER_INPUT", f"userAgent must be at most {MAX_USER_AGENT} printable characters.")
    return value


async def subscribe(db: Database, settings: Settings, user_id: str, endpoint: str, p256dh: str, auth: str,
                    user_agent: str | None) -> PushSubscriptionRow:
    """Validate and store a subscription for ``user_id`` (an upsert: repeating it changes nothing more).

    Raises:
        PushInputError: the subscription is refused (nothing was stored).
    """
    endpoint = check_endpoint(endpoint, production=settings.production, allowed_hosts=settings.push.allowed_hosts)
    p256dh, auth = check_keys(p256dh, auth)
    label = check_user_agent(user_agent)
    return await db.run(store.upsert_subscription, user_id, endpoint, p256dh, auth, label)


async def unsubscribe(db: Database, user_id: str, endpoint: str) -> bool:
    """Remove the caller's subscription with ``endpoint``; False when there was none.

    Raises:
        PushInputError: ``INVALID_PUSH_ENDPOINT`` for an over-long endpoint.
    """
    if not 1 <= len(endpoint) <= MAX_ENDPOINT:
        raise PushInputError("INVALID_PUSH_ENDPOINT", f"endpoint must have 1 to {MAX_ENDPOINT} characters.")
    return await db.run(store.delete_user_subscription, user_id, endpoint)
