"""What csms needs from a payment provider, and the errors of that boundary.

A provider creates an invoice for an amount (with a QR payload and a pay link), tells an invoice's state
when asked, cancels an invoice, and notifies us of payments with signed webhooks. ``order_id`` is always
our invoice id: the provider keys its invoices by it, so creating the same order twice (a retry after a
timeout) gives back the same invoice.

Statuses as providers report them: ``pending``, ``approved`` (paid, with a payment id and the amount
actually paid), ``declined`` (a payment attempt failed; the invoice may still be paid), ``cancelled``
and ``expired`` (closed for good).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

ProviderStatus = Literal["pending", "approved", "declined", "cancelled", "expired"]
PROVIDER_STATUSES: tuple[ProviderStatus, ...] = ("pending", "approved", "declined", "cancelled", "expired")
# States after which the provider will report nothing new about an invoice.
FINAL: frozenset[str] = frozenset({"approved", "cancelled", "expired"})


class ProviderError(Exception):
    """Base of the payment provider boundary."""


class ProviderUnavailable(ProviderError):
    """The provider could not be reached, timed out or failed (5xx): the request may be retried."""


class ProviderRejected(ProviderError):
    """The provider refused the request (4xx other than 404); retrying the same request will not help."""


class ProviderNotFound(ProviderError):
    """The provider has no such invoice."""


class ProviderProtocolError(ProviderError):
    """The provider answered something we do not understand."""


class WebhookRejected(ProviderError):
    """A webhook failed a check; ``status`` is the HTTP status to answer and ``reason`` goes to the log.

    ``reason`` never contains a secret, a signature or personal data.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CreatedInvoice:
    """The provider's answer to creating an invoice."""

    provider_invoice_id: str
    qr_payload: str
    pay_url: str


@dataclass(frozen=True, slots=True)
class InvoiceState:
    """An invoice as the provider sees it; ``payment_id`` and ``paid_tyiyn`` are set once approved."""

    provider_invoice_id: str
    order_id: str
    status: ProviderStatus
    payment_id: str | None = None
    paid_tyiyn: int | None = None


@dataclass(frozen=True, slots=True)
class PaymentNotice:
    """A verified webhook: the provider's event id and the invoice's new state."""

    event_id: str
    occurred_at: datetime
    state: InvoiceState


class PaymentProvider(Protocol):
    """A QR payment provider (implemented by ``csms.services.payments.odengi.OdengiProvider``)."""

    name: str

    async def create_invoice(self, order_id: str, amount_tyiyn: int, expires_in_s: int, description: str,
                             callback_url: str | None) -> CreatedInvoice:
        """Create (or, for an order id already used, return) an invoice.

        Raises:
            ProviderUnavailable, ProviderRejected, ProviderProtocolError.
        """
        ...

    async def invoice_state(self, order_id: str) -> InvoiceState:
        """The provider's current state of our invoice ``order_id``.

        Raises:
            ProviderNotFound, ProviderUnavailable, ProviderRejected, ProviderProtocolError.
        """
        ...

    async def cancel_invoice(self, order_id: str) -> InvoiceState:
        """Close an unpaid invoice at the provider; returns its state afterwards (approved if it was paid).

        Raises:
            ProviderNotFound, ProviderUnavailable, ProviderRejected, ProviderProtocolError.
        """
        ...

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, now: float) -> PaymentNotice:
        """Check a webhook's timestamp (within the allowed age of ``now``, Unix seconds), then its
        signature, then parse it.

        Raises:
            WebhookRejected: with the HTTP status to answer.
        """
        ...
