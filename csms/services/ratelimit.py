"""Keyed rate limits in memory: a token bucket per key, on the Trio clock, with bounded memory.

Use one :class:`RateLimiter` per policy ("10 logins per minute per IP") and call
:meth:`RateLimiter.acquire` with the key (an IP, a user id, a hashed login name) before doing the
work. It raises :class:`RateLimited` with the seconds to wait when the key is over its limit. The API
layer keeps one :class:`RateLimits` registry per app and maps the exception to the ``RATE_LIMITED``
GraphQL error (``csms.api.ratelimits.enforce_rate_limit``).

Why a token bucket: O(1) state per key (two floats), no timestamps to keep per request, and it lets
a quiet client burst up to the limit. A bucket holds ``limit`` tokens and refills continuously at
``limit / period_s`` tokens per second; a request takes one token.

Memory: at most ``max_keys`` keys per limiter, kept in least-recently-used order. When a new key
arrives and the limiter is full, keys whose bucket has refilled completely are dropped first (they
are indistinguishable from a key never seen, so nothing is lost); if none has, the least recently
used key is dropped, which forgets its count. Only a flood of more than ``max_keys`` distinct keys
within one period can make a limit forget a key.

Limits are per process: with several csms nodes each counts on its own.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

DEFAULT_MAX_KEYS = 100_000


class RateLimited(Exception):
    """A key is over its limit; ``retry_after_s`` is how long until one more request is allowed."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"rate limited; retry after {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s

    @property
    def retry_after_whole_s(self) -> int:
        """The wait rounded up to whole seconds (at least 1), for ``Retry-After``-style answers."""
        return max(1, math.ceil(self.retry_after_s))


class RateLimiter:
    """At most ``limit`` requests per ``period_s`` seconds per key (token bucket).

    Args:
        limit: bucket size: requests allowed in a burst, and per period on average. Must be ≥ 1.
        period_s: seconds for an empty bucket to refill completely.
        max_keys: how many keys to remember at most (see the module docstring).
        clock: seconds on a monotonic clock; defaults to the Trio clock, so tests can use
            ``autojump_clock``.
    """

    def __init__(self, limit: int, period_s: float, *, max_keys: int = DEFAULT_MAX_KEYS,
                 clock: Callable[[], float] = trio.current_time) -> None:
        if limit < 1 or period_s <= 0 or max_keys < 1:
            raise ValueError("a rate limit needs limit >= 1, period_s > 0 and max_keys >= 1")
        self.limit = limit
        self.period_s = period_s
        self.max_keys = max_keys
        self._rate = limit / period_s  # tokens per second
        self._clock = clock
        # key -> (tokens left, clock time of that count); least recently used first.
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, key: Hashable, now: float) -> float:
        entry = self._buckets.get(key)
        if entry is None:
            return float(self.limit)
        tokens, at = entry
        return min(float(self.limit), tokens + (now - at) * self._rate)

    def acquire(self, key: Hashable, cost: float = 1.0) -> None:
        """Take ``cost`` tokens from ``key``'s bucket.

        Raises:
            RateLimited: not enough tokens; nothing was taken (a refused request costs nothing, so a
                client that waits ``retry_after_s`` is let through).
        """
        now = self._clock()
        tokens = self._tokens(key, now)
        if tokens < cost:
            raise RateLimited((cost - tokens) / self._rate)
        if key not in self._buckets:
            self._make_room(now)
        self._buckets[key] = (tokens - cost, now)
        self._buckets.move_to_end(key)

    def remaining(self, key: Hashable) -> int:
        """Whole requests ``key`` may still make right now (for tests and diagnostics)."""
        return int(self._tokens(key, self._clock()))

    def _make_room(self, now: float) -> None:
        if len(self._buckets) < self.max_keys:
            return
        # Oldest first: they are the likeliest to have refilled. Stop at the first that has not, so a
        # call costs O(1) amortised.
        while self._buckets:
            key, (tokens, at) = next(iter(self._buckets.items()))
            if tokens + (now - at) * self._rate < self.limit:
                break
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:
            self._buckets.popitem(last=False)


class RateLimits:
    """The limiters of one process, by policy name, created on first use.

    ``limits.get("login:ip", 10, 60)`` returns the same limiter on every call; the limit and period of
    the first call win (a policy has one definition, usually taken from the settings).
    """

    def __init__(self, *, clock: Callable[[], float] = trio.current_time) -> None:
        self._clock = clock
        self._limiters: dict[str, RateLimiter] = {}

    def get(self, name: str, limit: int, period_s: float = 60.0) -> RateLimiter:
        """The limiter for policy ``name``."""
        limiter = self._limiters.get(name)
        if limiter is None:
            limiter = self._limiters[name] = RateLimiter(limit, period_s, clock=self._clock)
        return limiter
