"""Rate limits for GraphQL resolvers: one call, :func:`enforce_rate_limit`, answering ``RATE_LIMITED``.

Usage in a resolver (policies are named ``<operation>:<what the key is>``)::

    enforce_rate_limit(info.context, "topUp:user", principal.subject, limit=5)          # 5 per minute
    enforce_rate_limit(info.context, "topUp:ip", client_key(info.context), limit=20)

Limits live in memory, per process (``csms.services.ratelimit``). Check them before the expensive
or risky work, so a refused request costs almost nothing.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from csms.api.auth_errors import RateLimitedError
from csms.services.ratelimit import RateLimited

if TYPE_CHECKING:
    from csms.api.context import ApiContext


def enforce_rate_limit(context: ApiContext, policy: str, key: str, *, limit: int, period_s: float = 60.0) -> None:
    """Count one request for ``key`` under ``policy`` (at most ``limit`` per ``period_s``).

    The first call for a policy fixes its limit and period for the life of the process.

    Raises:
        RateLimitedError: ``RATE_LIMITED`` with ``extensions.retryAfterSeconds``.
    """
    limiter = context.require_services().rate_limits.get(policy, limit, period_s)
    try:
        limiter.acquire(key)
    except RateLimited as exc:
        raise RateLimitedError(exc.retry_after_whole_s) from None


def client_key(context: ApiContext) -> str:
    """The rate-limit key of the client's address (see :func:`address_key`)."""
    return address_key(context.client_ip)


def address_key(client_ip: str) -> str:
    """The rate-limit key of an address: the IPv4 address, or the IPv6 /64 network.

    One IPv6 subscriber usually holds a whole /64, so limiting single IPv6 addresses would limit nothing.
    """
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip or "unknown"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address.ipv4_mapped or address) if isinstance(address, ipaddress.IPv6Address) else str(address)
