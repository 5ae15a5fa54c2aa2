"""Fixtures for web push tests: a real push service (``simulators.push_service``) on a local port, and a
csms node whose push settings are fast enough to watch every retry and every presence round."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from csms.config import PushSettings
from csms.services.push_keys import write_new_key
from simulators.push_service import PushService
from tests.charging.conftest import FAST
from tests.conftest import node_settings, running_node

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    import trio

    from csms.config import Settings
    from tests.conftest import Node

SUBJECT = "mailto:ops@csms.test"
# Retries 50 ms apart (doubling), presence every 0.1 s, a station offline after 1 s.
FAST_PUSH: dict[str, Any] = {"senders": 2, "timeout_s": 2.0, "retry_backoff_s": 0.05, "presence_interval_s": 0.1,
                             "station_offline_after_s": 1.0, "maintenance_interval_s": 3600.0}


@pytest.fixture(scope="session")
def vapid_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One VAPID key for the test session (as `csms vapid generate` writes it)."""
    path = tmp_path_factory.mktemp("vapid") / "vapid-private.pem"
    write_new_key(path)
    return path


def push_settings(db_url: str, key_file: Path, **push: Any) -> Settings:
    """Node settings with web push configured for tests (fast reaper, fast push)."""
    configured = PushSettings(vapid_private_key_file=key_file, vapid_subject=SUBJECT)
    return node_settings(db_url, push=replace(configured, **{**FAST_PUSH, **push}), **FAST)


@pytest.fixture
async def push_service(nursery: trio.Nursery) -> PushService:
    """A push service listening on 127.0.0.1 (its URL is ``push_service.url``)."""
    service = PushService()
    await nursery.start(service.serve)
    return service


@pytest.fixture
async def pnode(db_url: str, vapid_key_file: Path) -> AsyncIterator[Node]:
    """A csms node with push (and the session reaper) on fast settings."""
    async with running_node(push_settings(db_url, vapid_key_file)) as n:
        yield n


@pytest.fixture
async def api(pnode: Node) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the node's GraphQL API."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{pnode.ready.http_port}", timeout=15) as client:
        yield client
