"""The ``ChargingSession`` GraphQL type and who may see a session.

Shared by the session queries and mutations and by the ``sessionUpdated`` subscription, so a session
looks the same whichever way a client reads it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import uuid
from datetime import datetime  # also used at runtime (cursor parsing and strawberry annotations)
from typing import TYPE_CHECKING

import strawberry

from csms.api.context import Role
from csms.api.errors import BadUserInput
from csms.api.scalars import Long  # noqa: TC001
from csms.api.types import PageInfo

if TYPE_CHECKING:
    from csms.api.context import Principal
    from csms.store.session_views import SessionPage, SessionView

_CURSOR_TAG = "cs:"


@strawberry.type(description="A charging session started from the app. Money in tyiyn, energy in Wh.")
class ChargingSession:
    id: strawberry.ID
    station_id: str
    connector_id: int
    status: str = strawberry.field(
        description="requested, accepted, charging, stopping, completed or failed (DESIGN.md state machine)."
    )
    limit_tyiyn: Long | None = strawberry.field(description="The money limit the driver chose, if any.")
    energy_limit_wh: Long | None = strawberry.field(description="The energy limit the driver chose, if any.")
    price_per_kwh_tyiyn: Long = strawberry.field(description="The tariff at start, per kWh.")
    session_fee_tyiyn: Long = strawberry.field(description="The tariff's fee per session at start.")
    hold_tyiyn: Long = strawberry.field(description="What is reserved on the wallet while charging.")
    energy_wh: Long = strawberry.field(description="Energy delivered so far.")
    power_w: Long | None = strawberry.field(description="Last reported charging power.")
    soc: int | None = strawberry.field(description="Last reported state of charge, percent.")
    cost_tyiyn: Long = strawberry.field(description="Cost of the energy so far: ceil(Wh * price / 1000) + fee.")
    charged_tyiyn: Long | None = strawberry.field(description="What was finally charged (completed sessions).")
    stop_reason: str | None
    failure_reason: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    updated_at: datetime

    @classmethod
    def from_view(cls, view: SessionView) -> ChargingSession:
        """Build the GraphQL object from the store's view."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {name: getattr(view, name) for name in names if name != "id"}
        return cls(id=strawberry.ID(view.id), **values)


def may_see_session(principal: Principal | None, view: SessionView) -> bool:
    """The session's driver, the owner of its station, and admins may see it."""
    if principal is None:
        return False
    if principal.is_admin:
        return True
    if principal.user_id is None:
        return False
    if principal.user_id == view.user_id:
        return True
    return Role.OWNER in principal.roles and view.owner_id == principal.user_id


@strawberry.type
class ChargingSessionEdge:
    node: ChargingSession
    cursor: str = strawberry.field(description="Pass as `after` to get the sessions that follow.")


@strawberry.type(description="A page of charging sessions, newest first (Relay connection).")
class ChargingSessionConnection:
    edges: list[ChargingSessionEdge]
    page_info: PageInfo

    @classmethod
    def from_page(cls, page: SessionPage) -> ChargingSessionConnection:
        """Wrap a page from the store with opaque cursors."""
        edges = [ChargingSessionEdge(node=ChargingSession.from_view(v), cursor=encode_session_cursor(v))
                 for v in page.items]
        end = edges[-1].cursor if edges else None
        return cls(edges=edges, page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=end))


def encode_session_cursor(view: SessionView) -> str:
    """An opaque cursor for a session's place in a newest-first list."""
    text = f"{_CURSOR_TAG}{view.created_at.isoformat()}|{view.id}"
    return base64.urlsafe_b64encode(text.encode()).decode("ascii")


def decode_session_cursor(cursor: str) -> tuple[datetime, str]:
    """``(created_at, id)`` inside a cursor made by :func:`encode_session_cursor`.

    Raises:
        BadUserInput: the cursor is not one of ours.
    """
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")
        stamp, _, session_id = text.removeprefix(_CURSOR_TAG).partition("|")
        created_at = datetime.fromisoformat(stamp)
        uuid.UUID(session_id)
    except (UnicodeError, binascii.Error, ValueError):
        raise BadUserInput("Malformed cursor.") from None
    if not text.startswith(_CURSOR_TAG) or created_at.tzinfo is None:
        raise BadUserInput("Malformed cursor.")
    return created_at, session_id
