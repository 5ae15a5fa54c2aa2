"""The keyed token-bucket rate limiter: limits, refill, independence of keys, bounded memory."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from csms.services.ratelimit import RateLimited, RateLimiter, RateLimits


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_limit_then_refusal_with_retry_after() -> None:
    clock = Clock()
    limiter = RateLimiter(10, 60.0, clock=clock)
    for _ in range(10):
        limiter.acquire("ip")
    with pytest.raises(RateLimited) as refused:
        limiter.acquire("ip")
    assert refused.value.retry_after_s == pytest.approx(6.0)  # one token per 6 s
    assert refused.value.retry_after_whole_s == 6
    clock.now = 5.9
    with pytest.raises(RateLimited):
        limiter.acquire("ip")
    clock.now = 6.0  # refused attempts cost nothing: waiting retry_after is enough
    limiter.acquire("ip")
    with pytest.raises(RateLimited):
        limiter.acquire("ip")


def test_keys_are_independent_and_buckets_refill_to_the_limit() -> None:
    clock = Clock()
    limiter = RateLimiter(2, 10.0, clock=clock)
    limiter.acquire("a")
    limiter.acquire("a")
    limiter.acquire("b")
    assert (limiter.remaining("a"), limiter.remaining("b"), limiter.remaining("c")) == (0, 1, 2)
    clock.now = 1000.0
    assert limiter.remaining("a") == 2  # never more than the limit, however long the pause


def test_memory_is_bounded_and_full_buckets_go_first() -> None:
    clock = Clock()
    limiter = RateLimiter(2, 10.0, max_keys=3, clock=clock)
    limiter.acquire("old")  # will have refilled by the time room is needed
    clock.now = 100.0
    limiter.acquire("busy1")
    limiter.acquire("busy2")
    limiter.acquire("new")  # the limiter is full: "old" refilled completely, so dropping it loses nothing
    assert len(limiter) == 3
    assert limiter.remaining("busy1") == 1
    limiter.acquire("newer")  # nobody has refilled: the least recently used ("busy1") is forgotten
    assert len(limiter) == 3
    assert limiter.remaining("busy1") == 2
    assert limiter.remaining("busy2") == 1


def test_bad_parameters() -> None:
    for args in ((0, 60.0), (1, 0.0), (1, -1.0)):
        with pytest.raises(ValueError, match="rate limit"):
            RateLimiter(*args)


def test_registry_returns_one_limiter_per_policy() -> None:
    limits = RateLimits(clock=Clock())
    first = limits.get("login:ip", 10, 60)
    assert limits.get("login:ip", 99, 1) is first
    assert first.limit == 10
    assert limits.get("register:ip", 5) is not first


async def test_uses_the_trio_clock_by_default(autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter(1, 30.0)
    limiter.acquire("k")
    with pytest.raises(RateLimited):
        limiter.acquire("k")
    await trio.sleep(30)
    limiter.acquire("k")
