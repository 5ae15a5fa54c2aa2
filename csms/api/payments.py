"""The payments area of the API: QR top-ups (drivers), invoices, anomalies and refunds (admins).

Who sees what: ``topUp`` and ``myInvoices`` are the caller's own; ``invoice(id)`` is for the invoice's
owner and admins (null for anyone else), and so is the ``invoiceUpdated(id)`` subscription (FORBIDDEN
for anyone else); ``invoices``, ``paymentAnomalies`` and ``refundTopUp`` are for admins.

``topUp`` and ``refundTopUp`` accept an ``Idempotency-Key`` header (``csms.api.idempotency_keys``).

Error codes (``extensions.code``): ``BAD_USER_INPUT``, ``NOT_FOUND``, ``FORBIDDEN``,
``UNAUTHENTICATED``, ``ACCOUNT_BLOCKED``, ``ACCOUNT_PENDING_DELETION``, ``PAYMENTS_UNAVAILABLE`` (no
provider configured), ``PAYMENT_PROVIDER_UNAVAILABLE`` (try again with the same key),
``PAYMENT_PROVIDER_REJECTED``, ``REFUND_EXCEEDS_PAYMENT``, ``INSUFFICIENT_BALANCE``,
``IDEMPOTENCY_KEY_REUSED``, ``IDEMPOTENCY_KEY_IN_PROGRESS``, ``RATE_LIMITED``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator  # noqa: TC003 (strawberry resolves annotations at runtime)
from typing import TYPE_CHECKING

import strawberry
from strawberry import Info

from csms.api.access import ADMIN, LOGGED_IN
from csms.api.auth_errors import account_errors
from csms.api.context import ApiContext  # noqa: TC001 (strawberry reads resolver annotations at runtime)
from csms.api.errors import ApiError, BadUserInput, DomainError, Forbidden, NotFound
from csms.api.idempotency_keys import idempotency_key
from csms.api.payment_types import (
    DEFAULT_PAGE,
    Invoice,
    InvoiceConnection,
    InvoiceStatus,
    PaymentAnomaly,
    PaymentAnomalyConnection,
    check_page_size,
    decode_invoice_cursor,
)
from csms.api.scalars import Long  # noqa: TC001
from csms.api.types import PageInfo
from csms.services.payments.refunds import RefundError, RefundRequest, refund_top_up
from csms.services.payments.topups import TopUpError
from csms.store import invoices as store

if TYPE_CHECKING:
    from csms.services.payments.service import Payments
    from csms.store.invoices import Invoice as InvoiceRow

_PLAIN: dict[str, type[ApiError]] = {"BAD_USER_INPUT": BadUserInput, "NOT_FOUND": NotFound}


def _error(code: str, message: str) -> ApiError:
    plain = _PLAIN.get(code)
    return plain(message) if plain is not None else DomainError(code, message)


def _payments(info: Info[ApiContext, None]) -> Payments | None:
    payments: Payments | None = info.context.require_services().extra.get("payments")
    return payments


def _uuid(raw: str, name: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise BadUserInput(f"{name} is not a valid id.") from None


# Resolvers are plain typed functions passed as resolver=: strawberry's decorator form is untyped.
async def resolve_top_up(info: Info[ApiContext, None], amount_tyiyn: Long) -> Invoice:
    """Create a top-up invoice for the caller's wallet and return it with its QR code."""
    principal = info.context.require()
    if principal.user_id is None:
        raise Forbidden("Top-ups are for user accounts (not API keys).")
    key = idempotency_key(info.context)
    payments = _payments(info)
    if payments is None:
        raise DomainError("PAYMENTS_UNAVAILABLE", "Top-ups are not available on this server.")
    try:
        with account_errors():
            invoice = await payments.top_ups.create(f"{principal.kind}:{principal.subject}", principal.user_id,
                                                    amount_tyiyn, key)
    except TopUpError as exc:
        raise _error(exc.code, exc.message) from None
    return Invoice.from_row(invoice)


async def resolve_invoice(info: Info[ApiContext, None], id: strawberry.ID) -> Invoice | None:
    """One invoice, for its owner and admins; null for anyone else or when unknown."""
    principal = info.context.require()
    row = await info.context.db.run(store.get_invoice, _uuid(id, "id"))
    if row is None or not (principal.is_admin or row.user_id == principal.user_id):
        return None
    return Invoice.from_row(row)


async def resolve_my_invoices(info: Info[ApiContext, None], first: int | None = DEFAULT_PAGE,
                              after: str | None = None) -> InvoiceConnection:
    """The caller's invoices, newest first."""
    principal = info.context.require()
    if principal.user_id is None:
        raise Forbidden("Only user accounts have invoices of their own.")
    return await _list(info, store.InvoiceFilter(user_id=principal.user_id), first, after)


@strawberry.input(description="Which invoices to list; every field is optional.")
class InvoiceFilter:
    status: InvoiceStatus | None = None
    user_id: strawberry.ID | None = None
    flagged: bool | None = strawberry.field(default=None, description="true: only invoices with anomaly flags.")


async def resolve_invoices(info: Info[ApiContext, None], filter: InvoiceFilter | None = None,
                           first: int | None = DEFAULT_PAGE, after: str | None = None) -> InvoiceConnection:
    """Every user's invoices, newest first, filtered (admins)."""
    f = filter or InvoiceFilter()
    where = store.InvoiceFilter(user_id=_uuid(f.user_id, "userId") if f.user_id is not None else None,
                                status=str(f.status.value) if f.status is not None else None, flagged=f.flagged)
    return await _list(info, where, first, after)


