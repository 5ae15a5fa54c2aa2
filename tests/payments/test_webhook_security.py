"""The webhook's checks: source address, timestamp, signature (with rotation), event id; every refusal is
a 4xx that changes nothing, and the log says why without secrets."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from csms.config import RateLimitSettings
from tests.conftest import make_user
from tests.ledger_check import assert_ledger_clean
from tests.payments.conftest import API_SECRET, WEBHOOK_SECRET, payment_node
from tests.payments.support import (
    approval,
    available,
    event_count,
    invoice,
    post_webhook,
    signed_webhook,
    top_up,
    wait_status,
    wait_until,
)

if TYPE_CHECKING:
    from simulators.payment_provider import PaymentSandbox
    from tests.conftest import Node


async def _nothing_changed(node: Node, user_id: str, invoice_id: str) -> None:
    assert (await invoice(node.db, invoice_id)).status == "pending"
    assert await available(node.db, user_id) == 0
    assert await event_count(node.db) == 0
    await assert_ledger_clean(node.db)


@pytest.mark.parametrize(("corrupt", "status"), [("signature", 401), ("body", 401), ("timestamp", 401)])
async def test_forged_tampered_or_stale_webhooks_are_refused(pnode: Node, api: httpx.AsyncClient,
                                                            sandbox: PaymentSandbox, corrupt: str, status: int,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    user_id, token = await make_user(pnode.db)
    created = await top_up(api, token, 10_000)
    sandbox.faults.corrupt = corrupt
    with caplog.at_level(logging.WARNING, logger="csms.api.webhooks"):
        sandbox.approve(created["id"])

        async def answered() -> bool:
            return bool(sandbox.deliveries)

        await wait_until(answered, what="the webhook delivery")
    assert [d.http_status for d in sandbox.deliveries] == [status]
    await _nothing_changed(pnode, user_id, created["id"])
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1
    assert ("timestamp" if corrupt == "timestamp" else "signature") in refusals[0]
    for secret in (WEBHOOK_SECRET, API_SECRET):
        assert secret not in caplog.text


async def test_wrong_source_address_is_refused_first(db_url: str, sandbox: PaymentSandbox) -> None:
    async with payment_node(db_url, sandbox, webhook_allowed_ips=("10.20.0.0/16", "192.0.2.7")) as node, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.ready.http_port}", timeout=10) as api:
        user_id, token = await make_user(node.db)
        created = await top_up(api, token, 10_000)
        at_provider = sandbox.find(created["id"])
        body, headers = signed_webhook(approval(created["id"], at_provider.invoice_id, 10_000))
        assert (await post_webhook(api, body, headers)).status_code == 403
        # Even a forged one is refused for its address, before its signature is looked at.
        forged, forged_headers = signed_webhook(approval(created["id"], at_provider.invoice_id, 10_000), secret="x")
        refused = await post_webhook(api, forged, forged_headers)
        assert (refused.status_code, refused.json()) == (403, {"error": "source address not in the allowlist"})
        await _nothing_changed(node, user_id, created["id"])


async def test_allowlisted_address_and_rotated_secrets(db_url: str, sandbox: PaymentSandbox) -> None:
    old, new = WEBHOOK_SECRET, "rotated-webhook-secret-abcdefghijklmnop"
    async with payment_node(db_url, sandbox, webhook_allowed_ips=("127.0.0.0/8",),
                            webhook_secrets=(new, old)) as node, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.ready.http_port}", timeout=10) as api:
        user_id, token = await make_user(node.db)
        first, second = await top_up(api, token, 1_000), await top_up(api, token, 2_000)
        for created, secret in ((first, old), (second, new)):
            ref = sandbox.find(created["id"]).invoice_id
            body, headers = signed_webhook(approval(created["id"], ref, created["amountTyiyn"]), secret=secret)
            assert (await post_webhook(api, body, headers)).status_code == 200
        assert await available(node.db, user_id) == 3_000
        await assert_ledger_clean(node.db)


async def test_replayed_event_is_refused_and_changes_nothing(pnode: Node, api: httpx.AsyncClient,
                                                            sandbox: PaymentSandbox) -> None:
    user_id, token = await make_user(pnode.db)
    created = await top_up(api, token, 10_000)
    event = approval(created["id"], sandbox.find(created["id"]).invoice_id, 10_000)
    body, headers = signed_webhook(event)
    first = await post_webhook(api, body, headers)
    assert (first.status_code, first.json()["outcome"]) == (200, "credited")
    replay = await post_webhook(api, body, headers)
    assert replay.status_code == 409
    # Re-signed with a fresh timestamp, the same event id is still a replay.
    body, headers = signed_webhook(event, timestamp=int(time.time()) + 1)
    assert (await post_webhook(api, body, headers)).status_code == 409
    assert await available(pnode.db, user_id) == 10_000
    assert await event_count(pnode.db) == 1
    await assert_ledger_clean(pnode.db)


async def test_malformed_or_unknown_webhooks(pnode: Node, api: httpx.AsyncClient, sandbox: PaymentSandbox) -> None:
    user_id, token = await make_user(pnode.db)
    created = await top_up(api, token, 10_000)
    ref = sandbox.find(created["id"]).invoice_id
    assert (await api.post("/webhooks/payments/odengi", content=b"{}")).status_code == 400  # no timestamp
    cases = [
        (approval("6f1c9a52-3c1e-4a55-9a57-1c1c1c1c1c1c", ref, 10_000), 404),  # no such invoice
        (approval("not-a-uuid", ref, 10_000), 404),
        ({**approval(created["id"], ref, 10_000), "merchant_id": "someone-else"}, 400),
        ({**approval(created["id"], ref, 10_000), "status": "refunded"}, 400),
        ({**approval(created["id"], ref, 10_000), "amount": -5}, 400),
        ({**approval(created["id"], ref, 10_000), "currency": "USD"}, 400),
        (approval(created["id"], "inv_someone_elses", 10_000), 422),
    ]
    for event, status in cases:
        body, headers = signed_webhook(event)
        assert (await post_webhook(api, body, headers)).status_code == status, event
    body, headers = signed_webhook(approval(created["id"], ref, 10_000))
    assert (await post_webhook(api, b"[" + body + b"]", headers)).status_code == 401  # signed bytes changed
    await _nothing_changed(pnode, user_id, created["id"])
    # After all that, the genuine webhook still works.
    assert (await post_webhook(api, body, headers)).status_code == 200
    await wait_status(pnode.db, created["id"], "paid")


async def test_webhooks_are_rate_limited_per_address(db_url: str, sandbox: PaymentSandbox) -> None:
    async with payment_node(db_url, sandbox, rate_limits=RateLimitSettings(webhook_per_minute=3)) as node, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.ready.http_port}", timeout=10) as api:
        answers = [(await api.post("/webhooks/payments/odengi", content=b"{}")) for _ in range(4)]
        assert [a.status_code for a in answers] == [400, 400, 400, 429]
        assert int(answers[-1].headers["Retry-After"]) >= 1
        # A client behind the same address is not let through with a valid webhook either.
        user_id, token = await make_user(node.db)
        created = await top_up(api, token, 1_000)
        body, headers = signed_webhook(approval(created["id"], sandbox.find(created["id"]).invoice_id, 1_000))
        assert (await post_webhook(api, body, headers)).status_code == 429
        await _nothing_changed(node, user_id, created["id"])
