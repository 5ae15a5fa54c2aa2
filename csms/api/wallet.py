"""The wallet area of the API: balances and history (drivers), revenue (owners), adjustments and the audit
log (admins).

Who sees what: ``myWallet`` and ``myWalletHistory`` are the caller's own; ``myRevenue`` is the calling
owner's own (admins may name any owner); ``wallet``, ``auditLog`` and ``adjustBalance`` are for admins.

``adjustBalance`` honours an ``Idempotency-Key`` header: the key (per caller) fixes the ledger
transfer id, so a retried request finds its first transfer and adjusts nothing more.
"""

from __future__ import annotations

import uuid
from datetime import datetime  # noqa: TC003 (strawberry resolves annotations at runtime)
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry import Info

from csms.api.access import ADMIN, LOGGED_IN, OWNER
from csms.api.context import ApiContext, Role
from csms.api.errors import BadUserInput, DomainError, Forbidden, NotFound
from csms.api.idempotency_keys import idempotency_key
from csms.api.scalars import Long  # noqa: TC001
from csms.api.types import as_utc, check_page_size
from csms.api.wallet_types import (
    AuditLogConnection,
    OwnerRevenue,
    WalletEntryConnection,
    decode_audit_cursor,
    decode_history_cursor,
    wallet_fields,
)
from csms.services import ledger as service
from csms.store import audit
from csms.store import ledger as ledger_store
from csms.store.users import user_exists

if TYPE_CHECKING:
    from csms.store.db import Conn
    from csms.store.ledger import Balance, HistoryPage


def _own_user(info: Info[ApiContext, None]) -> str:
    """The caller's user id; FORBIDDEN for credentials that act for no user (admin API keys)."""
    principal = info.context.require()
    if principal.user_id is None:
        raise Forbidden("This field is about the caller's own account; this credential has none.")
    return principal.user_id


