"""SQL for refresh tokens (table ``refresh_tokens``): issue, rotate with reuse detection, revoke.

Only a token's SHA-256 is stored; the token itself is random (see ``csms.services.refresh_tokens``),
so a fast hash is enough. Tokens that descend from one login form a *family*. Each use rotates the
token: it is marked used and names its successor. Presenting a used token again means two parties
hold the chain (a thief and the real client), so the whole family is revoked and the next refresh of
either fails.

One exception keeps retries safe: a refresh whose answer was lost (timeout, cancelled request) is
repeated with the same token. Within ``grace_s`` of the first use, and only while the successor
itself is still unused, the repeat gets the *same* successor back instead of a new one. The chain
stays single, so reuse detection still fires as soon as both holders use it.

Every function runs inside the caller's transaction (call them through ``Database.run``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from datetime import datetime

    from csms.store.db import Conn

Outcome = Literal["rotated", "replayed", "reused", "invalid"]


@dataclass(frozen=True, slots=True)
class Rotation:
    """What presenting a refresh token did.

    Attributes:
        outcome: ``rotated`` (a new successor was stored), ``replayed`` (a retry within the grace
            period: the existing successor is handed out again), ``reused`` (a used token came back:
            the family is now revoked) or ``invalid`` (unknown, expired or revoked).
        user_id: the token's user (None when invalid).
        successor_id: the id of the successor row (rotated and replayed only).
        expires_at: the successor's expiry (rotated and replayed only).
        family_id: the token's family, i.e. its login session (all but invalid).
    """

    outcome: Outcome
    user_id: str | None = None
    successor_id: str | None = None
    expires_at: datetime | None = None
    family_id: str | None = None


def insert(conn: Conn, *, token_id: str, family_id: str, user_id: str, token_sha256: bytes, ttl_s: int) -> datetime:
    """Store a new token (the first of a family at login, or a successor); return its expiry."""
    row = conn.execute(
        """INSERT INTO refresh_tokens (id, family_id, user_id, token_sha256, expires_at)
           VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s)) RETURNING expires_at""",
        (token_id, family_id, user_id, token_sha256, ttl_s),
    ).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def prune_expired(conn: Conn, user_id: str) -> None:
    """Delete a user's tokens that expired more than a day ago (called at login, so rows stay few)."""
    conn.execute("DELETE FROM refresh_tokens WHERE user_id = %s AND expires_at < now() - interval '1 day'",
                 (user_id,))


def rotate(conn: Conn, token_sha256: bytes, *, successor_id: str, successor_sha256: bytes, ttl_s: int,
           grace_s: float) -> Rotation:
    """Use the token with this hash: store its successor, hand out the same one again, or revoke the family.

    Args:
        successor_id, successor_sha256: the row id and hash of the successor to store if the token is
            fresh (the caller derives the successor token from the presented one and this id).
        ttl_s: the successor's lifetime.
        grace_s: how long after a rotation a retry with the same token gets the same successor.

    The token's row is locked, so concurrent uses of one token are serialised: one rotates, the others
    see it used.
    """
    row = conn.execute(
        """SELECT id::text, family_id::text, user_id::text, expires_at <= now(), used_at IS NOT NULL,
                  replaced_by::text, revoked_at IS NOT NULL,
                  used_at > now() - make_interval(secs => %s)
           FROM refresh_tokens WHERE token_sha256 = %s FOR UPDATE""",
        (grace_s, token_sha256),
    ).fetchone()
    if row is None:
        return Rotation("invalid")
    token_id, family_id, user_id, expired, used, replaced_by, revoked, in_grace = row
    if revoked or expired:
        return Rotation("invalid")
    if not used:
        expires_at = insert(conn, token_id=successor_id, family_id=family_id, user_id=user_id,
                            token_sha256=successor_sha256, ttl_s=ttl_s)
        conn.execute("UPDATE refresh_tokens SET used_at = now(), replaced_by = %s WHERE id = %s",
                     (successor_id, token_id))
        return Rotation("rotated", user_id, successor_id, expires_at, family_id)
    if in_grace and replaced_by is not None:
        successor = conn.execute(
            """SELECT expires_at FROM refresh_tokens
               WHERE id = %s AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now()""",
            (replaced_by,),
        ).fetchone()
        if successor is not None:
            return Rotation("replayed", user_id, replaced_by, successor[0], family_id)
    revoke_family(conn, family_id)
    return Rotation("reused", user_id, family_id=family_id)


def revoke_family(conn: Conn, family_id: str) -> None:
    """Revoke every token of a family (idempotent: revoked tokens keep their first revocation time)."""
    conn.execute("UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = %s AND revoked_at IS NULL",
                 (family_id,))


def revoke_family_of(conn: Conn, token_sha256: bytes) -> str | None:
    """Revoke the family of the token with this hash (logout); return the family id, or None if unknown."""
    row = conn.execute("SELECT family_id::text FROM refresh_tokens WHERE token_sha256 = %s",
                       (token_sha256,)).fetchone()
    if row is None:
        return None
    revoke_family(conn, row[0])
    return str(row[0])


def families_revoked(conn: Conn, family_ids: list[str]) -> list[str]:
    """Which of these login sessions were revoked."""
    rows = conn.execute("""SELECT DISTINCT family_id::text FROM refresh_tokens
                           WHERE family_id = ANY(%s::uuid[]) AND revoked_at IS NOT NULL""", (family_ids,)).fetchall()
    return [str(row[0]) for row in rows]


def family_revoked(conn: Conn, family_id: str) -> bool:
    """Whether the login session ``family_id`` was revoked (logout, reuse, account deletion)."""
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM refresh_tokens WHERE family_id = %s AND revoked_at IS NOT NULL)",
                       (family_id,)).fetchone()
    return bool(row and row[0])


def revoke_user(conn: Conn, user_id: str) -> int:
    """Revoke every live token of a user (account deletion); return how many were revoked."""
    cursor = conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL", (user_id,)
    )
    return cursor.rowcount


def live_user(conn: Conn, token_sha256: bytes) -> str | None:
    """The user of an unexpired, unrevoked token with this hash (used or not), else None."""
    row = conn.execute(
        """SELECT user_id::text FROM refresh_tokens
           WHERE token_sha256 = %s AND revoked_at IS NULL AND expires_at > now()""",
        (token_sha256,),
    ).fetchone()
    return str(row[0]) if row else None
