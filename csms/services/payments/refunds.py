"""Operators' refunds of top-ups: money back from the wallet to the provider's clearing account.

A refund is a ledger transfer ``wallet → provider_clearing:<provider>`` of at most what the invoice
credited and has not refunded yet, written with its audit record (who, why, how much), a ``balance``
and an ``invoice`` event, all in one transaction. The payout to the payer happens at the provider
(its merchant cabinet); csms records that the money left the wallet.

An ``Idempotency-Key`` (the shared ``csms.services.idempotency``) makes a retried request return the
first refund instead of refunding twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from csms.services import idempotency
from csms.services.payments.crediting import clearing_account, notify_invoice
from csms.store import audit, events, ledger
from csms.store import invoices as store

if TYPE_CHECKING:
    from csms.store.db import Conn
    from csms.store.invoices import Invoice

OPERATION = "refundTopUp"
MAX_REASON_CHARS = 500


class RefundError(Exception):
    """A refused refund; ``code`` is the API's ``extensions.code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class RefundRequest:
    """Who refunds how much of which invoice, and why."""

    actor_kind: str
    actor_id: str
    invoice_id: str
    amount_tyiyn: int
    reason: str

    @property
    def principal(self) -> str:
        """The identity idempotency keys are scoped to."""
        return f"{self.actor_kind}:{self.actor_id}"

    def validate(self) -> str:
        """The cleaned reason.

        Raises:
            RefundError: ``BAD_USER_INPUT``.
        """
        try:
            uuid.UUID(self.invoice_id)
        except ValueError:
            raise RefundError("BAD_USER_INPUT", "invoiceId is not a valid invoice id.") from None
        if isinstance(self.amount_tyiyn, bool) or not 0 < self.amount_tyiyn <= 10_000_000:
            raise RefundError("BAD_USER_INPUT", "amountTyiyn must be between 1 and 10000000.")
        reason = self.reason.strip()
        if not 1 <= len(reason) <= MAX_REASON_CHARS:
            raise RefundError("BAD_USER_INPUT", f"A reason of 1 to {MAX_REASON_CHARS} characters is required.")
        return reason


@dataclass(frozen=True, slots=True)
class RefundResult:
    """The refund's transfer, whether this call made it (False: an Idempotency-Key replay), the invoice."""

    transfer_id: str
    applied: bool
    invoice: Invoice


def refund_top_up(conn: Conn, request: RefundRequest, key: str | None) -> RefundResult:
    """Refund part or all of a paid top-up (see the module docstring).

    Raises:
        RefundError: ``BAD_USER_INPUT``, ``NOT_FOUND``, ``REFUND_EXCEEDS_PAYMENT``,
            ``INSUFFICIENT_BALANCE``, ``IDEMPOTENCY_KEY_REUSED``, ``IDEMPOTENCY_KEY_IN_PROGRESS``.
    """
    reason = request.validate()
    if key is not None:
        fp = idempotency.fingerprint({"invoiceId": request.invoice_id, "amountTyiyn": request.amount_tyiyn,
                                      "reason": reason})
        try:
            stored = idempotency.claim(conn, request.principal, OPERATION, key, fp)
        except idempotency.IdempotencyError as exc:
            raise RefundError(exc.code, "This Idempotency-Key was used for another request.") from None
        if stored is not None:
            invoice = store.get_invoice(conn, request.invoice_id)
            assert invoice is not None
            return RefundResult(str(stored["transfer_id"]), False, invoice)
    invoice = store.lock_invoice(conn, request.invoice_id)
    if invoice is None:
        raise RefundError("NOT_FOUND", "No such invoice.")
    refundable = invoice.credited_tyiyn - invoice.refunded_tyiyn
    if request.amount_tyiyn > refundable:
        raise RefundError("REFUND_EXCEEDS_PAYMENT", f"At most {refundable} tyiyn of this top-up can be refunded.")
    transfer_id = f"refund:{invoice.id}:{uuid.uuid4()}"
    try:
        ledger.transfer(conn, transfer_id, ledger.user_account(conn, invoice.user_id),
                        clearing_account(conn, invoice.provider), request.amount_tyiyn, reason=reason,
                        metadata={"invoice_id": invoice.id, "actor_kind": request.actor_kind,
                                  "actor_id": request.actor_id})
    except ledger.InsufficientFunds:
        raise RefundError("INSUFFICIENT_BALANCE", "The wallet does not have that much available.") from None
    updated = store.update_invoice(conn, invoice.id, refunded_tyiyn=invoice.refunded_tyiyn + request.amount_tyiyn)
    audit.record(conn, actor_kind=request.actor_kind, actor_id=request.actor_id, action="payments.refund",
                 target=invoice.user_id, detail={"invoice_id": invoice.id, "transfer_id": transfer_id,
                                                 "amount_tyiyn": request.amount_tyiyn, "reason": reason})
    events.notify(conn, "balance", user_id=invoice.user_id)
    notify_invoice(conn, updated)
    if key is not None:
        idempotency.complete(conn, request.principal, OPERATION, key, {"transfer_id": transfer_id})
    return RefundResult(transfer_id, True, updated)
