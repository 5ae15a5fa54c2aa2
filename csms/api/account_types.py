"""GraphQL types of accounts and sessions: ``User``, ``AuthPayload`` and the register/login inputs."""

from __future__ import annotations

import enum
from datetime import datetime  # noqa: TC003 (strawberry resolves annotations at runtime)
from typing import TYPE_CHECKING, Any, cast

import strawberry
from strawberry import Info

from csms.api.context import ApiContext  # noqa: TC001
from csms.api.scalars import Long  # noqa: TC001
from csms.store import ledger

if TYPE_CHECKING:
    from csms.services.logins import AuthSession
    from csms.store.users import User


@strawberry.enum(description="What a user may do.")
class UserRole(enum.Enum):
    DRIVER = "driver"
    OWNER = "owner"
    ADMIN = "admin"


@strawberry.enum(description="Whether a user may pay and charge. Blocked and deleting users may still log in and look.")
class UserStatus(enum.Enum):
    ACTIVE = "active"
    BLOCKED = "blocked"
    PENDING_DELETION = "pending_deletion"


async def resolve_balance(root: Any, info: Info[ApiContext, None]) -> Long:
    """The wallet's spendable balance (posted credits minus debits and holds), read when selected."""
    balance = await info.context.db.run(ledger.wallet_available, str(root.id))
    return cast("Long", balance)


@strawberry.type(name="User", description="A person with an account: a driver, a station owner or an operator.")
class Account:
    id: strawberry.ID
    phone: str | None = strawberry.field(description="E.164, e.g. +996555123456.")
    email: str | None
    name: str
    role: UserRole
    status: UserStatus
    created_at: datetime
    balance_tyiyn: Long = strawberry.field(
        resolver=resolve_balance, description="Spendable wallet balance in tyiyn (1 som = 100 tyiyn), holds deducted.")

    @classmethod
    def from_user(cls, user: User) -> Account:
        """The API view of a stored user."""
        return cls(id=strawberry.ID(user.id), phone=user.phone, email=user.email, name=user.name,
                   role=UserRole(user.role), status=UserStatus(user.status), created_at=user.created_at)


@strawberry.input(description="A new driver account: a phone or an email (or both), and a password.")
class RegisterInput:
    password: str = strawberry.field(description="At least 8 characters, not a common password.")
    phone: str | None = strawberry.field(default=None, description="International format, e.g. +996555123456.")
    email: str | None = None
    name: str = ""


@strawberry.input(description="Exactly one of phone and email, and the password.")
class LoginInput:
    password: str
    phone: str | None = None
    email: str | None = strawberry.field(default=None, description="Compared case-insensitively.")


@strawberry.type(description="A new session. In cookie mode the tokens are in HttpOnly cookies and null here.")
class AuthPayload:
    user: Account
    access_token: str | None = strawberry.field(description="Send as `Authorization: Bearer`; lives 15 minutes.")
    access_token_expires_at: datetime
    refresh_token: str | None = strawberry.field(
        description="Opaque; trade it for a new session with `refresh`. Each use replaces it.")
    refresh_token_expires_at: datetime
    csrf_token: str | None = strawberry.field(
        description="Cookie mode only: send it as the `X-CSRF-Token` header with every mutation.")

    @classmethod
    def from_session(cls, session: AuthSession, *, cookie: bool, csrf_token: str | None) -> AuthPayload:
        """The payload of a session; in cookie mode without the tokens (they are in the cookies)."""
        return cls(user=Account.from_user(session.user),
                   access_token=None if cookie else session.access_token,
                   access_token_expires_at=session.access_expires_at,
                   refresh_token=None if cookie else session.refresh_token,
                   refresh_token_expires_at=session.refresh_expires_at,
                   csrf_token=csrf_token)
