"""User accounts: what a valid phone, email and name are, creating accounts, their status, and who may pay.

Other services call :func:`ensure_can_transact` inside their own transaction before they move a
user's money or start a session for them. It raises :class:`AccountBlocked` or
:class:`AccountPendingDeletion`, which the API reports as ``ACCOUNT_BLOCKED`` and
``ACCOUNT_PENDING_DELETION`` (``csms.api.auth_errors.account_errors``). Blocked users and users
awaiting deletion may still log in and read their account: they only may not transact.

Logging in, refresh tokens and logging out are in ``csms.services.logins``.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

import psycopg

from csms.services import passwords
from csms.store import refresh_tokens as refresh_store
from csms.store import users as store

if TYPE_CHECKING:
    from csms.store.db import Conn, Database
    from csms.store.users import User, UserRole, UserStatus

# E.164: a plus, a country code that does not start with 0, at most 15 digits in all.
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
# What people type between digits; removed before checking.
_PHONE_SEPARATORS = re.compile(r"[\s().\-]")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s.]+")
MAX_EMAIL = 254
MAX_NAME = 200
STATUSES: tuple[UserStatus, ...] = ("active", "blocked", "pending_deletion")
ROLES: tuple[UserRole, ...] = ("driver", "owner", "admin")


class AccountError(Exception):
    """Base of the account service's refusals."""


class InvalidInput(AccountError):
    """A phone, email, name or password is malformed or too weak; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class IdentifierTaken(AccountError):
    """Another account already has this phone or email (``field`` is ``phone`` or ``email``)."""

    def __init__(self, field: str) -> None:
        super().__init__(f"this {field} is already registered")
        self.field = field


class UnknownAccount(AccountError):
    """No user has this id."""


class AccountBlocked(AccountError):
    """An operator blocked the account: it may log in and look, but not pay or charge."""


class AccountPendingDeletion(AccountError):
    """The user asked for the account to be deleted: it may not pay or charge any more."""


def normalize_phone(raw: str) -> str:
    """``raw`` as E.164 (``+996 555 12-34-56`` → ``+996555123456``).

    Raises:
        InvalidInput: not a phone number in international format.
    """
    phone = _PHONE_SEPARATORS.sub("", raw.strip())
    if not _E164.fullmatch(phone):
        raise InvalidInput("phone", "The phone number must be in international format, e.g. +996555123456.")
    return phone


def normalize_email(raw: str) -> str:
    """``raw`` trimmed and checked; kept as typed (emails compare case-insensitively everywhere).

    Raises:
        InvalidInput: not an email address.
    """
    email = raw.strip()
    if len(email) > MAX_EMAIL or not _EMAIL.fullmatch(email):
        raise InvalidInput("email", "The email address is not valid.")
    return email


def normalize_name(raw: str) -> str:
    """A display name: trimmed, NFC, without control characters, at most 200 characters.

    Raises:
        InvalidInput: too long or contains control characters.
    """
    name = unicodedata.normalize("NFC", raw.strip())
    if len(name) > MAX_NAME:
        raise InvalidInput("name", f"The name may have at most {MAX_NAME} characters.")
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise InvalidInput("name", "The name may not contain control characters.")
    return name


def check_password(password: str) -> None:
    """Apply the password policy (``csms.services.passwords.check_policy``) as an :class:`InvalidInput`."""
    try:
        passwords.check_policy(password)
    except passwords.WeakPassword as exc:
        raise InvalidInput("password", str(exc)) from None


def validate_new_account(*, phone: str | None, email: str | None, name: str,
                         password: str | None) -> tuple[str | None, str | None, str]:
    """Check and normalise a new account's fields; returns ``(phone, email, name)``.

    Raises:
        InvalidInput: neither phone nor email, or a field is malformed, or the password is weak.
    """
    phone = normalize_phone(phone) if phone else None
    email = normalize_email(email) if email else None
    if phone is None and email is None:
        raise InvalidInput("phone", "A phone number or an email address is required.")
    if password is not None:
        check_password(password)
    return phone, email, normalize_name(name)


def insert_account(conn: Conn, *, role: UserRole, phone: str | None, email: str | None, name: str,
                   password_hash: str | None) -> User:
    """Insert a validated account in the caller's transaction.

    Raises:
        IdentifierTaken: the phone or email belongs to another account.
    """
    try:
        return store.create_user(conn, role=role, phone=phone, email=email, name=name, password_hash=password_hash)
    except psycopg.errors.UniqueViolation as exc:
        raise IdentifierTaken("phone" if exc.diag.constraint_name == "users_phone" else "email") from None


async def create_account(db: Database, *, role: UserRole, phone: str | None, email: str | None, name: str = "",
                         password: str | None = None) -> User:
    """Create an active account (operators' ``csms user create``).

    Raises:
        InvalidInput: a field is malformed or the password is weak.
        IdentifierTaken: the phone or email is taken.
    """
    phone, email, name = validate_new_account(phone=phone, email=email, name=name, password=password)
    hashed = await passwords.hash_password(password) if password is not None else None
    return await db.run(insert_account, role=role, phone=phone, email=email, name=name, password_hash=hashed)


async def set_status(db: Database, user_id: str, status: UserStatus, *, actor: tuple[str, str]) -> User:
    """Set an account's status (audited). Moving to ``pending_deletion`` also revokes its refresh tokens.

    Raises:
        UnknownAccount: no user has this id.
    """

    def change(conn: Conn) -> User | None:
        user = store.set_status(conn, user_id, status, actor=actor)
        if user is not None and status == "pending_deletion":
            refresh_store.revoke_user(conn, user_id)
        return user

    user = await db.run(change)
    if user is None:
        raise UnknownAccount(user_id)
    return user


async def request_deletion(db: Database, user_id: str) -> User:
    """The user's own request to delete their account: status ``pending_deletion``, every device logged out.

    Idempotent. Access tokens already issued stay valid until they expire (15 minutes at most).
    """
    return await set_status(db, user_id, "pending_deletion", actor=("user", user_id))


def ensure_can_transact(conn: Conn, user_id: str) -> None:
    """Refuse money operations for accounts that are not active; call it inside the operation's transaction.

    The user's row is share-locked until that transaction ends, so an operator blocking the account at
    the same moment waits for it rather than racing it.

    Raises:
        UnknownAccount: no such user.
        AccountBlocked: an operator blocked the account.
        AccountPendingDeletion: the user asked for deletion.
    """
    status = store.lock_status(conn, user_id)
    if status is None:
        raise UnknownAccount(user_id)
    if status == "blocked":
        raise AccountBlocked()
    if status == "pending_deletion":
        raise AccountPendingDeletion()
