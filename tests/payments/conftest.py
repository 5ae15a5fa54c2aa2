"""Fixtures for payment tests: the sandbox provider on a real port, and a csms node configured for it.

The node talks to the sandbox exactly as production talks to the real provider: signed HTTP requests
to its merchant API, and signed webhooks from it to ``/webhooks/payments/odengi``.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from csms.config import PaymentSettings, RateLimitSettings
from simulators.payment_provider import PaymentSandbox, serve_sandbox
from tests.conftest import node_settings, running_node

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import trio

    from tests.conftest import Node

MERCHANT = "csms-test-merchant"
API_SECRET = "sandbox-api-secret-0123456789abcdef"
WEBHOOK_SECRET = "sandbox-webhook-secret-0123456789abcdef"
# Fast jobs; reconciliation asks as soon as an invoice expired. Tests that need otherwise override.
FAST_PAYMENTS: dict[str, Any] = {"expiry_interval_s": 0.05, "reconcile_interval_s": 0.1, "reconcile_after_s": 0.0,
                                 "request_timeout_s": 2.0}


@pytest.fixture
async def sandbox(nursery: trio.Nursery) -> PaymentSandbox:
    """The sandbox provider, serving on a free port; webhooks go wherever a node later points them."""
    provider = PaymentSandbox(MERCHANT, API_SECRET, WEBHOOK_SECRET, retries=1, retry_backoff_s=0.05)
    await nursery.start(serve_sandbox, provider)
    return provider


def payment_settings(sandbox: PaymentSandbox, **overrides: Any) -> PaymentSettings:
    """Payment settings pointing at ``sandbox`` (invoices live 300 s unless overridden)."""
    base = PaymentSettings(odengi_url=sandbox.url, merchant_id=MERCHANT, api_secret=API_SECRET,
                           webhook_secrets=(WEBHOOK_SECRET,), **FAST_PAYMENTS)
    return replace(base, **overrides)


@asynccontextmanager
async def payment_node(db_url: str, sandbox: PaymentSandbox, *, rate_limits: RateLimitSettings | None = None,
                       settings: dict[str, Any] | None = None, **payments: Any) -> AsyncIterator[Node]:
    """A csms node using ``sandbox`` as its payment provider; the sandbox's webhooks go to this node."""
    s = node_settings(db_url, payments=payment_settings(sandbox, **payments),
                      rate_limits=rate_limits or RateLimitSettings(), **(settings or {}))
    async with running_node(s) as node:
        sandbox.webhook_url = f"http://127.0.0.1:{node.ready.http_port}/webhooks/payments/odengi"
        yield node


@pytest.fixture
async def pnode(db_url: str, sandbox: PaymentSandbox) -> AsyncIterator[Node]:
    """A csms node with payments through the sandbox (default invoice lifetime: 300 s)."""
    async with payment_node(db_url, sandbox) as node:
        yield node


@pytest.fixture
async def api(pnode: Node) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the node's API."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{pnode.ready.http_port}", timeout=15) as client:
        yield client
