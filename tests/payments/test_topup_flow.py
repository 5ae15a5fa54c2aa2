"""Top-ups end to end: topUp → QR at the sandbox provider → approval → signed webhook → wallet credited."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

import httpx
import trio

from csms.store import users
from tests.conftest import make_user
from tests.ledger_check import assert_ledger_clean
from tests.payments.support import available, codes, invoice, listening, op, top_up, wait_status

if TYPE_CHECKING:
    from simulators.payment_provider import PaymentSandbox
    from tests.conftest import Node


async def test_top_up_approve_credit(pnode: Node, api: httpx.AsyncClient, sandbox: PaymentSandbox,
                                     db_url: str) -> None:
    user_id, token = await make_user(pnode.db)
    created = await top_up(api, token, 150_000)
    assert (created["status"], created["amountTyiyn"], created["creditedTyiyn"], created["flags"]) == (
        "PENDING", 150_000, 0, [])
    # The QR code is a real SVG of the provider's payload, and the provider knows the invoice by our id.
    assert ET.fromstring(created["qrSvg"]).tag == "{http://www.w3.org/2000/svg}svg"
    at_provider = sandbox.find(created["id"])
    assert (at_provider.order_id, at_provider.amount, at_provider.status) == (created["id"], 150_000, "pending")
    assert created["qrPayload"] == created["payUrl"] == f"{sandbox.url}/pay/{at_provider.invoice_id}"
    row = await invoice(pnode.db, created["id"])
    assert round((row.expires_at - row.created_at).total_seconds()) == 300
    async with httpx.AsyncClient(timeout=10) as http:
        page = await http.get(created["payUrl"])
        assert page.status_code == 200 and "150000" not in page.text and "1500.00 KGS" in page.text

        with listening(db_url) as received:
            # The payer approves on the sandbox's page (a real HTTP form post, like the button).
            approved = await http.post(f"{sandbox.url}/sandbox/invoices/{at_provider.invoice_id}/approve", json={})
            assert approved.status_code == 200
            paid = await wait_status(pnode.db, created["id"], "paid")
            events: list[dict[str, object]] = []
            with trio.move_on_after(5):
                while not any(e["topic"] == "balance" for e in events):
                    events = await trio.to_thread.run_sync(received)
    assert {"topic": "balance", "user_id": user_id} in events
    assert {"topic": "invoice", "invoice_id": created["id"], "user_id": user_id, "status": "paid",
            "amount_tyiyn": 150_000} in events
    assert (paid.credited_tyiyn, paid.payment_id, paid.flags) == (150_000, at_provider.payment_id, [])
    assert await available(pnode.db, user_id) == 150_000
    assert [(d.status, d.http_status) for d in sandbox.deliveries] == [("approved", 200)]

    body = await op(api, "Invoice", {"id": created["id"]}, token=token)
    assert body["data"]["invoice"]["status"] == "PAID"
    assert body["data"]["invoice"]["paidAt"] is not None
    mine = await op(api, "MyInvoices", token=token)
    assert [e["node"]["id"] for e in mine["data"]["myInvoices"]["edges"]] == [created["id"]]
    # Another driver cannot see it; an admin can.
    _, other = await make_user(pnode.db)
    assert (await op(api, "Invoice", {"id": created["id"]}, token=other))["data"]["invoice"] is None
    _, admin = await make_user(pnode.db, "admin")
    assert (await op(api, "Invoice", {"id": created["id"]}, token=admin))["data"]["invoice"]["id"] == created["id"]
    await assert_ledger_clean(pnode.db)


async def test_top_up_refusals_change_nothing(pnode: Node, api: httpx.AsyncClient, sandbox: PaymentSandbox) -> None:
    user_id, token = await make_user(pnode.db)
    for amount in (0, -100, 10_000_001):
        body = await op(api, "TopUp", {"amountTyiyn": amount}, token=token)
        assert codes(body) == ["BAD_USER_INPUT"], (amount, body)
    body = await op(api, "TopUp", {"amountTyiyn": 1.5}, token=token)  # not an integer: refused by Long
    assert body["errors"] and body.get("data") is None
    assert codes(await op(api, "TopUp", {"amountTyiyn": 100})) == ["UNAUTHENTICATED"]
    _, admin = await make_user(pnode.db, "admin")
    assert codes(await op(api, "TopUp", {"amountTyiyn": 100}, token=admin)) == []  # admins are users too
    bad_key = await op(api, "TopUp", {"amountTyiyn": 100}, token=token, headers={"Idempotency-Key": "x" * 201})
    assert codes(bad_key) == ["BAD_USER_INPUT"]
    await pnode.db.run(lambda conn: users.set_status(conn, user_id, "blocked", actor=("cli", "test")))
    assert codes(await op(api, "TopUp", {"amountTyiyn": 100}, token=token)) == ["ACCOUNT_BLOCKED"]
    await pnode.db.run(lambda conn: users.set_status(conn, user_id, "pending_deletion", actor=("cli", "test")))
    assert codes(await op(api, "TopUp", {"amountTyiyn": 100}, token=token)) == ["ACCOUNT_PENDING_DELETION"]
    mine = await op(api, "MyInvoices", token=token)
    assert mine["data"]["myInvoices"]["edges"] == []
    assert len(sandbox.invoices) == 1  # only the admin's
    await assert_ledger_clean(pnode.db)


async def test_idempotency_key_replay_and_reuse(pnode: Node, api: httpx.AsyncClient, sandbox: PaymentSandbox) -> None:
    _, token = await make_user(pnode.db)
    first = await top_up(api, token, 5_000, key="tap-1")
    again = await top_up(api, token, 5_000, key="tap-1")
    assert again["id"] == first["id"] and again["qrPayload"] == first["qrPayload"]
    reused = await op(api, "TopUp", {"amountTyiyn": 6_000}, token=token, headers={"Idempotency-Key": "tap-1"})
    assert codes(reused) == ["IDEMPOTENCY_KEY_REUSED"]
    # Keys belong to their caller: another driver's "tap-1" is a new invoice.
    _, other = await make_user(pnode.db)
    theirs = await top_up(api, other, 5_000, key="tap-1")
    assert theirs["id"] != first["id"]
    assert len(sandbox.invoices) == 2
    # Concurrent retries with one key make one invoice.
    results: list[str] = []

    async def tap() -> None:
        results.append((await top_up(api, token, 7_000, key="tap-2"))["id"])

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(tap)
    assert len(set(results)) == 1
    assert len(sandbox.invoices) == 3


async def test_slow_provider_then_retry_with_the_same_key(db_url: str, sandbox: PaymentSandbox) -> None:
    from tests.payments.conftest import payment_node

    async with payment_node(db_url, sandbox, request_timeout_s=0.3) as node, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.ready.http_port}", timeout=15) as api:
        _, token = await make_user(node.db)
        sandbox.faults.slow_s = 1.0
        slow = await op(api, "TopUp", {"amountTyiyn": 2_000}, token=token, headers={"Idempotency-Key": "k"})
        assert codes(slow) == ["PAYMENT_PROVIDER_UNAVAILABLE"]
        sandbox.faults.slow_s = 0.0
        retried = await top_up(api, token, 2_000, key="k")
        assert retried["status"] == "PENDING" and retried["qrSvg"]
        # The provider got the order twice (the slow call did reach it) and kept one invoice.
        assert len(sandbox.invoices) == 1
        assert sandbox.find(retried["id"]).order_id == retried["id"]


async def test_payments_not_configured(node: Node) -> None:
    _, token = await make_user(node.db)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.ready.http_port}", timeout=10) as api:
        assert codes(await op(api, "TopUp", {"amountTyiyn": 100}, token=token)) == ["PAYMENTS_UNAVAILABLE"]
        hook = await api.post("/webhooks/payments/odengi", content=b"{}")
        assert hook.status_code == 404
