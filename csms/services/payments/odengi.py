"""The O!Dengi-style payment provider adapter: signed HTTP JSON requests and signed webhooks.

The wire API (the sandbox in ``simulators/payment_provider.py`` implements it):

Requests (JSON bodies, amounts in integer tyiyn) carry ``X-Merchant-Id``, ``X-Timestamp`` (Unix
seconds) and ``X-Signature: v1=<hex HMAC-SHA256(api secret, "timestamp.METHOD.path.body")>``:

- ``POST /api/v1/invoices`` ``{"order_id", "amount", "currency": "KGS", "description", "expires_in",
  "callback_url"}`` → ``{"invoice_id", "order_id", "status", "amount", "qr", "pay_url", "expires_at"}``;
  the same ``order_id`` again returns the same invoice (409 if the amount differs);
- ``GET /api/v1/orders/{order_id}`` → the invoice with ``"payment": {"payment_id", "amount"}`` once paid;
- ``POST /api/v1/orders/{order_id}/cancel`` → the invoice after cancelling (still ``approved`` if paid).

Webhooks are ``POST``\\ ed to the callback URL with ``X-Odengi-Timestamp`` and ``X-Odengi-Signature:
v1=<hex HMAC-SHA256(webhook secret, "timestamp.body")>`` (several comma-separated ``v1=`` values while
the provider rotates secrets) and the body ``{"event_id", "merchant_id", "invoice_id", "order_id",
"status", "payment_id", "amount", "currency", "occurred_at"}``.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import trio

from csms.services.payments import signing
from csms.services.payments.provider import (
    PROVIDER_STATUSES,
    CreatedInvoice,
    InvoiceState,
    PaymentNotice,
    ProviderNotFound,
    ProviderProtocolError,
    ProviderRejected,
    ProviderUnavailable,
    WebhookRejected,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from csms.config_payments import PaymentSettings

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "x-odengi-timestamp"
SIGNATURE_HEADER = "x-odengi-signature"
CURRENCY = "KGS"
MAX_ID_CHARS = 100


class OdengiProvider:
    """The adapter. Open it with :meth:`open` (it owns an ``httpx.AsyncClient``)."""

    name = "odengi"

    def __init__(self, settings: PaymentSettings, client: httpx.AsyncClient) -> None:
        assert settings.merchant_id is not None
        assert settings.api_secret is not None
        self._merchant_id = settings.merchant_id
        self._api_secret = settings.api_secret
        self._webhook_secrets = settings.webhook_secrets
        self._max_age_s = settings.webhook_max_age_s
        self._timeout_s = settings.request_timeout_s
        self._client = client

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: PaymentSettings) -> AsyncIterator[OdengiProvider]:
        """The adapter for ``settings`` with its HTTP client, closed when the block ends."""
        assert settings.odengi_url is not None
        timeout = httpx.Timeout(settings.request_timeout_s, connect=min(5.0, settings.request_timeout_s))
        async with httpx.AsyncClient(base_url=settings.odengi_url, timeout=timeout) as client:
            yield cls(settings, client)

    async def create_invoice(self, order_id: str, amount_tyiyn: int, expires_in_s: int, description: str,
                             callback_url: str | None) -> CreatedInvoice:
        """See :meth:`PaymentProvider.create_invoice`."""
        body: dict[str, Any] = {"order_id": order_id, "amount": amount_tyiyn, "currency": CURRENCY,
                                "description": description, "expires_in": expires_in_s}
        if callback_url is not None:
            body["callback_url"] = callback_url
        answer = await self._call("POST", "/api/v1/invoices", body)
        created = CreatedInvoice(provider_invoice_id=_text(answer, "invoice_id", 200),
                                 qr_payload=_text(answer, "qr", 2000), pay_url=_text(answer, "pay_url", 2000))
        if answer.get("order_id") != order_id or answer.get("amount") != amount_tyiyn:
            raise ProviderProtocolError("the provider answered for another order or amount")
        return created

    async def invoice_state(self, order_id: str) -> InvoiceState:
        """See :meth:`PaymentProvider.invoice_state`."""
        return _state(await self._call("GET", f"/api/v1/orders/{order_id}", None))

    async def cancel_invoice(self, order_id: str) -> InvoiceState:
        """See :meth:`PaymentProvider.cancel_invoice`."""
        return _state(await self._call("POST", f"/api/v1/orders/{order_id}/cancel", {}))

    async def _call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        """One signed request; the provider's answer as a JSON object, errors translated."""
        raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        # The signature covers the whole path the provider sees, base URL prefix included.
        full_path = self._client.base_url.path.rstrip("/") + path
        headers = {"X-Merchant-Id": self._merchant_id, "X-Timestamp": timestamp,
                   "X-Signature": signing.signature_header(self._api_secret,
                                                           signing.request_message(timestamp, method, full_path, raw))}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            # httpx's own timeouts bound each phase; this bounds the whole exchange.
            with trio.fail_after(self._timeout_s + 1):
                response = await self._client.request(method, path, content=raw or None, headers=headers)
        except (httpx.HTTPError, trio.TooSlowError) as exc:
            raise ProviderUnavailable(f"{method} {path}: {type(exc).__name__}") from None
        if response.status_code == 404:
            raise ProviderNotFound(path)
        if response.status_code >= 500:
            raise ProviderUnavailable(f"{method} {path}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise ProviderRejected(f"{method} {path}: HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError:
            raise ProviderProtocolError(f"{method} {path}: not JSON") from None
        if not isinstance(answer, dict):
            raise ProviderProtocolError(f"{method} {path}: not a JSON object")
        return answer

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, now: float) -> PaymentNotice:
        """See :meth:`PaymentProvider.verify_webhook` (header names are lower case)."""
        timestamp = headers.get(TIMESTAMP_HEADER, "")
        if not timestamp.isdigit() or len(timestamp) > 12:
            raise WebhookRejected(400, "missing or malformed timestamp")
        if abs(now - int(timestamp)) > self._max_age_s:
            raise WebhookRejected(401, f"timestamp outside the allowed {self._max_age_s} s")
        if not signing.matches(headers.get(SIGNATURE_HEADER, ""), self._webhook_secrets,
                               signing.webhook_message(timestamp, body)):
            raise WebhookRejected(401, "signature does not match any configured secret")
        try:
            data = json.loads(body)
        except ValueError:
            raise WebhookRejected(400, "body is not JSON") from None
        if not isinstance(data, dict):
            raise WebhookRejected(400, "body is not a JSON object")
        if data.get("merchant_id") != self._merchant_id:
            raise WebhookRejected(400, "webhook for another merchant")
        try:
            state = _state(data)
            event_id = _text(data, "event_id", 200)
            occurred = datetime.fromisoformat(_text(data, "occurred_at", 64))
        except (ProviderProtocolError, ValueError) as exc:
            raise WebhookRejected(400, f"malformed webhook: {exc}") from None
        if data.get("currency", CURRENCY) != CURRENCY:
            raise WebhookRejected(400, "webhook in another currency")
        if occurred.tzinfo is None:
            occurred = occurred.replace(tzinfo=UTC)
        return PaymentNotice(event_id=event_id, occurred_at=occurred, state=state)


