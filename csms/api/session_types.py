"""The ``ChargingSession`` GraphQL type and who may see a session.

Shared by the session queries and mutations and by the ``sessionUpdated`` subscription, so a session
looks the same whichever way a client reads it.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime  # noqa: TC003 (strawberry resolves annotations at runtime)
from typing import TYPE_CHECKING

import strawberry

from csms.api.context import Role
from csms.api.scalars import Long  # noqa: TC001

if TYPE_CHECKING:
    from csms.api.context import Principal
    from csms.store.session_views import SessionView


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
