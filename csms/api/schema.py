"""The GraphQL schema: root types merged from the API areas, and how errors reach clients.

Access: every root field carries an access rule (``csms.api.access``), and the schema refuses to
build if one does not, so a new field cannot be left open by accident.

Errors: deliberate errors (``csms.api.errors``) reach the client with their ``extensions.code``; any
other exception is logged with its traceback and replaced by ``INTERNAL_SERVER_ERROR`` with a generic
message (:class:`MaskUnexpectedErrors`), so SQL and tracebacks stay on the server.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import psycopg
import strawberry
from strawberry.extensions import MaskErrors, ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from csms.api import accounts, catalog, charging, ocpp_log, operator, payments, push, subscriptions, wallet
from csms.api.access import assert_every_field_guarded
from csms.api.csrf_guard import CsrfGuard
from csms.api.errors import INTERNAL_ERROR_CODE, INTERNAL_ERROR_MESSAGE, BadUserInput
from csms.api.ratelimit_guard import MutationRateLimits
from csms.api.scalars import LONG_SCALAR, Long
from csms.api.ws_fanout import SharingExecutor
from graphql import GraphQLError

# Each API area is a module with QUERIES, MUTATIONS and SUBSCRIPTIONS lists of strawberry types; the
# root types merge them. A new area adds its module here.
AREAS = [operator, ocpp_log, accounts, catalog, wallet, charging, subscriptions, payments, push]

if TYPE_CHECKING:
    from strawberry.types import ExecutionContext

log = logging.getLogger(__name__)

NUL_TEXT_MESSAGE = "Text may not contain the character U+0000."


def _is_unexpected(error: GraphQLError) -> bool:
    """An error raised by our code that is not one of the API's deliberate, typed errors.

    Errors without an original exception are about the document itself (syntax, validation, variable
    coercion): they describe the client's request and are safe to return.
    """
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


def _is_nul_text(error: GraphQLError) -> bool:
    """A text argument held U+0000, which PostgreSQL text cannot store: the client's mistake.

    psycopg refuses such a string before it reaches the server, inside the resolver's transaction,
    which is then rolled back: nothing was written.
    """
    original = error.original_error
    return isinstance(original, psycopg.DataError) and "NUL (0x00)" in str(original)


class MaskUnexpectedErrors(MaskErrors):
    """Replaces unexpected errors by a generic ``INTERNAL_SERVER_ERROR`` (the real one was logged)."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=_is_unexpected, error_message=INTERNAL_ERROR_MESSAGE)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        if _is_nul_text(error):
            return GraphQLError(NUL_TEXT_MESSAGE, nodes=error.nodes, path=error.path,
                                extensions={"code": BadUserInput.code})
        masked = super().anonymise_error(error)
        masked.extensions = {"code": INTERNAL_ERROR_CODE}
        return masked


class CsmsSchema(strawberry.Schema):
    """strawberry's schema, logging only unexpected errors (with traceback), never client mistakes."""

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        # Called before MaskUnexpectedErrors runs, so the original exception is still attached.
        for error in errors:
            if _is_unexpected(error) and not _is_nul_text(error):
                log.error("GraphQL resolver failed at %s", error.path, exc_info=error.original_error)


def _merge(name: str, attr: str) -> type | None:
    """One root type made of every area's classes (None if no area has any)."""
    parts: list[type] = [part for module in AREAS for part in getattr(module, attr)]
    if not parts:
        return None
    root: type = merge_types(name, tuple(parts))
    assert_every_field_guarded(root)
    return root


_query = _merge("Query", "QUERIES")
assert _query is not None
schema = CsmsSchema(
    query=_query,
    mutation=_merge("Mutation", "MUTATIONS"),
    subscription=_merge("Subscription", "SUBSCRIPTIONS"),
    # The caches share one parsed, validated document between all requests with the same text (the
    # app's operations are a handful): a live subscription keeps its document for hours, and with a
    # thousand subscribers their private copies were ~100,000 of the ~540,000 objects every full
    # garbage collection walks. Bounded, so unique texts from a client cannot grow them.
    extensions=[lambda: ParserCache(maxsize=256), lambda: ValidationCache(maxsize=256),
                MaskUnexpectedErrors, CsrfGuard, MutationRateLimits],
    config=StrawberryConfig(scalar_map={Long: LONG_SCALAR}),
    # Subscription updates shared by many subscribers are executed once per document (ws_fanout).
    execution_context_class=SharingExecutor,
)
