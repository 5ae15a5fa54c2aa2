"""Fixtures for charging-session tests: a csms node with fast reaper settings and an HTTP client on it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from csms.config import RateLimitSettings
from tests.conftest import node_settings, running_node

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.conftest import Node

# Short enough for tests to watch every reaper job, long enough that a normal start never times out.
# Rate limits are lifted: these tests start many sessions a minute from one address (the limits have
# their own tests in tests/payments/test_rate_limits.py).
FAST = {"reaper_interval_s": 0.1, "session_start_timeout_s": 3.0, "session_stop_grace_s": 1.0,
        "call_timeout_s": 2.0,
        "rate_limits": RateLimitSettings(critical_per_minute=10_000, mutation_per_minute=10_000)}


@pytest.fixture
async def snode(db_url: str) -> AsyncIterator[Node]:
    """A csms node whose session reaper runs every 0.1 s."""
    async with running_node(node_settings(db_url, **FAST)) as n:
        yield n


@pytest.fixture
async def api(snode: Node) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the node's GraphQL API."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{snode.ready.http_port}", timeout=15) as client:
        yield client
