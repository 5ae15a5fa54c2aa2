"""The sandbox payment provider's state: invoices, payment decisions, fault switches and signed webhooks.

The HTTP server and the command line around it are in ``simulators.payment_provider``. Like every
simulator, it never imports csms, so it catches csms's mistakes instead of sharing them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import trio

if TYPE_CHECKING:
    from collections.abc import Mapping

MAX_AGE_S = 300
MAX_AMOUNT = 10_000_000


def _sign(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


@dataclass
class Faults:
    """Fault injection. ``corrupt`` is ``signature``, ``body`` or ``timestamp`` (stale), or None."""

    duplicate: bool = False  # deliver every webhook twice (same event id)
    delay_s: float = 0.0  # wait this long before each delivery
    hold: bool = False  # keep webhooks until release()
    reorder: bool = False  # deliver webhooks in pairs, the newer first
    drop: bool = False  # never deliver (a lost webhook)
    corrupt: str | None = None
    slow_s: float = 0.0  # the merchant API answers this late


@dataclass
class SandboxInvoice:
    """An invoice at the sandbox provider (times are Unix seconds)."""

    invoice_id: str
    order_id: str
    amount: int
    description: str
    callback_url: str | None
    expires_at: float
    status: str = "pending"
    payment_id: str | None = None
    paid_amount: int | None = None

    def document(self, pay_url: str) -> dict[str, Any]:
        """The invoice as the merchant API returns it."""
        if self.status in ("pending", "declined") and time.time() > self.expires_at:
            self.status = "expired"
        payment = {"payment_id": self.payment_id, "amount": self.paid_amount} if self.payment_id else None
        return {"invoice_id": self.invoice_id, "order_id": self.order_id, "status": self.status,
                "amount": self.amount, "currency": "KGS", "qr": pay_url, "pay_url": pay_url,
                "expires_at": _iso(self.expires_at), "payment": payment}


@dataclass
class Delivery:
    """One webhook delivery attempt: ``http_status`` None means a network error or a dropped webhook."""

    event_id: str
    order_id: str
    status: str
    attempt: int
    http_status: int | None
    dropped: bool = False


class SandboxError(Exception):
    """A sandbox control refused (unknown invoice, wrong state)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class PaymentSandbox:
    """The sandbox provider: state, operations, webhook sender and HTTP app."""

    merchant_id: str
    api_secret: str
    webhook_secret: str
    webhook_url: str | None = None
    retries: int = 2
    retry_backoff_s: float = 0.2
    faults: Faults = field(default_factory=Faults)
    url: str | None = None
    invoices: dict[str, SandboxInvoice] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    api_requests: int = 0

    def __post_init__(self) -> None:
        self._by_order: dict[str, str] = {}
        self._outbox, self._inbox = trio.open_memory_channel[dict[str, Any]](1000)
        self._held: list[dict[str, Any]] = []

    # --- operations --------------------------------------------------------------------------------

    def find(self, ref: str) -> SandboxInvoice:
        """An invoice by its invoice id or its order id."""
        invoice = self.invoices.get(ref) or self.invoices.get(self._by_order.get(ref, ""))
        if invoice is None:
            raise SandboxError(404, "no such invoice")
        invoice.document(self.pay_url(invoice))  # refresh the expiry
        return invoice

    def pay_url(self, invoice: SandboxInvoice) -> str:
        """The payer's link, also the QR payload."""
        return f"{self.url}/pay/{invoice.invoice_id}"

    def create(self, body: dict[str, Any]) -> SandboxInvoice:
        """Create an invoice, or return the one with the same order id."""
        order_id, amount = body.get("order_id"), body.get("amount")
        if not isinstance(order_id, str) or not 1 <= len(order_id) <= 100:
            raise SandboxError(400, "order_id is required")
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
            raise SandboxError(400, f"amount must be 1..{MAX_AMOUNT} tyiyn")
        if order_id in self._by_order:
            existing = self.invoices[self._by_order[order_id]]
            if existing.amount != amount:
                raise SandboxError(409, "order_id already used with another amount")
            return existing
        expires_in = body.get("expires_in", 300)
        if not isinstance(expires_in, int) or not 1 <= expires_in <= 86_400:
            raise SandboxError(400, "expires_in must be 1..86400 seconds")
        invoice = SandboxInvoice(f"inv_{secrets.token_hex(8)}", order_id, amount, str(body.get("description", "")),
                                 body.get("callback_url") or self.webhook_url, time.time() + expires_in)
        self.invoices[invoice.invoice_id] = invoice
        self._by_order[order_id] = invoice.invoice_id
        return invoice

    def approve(self, ref: str, amount: int | None = None, *, force: bool = False) -> SandboxInvoice:
        """The payer pays (``amount`` defaults to the invoice's); ``force`` pays an expired or paid invoice."""
        invoice = self.find(ref)
        if invoice.status not in ("pending", "declined") and not force:
            raise SandboxError(409, f"invoice is {invoice.status}")
        invoice.status = "approved"
        invoice.payment_id = f"pay_{secrets.token_hex(8)}"
        invoice.paid_amount = amount if amount is not None else invoice.amount
        self._emit(invoice)
        return invoice

    def decline(self, ref: str) -> SandboxInvoice:
        """A payment attempt fails (the invoice can still be paid)."""
        invoice = self.find(ref)
        if invoice.status not in ("pending", "declined"):
            raise SandboxError(409, f"invoice is {invoice.status}")
        invoice.status = "declined"
        self._emit(invoice)
        return invoice

    def cancel(self, ref: str) -> SandboxInvoice:
        """Close an unpaid invoice (a paid one stays approved)."""
        invoice = self.find(ref)
        if invoice.status in ("pending", "declined"):
            invoice.status = "cancelled"
            self._emit(invoice)
        return invoice

    def release(self, *, reverse: bool = False) -> int:
        """Send the webhooks held back by ``faults.hold`` (newest first with ``reverse``); returns how many."""
        held, self._held = self._held, []
        for event in reversed(held) if reverse else held:
            self._outbox.send_nowait(event)
        return len(held)

    def _emit(self, invoice: SandboxInvoice) -> None:
        event = {"event_id": f"evt_{secrets.token_hex(10)}", "merchant_id": self.merchant_id,
                 "invoice_id": invoice.invoice_id, "order_id": invoice.order_id, "status": invoice.status,
                 "payment_id": invoice.payment_id if invoice.status == "approved" else None,
                 "amount": invoice.paid_amount if invoice.status == "approved" else invoice.amount,
                 "currency": "KGS", "occurred_at": _iso(time.time()), "_url": invoice.callback_url}
        if self.faults.hold or self.faults.reorder:
            self._held.append(event)
            if not self.faults.hold and len(self._held) >= 2:
                self.release(reverse=True)
            return
        self._outbox.send_nowait(event)

    # --- webhooks ----------------------------------------------------------------------------------

    def signed(self, event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        """The body and headers of a webhook for ``event``, corrupted as ``faults.corrupt`` says."""
        body = json.dumps({k: v for k, v in event.items() if not k.startswith("_")}, separators=(",", ":")).encode()
        stamp = str(int(time.time()) - (3600 if self.faults.corrupt == "timestamp" else 0))
        secret = "wrong-" + self.webhook_secret if self.faults.corrupt == "signature" else self.webhook_secret
        headers = {"Content-Type": "application/json", "X-Odengi-Timestamp": stamp,
                   "X-Odengi-Signature": f"v1={_sign(secret, stamp.encode() + b'.' + body)}"}
        if self.faults.corrupt == "body":
            body = body.replace(b'"currency"', b'"currency" ', 1)  # one byte more: the signature breaks
        return body, headers

    async def _deliver(self, client: httpx.AsyncClient, event: dict[str, Any]) -> None:
        url = event.get("_url")
        if self.faults.drop or not url:
            self.deliveries.append(Delivery(event["event_id"], event["order_id"], event["status"], 0, None, True))
            return
        for attempt in range(1, self.retries + 2):
            body, headers = self.signed(event)
            try:
                response = await client.post(url, content=body, headers=headers)
                status: int | None = response.status_code
            except httpx.HTTPError:
                status = None
            self.deliveries.append(Delivery(event["event_id"], event["order_id"], event["status"], attempt, status))
            # Retried: network errors, 429 and 5xx. Anything else is an answer (409: the merchant already
            # has this event; other 4xx: it refused it, and the same webhook would be refused again).
            if status is not None and status < 500 and status != 429:
                return
            await trio.sleep(self.retry_backoff_s * attempt)

    async def run_sender(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver queued webhooks in order, one at a time, until cancelled."""
        # A fresh connection per webhook, as providers usually do: an idle keep-alive connection would also
        # hold up the merchant server's graceful shutdown.
        async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as client:
            task_status.started()
            async for event in self._inbox:
                if self.faults.delay_s:
                    await trio.sleep(self.faults.delay_s)
                for _ in range(2 if self.faults.duplicate else 1):
                    await self._deliver(client, event)

    def check_merchant_request(self, headers: Mapping[str, str], method: str, path: str, body: bytes) -> str | None:
        """Why a merchant API request fails authentication, or None (the signature is compared in constant time).

        ``headers`` have lower-case names.
        """
        stamp = headers.get("x-timestamp", "")
        if headers.get("x-merchant-id") != self.merchant_id:
            return "unknown merchant"
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > MAX_AGE_S:
            return "stale or missing timestamp"
        expected = f"v1={_sign(self.api_secret, f'{stamp}.{method}.{path}.'.encode() + body)}".encode()
        if not hmac.compare_digest(expected, headers.get("x-signature", "").encode()):
            return "bad signature"
        return None
