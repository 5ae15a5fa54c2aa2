"""Who may see a root field: every field of Query, Mutation and Subscription names one of these.

:func:`assert_every_field_guarded` refuses to build a schema with a root field that carries no
:class:`Access` permission, so a new field cannot be left open by accident: a field meant for
everyone says so with :class:`Public`. Finer rules (an owner sees only their own stations) are
checked in the resolvers, against ``info.context.principal``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from strawberry.permission import BasePermission

from csms.api.context import Role

if TYPE_CHECKING:
    from strawberry import Info

    from csms.api.context import ApiContext


class Access(BasePermission):
    """Base of the API's access rules (the schema guard looks for a subclass of it)."""

    def has_permission(self, source: Any, info: Info[ApiContext, None], **kwargs: Any) -> bool:
        raise NotImplementedError


class Public(Access):
    """Anyone, logged in or not (the map of locations, a station's live status)."""

    def has_permission(self, source: Any, info: Info[ApiContext, None], **kwargs: Any) -> bool:
        return True


class LoggedIn(Access):
    """Any authenticated caller; the resolver decides what they may see."""

    def has_permission(self, source: Any, info: Info[ApiContext, None], **kwargs: Any) -> bool:
        # require() raises the typed error itself, so the client sees UNAUTHENTICATED or FORBIDDEN.
        info.context.require()
        return True


class RequireOwner(Access):
    """Station owners (scoped to their own data by the resolver) and admins."""

    def has_permission(self, source: Any, info: Info[ApiContext, None], **kwargs: Any) -> bool:
        info.context.require(Role.OWNER)
        return True


class RequireAdmin(Access):
    """Operators only: an admin user or an admin API key."""

    def has_permission(self, source: Any, info: Info[ApiContext, None], **kwargs: Any) -> bool:
        info.context.require(Role.ADMIN)
        return True


PUBLIC: list[type[BasePermission]] = [Public]
LOGGED_IN: list[type[BasePermission]] = [LoggedIn]
OWNER: list[type[BasePermission]] = [RequireOwner]
ADMIN: list[type[BasePermission]] = [RequireAdmin]


def assert_every_field_guarded(root: type) -> None:
    """Raise if a root type has a field without an :class:`Access` permission (fails at import)."""
    definition = root.__strawberry_definition__  # type: ignore[attr-defined]
    for field in definition.fields:
        if not any(issubclass(p, Access) for p in field.permission_classes):
            raise RuntimeError(f"{root.__name__}.{field.python_name} has no access rule")
