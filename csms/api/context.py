"""Who is calling, and with what: the context object every resolver receives.

A request is authenticated once, when its context is built (``app.py`` turns an ``Authorization:
Bearer`` header into a :class:`Principal`); resolvers only ask the context. Roles are a set so that
drivers and station owners (with their own kinds of credential) can be added without changing the
resolvers that only need "admin".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from csms.api.errors import Forbidden, Unauthenticated

if TYPE_CHECKING:
    from csms.store.apikeys import ApiKeyInfo
    from csms.store.db import Database


class Role(enum.StrEnum):
    """What a principal may do. Only ``admin`` exists so far; ``owner`` and ``driver`` come next."""

    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    Attributes:
        kind: how it authenticated (``"api_key"`` for now; later ``"jwt"`` and friends).
        subject: a stable id of the caller within its kind (the API key's id).
        name: a human label for logs and audits (never a secret).
        roles: what the caller may do.
    """

    kind: str
    subject: str
    name: str
    roles: frozenset[Role]

    @classmethod
    def from_api_key(cls, key: ApiKeyInfo) -> Principal:
        """The principal of an operator API key (every key is an admin key)."""
        return cls(kind="api_key", subject=key.id, name=key.name, roles=frozenset({Role(key.role)}))


@dataclass
class ApiContext:
    """Per-request context handed to strawberry as ``info.context``.

    Attributes:
        db: the database every resolver reads through.
        principal: the authenticated caller, or None for an anonymous request.
    """

    db: Database
    principal: Principal | None = None
    # Room for per-request state (e.g. a request id for logs) without changing the constructor.
    extra: dict[str, object] = field(default_factory=dict)

    def require(self, role: Role) -> Principal:
        """Return the principal if it has ``role``.

        Raises:
            Unauthenticated: nobody is logged in.
            Forbidden: the caller lacks ``role``.
        """
        if self.principal is None:
            raise Unauthenticated()
        if role not in self.principal.roles:
            raise Forbidden()
        return self.principal
