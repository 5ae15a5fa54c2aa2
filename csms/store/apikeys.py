"""Operator API keys: create, verify, revoke (table ``api_keys``).

A token reads ``csms_<prefix>_<secret>``: an 8-character public prefix that finds the row, and a
256-bit secret of which only the SHA-256 is stored. The secret is random, so a fast hash is enough
(no dictionary to attack) and verification costs one indexed lookup. The token is shown once, when
it is created; nothing here logs it.

Every function takes a connection and runs inside the caller's transaction: call them through
``Database.run``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

TOKEN_PREFIX = "csms"
_PREFIX_CHARS = 8
_SECRET_BYTES = 32
# token_urlsafe(32) is 43 characters; the prefix may itself contain "_", so parse by fixed lengths.
_TOKEN_RE = re.compile(r"csms_([A-Za-z0-9_-]{8})_([A-Za-z0-9_-]{43})")
# last_used_at is informative; writing it on every request would turn each read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class ApiKeyInfo:
    """What a valid key says about its holder (never the secret)."""

    id: str
    name: str
    prefix: str
    role: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None = None
    user_id: str | None = None


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def parse_token(token: str) -> tuple[str, str] | None:
    """Split a token into ``(prefix, secret)``, or None if it is not shaped like one of ours."""
    match = _TOKEN_RE.fullmatch(token)
    if match is None:
        return None
    return match.group(1), match.group(2)


def create_api_key(conn: psycopg.Connection[Any], name: str, *, role: str = "admin",
                   user_id: str | None = None) -> str:
    """Create an API key named ``name`` and return its token (the only time it is visible).

    Args:
        role: ``admin``, or ``owner`` for a key that acts as the owner ``user_id``.

    Raises:
        ValueError: ``name`` is empty or longer than 100 characters, or an owner key has no user.
    """
    if role not in ("admin", "owner") or (role == "owner") != (user_id is not None):
        raise ValueError("an API key is admin (no user) or owner (with the owner's user id)")
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise ValueError("an API key name must be 1 to 100 characters")
    while True:
        # 6 random bytes are 8 url-safe characters; a prefix collision is rare, so just draw again.
        prefix = secrets.token_urlsafe(6)
        secret = secrets.token_urlsafe(_SECRET_BYTES)
        row = conn.execute(
            "INSERT INTO api_keys (name, prefix, secret_sha256, role, user_id) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (prefix) DO NOTHING RETURNING id",
            (name, prefix, _digest(secret), role, user_id),
        ).fetchone()
        if row is not None:
            return f"{TOKEN_PREFIX}_{prefix}_{secret}"


def verify_api_key(conn: psycopg.Connection[Any], token: str) -> ApiKeyInfo | None:
    """Return the key's info if ``token`` is a valid, unrevoked key, else None.

    A malformed token is not an error: it is simply not a key. The secret is compared in constant time.
    ``last_used_at`` is refreshed at most once per :data:`LAST_USED_RESOLUTION`.
    """
    parsed = parse_token(token)
    if parsed is None:
        return None
    prefix, secret = parsed
    row = conn.execute(
        "SELECT id::text, name, prefix, role, created_at, last_used_at, revoked_at, secret_sha256, now(),"
        " user_id::text FROM api_keys WHERE prefix = %s",
        (prefix,),
    ).fetchone()
    if row is None:
        return None
    key_id, key_name, key_prefix, role, created_at, last_used_at, revoked_at, stored, now, user_id = row
    if not hmac.compare_digest(_digest(secret), bytes(stored)) or revoked_at is not None:
        return None
    if last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION:
        conn.execute("UPDATE api_keys SET last_used_at = now() WHERE id = %s", (key_id,))
        last_used_at = now
    return ApiKeyInfo(key_id, key_name, key_prefix, role, created_at, last_used_at, None, user_id)


def revoke_api_key(conn: psycopg.Connection[Any], prefix: str) -> bool:
    """Revoke the key with this prefix (idempotent: an already revoked key stays revoked as it was).

    Returns:
        False if no key has this prefix.
    """
    row = conn.execute(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE prefix = %s RETURNING id",
        (prefix,),
    ).fetchone()
    return row is not None


def list_api_keys(conn: psycopg.Connection[Any]) -> list[ApiKeyInfo]:
    """All keys, revoked ones included, oldest first (for ``csms apikey list``)."""
    rows = conn.execute(
        "SELECT id::text, name, prefix, role, created_at, last_used_at, revoked_at, user_id::text"
        " FROM api_keys ORDER BY created_at, prefix"
    ).fetchall()
    return [ApiKeyInfo(*row) for row in rows]
