"""GraphQL types of the wallet area: wallets, their history, owner revenue, the audit log.

Money is ``Long`` tyiyn everywhere (1 som = 100 tyiyn). Cursors are opaque strings; clients pass
them back as ``after`` and never build or parse them.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING

import strawberry
from strawberry.scalars import JSON

from csms.api.errors import BadUserInput
from csms.api.scalars import Long  # noqa: TC001 (strawberry resolves annotations at runtime)
from csms.api.types import PageInfo, decode_row_id_cursor, decode_tagged_cursor, encode_tagged_cursor

if TYPE_CHECKING:
    from csms.store.audit import AuditEntry as AuditRow
    from csms.store.audit import AuditPage
    from csms.store.ledger import Balance, HistoryEntry, HistoryPage

_HISTORY_TAG = "wh:"
_AUDIT_TAG = "al:"


@strawberry.enum(description="What a wallet entry is, in the ledger's two-phase terms.")
class WalletEntryKind(enum.Enum):
    TRANSFER = strawberry.enum_value("single", description="Money moved at once (top-up, adjustment...).")
    HOLD = strawberry.enum_value("pending", description="Money reserved for a charging session.")
    POST = strawberry.enum_value("post", description="A hold settled for what was used; the rest is free again.")
    VOID = strawberry.enum_value("void", description="A hold released in full.")


@strawberry.enum(description="The kind of ledger account on the other side of an entry.")
class LedgerAccountKind(enum.Enum):
    WALLET = "wallet"
    OWNER_REVENUE = "owner_revenue"
    OPERATOR_REVENUE = "operator_revenue"
    PROVIDER_CLEARING = "provider_clearing"
    ADJUSTMENTS = "adjustments"


@strawberry.type(description="One movement on a wallet, newest first in its history.")
class WalletEntry:
    id: str = strawberry.field(description="The ledger transfer id.")
    kind: WalletEntryKind
    amount_tyiyn: Long = strawberry.field(
        description="Signed from the wallet's point of view: negative for money leaving or reserved (TRANSFER "
        "out, HOLD, POST), positive for money arriving or released (TRANSFER in, VOID)."
    )
    settled: bool = strawberry.field(
        description="Whether the entry changes postedTyiyn (TRANSFER, POST). HOLD and VOID only change "
        "what is available; the sum of settled amounts is the posted balance."
    )
    counterparty: LedgerAccountKind = strawberry.field(description="The kind of account on the other side.")
    hold_id: str | None = strawberry.field(description="For POST and VOID: the id of the HOLD they settle.")
    reason: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: HistoryEntry) -> WalletEntry:
        """Build the entry from the store's view of a transfer, as the wallet sees it."""
        sign = -1 if row.outgoing else 1
        if row.kind == "void":  # a void gives back what its hold took
            sign = -sign
        return cls(id=row.id, kind=WalletEntryKind(row.kind), amount_tyiyn=sign * row.amount,  # type: ignore[arg-type]
                   settled=row.kind in ("single", "post"), counterparty=LedgerAccountKind(row.counterparty),
                   hold_id=row.pending_id, reason=row.reason, created_at=row.created_at)


@strawberry.type
class WalletEntryEdge:
    node: WalletEntry
    cursor: str = strawberry.field(description="Pass as `after` to get the older entries.")


@strawberry.type(description="A page of wallet entries, newest first (Relay connection).")
class WalletEntryConnection:
    edges: list[WalletEntryEdge]
    page_info: PageInfo

    @classmethod
    def from_page(cls, page: HistoryPage) -> WalletEntryConnection:
        """Wrap a page from the store with opaque cursors."""
        edges = [WalletEntryEdge(node=WalletEntry.from_row(e), cursor=encode_history_cursor(e.created_at, e.id))
                 for e in page.items]
        end = edges[-1].cursor if edges else None
        return cls(edges=edges, page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=end))


@strawberry.type(description="One audit record: who did what to what, and why.")
class AuditEntry:
    id: strawberry.ID
    actor_kind: str = strawberry.field(description="user, api_key, cli or system.")
    actor_id: str = strawberry.field(description="The user id, API key id or OS account that acted.")
    action: str = strawberry.field(description="What was done, e.g. ledger.adjust.")
    target: str | None = strawberry.field(description="What it was done to (e.g. a user id).")
    detail: JSON = strawberry.field(description="Facts of the action: amounts, reasons, transfer ids.")
    created_at: datetime

    @classmethod
    def from_row(cls, row: AuditRow) -> AuditEntry:
        """Build the GraphQL object from the store's record."""
        return cls(id=strawberry.ID(str(row.id)), actor_kind=row.actor_kind, actor_id=row.actor_id,
                   action=row.action, target=row.target, detail=JSON(row.detail), created_at=row.created_at)


@strawberry.type
class AuditEntryEdge:
    node: AuditEntry
    cursor: str = strawberry.field(description="Pass as `after` to get the older records.")


@strawberry.type(description="A page of audit records, newest first (Relay connection).")
class AuditLogConnection:
    edges: list[AuditEntryEdge]
    page_info: PageInfo

    @classmethod
    def from_page(cls, page: AuditPage) -> AuditLogConnection:
        """Wrap a page from the store with opaque cursors."""
        edges = [AuditEntryEdge(node=AuditEntry.from_row(r), cursor=encode_tagged_cursor(_AUDIT_TAG, str(r.id)))
                 for r in page.items]
        end = edges[-1].cursor if edges else None
        return cls(edges=edges, page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=end))


@strawberry.type(description="What an owner earned in a period.")
class OwnerRevenue:
    owner_id: strawberry.ID
    period_from: datetime = strawberry.field(name="from", description="Start of the period (inclusive, UTC).")
    period_to: datetime = strawberry.field(name="to", description="End of the period (exclusive, UTC).")
    revenue_tyiyn: Long = strawberry.field(description="Posted credits to the owner's revenue account.")
    sessions: int = strawberry.field(description="How many charging sessions were settled to it in the period.")


def encode_history_cursor(created_at: datetime, transfer_id: str) -> str:
    """The cursor of a wallet entry: its position in (time, id) order."""
    return encode_tagged_cursor(_HISTORY_TAG, f"{created_at.isoformat()}|{transfer_id}")


def decode_history_cursor(cursor: str) -> tuple[datetime, str]:
    """The position inside a wallet-history cursor. Raises BadUserInput if it is not one of ours."""
    stamp, sep, transfer_id = decode_tagged_cursor(cursor, _HISTORY_TAG).partition("|")
    try:
        created_at = datetime.fromisoformat(stamp)
    except ValueError:
        raise BadUserInput("Malformed cursor.") from None
    if not sep or not transfer_id or created_at.tzinfo is None:
        raise BadUserInput("Malformed cursor.")
    return created_at, transfer_id


def decode_audit_cursor(cursor: str) -> int:
    """The record id inside an audit-log cursor. Raises BadUserInput if it is not one of ours."""
    return decode_row_id_cursor(cursor, _AUDIT_TAG)


def wallet_fields(balance: Balance) -> dict[str, int]:
    """The wallet's three balances from the ledger's totals."""
    return {"available_tyiyn": balance.available, "held_tyiyn": balance.debits_pending,
            "posted_tyiyn": balance.posted}
