"""The GraphQL schema: the ``Query`` root, its access rule, and how errors reach clients.

Access: every field of ``Query`` carries the :class:`RequireAdmin` permission, and
:func:`_assert_every_field_guarded` refuses to build the schema if one does not, so a new field cannot
be left open by accident. Roles beyond admin will get their own permission classes.

Errors: deliberate errors (``csms.api.errors``) reach the client with their ``extensions.code``; any
other exception is logged with its traceback and replaced by ``INTERNAL_SERVER_ERROR`` with a generic
message (:class:`MaskUnexpectedErrors`), so SQL and tracebacks stay on the server.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import strawberry
from strawberry import Info
from strawberry.extensions import MaskErrors
from strawberry.permission import BasePermission

from csms.api.context import ApiContext, Role
from csms.api.errors import INTERNAL_ERROR_CODE, INTERNAL_ERROR_MESSAGE, BadUserInput
from csms.api.types import MeterValue, Station, TransactionConnection, decode_cursor
from csms.store import views
from graphql import GraphQLError

if TYPE_CHECKING:
    from strawberry.types import ExecutionContext

log = logging.getLogger(__name__)

DEFAULT_PAGE = 20


class RequireAdmin(BasePermission):
    """Lets the field run only for a caller with the admin role (any valid operator API key)."""

    def has_permission(self, source: Any, info: Info[ApiContext, None], **kwargs: Any) -> bool:
        # require() raises the typed error itself, so the client sees UNAUTHENTICATED or FORBIDDEN.
        info.context.require(Role.ADMIN)
        return True


ADMIN: list[type[BasePermission]] = [RequireAdmin]


# Resolvers are plain typed functions passed as resolver=: strawberry's decorator form is untyped.
async def resolve_stations(info: Info[ApiContext, None]) -> list[Station]:
    """Every station with its connectors and connection state: three queries, whatever the count."""

    def load(conn: views.Conn) -> tuple[list[views.StationView], dict[str, list[views.ConnectorView]], set[str]]:
        # One transaction, so the list, the connectors and the connection states are one snapshot.
        return views.list_stations(conn), views.connectors_by_station(conn), views.connected_stations(conn)

    stations, connectors, connected = await info.context.db.run(load)
    return [Station.from_view(s, connectors.get(s.id, []), s.id in connected) for s in stations]


async def resolve_station(info: Info[ApiContext, None], id: str) -> Station | None:
    """One station; its connectors and connection state load only if the query selects them."""
    view = await info.context.db.run(views.get_station, id)
    return Station.from_view(view) if view is not None else None


async def resolve_transactions(
    info: Info[ApiContext, None],
    station_id: str | None = None,
    first: int | None = DEFAULT_PAGE,
    after: str | None = None,
) -> TransactionConnection:
    """A page of transactions; arguments are checked here so the client gets BAD_USER_INPUT."""
    if first is None:
        first = DEFAULT_PAGE
    if not 1 <= first <= views.MAX_PAGE:
        raise BadUserInput(f"first must be between 1 and {views.MAX_PAGE}.")
    after_id = decode_cursor(after) if after is not None else None
    page = await info.context.db.run(views.list_transactions, station_id, first, after_id)
    return TransactionConnection.from_page(page)


async def resolve_meter_values(info: Info[ApiContext, None], transaction_id: int) -> list[MeterValue]:
    """The meter values of one transaction (empty if it has none or does not exist)."""
    rows = await info.context.db.run(views.transaction_meter_values, transaction_id)
    return [MeterValue.from_view(row) for row in rows]


@strawberry.type
class Query:
    stations: list[Station] = strawberry.field(
        resolver=resolve_stations, permission_classes=ADMIN, description="Every station, by id."
    )
    station: Station | None = strawberry.field(
        resolver=resolve_station,
        permission_classes=ADMIN,
        description="One station, or null if the id is unknown.",
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


def _assert_every_field_guarded(root: type) -> None:
    """Refuse to build a schema with a root field that checks nobody (fails at import, not in prod)."""
    definition = root.__strawberry_definition__  # type: ignore[attr-defined]
    for field in definition.fields:
        if not any(issubclass(p, RequireAdmin) for p in field.permission_classes):
            raise RuntimeError(f"{root.__name__}.{field.python_name} has no permission class")


def _is_unexpected(error: GraphQLError) -> bool:
    """An error raised by our code that is not one of the API's deliberate, typed errors.

    Errors without an original exception are about the document itself (syntax, validation, variable
    coercion): they describe the client's request and are safe to return.
    """
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


class MaskUnexpectedErrors(MaskErrors):
    """Replaces unexpected errors by a generic ``INTERNAL_SERVER_ERROR`` (the real one was logged)."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=_is_unexpected, error_message=INTERNAL_ERROR_MESSAGE)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        masked = super().anonymise_error(error)
        masked.extensions = {"code": INTERNAL_ERROR_CODE}
        return masked


class CsmsSchema(strawberry.Schema):
    """strawberry's schema, logging only unexpected errors (with traceback), never client mistakes."""

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        # Called before MaskUnexpectedErrors runs, so the original exception is still attached.
        for error in errors:
            if _is_unexpected(error):
                log.error("GraphQL resolver failed at %s", error.path, exc_info=error.original_error)


_assert_every_field_guarded(Query)

schema = CsmsSchema(
    query=Query,
    extensions=[MaskUnexpectedErrors],
)
