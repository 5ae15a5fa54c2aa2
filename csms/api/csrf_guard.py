"""Refuses a mutation authenticated by cookies without a valid ``X-CSRF-Token`` (``CSRF_FAILED``).

One schema extension checks every mutation of every API area, before any resolver runs, so a new
mutation is protected without doing anything. ``login`` and ``register`` are exempt: they use no
credential from the cookies (a stale cookie must not lock a user out of logging in again), and they
replace the cookies they set. Queries are never checked: they change nothing, and CORS keeps other
sites from reading their answers. See ``csms.api.browser`` for the token scheme.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from csms.api.auth_errors import CsrfFailed
from graphql import FieldNode, get_operation_ast

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from csms.api.context import ApiContext

# Root mutation fields that take no credential from cookies.
EXEMPT = frozenset({"login", "register", "__typename"})


class CsrfGuard(SchemaExtension):
    """Checks the CSRF header of cookie-authenticated mutations before execution."""

    async def on_execute(self) -> AsyncIterator[None]:
        ctx = self.execution_context
        context: ApiContext | None = ctx.context if hasattr(ctx.context, "browser") else None
        browser = context.browser if context is not None else None
        if (browser is not None and browser.uses_cookies and ctx.operation_type == OperationType.MUTATION
                and not self._exempt() and not await browser.csrf_ok()):
            raise CsrfFailed()
        yield

    def _exempt(self) -> bool:
        document = self.execution_context.graphql_document
        if document is None:
            return False
        operation = get_operation_ast(document, self.execution_context.operation_name)
        if operation is None:
            return False
        # A fragment at the root could hide any field: only plain fields can be exempt.
        return all(isinstance(s, FieldNode) and s.name.value in EXEMPT for s in operation.selection_set.selections)
