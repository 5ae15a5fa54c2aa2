"""SQL for users (table ``users``).

Emails compare case-insensitively (a unique index on ``lower(email)``); phones are E.164. Nothing here
logs a phone, an email or a password hash.

Every function runs inside the caller's transaction (call them through ``Database.run``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

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