async def _list(info: Info[ApiContext, None], where: store.InvoiceFilter, first: int | None,
                after: str | None) -> InvoiceConnection:
    size = check_page_size(first)
    position = decode_invoice_cursor(after) if after is not None else None
    return InvoiceConnection.from_page(await info.context.db.run(store.list_invoices, where, size, position))


async def resolve_payment_anomalies(info: Info[ApiContext, None], first: int | None = DEFAULT_PAGE,
                                    after: str | None = None) -> PaymentAnomalyConnection:
    """Payment anomalies, newest first (admins). ``after`` is the last anomaly id of the previous page."""
    size = check_page_size(first)
    before: int | None = None
    if after is not None:
        if not after.isdigit():
            raise BadUserInput("Malformed cursor.")
        before = int(after)
    rows, more = await info.context.db.run(store.list_anomalies, size, before)
    items = [PaymentAnomaly.from_row(row) for row in rows]
    return PaymentAnomalyConnection(items=items, page_info=PageInfo(has_next_page=more,
                                                                    end_cursor=str(rows[-1].id) if rows else None))


@strawberry.type(description="The outcome of refundTopUp.")
class RefundPayload:
    transfer_id: str = strawberry.field(description="The ledger transfer that carries the refund.")
    applied: bool = strawberry.field(
        description="False when this Idempotency-Key was already used for this refund: nothing changed this time.")
    invoice: Invoice = strawberry.field(description="The invoice after the refund.")


async def resolve_refund_top_up(info: Info[ApiContext, None], invoice_id: strawberry.ID, amount_tyiyn: Long,
                                reason: str) -> RefundPayload:
    """Move money of a paid top-up back from the wallet to the provider's clearing account (admins)."""
    principal = info.context.require()
    kind, actor = principal.audit_actor
    request = RefundRequest(kind, actor, str(invoice_id), amount_tyiyn, reason)
    key = idempotency_key(info.context)
    try:
        result = await info.context.db.run(refund_top_up, request, key)
    except RefundError as exc:
        raise _error(exc.code, exc.message) from None
    return RefundPayload(transfer_id=result.transfer_id, applied=result.applied,
                         invoice=Invoice.from_row(result.invoice))


async def invoice_updated(info: Info[ApiContext, None], id: strawberry.ID) -> AsyncGenerator[Invoice, None]:
    """The invoice now, then after every change (NOT_FOUND if unknown, FORBIDDEN if not the caller's)."""
    hub = info.context.require_services().events
    if hub is None:
        raise RuntimeError("live updates need the events service")
    principal, db = info.context.require(), info.context.db
    try:
        invoice_id = str(uuid.UUID(str(id)))
    except ValueError:
        raise NotFound("No such invoice.") from None

    async def current(seq: int) -> InvoiceRow | None:
        return await hub.load("invoice", invoice_id, seq, lambda: db.run(store.get_invoice, invoice_id))

    with hub.subscribe(("invoice", invoice_id)) as sub:
        row = await current(sub.start_seq)
        if row is None:
            raise NotFound("No such invoice.")
        if not (principal.is_admin or row.user_id == principal.user_id):
            raise Forbidden("This invoice is not yours.")
        last = row
        yield Invoice.from_row(row)
        async for event in sub:
            row = await current(event.seq)
            if row is not None and row != last:  # coalesced or repeated events may show nothing new
                last = row
                yield Invoice.from_row(row)


@strawberry.type
class PaymentQuery:
    invoice: Invoice | None = strawberry.field(
        resolver=resolve_invoice, permission_classes=LOGGED_IN,
        description="One top-up invoice: its owner and admins may see it; null for anyone else.")
    my_invoices: InvoiceConnection = strawberry.field(
        resolver=resolve_my_invoices, permission_classes=LOGGED_IN,
        description="The caller's top-up invoices, newest first. `first` is 1 to 100.")
    invoices: InvoiceConnection = strawberry.field(
        resolver=resolve_invoices, permission_classes=ADMIN,
        description="All top-up invoices, newest first, by status, user or anomaly flag (admins).")
    payment_anomalies: PaymentAnomalyConnection = strawberry.field(
        resolver=resolve_payment_anomalies, permission_classes=ADMIN,
        description="Payments that need an operator's eye, newest first (admins).")


@strawberry.type
class PaymentMutation:
    top_up: Invoice = strawberry.field(
        resolver=resolve_top_up, permission_classes=LOGGED_IN,
        description="Top up the caller's wallet by QR code: 1 to 10,000,000 tyiyn (100,000 som). Returns a "
        "pending invoice whose QR code (qrSvg, qrPayload, payUrl) can be paid until expiresAt (300 s); the wallet "
        "is credited when the payment provider confirms. Accepts an Idempotency-Key header.")
    refund_top_up: RefundPayload = strawberry.field(
        resolver=resolve_refund_top_up, permission_classes=ADMIN,
        description="Refund up to what a top-up credited, with a reason (1-500 characters), recorded in the "
        "audit log (admins). Accepts an Idempotency-Key header.")


@strawberry.type
class PaymentSubscription:
    # The field type comes from the resolver's AsyncGenerator annotation.
    invoice_updated = strawberry.subscription(
        resolver=invoice_updated, permission_classes=LOGGED_IN,
        description="A top-up invoice: first as it is now, then after every change (e.g. PENDING → PAID). "
        "Its owner and admins may watch it.")


QUERIES: list[type] = [PaymentQuery]
MUTATIONS: list[type] = [PaymentMutation]
SUBSCRIPTIONS: list[type] = [PaymentSubscription]
