"""Operator queries over the OCPP side: every station, charger transactions and their meter values (admins).

These read what chargers reported (``csms.store.views``). The public map and owners' views of stations
are in ``catalog.py``; the driver-facing charging sessions live in their own module.
"""

from __future__ import annotations

import strawberry
from strawberry import Info

from csms.api.access import ADMIN
from csms.api.catalog_types import Station, actor_of, build
from csms.api.context import ApiContext  # noqa: TC001 (strawberry reads resolver annotations at runtime)
from csms.api.types import DEFAULT_PAGE, MeterValue, TransactionConnection, check_page_size, decode_cursor
from csms.store import views


# Resolvers are plain typed functions passed as resolver=: strawberry's decorator form is untyped.
async def resolve_stations(info: Info[ApiContext, None]) -> list[Station]:
    """Every station, unassigned ones too, with connectors, tariffs and locations: four queries in all."""
    snapshot = await info.context.db.run(views.all_stations_snapshot)
    return build(snapshot, actor_of(info.context.principal))[1]


async def resolve_transactions(
    info: Info[ApiContext, None],
    station_id: str | None = None,
    first: int | None = DEFAULT_PAGE,
    after: str | None = None,
) -> TransactionConnection:
    """A page of transactions; arguments are checked here so the client gets BAD_USER_INPUT."""
    size = check_page_size(first)
    after_id = decode_cursor(after) if after is not None else None
    page = await info.context.db.run(views.list_transactions, station_id, size, after_id)
    return TransactionConnection.from_page(page)


async def resolve_meter_values(info: Info[ApiContext, None], transaction_id: int) -> list[MeterValue]:
    """The meter values of one transaction (empty if it has none or does not exist)."""
    rows = await info.context.db.run(views.transaction_meter_values, transaction_id)
    return [MeterValue.from_view(row) for row in rows]


@strawberry.type
class OperatorQuery:
    stations: list[Station] = strawberry.field(
        resolver=resolve_stations,
        permission_classes=ADMIN,
        description="Every station by id, including those without a location.",
    )
    transactions: TransactionConnection = strawberry.field(
        resolver=resolve_transactions,
        permission_classes=ADMIN,
        description="Transactions, newest first, optionally of one station. `first` is 1 to 100.",
    )
    meter_values: list[MeterValue] = strawberry.field(
        resolver=resolve_meter_values,
        permission_classes=ADMIN,
        description="The meter values of one transaction, in sampling order.",
    )


QUERIES: list[type] = [OperatorQuery]
MUTATIONS: list[type] = []
SUBSCRIPTIONS: list[type] = []
