"""Operator queries over what chargers said: a station's OCPP journal and recorded anomalies (admins).

The journal holds every frame verbatim (a charger's CALL with csms's answer on one row); anomalies are
what csms answered but flagged for a person: a repeated or unknown StopTransaction, a charger clock it
did not believe, and the like. Both are for support and disputes, so they are admin-only.
"""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 (strawberry reads annotations at runtime)
from typing import TYPE_CHECKING

import strawberry
from strawberry import Info
from strawberry.scalars import JSON

from csms.api.access import ADMIN
from csms.api.context import ApiContext  # noqa: TC001 (strawberry reads resolver annotations at runtime)
from csms.api.types import DEFAULT_PAGE, PageInfo, check_page_size, decode_row_id_cursor, encode_tagged_cursor
from csms.store import ocpp_log

if TYPE_CHECKING:
    from csms.store.ocpp_log import AnomalyEntry, JournalEntry

_MESSAGE_TAG = "om:"
_ANOMALY_TAG = "oa:"


@strawberry.type(description="One journaled OCPP frame; a charger's CALL carries csms's answer with it.")
class OcppMessage:
    id: strawberry.ID
    station_id: str
    direction: str = strawberry.field(description="in: sent by the charger; out: sent by csms.")
    message_type: int | None = strawberry.field(
        description="2 CALL, 3 CALLRESULT, 4 CALLERROR; null for a frame that could not be read.")
    action: str | None
    unique_id: str | None
    payload: str = strawberry.field(description="The frame exactly as it was received or sent.")
    received_at: datetime = strawberry.field(description="When csms read the frame (or sent it, for out).")
    answer_type: int | None = strawberry.field(description="3 or 4 when csms answered this frame, else null.")
    answer_payload: str | None = strawberry.field(description="csms's answer exactly as it was sent.")
    answered_at: datetime | None

    @classmethod
    def from_entry(cls, e: JournalEntry) -> OcppMessage:
        """Build the GraphQL object from the store's row."""
        return cls(id=strawberry.ID(str(e.id)), station_id=e.station_id, direction=e.direction,
                   message_type=e.message_type, action=e.action, unique_id=e.unique_id, payload=e.payload,
                   received_at=e.received_at, answer_type=e.answer_type, answer_payload=e.answer_payload,
                   answered_at=e.answered_at)


@strawberry.type
class OcppMessageEdge:
    node: OcppMessage
    cursor: str = strawberry.field(description="Pass as `after` to get the older frames.")


@strawberry.type(description="A page of a station's OCPP frames, newest first (Relay connection).")
class OcppMessageConnection:
    edges: list[OcppMessageEdge]
    page_info: PageInfo


@strawberry.type(description="Something a charger did that csms answered but flagged for an operator.")
class OcppAnomaly:
    id: strawberry.ID
    station_id: str
    kind: str = strawberry.field(description="e.g. stop_unknown_transaction, timestamp_replaced.")
    detail: JSON = strawberry.field(description="The facts: the transaction, the values the charger sent.")
    created_at: datetime

    @classmethod
    def from_entry(cls, e: AnomalyEntry) -> OcppAnomaly:
        """Build the GraphQL object from the store's row."""
        return cls(id=strawberry.ID(str(e.id)), station_id=e.station_id, kind=e.kind, detail=JSON(e.detail),
                   created_at=e.created_at)


@strawberry.type
class OcppAnomalyEdge:
    node: OcppAnomaly
    cursor: str = strawberry.field(description="Pass as `after` to get the older anomalies.")


@strawberry.type(description="A page of OCPP anomalies, newest first (Relay connection).")
class OcppAnomalyConnection:
    edges: list[OcppAnomalyEdge]
    page_info: PageInfo


async def resolve_ocpp_messages(info: Info[ApiContext, None], station_id: str, first: int | None = DEFAULT_PAGE,
                                after: str | None = None) -> OcppMessageConnection:
    """A page of one station's journal; arguments are checked here so the client gets BAD_USER_INPUT."""
    size = check_page_size(first)
    after_id = decode_row_id_cursor(after, _MESSAGE_TAG) if after is not None else None
    page = await info.context.db.run(ocpp_log.list_journal, station_id, size, after_id)
    edges = [OcppMessageEdge(node=OcppMessage.from_entry(e), cursor=encode_tagged_cursor(_MESSAGE_TAG, str(e.id)))
             for e in page.items]
    return OcppMessageConnection(edges=edges, page_info=PageInfo(
        has_next_page=page.has_next_page, end_cursor=edges[-1].cursor if edges else None))


async def resolve_ocpp_anomalies(info: Info[ApiContext, None], station_id: str | None = None,
                                 first: int | None = DEFAULT_PAGE, after: str | None = None) -> OcppAnomalyConnection:
    """A page of anomalies, of one station or all."""
    size = check_page_size(first)
    after_id = decode_row_id_cursor(after, _ANOMALY_TAG) if after is not None else None
    page = await info.context.db.run(ocpp_log.list_anomalies, station_id, size, after_id)
    edges = [OcppAnomalyEdge(node=OcppAnomaly.from_entry(e), cursor=encode_tagged_cursor(_ANOMALY_TAG, str(e.id)))
             for e in page.items]
    return OcppAnomalyConnection(edges=edges, page_info=PageInfo(
        has_next_page=page.has_next_page, end_cursor=edges[-1].cursor if edges else None))


@strawberry.type
class OcppLogQuery:
    ocpp_messages: OcppMessageConnection = strawberry.field(
        resolver=resolve_ocpp_messages,
        permission_classes=ADMIN,
        description="A station's OCPP frames, newest first (kept CSMS_JOURNAL_RETENTION_DAYS). `first` is 1 to 100.",
    )
    ocpp_anomalies: OcppAnomalyConnection = strawberry.field(
        resolver=resolve_ocpp_anomalies,
        permission_classes=ADMIN,
        description="Anomalies csms recorded, newest first, optionally of one station. `first` is 1 to 100.",
    )


QUERIES: list[type] = [OcppLogQuery]
MUTATIONS: list[type] = []
SUBSCRIPTIONS: list[type] = []
