"""SQL for users (table ``users``).

Emails compare case-insensitively (a unique index on ``lower(email)``); phones are E.164. Nothing here
logs a phone, an email or a password hash.

Every function runs inside the caller's transaction (call them through ``Database.run``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from csms.store import audit

if TYPE_CHECKING:
    from datetime import datetime

    from csms.store.db import Conn

UserRole = Literal["driver", "owner", "admin"]
UserStatus = Literal["active", "blocked", "pending_deletion"]

_COLUMNS = "id::text, role, status, phone, email, name, created_at"


@dataclass(frozen=True, slots=True)
class User:
    """A user as the API and the services see it (never the password hash)."""

    id: str
    role: str
    status: str
    phone: str | None
    email: str | None
    name: str
    created_at: datetime


def create_user(
    conn: Conn,
    *,
    role: UserRole = "driver",
    phone: str | None = None,
    email: str | None = None,
    name: str = "",
    password_hash: str | None = None,
    status: UserStatus = "active",
) -> User:
    """Insert a user and return it.

    Raises:
        psycopg.errors.UniqueViolation: the phone or email is taken (constraint ``users_phone`` or
            ``users_email``).
    """
    row = conn.execute(
        f"""INSERT INTO users (role, status, phone, email, name, password_hash)
            VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}""",
        (role, status, phone, email, name, password_hash),
    ).fetchone()
    assert row is not None
    return User(*row)


def get_user(conn: Conn, user_id: str) -> User | None:
    """The user with this id, or None."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM users WHERE id = %s", (user_id,)).fetchone()
    return User(*row) if row else None


def user_exists(conn: Conn, user_id: str) -> bool:
    """Whether a user has this id (``user_id`` must be a UUID)."""
    return conn.execute("SELECT 1 FROM users WHERE id = %s", (user_id,)).fetchone() is not None


def find_for_login(conn: Conn, *, phone: str | None = None, email: str | None = None) -> tuple[User, str | None] | None:
    """The user with this phone (exact, E.164) or email (case-insensitive), and their password hash."""
    if phone is not None:
        row = conn.execute(f"SELECT {_COLUMNS}, password_hash FROM users WHERE phone = %s", (phone,)).fetchone()
    elif email is not None:
        row = conn.execute(f"SELECT {_COLUMNS}, password_hash FROM users WHERE lower(email) = lower(%s)",
                           (email,)).fetchone()
    else:
        raise ValueError("find_for_login needs a phone or an email")
    if row is None:
        return None
    return User(*row[:-1]), row[-1]


def find_user(conn: Conn, reference: str) -> User | None:
    """A user by id, email (case-insensitive, contains ``@``) or phone: how operators name users."""
    try:
        user_id = str(uuid.UUID(reference))
    except ValueError:
        found = find_for_login(conn, email=reference) if "@" in reference else find_for_login(conn, phone=reference)
        return found[0] if found else None
    return get_user(conn, user_id)


def set_password_hash(conn: Conn, user_id: str, password_hash: str) -> None:
    """Replace a user's password hash (argon2 parameters were upgraded, or the password changed)."""
    conn.execute("UPDATE users SET password_hash = %s, updated_at = now() WHERE id = %s", (password_hash, user_id))


def set_status(conn: Conn, user_id: str, status: UserStatus, *, actor: tuple[str, str]) -> User | None:
    """Set a user's status and record who did it in the audit log; None if there is no such user.

    Idempotent: setting the status a user already has changes nothing and writes no audit row, and
    ``deletion_requested_at`` keeps the time of the first request.
    """
    before = conn.execute("SELECT status FROM users WHERE id = %s FOR UPDATE", (user_id,)).fetchone()
    if before is None:
        return None
    if before[0] != status:
        conn.execute(
            """UPDATE users SET status = %(s)s, updated_at = now(),
                   deletion_requested_at = CASE WHEN %(s)s = 'pending_deletion'
                                                THEN coalesce(deletion_requested_at, now()) END
               WHERE id = %(id)s""",
            {"s": status, "id": user_id},
        )
        audit.record(conn, actor_kind=actor[0], actor_id=actor[1], action="user.set_status",
                     target=f"user:{user_id}", detail={"from": before[0], "to": status})
    return get_user(conn, user_id)


def lock_status(conn: Conn, user_id: str) -> str | None:
    """A user's status, share-locked until the caller's transaction ends (None: no such user).

    The lock makes a concurrent status change (blocking, deletion) wait until the caller commits, so a
    money operation checked against ``active`` cannot interleave with the block that would refuse it.
    """
    row = conn.execute("SELECT status FROM users WHERE id = %s FOR SHARE", (user_id,)).fetchone()
    return str(row[0]) if row else None


def find_or_create_external(conn: Conn, issuer: str, subject: str, name: str = "") -> User:
    """The user an external identity provider calls ``subject``, created as an active driver on first sight.

    Safe under concurrency and retries: two first requests at once create one user.
    """
    conn.execute(
        """INSERT INTO users (role, status, name, external_issuer, external_subject)
           VALUES ('driver', 'active', %s, %s, %s)
           ON CONFLICT (external_issuer, external_subject) DO NOTHING""",
        (name[:200], issuer, subject),
    )
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM users WHERE external_issuer = %s AND external_subject = %s", (issuer, subject)
    ).fetchone()
    assert row is not None
    return User(*row)
