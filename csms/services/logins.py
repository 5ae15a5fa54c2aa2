"""Logging in: register, login by phone or email, refresh token rotation, logout.

A session is a pair: a 15-minute ES256 access token (``csms.services.tokens``) and an opaque refresh
token that gets a new access token and is replaced on every use (``csms.store.refresh_tokens``).

Refresh tokens are 256 random bits, and only their SHA-256 is stored. A successor token is derived
from the token it replaces: ``HMAC-SHA256(key=old token, msg=successor's row id)``. The row id is
random and known only to the database, and the old token only to its holder, so nobody else can
compute a successor. But a retried refresh (its answer was lost) can be given the *same* successor
again without storing any token, which is what makes refresh safe to repeat.

Login failures are one error, :class:`InvalidCredentials`, whatever was wrong, and an unknown user
costs the same argon2 work as a known one (``csms.services.passwords``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from csms.services import passwords
from csms.services.accounts import AccountError, InvalidInput, insert_account, normalize_email, normalize_phone
from csms.services.accounts import validate_new_account as _validate
from csms.services.tokens import ACCESS_TOKEN_TTL_S
from csms.store import refresh_tokens as store
from csms.store import users as user_store

if TYPE_CHECKING:
    from csms.services.session_revocation import SessionRevocations
    from csms.services.tokens import TokenSigner
    from csms.store.db import Conn, Database
    from csms.store.users import User

_TOKEN_BYTES = 32
# Longer input is not one of our tokens; refusing it early avoids hashing megabytes.
MAX_REFRESH_TOKEN_CHARS = 100


class InvalidCredentials(AccountError):
    """Login failed: unknown user, wrong password, or no password set. Deliberately one error."""


class InvalidRefreshToken(AccountError):
    """The refresh token is unknown, expired, revoked, or was reused (its family is now revoked)."""


@dataclass(frozen=True)
class LoginPolicy:
    """How long refresh tokens live, and how long a retried refresh gets the same successor back."""

    refresh_ttl_s: int = 30 * 24 * 3600
    reuse_grace_s: float = 10.0


@dataclass(frozen=True)
class AuthSession:
    """What a client gets when it logs in or refreshes (the tokens are secrets: never log them)."""

    user: User
    access_token: str
    access_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime


def digest(token: str) -> bytes:
    """The SHA-256 stored for a refresh token."""
    return hashlib.sha256(token.encode()).digest()


def _successor(token: str, successor_id: str) -> str:
    mac = hmac.new(token.encode(), successor_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def _open(conn: Conn, user_id: str, ttl_s: int) -> tuple[str, datetime, str]:
    """A new refresh token family (a login session) for ``user_id``, in the caller's transaction:
    the token, its expiry and the family id."""
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    store.prune_expired(conn, user_id)
    family = str(uuid.uuid4())
    expires = store.insert(conn, token_id=family, family_id=family, user_id=user_id, token_sha256=digest(token),
                           ttl_s=ttl_s)
    return token, expires, family


def _session(signer: TokenSigner, user: User, refresh_token: str, refresh_expires: datetime,
             session_id: str) -> AuthSession:
    issued = int(time.time())
    # The access token names its login session, so ending the session ends the token too.
    access = signer.issue(user.id, user.role, now=issued, session_id=session_id)
    return AuthSession(user, access, datetime.fromtimestamp(issued + ACCESS_TOKEN_TTL_S, UTC), refresh_token,
                       refresh_expires)


async def register(db: Database, signer: TokenSigner, policy: LoginPolicy, *, phone: str | None,
                   email: str | None, name: str, password: str) -> AuthSession:
    """Create a driver account and log it in, in one transaction.

    A retry after a lost answer gets :class:`~csms.services.accounts.IdentifierTaken` and changes
    nothing; the client then logs in.

    Raises:
        InvalidInput: a field is malformed or the password is weak.
        IdentifierTaken: the phone or email belongs to another account.
    """
    phone, email, name = _validate(phone=phone, email=email, name=name, password=password)
    hashed = await passwords.hash_password(password)

    def create(conn: Conn) -> tuple[User, str, datetime, str]:
        user = insert_account(conn, role="driver", phone=phone, email=email, name=name, password_hash=hashed)
        return (user, *_open(conn, user.id, policy.refresh_ttl_s))

    return _session(signer, *await db.run(create))


def login_identifier(*, phone: str | None, email: str | None) -> tuple[str | None, str | None]:
    """Exactly one of phone and email, normalised; the key rate limits count logins by.

    Raises:
        InvalidInput: both or neither were given, or the one given is malformed.
    """
    if (phone is None) == (email is None):
        raise InvalidInput("phone", "Give either a phone number or an email address.")
    if phone is not None:
        return normalize_phone(phone), None
    assert email is not None
    return None, normalize_email(email).lower()


async def login(db: Database, signer: TokenSigner, policy: LoginPolicy, *, phone: str | None, email: str | None,
                password: str) -> AuthSession:
    """Check a password and start a session. Blocked users may log in (they may look, not pay).

    Raises:
        InvalidInput: the identifier is malformed (that says nothing about any account).
        InvalidCredentials: anything else went wrong.
    """
    phone, email = login_identifier(phone=phone, email=email)
    if len(password) > passwords.MAX_LENGTH:
        raise InvalidCredentials()  # no account can have it; costs nothing and reveals nothing
    found = await db.run(user_store.find_for_login, phone=phone, email=email)
    user, password_hash = found if found is not None else (None, None)
    matches, needs_rehash = await passwords.verify_password(password_hash, password)
    if user is None or not matches:
        raise InvalidCredentials()
    rehashed = await passwords.hash_password(password) if needs_rehash else None
    # Bound to a local so the closure below sees a non-None user.
    user_id = user.id

    def start(conn: Conn) -> tuple[str, datetime, str]:
        if rehashed is not None:
            user_store.set_password_hash(conn, user_id, rehashed)
        return _open(conn, user_id, policy.refresh_ttl_s)

    return _session(signer, user, *await db.run(start))


async def refresh(db: Database, signer: TokenSigner, policy: LoginPolicy, token: str,
                  revocations: SessionRevocations | None = None) -> AuthSession:
    """Trade a refresh token for a new session (a new access token and the token's successor).

    Args:
        revocations: told when a reused token revokes its session, so the session's access tokens stop
            working on this node at once.

    Raises:
        InvalidRefreshToken: unknown, expired or revoked; or reused, in which case the token's whole
            family was revoked (committed before this raises).
    """
    if not token or len(token) > MAX_REFRESH_TOKEN_CHARS:
        raise InvalidRefreshToken()
    successor_id = str(uuid.uuid4())

    def use(conn: Conn) -> tuple[store.Rotation, User | None]:
        rotation = store.rotate(conn, digest(token), successor_id=successor_id,
                                successor_sha256=digest(_successor(token, successor_id)),
                                ttl_s=policy.refresh_ttl_s, grace_s=policy.reuse_grace_s)
        user = user_store.get_user(conn, rotation.user_id) if rotation.user_id else None
        return rotation, user

    rotation, user = await db.run(use)
    if rotation.outcome == "reused" and rotation.family_id is not None and revocations is not None:
        revocations.revoked(rotation.family_id)
    if rotation.outcome not in ("rotated", "replayed") or user is None:
        raise InvalidRefreshToken()
    assert rotation.successor_id is not None
    assert rotation.expires_at is not None
    assert rotation.family_id is not None
    return _session(signer, user, _successor(token, rotation.successor_id), rotation.expires_at,
                    rotation.family_id)


async def logout(db: Database, token: str, revocations: SessionRevocations | None = None) -> None:
    """Revoke the session a refresh token belongs to (its whole family). Unknown tokens are ignored.

    The session's access tokens stop working too: at once on this node (``revocations``), within
    seconds on the others (``csms.services.session_revocation``).
    """
    if token and len(token) <= MAX_REFRESH_TOKEN_CHARS:
        family = await db.run(store.revoke_family_of, digest(token))
        if family is not None and revocations is not None:
            revocations.revoked(family)


async def refresh_token_user(db: Database, token: str) -> str | None:
    """The user a live refresh token belongs to, without using it (binds a browser's CSRF token)."""
    if not token or len(token) > MAX_REFRESH_TOKEN_CHARS:
        return None
    return await db.run(store.live_user, digest(token))
