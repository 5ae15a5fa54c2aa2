"""Crediting exactly once: late approvals after our expiry, duplicate and reordered webhooks, lost
webhooks found by the reconciler, amounts that differ from the invoice, concurrent deliveries."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import trio

from csms.services.payments.crediting import credit_transfer_id
from csms.services.payments.jobs import BillingJobs
from csms.services.payments.odengi import OdengiProvider
from csms.store import ledger
from tests.conftest import make_user
from tests.ledger_check import assert_ledger_clean
from tests.payments.conftest import payment_node, payment_settings
from tests.payments.support import (
    approval,
    available,
    event_count,
    invoice,
    op,
    post_webhook,
    signed_webhook,
    top_up,
    wait_status,
    wait_until,
)

if TYPE_CHECKING:
    from simulators.payment_provider import PaymentSandbox
    from tests.conftest import Node


def _client(node: Node) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.ready.http_port}", timeout=15)


async def _deliveries(sandbox: PaymentSandbox, count: int) -> list[tuple[str, int | None]]:
    async def done() -> bool:
        return len(sandbox.deliveries) >= count

    await wait_until(done, what=f"{count} webhook deliveries")
    return [(d.status, d.http_status) for d in sandbox.deliveries]


async def test_approval_after_our_expiry_is_credited_once_and_flagged(db_url: str, sandbox: PaymentSandbox) -> None:
    # The seed's race: the payer pays at the last second, the webhook arrives after our expiry job closed
    # the invoice. Reconciliation is held off so only the webhook can credit.
    async with payment_node(db_url, sandbox, invoice_ttl_s=1.0, reconcile_after_s=3600) as node, _client(node) as api:
        user_id, token = await make_user(node.db)
        created = await top_up(api, token, 25_000)
        sandbox.faults.hold = True
        sandbox.approve(created["id"])  # approved at the provider before its expiry...
        await wait_status(node.db, created["id"], "expired")  # ...but we expire it first
        sandbox.release()
        paid = await wait_status(node.db, created["id"], "paid")
        assert (paid.credited_tyiyn, paid.flags) == (25_000, ["paid_after_expiry"])
        assert await available(node.db, user_id) == 25_000
        # The provider retries (its answer got lost): still one credit.
        at_provider = sandbox.find(created["id"])
        body, headers = signed_webhook(approval(created["id"], at_provider.invoice_id, 25_000,
                                                payment_id=at_provider.payment_id))
        assert (await post_webhook(api, body, headers)).json()["outcome"] == "already_credited"
        assert await available(node.db, user_id) == 25_000
        _, admin = await make_user(node.db, "admin")
        anomalies = (await op(api, "PaymentAnomalies", token=admin))["data"]["paymentAnomalies"]["items"]
        assert [(a["kind"], a["invoiceId"]) for a in anomalies] == [("paid_after_expiry", created["id"])]
        flagged = await op(api, "Invoices", {"filter": {"flagged": True}}, token=admin)
        assert [e["node"]["id"] for e in flagged["data"]["invoices"]["edges"]] == [created["id"]]
        assert (await op(api, "Invoices", {"filter": {"flagged": True}}, token=token))["errors"]
        await assert_ledger_clean(node.db)


async def test_duplicate_webhooks_credit_once(pnode: Node, api: httpx.AsyncClient, sandbox: PaymentSandbox) -> None:
    user_id, token = await make_user(pnode.db)
    created = await top_up(api, token, 10_000)
    sandbox.faults.duplicate = True
    sandbox.approve(created["id"])
    assert await _deliveries(sandbox, 2) == [("approved", 200), ("approved", 409)]
    assert await available(pnode.db, user_id) == 10_000
    assert (await invoice(pnode.db, created["id"])).credited_tyiyn == 10_000
    await assert_ledger_clean(pnode.db)


async def test_reordered_webhooks_never_uncredit(pnode: Node, api: httpx.AsyncClient, sandbox: PaymentSandbox) -> None:
    # The payer's first attempt is declined, the second approved; the webhooks arrive the other way round.
    user_id, token = await make_user(pnode.db)
    created = await top_up(api, token, 10_000)
    sandbox.faults.reorder = True
    sandbox.decline(created["id"])
    sandbox.approve(created["id"])
    assert await _deliveries(sandbox, 2) == [("approved", 200), ("declined", 200)]
    paid = await invoice(pnode.db, created["id"])
    assert (paid.status, paid.credited_tyiyn, paid.flags) == ("paid", 10_000, [])
    assert await available(pnode.db, user_id) == 10_000
    await assert_ledger_clean(pnode.db)


async def test_lost_webhook_is_found_by_the_reconciler(db_url: str, sandbox: PaymentSandbox) -> None:
    async with payment_node(db_url, sandbox, invoice_ttl_s=1.0) as node, _client(node) as api:
        user_id, token = await make_user(node.db)
        paid_one = await top_up(api, token, 40_000)
        unpaid = await top_up(api, token, 5_000)
        # The provider would keep the unpaid QR code payable longer than we do (clocks and rounding differ).
        sandbox.find(unpaid["id"]).expires_at += 3600
        sandbox.faults.drop = True
        sandbox.approve(paid_one["id"])
        assert (await invoice(node.db, paid_one["id"])).status == "pending"
        credited = await wait_status(node.db, paid_one["id"], "paid")
        assert (credited.credited_tyiyn, credited.payment_id) == (40_000, sandbox.find(paid_one["id"]).payment_id)
        assert await available(node.db, user_id) == 40_000
        # The unpaid invoice expired here and was cancelled at the provider, so its QR code is dead there too.

        async def cancelled_there() -> bool:
            return sandbox.find(unpaid["id"]).status == "cancelled"

        await wait_until(cancelled_there, what="the reconciler to cancel the unpaid invoice")

        async def settled_here() -> bool:
            return (await invoice(node.db, unpaid["id"])).provider_final

        await wait_until(settled_here, what="the reconciler to record the cancellation")
        closed = await invoice(node.db, unpaid["id"])
        assert (closed.status, closed.credited_tyiyn) == ("expired", 0)
        await assert_ledger_clean(node.db)


async def test_amount_mismatch_is_credited_as_paid_and_flagged(pnode: Node, api: httpx.AsyncClient,
                                                              sandbox: PaymentSandbox) -> None:
    user_id, token = await make_user(pnode.db)
    created = await top_up(api, token, 10_000)
    sandbox.approve(created["id"], amount=9_000)
    paid = await wait_status(pnode.db, created["id"], "paid")
    assert (paid.amount_tyiyn, paid.credited_tyiyn, paid.flags) == (10_000, 9_000, ["amount_mismatch"])
    assert await available(pnode.db, user_id) == 9_000
    _, admin = await make_user(pnode.db, "admin")
    items = (await op(api, "PaymentAnomalies", token=admin))["data"]["paymentAnomalies"]["items"]
    assert [a["kind"] for a in items] == ["amount_mismatch"]
    assert '"paid_tyiyn": 9000' in items[0]["detail"] and '"invoice_tyiyn": 10000' in items[0]["detail"]
    await assert_ledger_clean(pnode.db)


async def test_concurrent_deliveries_of_one_payment_credit_once(pnode: Node, api: httpx.AsyncClient,
                                                               sandbox: PaymentSandbox) -> None:
    user_id, token = await make_user(pnode.db)
    created = await top_up(api, token, 10_000)
    ref = sandbox.find(created["id"]).invoice_id
    statuses: list[int] = []

    async def deliver() -> None:
        body, headers = signed_webhook(approval(created["id"], ref, 10_000, payment_id="pay_once"))
        statuses.append((await post_webhook(api, body, headers)).status_code)

    async with trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(deliver)
    assert statuses == [200] * 6  # distinct event ids, one payment
    assert await available(pnode.db, user_id) == 10_000
    assert await event_count(pnode.db) == 6
    transfer = await pnode.db.run(ledger.get_transfer, credit_transfer_id("odengi", "pay_once"))
    assert transfer is not None and transfer.amount == 10_000
    await assert_ledger_clean(pnode.db)


async def test_two_nodes_reconciling_at_once_ask_once_and_credit_once(db_url: str, sandbox: PaymentSandbox) -> None:
    # Jobs of two csms nodes on one database (as two processes would run them).
    async with payment_node(db_url, sandbox, invoice_ttl_s=1.0, reconcile_after_s=3600) as node, \
            _client(node) as api:
        user_id, token = await make_user(node.db)
        created = [await top_up(api, token, 1_000 * (i + 1)) for i in range(5)]
        sandbox.faults.drop = True
        for inv in created:
            sandbox.approve(inv["id"])
        for inv in created:
            await wait_status(node.db, inv["id"], "expired")
        asked_before = sandbox.api_requests
        settings = payment_settings(sandbox, reconcile_after_s=0.0, reconcile_interval_s=60.0)
        async with OdengiProvider.open(settings) as one, OdengiProvider.open(settings) as two:
            jobs = [BillingJobs(node.db, one, settings), BillingJobs(node.db, two, settings)]
            async with trio.open_nursery() as nursery:
                for job in jobs:
                    nursery.start_soon(job.reconcile_once)
        assert sandbox.api_requests - asked_before == 5  # each invoice asked about by one node only
        assert await available(node.db, user_id) == 15_000
        for inv in created:
            assert (await invoice(node.db, inv["id"])).status == "paid"
        await assert_ledger_clean(node.db)
