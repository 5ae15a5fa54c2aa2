"""GraphQL types of top-ups: ``Invoice`` (with its QR code as SVG), connections and payment anomalies.

Money is integer tyiyn (``Long``). The QR code is rendered from the provider's payload when a client
asks for ``qrSvg``, with segno, so nothing large is stored.
"""

from __future__ import annotations

import base64
import binascii
import enum
import io
import json
import uuid
from datetime import datetime  # also used at runtime (cursor parsing and strawberry annotations)
from typing import TYPE_CHECKING

import segno
import strawberry

from csms.api.errors import BadUserInput
from csms.api.scalars import Long  # noqa: TC001
from csms.api.types import PageInfo

if TYPE_CHECKING:
    from csms.store.invoices import Anomaly, InvoicePage
    from csms.store.invoices import Invoice as InvoiceRow

_CURSOR_TAG = "inv:"
MAX_PAGE = 100
DEFAULT_PAGE = 20


@strawberry.enum(description="Where a top-up invoice stands.")
class InvoiceStatus(enum.Enum):
    CREATING = strawberry.enum_value("creating", description="Being registered with the payment provider.")
    PENDING = strawberry.enum_value("pending", description="The QR code can be paid until expiresAt.")
    PAID = strawberry.enum_value("paid", description="Paid and credited to the wallet (see creditedTyiyn).")
    DECLINED = strawberry.enum_value("declined", description="A payment attempt was declined.")
    CANCELLED = strawberry.enum_value("cancelled", description="Cancelled at the payment provider.")
    EXPIRED = strawberry.enum_value("expired", description="Not paid in time. A late payment is still credited.")
    FAILED = strawberry.enum_value("failed", description="The payment provider refused to create it.")


def render_qr_svg(payload: str) -> str:
    """The QR code of ``payload`` as a standalone SVG document (error correction M, 4-module border)."""
    out = io.BytesIO()
    segno.make_qr(payload, error="m").save(out, kind="svg", scale=4, border=4, xmldecl=False, svgns=True)
    return out.getvalue().decode("utf-8")


def resolve_qr_svg(root: Invoice) -> str | None:
    """The invoice's QR code as SVG, while it can still be paid (null afterwards or without a payload)."""
    if root.qr_payload is None or root.status not in (InvoiceStatus.PENDING, InvoiceStatus.DECLINED):
        return None
    return render_qr_svg(root.qr_payload)


@strawberry.type(description="A wallet top-up by QR code. Money in tyiyn (1 som = 100 tyiyn).")
class Invoice:
    id: strawberry.ID
    user_id: strawberry.ID
    amount_tyiyn: Long = strawberry.field(description="The amount asked for.")
    status: InvoiceStatus
    credited_tyiyn: Long = strawberry.field(description="What payments of this invoice credited to the wallet.")
    refunded_tyiyn: Long = strawberry.field(description="What operators refunded of it.")
    qr_payload: str | None = strawberry.field(description="The text inside the QR code (the provider's pay link).")
    pay_url: str | None = strawberry.field(description="Open this link on the phone to pay without scanning.")
    qr_svg: str | None = strawberry.field(resolver=resolve_qr_svg,
                                          description="The QR code as an SVG document, while it can be paid.")
    flags: list[str] = strawberry.field(
        description="Anomalies for operators: paid_after_expiry, paid_after_cancel, amount_mismatch, "
        "duplicate_payment, unreconciled. Empty when all went as expected.")
    expires_at: datetime = strawberry.field(description="The QR code can be paid until then (UTC).")
    paid_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: InvoiceRow) -> Invoice:
        """The GraphQL object of a stored invoice."""
        return cls(id=strawberry.ID(row.id), user_id=strawberry.ID(row.user_id),
                   amount_tyiyn=row.amount_tyiyn, status=InvoiceStatus(row.status),  # type: ignore[arg-type]
                   credited_tyiyn=row.credited_tyiyn, refunded_tyiyn=row.refunded_tyiyn,  # type: ignore[arg-type]
                   qr_payload=row.qr_payload, pay_url=row.pay_url, flags=list(row.flags), expires_at=row.expires_at,
                   paid_at=row.paid_at, created_at=row.created_at, updated_at=row.updated_at)


@strawberry.type
class InvoiceEdge:
    node: Invoice
    cursor: str = strawberry.field(description="Pass as `after` to get the invoices that follow.")


@strawberry.type(description="A page of invoices, newest first (Relay connection).")
class InvoiceConnection:
    edges: list[InvoiceEdge]
    page_info: PageInfo

    @classmethod
    def from_page(cls, page: InvoicePage) -> InvoiceConnection:
        """Wrap a page from the store with opaque cursors."""
        edges = [InvoiceEdge(node=Invoice.from_row(row), cursor=encode_invoice_cursor(row.created_at, row.id))
                 for row in page.items]
        end = edges[-1].cursor if edges else None
        return cls(edges=edges, page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=end))


@strawberry.type(description="Something about a payment that an operator should look at.")
class PaymentAnomaly:
    id: strawberry.ID
    kind: str = strawberry.field(description="paid_after_expiry, paid_after_cancel, amount_mismatch, "
                                             "duplicate_payment or unreconciled.")
    invoice_id: strawberry.ID | None
    detail: str = strawberry.field(description="The facts, as a JSON object (payment id, amounts...).")
    created_at: datetime

    @classmethod
    def from_row(cls, row: Anomaly) -> PaymentAnomaly:
        """The GraphQL object of a stored anomaly."""
        return cls(id=strawberry.ID(str(row.id)), kind=row.kind,
                   invoice_id=strawberry.ID(row.invoice_id) if row.invoice_id else None,
                   detail=json.dumps(row.detail, sort_keys=True), created_at=row.created_at)


@strawberry.type(description="A page of payment anomalies, newest first.")
class PaymentAnomalyConnection:
    items: list[PaymentAnomaly]
    page_info: PageInfo


def check_page_size(first: int | None) -> int:
    """``first`` or the default; BAD_USER_INPUT outside 1..100."""
    size = DEFAULT_PAGE if first is None else first
    if not 1 <= size <= MAX_PAGE:
        raise BadUserInput(f"first must be between 1 and {MAX_PAGE}.")
    return size


def encode_invoice_cursor(created_at: datetime, invoice_id: str) -> str:
    """An opaque cursor for an invoice's place in a newest-first list."""
    return base64.urlsafe_b64encode(f"{_CURSOR_TAG}{created_at.isoformat()}|{invoice_id}".encode()).decode("ascii")


def decode_invoice_cursor(cursor: str) -> tuple[datetime, str]:
    """``(created_at, id)`` inside a cursor made by :func:`encode_invoice_cursor`.

    Raises:
        BadUserInput: the cursor is not one of ours.
    """
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")
        stamp, _, invoice_id = text.removeprefix(_CURSOR_TAG).partition("|")
        created_at = datetime.fromisoformat(stamp)
        uuid.UUID(invoice_id)
    except (UnicodeError, binascii.Error, ValueError):
        raise BadUserInput("Malformed cursor.") from None
    if not text.startswith(_CURSOR_TAG) or created_at.tzinfo is None:
        raise BadUserInput("Malformed cursor.")
    return created_at, invoice_id
