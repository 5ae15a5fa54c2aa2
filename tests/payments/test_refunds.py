"""Operators' refunds of top-ups: through the ledger, audited, bounded by what was paid, idempotent."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from csms.store import audit, ledger
from tests.conftest import make_user
from tests.ledger_check import assert_ledger_clean
from tests.payments.support import available, codes, invoice, op, top_up, wait_status

if TYPE_CHECKING:
    import httpx

    from csms.store.db import Conn
    from simulators.payment_provider import PaymentSandbox
    from tests.conftest import Node


async def _paid_top_up(node: Node, api: httpx.AsyncClient, sandbox: PaymentSandbox, amount: int) -> tuple[str, str]:
    user_id, token = await make_user(node.db)
    created = await top_up(api, token, amount)
    sandbox.approve(created["id"])
    await wait_status(node.db, created["id"], "paid")
    return user_id, created["id"]


async def test_refund_is_audited_bounded_and_idempotent(pnode: Node, api: httpx.AsyncClient,
                                                       sandbox: PaymentSandbox) -> None:
    user_id, invoice_id = await _paid_top_up(pnode, api, sandbox, 50_000)
    _, admin = await make_user(pnode.db, "admin")
    refund = {"invoiceId": invoice_id, "amountTyiyn": 20_000, "reason": "charger out of order"}
    key = {"Idempotency-Key": "refund-1"}
    first = await op(api, "RefundTopUp", refund, token=admin, headers=key)
    assert "errors" not in first, first
    payload = first["data"]["refundTopUp"]
    assert (payload["applied"], payload["invoice"]["refundedTyiyn"]) == (True, 20_000)
    again = (await op(api, "RefundTopUp", refund, token=admin, headers=key))["data"]["refundTopUp"]
    assert (again["applied"], again["transferId"]) == (False, payload["transferId"])
    assert codes(await op(api, "RefundTopUp", {**refund, "amountTyiyn": 1}, token=admin, headers=key)) == [
        "IDEMPOTENCY_KEY_REUSED"]
    assert await available(pnode.db, user_id) == 30_000
    # At most what was paid and not refunded yet.
    over = await op(api, "RefundTopUp", {**refund, "amountTyiyn": 30_001}, token=admin)
    assert codes(over) == ["REFUND_EXCEEDS_PAYMENT"]
    records = (await pnode.db.run(audit.list_page, 10)).items
    assert [(r.action, r.target, r.detail["amount_tyiyn"], r.detail["reason"]) for r in records] == [
        ("payments.refund", user_id, 20_000, "charger out of order")]
    assert (await invoice(pnode.db, invoice_id)).refunded_tyiyn == 20_000
    await assert_ledger_clean(pnode.db)


async def test_refund_refusals_change_nothing(pnode: Node, api: httpx.AsyncClient, sandbox: PaymentSandbox) -> None:
    user_id, invoice_id = await _paid_top_up(pnode, api, sandbox, 10_000)
    _, admin = await make_user(pnode.db, "admin")
    _, driver = await make_user(pnode.db)
    ok = {"invoiceId": invoice_id, "amountTyiyn": 1_000, "reason": "goodwill"}
    assert codes(await op(api, "RefundTopUp", ok, token=driver)) == ["FORBIDDEN"]
    assert codes(await op(api, "RefundTopUp", ok)) == ["UNAUTHENTICATED"]
    for bad, code in [({"amountTyiyn": 0}, "BAD_USER_INPUT"), ({"amountTyiyn": -5}, "BAD_USER_INPUT"),
                      ({"reason": "  "}, "BAD_USER_INPUT"), ({"reason": "r" * 501}, "BAD_USER_INPUT"),
                      ({"invoiceId": "nope"}, "BAD_USER_INPUT"),
                      ({"invoiceId": "00000000-0000-0000-0000-000000000000"}, "NOT_FOUND")]:
        assert codes(await op(api, "RefundTopUp", {**ok, **bad}, token=admin)) == [code], bad
    # The driver spent most of it meanwhile: the wallet cannot go below zero.
    await pnode.db.run(_spend, user_id, 9_500)
    assert codes(await op(api, "RefundTopUp", ok, token=admin)) == ["INSUFFICIENT_BALANCE"]
    assert (await invoice(pnode.db, invoice_id)).refunded_tyiyn == 0
    assert await available(pnode.db, user_id) == 500
    assert (await pnode.db.run(audit.list_page, 10)).items == []
    await assert_ledger_clean(pnode.db)


async def test_concurrent_retries_of_one_refund_apply_once(pnode: Node, api: httpx.AsyncClient,
                                                          sandbox: PaymentSandbox) -> None:
    user_id, invoice_id = await _paid_top_up(pnode, api, sandbox, 10_000)
    _, admin = await make_user(pnode.db, "admin")
    refund = {"invoiceId": invoice_id, "amountTyiyn": 4_000, "reason": "double charge"}
    outcomes: list[tuple[str, ...]] = []

    async def retry() -> None:
        body = await op(api, "RefundTopUp", refund, token=admin, headers={"Idempotency-Key": "same"})
        outcomes.append(tuple(codes(body)) or ("applied" if body["data"]["refundTopUp"]["applied"] else "replayed",))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(retry)
    assert outcomes.count(("applied",)) == 1
    assert set(outcomes) <= {("applied",), ("replayed",), ("IDEMPOTENCY_KEY_IN_PROGRESS",)}
    assert await available(pnode.db, user_id) == 6_000
    await assert_ledger_clean(pnode.db)


def _spend(conn: Conn, user_id: str, amount: int) -> None:
    """A settled charge, as a charging session would leave it (wallet → operator revenue)."""
    wallet = ledger.user_account(conn, user_id)
    ledger.transfer(conn, f"spend:{user_id}", wallet, ledger.system_account(conn, ledger.OPERATOR_REVENUE), amount)
