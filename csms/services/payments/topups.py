"""Creating top-up invoices: ``topUp(amountTyiyn)``.

One transaction claims the ``Idempotency-Key``, checks that the account may pay
(``ensure_can_transact``) and stores the invoice in ``creating`` with its expiry (now + the invoice
lifetime, 300 s by default, on the database's clock). Only then is the provider asked for the invoice,
with our invoice id as its order id: the provider returns the same invoice for the same order, so the
call can be repeated safely. A retry with the same key, even after a timeout or a cancelled request,
finds the first invoice and finishes registering it if that had not happened.

If the provider cannot be reached the invoice stays ``creating``: the expiry job closes it and the
reconciler asks the provider about it later, in case the provider did create it.
"""

from __future__ import annotations

import logging
import math
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

import trio

from csms.services import idempotency
from csms.services.accounts import ensure_can_transact
from csms.services.clock import utcnow
from csms.services.payments.crediting import notify_invoice
from csms.services.payments.provider import (
    ProviderProtocolError,
    ProviderRejected,
    ProviderUnavailable,
)
from csms.store import invoices as store

if TYPE_CHECKING:
    from csms.config_payments import PaymentSettings
    from csms.services.payments.provider import CreatedInvoice, PaymentProvider
    from csms.store.db import Conn, Database
    from csms.store.invoices import Invoice

log = logging.getLogger(__name__)

OPERATION = "topUp"
DESCRIPTION = "EV charging wallet top-up"


class TopUpError(Exception):
    """A refused top-up; ``code`` is the API's ``extensions.code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TopUps:
    """Creates top-up invoices. Stateless apart from its collaborators.

    Args:
        provider: the payment provider, or None when payments are not configured.
    """

    def __init__(self, db: Database, provider: PaymentProvider | None, settings: PaymentSettings) -> None:
        self.db = db
        self.provider = provider
        self.settings = settings

    def validate(self, amount_tyiyn: int) -> None:
        """Refuse amounts outside 1 tyiyn .. 100,000 som before any work.

        Raises:
            TopUpError: ``BAD_USER_INPUT``.
        """
        if isinstance(amount_tyiyn, bool) or not isinstance(amount_tyiyn, int) or \
                not 0 < amount_tyiyn <= self.settings.max_amount_tyiyn:
            raise TopUpError("BAD_USER_INPUT",
                             f"amountTyiyn must be between 1 and {self.settings.max_amount_tyiyn} tyiyn.")

    async def create(self, principal: str, user_id: str, amount_tyiyn: int, key: str | None) -> Invoice:
        """Create (or, for a repeated ``key``, find) a top-up invoice and register it with the provider.

        Args:
            principal: the caller's identity for idempotency keys (``user:<id>``...).
            user_id: whose wallet the top-up credits.

        Returns:
            The invoice, ``pending`` with its QR payload when the provider took it.

        Raises:
            TopUpError: ``BAD_USER_INPUT``, ``PAYMENTS_UNAVAILABLE``, ``PAYMENT_PROVIDER_UNAVAILABLE``,
                ``PAYMENT_PROVIDER_REJECTED``, ``IDEMPOTENCY_KEY_REUSED``, ``IDEMPOTENCY_KEY_IN_PROGRESS``.
            csms.services.accounts.AccountError: the account may not pay.
        """
        self.validate(amount_tyiyn)
        if self.provider is None:
            raise TopUpError("PAYMENTS_UNAVAILABLE", "Top-ups are not available on this server.")
        fp = idempotency.fingerprint({"amountTyiyn": amount_tyiyn})
        ttl = timedelta(seconds=self.settings.invoice_ttl_s)
        invoice = await self.db.run(_open_invoice, principal, user_id, amount_tyiyn, key, fp, self.provider.name, ttl)
        if invoice.status == "creating":
            invoice = await self._register(invoice)
        return invoice

    async def _register(self, invoice: Invoice) -> Invoice:
        """Ask the provider for the invoice and store its QR code."""
        assert self.provider is not None
        left_s = (invoice.expires_at - utcnow()).total_seconds()
        if left_s <= 0:
            return invoice  # too late to be paid: the expiry job closes it
        remaining = math.ceil(left_s)
        try:
            created = await self.provider.create_invoice(invoice.id, invoice.amount_tyiyn, remaining, DESCRIPTION,
                                                         self.settings.callback_url)
        except ProviderRejected as exc:
            log.warning("payment provider refused invoice %s: %s", invoice.id, exc)
            with trio.CancelScope(shield=True):
                await self.db.run(_fail, invoice.id, "rejected by the provider")
            raise TopUpError("PAYMENT_PROVIDER_REJECTED", "The payment provider refused this top-up.") from None
        except (ProviderUnavailable, ProviderProtocolError) as exc:
            log.warning("payment provider unavailable for invoice %s: %s", invoice.id, exc)
            raise TopUpError("PAYMENT_PROVIDER_UNAVAILABLE",
                             "The payment provider did not answer; try again with the same Idempotency-Key.") from None
        # Shielded: the provider has the invoice now, so its QR code must be stored even if the client left.
        with trio.CancelScope(shield=True):
            attached = await self.db.run(_attach, invoice.id, created)
        return attached


def _open_invoice(conn: Conn, principal: str, user_id: str, amount_tyiyn: int, key: str | None, fp: bytes,
                  provider: str, ttl: timedelta) -> Invoice:
    if key is not None:
        try:
            stored = idempotency.claim(conn, principal, OPERATION, key, fp)
        except idempotency.IdempotencyError as exc:
            raise TopUpError(exc.code, "This Idempotency-Key was used for another request.") from None
        if stored is not None:
            existing = store.get_invoice(conn, str(stored["invoice_id"]))
            assert existing is not None  # invoices are never deleted
            return existing
    ensure_can_transact(conn, user_id)
    invoice = store.insert_invoice(conn, str(uuid.uuid4()), user_id, provider, amount_tyiyn, ttl)
    notify_invoice(conn, invoice)
    if key is not None:
        idempotency.complete(conn, principal, OPERATION, key, {"invoice_id": invoice.id})
    return invoice


def _attach(conn: Conn, invoice_id: str, created: CreatedInvoice) -> Invoice:
    invoice = store.lock_invoice(conn, invoice_id)
    assert invoice is not None
    changes: dict[str, object] = {"qr_payload": created.qr_payload, "pay_url": created.pay_url}
    if invoice.provider_invoice_id is None:
        changes["provider_invoice_id"] = created.provider_invoice_id
    if invoice.status == "creating":  # it may have expired, or even been paid, meanwhile
        changes["status"] = "pending"
    updated = store.update_invoice(conn, invoice_id, **changes)
    if updated.status != invoice.status:
        notify_invoice(conn, updated)
    return updated


def _fail(conn: Conn, invoice_id: str, reason: str) -> None:
    invoice = store.lock_invoice(conn, invoice_id)
    if invoice is not None and invoice.status == "creating":
        notify_invoice(conn, store.update_invoice(conn, invoice_id, status="failed", failure_reason=reason,
                                                  provider_final=True))
