"""The one place where a payment provider's word about an invoice changes money and invoice status.

Webhooks and the reconciler both call :func:`apply_state` inside one transaction, under the invoice's
row lock, so they serialise with each other and with the expiry job.

Rules:

- ``approved`` credits the wallet with the amount actually paid, from ``provider_clearing:<provider>``,
  with the transfer id ``topup:<provider>:<payment id>``. The ledger refuses a transfer id twice, so a
  payment credits exactly once however often and in whatever order it is reported.
- A payment is credited whatever the invoice's state: approved after our expiry job closed the invoice
  (the QR was paid at the last second and the news came late), after a cancellation, or a second
  payment of a paid invoice. The money was taken from the payer, so it must not be lost. Such cases,
  and an amount that differs from the invoice, are flagged on the invoice and recorded as anomalies
  for operators.
- ``declined``, ``cancelled`` and ``expired`` only close an invoice that is still open. They never
  touch a paid invoice: a decline delivered after the approval (out of order) changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from csms.services.clock import utcnow
from csms.services.payments.provider import FINAL
from csms.store import events, ledger
from csms.store import invoices as store

if TYPE_CHECKING:
    from csms.services.payments.provider import InvoiceState
    from csms.store.db import Conn
    from csms.store.invoices import Invoice

log = logging.getLogger(__name__)

# Our status for an open invoice the provider closed.
_CLOSED_AS = {"declined": "declined", "cancelled": "cancelled", "expired": "expired"}


class UnknownInvoice(LookupError):
    """No invoice of this provider has this order id."""


class InvoiceMismatch(ValueError):
    """The provider's invoice id differs from the one it gave us for this order."""


@dataclass(frozen=True, slots=True)
class Applied:
    """What :func:`apply_state` did: ``credited``, ``already_credited``, ``status`` (changed) or ``ignored``."""

    invoice: Invoice
    outcome: str
    credited_tyiyn: int = 0


def credit_transfer_id(provider: str, payment_id: str) -> str:
    """The ledger transfer id of a payment's credit."""
    return f"topup:{provider}:{payment_id}"


def clearing_account(conn: Conn, provider: str) -> int:
    """The provider's clearing account (what it owes us for top-ups), created on first use."""
    return ledger.system_account(conn, f"provider_clearing:{provider}", "provider_clearing")


def notify_invoice(conn: Conn, invoice: Invoice) -> None:
    """Publish the ``invoice`` event for a changed invoice."""
    # amount_tyiyn lets web push say how much was credited ("payment confirmed").
    events.notify(conn, "invoice", invoice_id=invoice.id, user_id=invoice.user_id, status=invoice.status,
                  amount_tyiyn=invoice.credited_tyiyn)


def apply_state(conn: Conn, provider: str, state: InvoiceState) -> Applied:
    """Bring our invoice ``state.order_id`` in line with the provider's ``state``.

    Raises:
        UnknownInvoice: no such invoice for this provider (nothing changed).
        InvoiceMismatch: the provider's invoice id contradicts what it told us before (nothing changed).
    """
    invoice = store.lock_invoice(conn, state.order_id)
    if invoice is None or invoice.provider != provider:
        raise UnknownInvoice(state.order_id)
    if invoice.provider_invoice_id is not None and invoice.provider_invoice_id != state.provider_invoice_id:
        raise InvoiceMismatch(state.order_id)
    if state.status == "approved":
        return _credit(conn, provider, invoice, state)
    changes: dict[str, object] = {}
    if invoice.provider_invoice_id is None:
        changes["provider_invoice_id"] = state.provider_invoice_id
    if state.status in FINAL and not invoice.provider_final:
        changes["provider_final"] = True
    new_status = _CLOSED_AS.get(state.status)
    closes = new_status is not None and (invoice.status in store.OPEN or
                                         (invoice.status == "declined" and new_status != "declined"))
    if closes:
        changes["status"] = new_status
    if not changes:
        return Applied(invoice, "ignored")
    updated = store.update_invoice(conn, invoice.id, **changes)
    if closes:
        notify_invoice(conn, updated)
    return Applied(updated, "status" if closes else "ignored")


def _credit(conn: Conn, provider: str, invoice: Invoice, state: InvoiceState) -> Applied:
    # Approved states always carry both.
    assert state.payment_id is not None
    assert state.paid_tyiyn is not None
    wallet = ledger.user_account(conn, invoice.user_id)
    transfer_id = credit_transfer_id(provider, state.payment_id)
    amount = state.paid_tyiyn
    applied = ledger.transfer(conn, transfer_id, clearing_account(conn, provider), wallet, amount,
                              reason="top-up", metadata={"invoice_id": invoice.id, "payment_id": state.payment_id})
    if not applied:
        if not invoice.provider_final:
            invoice = store.update_invoice(conn, invoice.id, provider_final=True)
        return Applied(invoice, "already_credited")
    flags = set(invoice.flags)
    found: dict[str, dict[str, object]] = {}
    if invoice.status == "expired":
        found["paid_after_expiry"] = {"expired_at": invoice.expires_at.isoformat()}
    elif invoice.status in ("cancelled", "failed"):
        found["paid_after_cancel"] = {"status": invoice.status}
    elif invoice.status == "paid":
        found["duplicate_payment"] = {"first_payment_id": invoice.payment_id}
    if amount != invoice.amount_tyiyn:
        found["amount_mismatch"] = {"invoice_tyiyn": invoice.amount_tyiyn}
    for kind, detail in found.items():
        flags.add(kind)
        store.record_anomaly(conn, provider, invoice.id, kind,
                             {**detail, "payment_id": state.payment_id, "paid_tyiyn": amount})
    updated = store.update_invoice(
        conn, invoice.id, status="paid", payment_id=invoice.payment_id or state.payment_id,
        credited_tyiyn=invoice.credited_tyiyn + amount, flags=sorted(flags), provider_final=True,
        paid_at=invoice.paid_at or utcnow(),
        provider_invoice_id=invoice.provider_invoice_id or state.provider_invoice_id)
    events.notify(conn, "balance", user_id=invoice.user_id)
    notify_invoice(conn, updated)
    if found:
        log.warning("top-up %s credited with anomalies: %s", invoice.id, ", ".join(sorted(found)))
    return Applied(updated, "credited", amount)