def _text(data: Mapping[str, Any], name: str, max_chars: int = MAX_ID_CHARS) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not 1 <= len(value) <= max_chars or not value.isprintable():
        raise ProviderProtocolError(f"field {name!r} is missing or malformed")
    return value


def _amount(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 2**53 - 1:
        raise ProviderProtocolError("amount is not a positive integer of tyiyn")
    return value


def _state(data: Mapping[str, Any]) -> InvoiceState:
    """An invoice state from the provider's invoice document or webhook body."""
    status = data.get("status")
    if status not in PROVIDER_STATUSES:
        raise ProviderProtocolError("unknown invoice status")
    payment = data.get("payment")
    if isinstance(payment, dict):  # the invoice document nests the payment
        payment_id, paid = payment.get("payment_id"), payment.get("amount")
    else:  # a webhook carries it flat
        payment_id, paid = data.get("payment_id"), data.get("amount")
    state = InvoiceState(provider_invoice_id=_text(data, "invoice_id", 200), order_id=_text(data, "order_id"),
                         status=status)
    if status != "approved":
        return state
    if not isinstance(payment_id, str):
        raise ProviderProtocolError("an approved invoice without a payment id")
    return InvoiceState(state.provider_invoice_id, state.order_id, status,
                        _text({"payment_id": payment_id}, "payment_id"), _amount(paid))