def _user_id(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise BadUserInput("userId is not a valid user id.") from None


def _history(conn: Conn, user_id: str, first: int, after: tuple[datetime, str] | None) -> HistoryPage:
    account = ledger_store.find_user_account(conn, user_id)
    if account is None:
        return ledger_store.HistoryPage([], False)
    return ledger_store.account_history(conn, account, first, after)


async def _history_page(info: Info[ApiContext, None], user_id: str, first: int | None,
                        after: str | None) -> WalletEntryConnection:
    size = check_page_size(first)
    position = decode_history_cursor(after) if after is not None else None
    page = await info.context.db.run(_history, user_id, size, position)
    return WalletEntryConnection.from_page(page)


# Resolvers are plain typed functions passed as resolver=: strawberry's decorator form is untyped.
async def resolve_wallet_history(root: Wallet, info: Info[ApiContext, None], first: int | None = 20,
                                 after: str | None = None) -> WalletEntryConnection:
    """The history of a wallet the caller was allowed to read (its root field checked that)."""
    return await _history_page(info, str(root.user_id), first, after)


@strawberry.type(description="A prepaid wallet. availableTyiyn = postedTyiyn - heldTyiyn.")
class Wallet:
    user_id: strawberry.ID
    available_tyiyn: Long = strawberry.field(description="What can be spent now.")
    held_tyiyn: Long = strawberry.field(description="Reserved by charging sessions in progress.")
    posted_tyiyn: Long = strawberry.field(description="The settled balance: top-ups and adjustments minus charges.")
    history: WalletEntryConnection = strawberry.field(
        resolver=resolve_wallet_history, description="Entries, newest first. `first` is 1 to 100."
    )

    @classmethod
    def of(cls, user_id: str, balance: Balance) -> Wallet:
        """The wallet of ``user_id`` with the ledger's totals."""
        return cls(user_id=strawberry.ID(user_id), **wallet_fields(balance))  # type: ignore[arg-type]


async def _wallet_of(info: Info[ApiContext, None], user_id: str) -> Wallet:
    balance = await info.context.db.run(service.wallet_balance, user_id)
    if balance is None:
        raise NotFound("No such user.")
    return Wallet.of(user_id, balance)


async def resolve_my_wallet(info: Info[ApiContext, None]) -> Wallet:
    """The caller's own wallet."""
    return await _wallet_of(info, _own_user(info))


async def resolve_my_wallet_history(info: Info[ApiContext, None], first: int | None = 20,
                                    after: str | None = None) -> WalletEntryConnection:
    """The caller's own wallet entries, newest first."""
    return await _history_page(info, _own_user(info), first, after)


async def resolve_wallet(info: Info[ApiContext, None], user_id: strawberry.ID) -> Wallet:
    """Any user's wallet (admins)."""
    return await _wallet_of(info, _user_id(user_id))


async def resolve_audit_log(info: Info[ApiContext, None], first: int | None = 20,
                            after: str | None = None) -> AuditLogConnection:
    """Audit records, newest first (admins)."""
    size = check_page_size(first)
    before = decode_audit_cursor(after) if after is not None else None
    return AuditLogConnection.from_page(await info.context.db.run(audit.list_page, size, before))


def _revenue(conn: Conn, owner_id: str, start: datetime, end: datetime) -> tuple[int, int] | None:
    if not user_exists(conn, owner_id):
        return None
    return service.owner_revenue(conn, owner_id, start, end)


async def resolve_my_revenue(
    info: Info[ApiContext, None],
    period_from: Annotated[datetime, strawberry.argument(name="from")],
    to: datetime,
    owner_id: strawberry.ID | None = None,
) -> OwnerRevenue:
    """An owner's revenue in ``[from, to)``: their own, or any owner's for admins."""
    principal = info.context.require(Role.OWNER)
    if owner_id is None:
        if principal.user_id is None:
            raise BadUserInput("ownerId is required for a credential that acts for no user.")
        target = principal.user_id
    else:
        target = _user_id(owner_id)
        if not principal.is_admin and target != principal.user_id:
            raise Forbidden("Only admins may see another owner's revenue.")
    start, end = as_utc(period_from), as_utc(to)
    if start >= end:
        raise BadUserInput("from must be before to.")
    found = await info.context.db.run(_revenue, target, start, end)
    if found is None:
        raise NotFound("No such owner.")
    revenue, sessions = found
    return OwnerRevenue(owner_id=strawberry.ID(target), period_from=start, period_to=end,
                        revenue_tyiyn=revenue, sessions=sessions)  # type: ignore[arg-type]


@strawberry.type(description="The outcome of adjustBalance.")
class AdjustBalancePayload:
    transfer_id: str = strawberry.field(description="The ledger transfer that carries the adjustment.")
    applied: bool = strawberry.field(
        description="False when this Idempotency-Key was already applied: nothing changed this time."
    )
    wallet: Wallet = strawberry.field(description="The wallet after the adjustment.")


async def resolve_adjust_balance(info: Info[ApiContext, None], user_id: strawberry.ID, amount_tyiyn: Long,
                                 reason: str) -> AdjustBalancePayload:
    """Credit (positive) or debit (negative) a wallet, audited with the caller and the reason."""
    principal = info.context.require(Role.ADMIN)
    actor_kind, actor_id = principal.audit_actor
    target = _user_id(user_id)
    try:
        transfer_id = service.adjustment_transfer_id(f"{actor_kind}:{actor_id}",
                                                     idempotency_key(info.context))
        result = await info.context.db.run(service.adjust_balance, actor_kind=actor_kind, actor_id=actor_id,
                                           user_id=target, amount_tyiyn=amount_tyiyn, reason=reason,
                                           transfer_id=transfer_id)
    except service.InvalidAdjustment as exc:
        raise BadUserInput(f"{str(exc).capitalize()}.") from None
    except service.UnknownUser:
        raise NotFound("No such user.") from None
    except service.InsufficientFunds:
        raise DomainError("INSUFFICIENT_BALANCE", "The wallet does not have that much available.") from None
    except service.TransferIdConflict:
        raise DomainError("IDEMPOTENCY_KEY_REUSED",
                          "This Idempotency-Key was already used for a different adjustment.") from None
    return AdjustBalancePayload(transfer_id=result.transfer_id, applied=result.applied,
                                wallet=Wallet.of(target, result.wallet))


@strawberry.type
class WalletQuery:
    my_wallet: Wallet = strawberry.field(
        resolver=resolve_my_wallet, permission_classes=LOGGED_IN, description="The caller's wallet."
    )
    my_wallet_history: WalletEntryConnection = strawberry.field(
        resolver=resolve_my_wallet_history,
        permission_classes=LOGGED_IN,
        description="The caller's wallet entries, newest first. `first` is 1 to 100.",
    )
    wallet: Wallet = strawberry.field(
        resolver=resolve_wallet, permission_classes=ADMIN, description="Any user's wallet (admins)."
    )
    audit_log: AuditLogConnection = strawberry.field(
        resolver=resolve_audit_log,
        permission_classes=ADMIN,
        description="Audit records, newest first (admins). `first` is 1 to 100.",
    )
    my_revenue: OwnerRevenue = strawberry.field(
        resolver=resolve_my_revenue,
        permission_classes=OWNER,
        description="Revenue credited to the calling owner in [from, to); admins may pass ownerId.",
    )


@strawberry.type
class WalletMutation:
    adjust_balance: AdjustBalancePayload = strawberry.field(
        resolver=resolve_adjust_balance,
        permission_classes=ADMIN,
        description="Credit (amountTyiyn > 0) or debit (< 0) a wallet by at most 10,000,000 tyiyn, with a "
        "reason (1-500 characters), recorded in the audit log. Send an Idempotency-Key header to make "
        "retries safe. Errors: BAD_USER_INPUT, NOT_FOUND, INSUFFICIENT_BALANCE, IDEMPOTENCY_KEY_REUSED.",
    )


QUERIES: list[type] = [WalletQuery]
MUTATIONS: list[type] = [WalletMutation]
SUBSCRIPTIONS: list[type] = []
