"""GraphQL object types of the operator API (transactions, meter values), built from the store's read views,
and what every paged list shares: ``PageInfo``, the ``first`` argument's check, client times in UTC.

The catalog types (Location, Station, Connector, Tariff) are in ``catalog_types.py``.

strawberry reads annotations at schema build time, so every name used in one (``datetime``,
``ApiContext``, ``Info``) is imported at runtime even though ``from __future__ import annotations``
makes them strings; the ``noqa: TC`` markers say exactly that.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from datetime import UTC, datetime  # datetime is also read by strawberry at runtime
from typing import TYPE_CHECKING, Any

import strawberry

from csms.api.errors import BadUserInput
from csms.api.scalars import Long  # noqa: TC001 (energy in Wh is 64-bit)

if TYPE_CHECKING:
    from csms.store import views

DEFAULT_PAGE = 20
MAX_PAGE = 100  # the store's list functions return at most this many rows
_CURSOR_TAG = "tx:"
# transactions.id is a 32-bit integer (the OCPP transactionId).
_MAX_TRANSACTION_ID = 2**31 - 1


def _fields_of(view: Any, graphql_type: type) -> dict[str, Any]:
    """The view's values for the GraphQL type's fields (the types below mirror their views by name)."""
    names = {f.name for f in dataclasses.fields(view)}
    return {name: getattr(view, name) for name in graphql_type.__annotations__ if name in names}


@strawberry.type(description="One OCPP transaction; the stop fields are null while it runs.")
class Transaction:
    id: int = strawberry.field(description="The OCPP transactionId.")
    station_id: str
    connector_id: int
    id_tag: str
    meter_start_wh: Long
    meter_stop_wh: Long | None
    energy_wh: Long | None = strawberry.field(description="meterStopWh - meterStartWh, once stopped.")
    started_at: datetime
    stopped_at: datetime | None
    stop_reason: str | None

    @classmethod
    def from_view(cls, view: views.TransactionView) -> Transaction:
        """Build the GraphQL object from the store's view (same field names)."""
        return cls(**_fields_of(view, cls))


@strawberry.type
class TransactionEdge:
    node: Transaction
    cursor: str = strawberry.field(description="Pass as `after` to get the transactions that follow.")


def check_page_size(first: int | None) -> int:
    """``first`` or the default page size; BAD_USER_INPUT outside 1..100."""
    if first is None:
        return DEFAULT_PAGE
    if not 1 <= first <= MAX_PAGE:
        raise BadUserInput(f"first must be between 1 and {MAX_PAGE}.")
    return first


def as_utc(moment: datetime) -> datetime:
    """A client's time in UTC (a time without offset is taken as UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None = strawberry.field(description="The cursor of the last edge; null if none.")


@strawberry.type(description="A page of transactions, newest first (Relay connection).")
class TransactionConnection:
    edges: list[TransactionEdge]
    page_info: PageInfo

    @classmethod
    def from_page(cls, page: views.TransactionPage) -> TransactionConnection:
        """Wrap a page from the store with opaque cursors."""
        edges = [TransactionEdge(node=Transaction.from_view(t), cursor=encode_cursor(t.id)) for t in page.items]
        end = edges[-1].cursor if edges else None
        return cls(edges=edges, page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=end))


@strawberry.type(description="One sampled value, as the charger reported it.")
class MeterValue:
    sampled_at: datetime
    measurand: str
    phase: str | None
    unit: str | None
    context: str
    location: str | None
    value: str = strawberry.field(description="The value as sent (OCPP sends decimal strings).")
    transaction_id: int | None
    connector_id: int

    @classmethod
    def from_view(cls, view: views.MeterValueView) -> MeterValue:
        """Build the GraphQL object from the store's view (same field names)."""
        return cls(**_fields_of(view, cls))


def encode_cursor(transaction_id: int) -> str:
    """An opaque cursor for a transaction id (clients must not build or parse cursors)."""
    return base64.urlsafe_b64encode(f"{_CURSOR_TAG}{transaction_id}".encode()).decode("ascii")


def decode_cursor(cursor: str) -> int:
    """The transaction id inside a cursor made by :func:`encode_cursor`.

    Raises:
        BadUserInput: the cursor is not one of ours.
    """
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")
    except (UnicodeError, binascii.Error, ValueError):
        raise BadUserInput("Malformed cursor.") from None
    digits = text.removeprefix(_CURSOR_TAG)
    if text == digits or not digits.isdigit() or not 0 < int(digits) <= _MAX_TRANSACTION_ID:
        raise BadUserInput("Malformed cursor.")
    return int(digits)


def encode_tagged_cursor(tag: str, position: str) -> str:
    """An opaque cursor: ``tag`` names the list it belongs to, ``position`` the place in it."""
    return base64.urlsafe_b64encode(f"{tag}{position}".encode()).decode("ascii")


def decode_tagged_cursor(cursor: str, tag: str) -> str:
    """The position inside a cursor made by :func:`encode_tagged_cursor` with ``tag``.

    Raises:
        BadUserInput: the cursor is not one of ours, or belongs to another list.
    """
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode()
    except (UnicodeError, binascii.Error, ValueError):
        raise BadUserInput("Malformed cursor.") from None
    if not text.startswith(tag):
        raise BadUserInput("Malformed cursor.")
    return text[len(tag):]


def decode_row_id_cursor(cursor: str, tag: str) -> int:
    """The row id (a positive bigint) inside a tagged cursor. Raises BadUserInput if it is not one."""
    digits = decode_tagged_cursor(cursor, tag)
    if not digits.isdigit() or not 0 < int(digits) < 2**63:
        raise BadUserInput("Malformed cursor.")
    return int(digits)
