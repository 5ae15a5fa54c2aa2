"""The sandbox provider as a developer and the adapter see it: signed merchant API, pay page, CLI."""

from __future__ import annotations

import socket
import time
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING

import httpx
import pytest
import trio

from csms.services.payments.odengi import OdengiProvider
from csms.services.payments.provider import (
    ProviderNotFound,
    ProviderRejected,
    ProviderUnavailable,
)
from simulators.payment_provider import main
from tests.payments.conftest import payment_settings

if TYPE_CHECKING:
    from simulators.payment_provider import PaymentSandbox


async def test_the_adapter_against_the_sandbox(sandbox: PaymentSandbox) -> None:
    order = str(uuid.uuid4())
    async with OdengiProvider.open(payment_settings(sandbox)) as provider:
        created = await provider.create_invoice(order, 12_345, 300, "top-up", "http://127.0.0.1:1/hook")
        again = await provider.create_invoice(order, 12_345, 300, "top-up", None)
        assert again == created  # the same order is the same invoice
        with pytest.raises(ProviderRejected):
            await provider.create_invoice(order, 99, 300, "top-up", None)
        state = await provider.invoice_state(order)
        assert (state.status, state.order_id, state.provider_invoice_id) == ("pending", order, created.provider_invoice_id)
        with pytest.raises(ProviderNotFound):
            await provider.invoice_state(str(uuid.uuid4()))
        assert (await provider.cancel_invoice(order)).status == "cancelled"
        paid_order = str(uuid.uuid4())
        await provider.create_invoice(paid_order, 500, 300, "top-up", None)
        sandbox.approve(paid_order, amount=400)
        paid = await provider.cancel_invoice(paid_order)  # too late: it stays approved
        assert (paid.status, paid.paid_tyiyn, paid.payment_id) == ("approved", 400, sandbox.find(paid_order).payment_id)
    wrong = replace(payment_settings(sandbox), api_secret="another-api-secret-0123456789abcdef")
    async with OdengiProvider.open(wrong) as provider:
        with pytest.raises(ProviderRejected):  # 401: our signature is checked
            await provider.invoice_state(order)


async def test_slow_or_unreachable_provider_is_unavailable(sandbox: PaymentSandbox) -> None:
    sandbox.faults.slow_s = 1.0
    async with OdengiProvider.open(payment_settings(sandbox, request_timeout_s=0.2)) as provider:
        with pytest.raises(ProviderUnavailable):
            await provider.invoice_state(str(uuid.uuid4()))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    async with OdengiProvider.open(replace(payment_settings(sandbox), odengi_url=f"http://127.0.0.1:{closed_port}")) as p:
        with pytest.raises(ProviderUnavailable):
            await p.invoice_state(str(uuid.uuid4()))


async def test_merchant_api_refuses_unsigned_requests(sandbox: PaymentSandbox) -> None:
    async with httpx.AsyncClient(base_url=str(sandbox.url), timeout=5) as http:
        body = b'{"order_id":"o-1","amount":100}'
        assert (await http.post("/api/v1/invoices", content=body)).status_code == 401
        stale = {"X-Merchant-Id": sandbox.merchant_id, "X-Timestamp": str(int(time.time()) - 3600),
                 "X-Signature": "v1=00"}
        assert (await http.post("/api/v1/invoices", content=body, headers=stale)).status_code == 401
    assert sandbox.invoices == {}


async def test_pay_page_qr_and_cli(sandbox: PaymentSandbox) -> None:
    order = str(uuid.uuid4())
    async with OdengiProvider.open(payment_settings(sandbox)) as provider:
        created = await provider.create_invoice(order, 250_000, 300, "EV charging wallet top-up", None)
    async with httpx.AsyncClient(timeout=5, follow_redirects=False) as http:
        page = await http.get(created.pay_url)
        assert "Pay 2500.00 KGS" in page.text and "EV charging wallet top-up" in page.text
        qr = await http.get(f"{created.pay_url}/qr.svg")
        assert qr.headers["content-type"] == "image/svg+xml" and b"<svg" in qr.content
        # The page's Decline button: a form post that comes back to the page.
        declined = await http.post(f"{sandbox.url}/sandbox/invoices/{created.provider_invoice_id}/decline",
                                   content=b"", headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert (declined.status_code, declined.headers["location"]) == (303, f"/pay/{created.provider_invoice_id}")
    # The command line, as a developer runs it against a running sandbox.
    assert await trio.to_thread.run_sync(main, ["approve", order, "--url", str(sandbox.url)]) == 0
    assert sandbox.find(order).status == "approved"
    assert await trio.to_thread.run_sync(main, ["decline", order, "--url", str(sandbox.url)]) == 1  # already paid
    assert await trio.to_thread.run_sync(main, ["list", "--url", str(sandbox.url)]) == 0
