"""User passwords: argon2id hashes, computed in worker threads, with the same work for unknown users.

argon2 is deliberately slow and memory-hard (argon2-cffi's defaults: 64 MiB, 3 passes, about 50 ms
here), so it never runs on the event loop: :func:`hash_password` and :func:`verify_password` hand it
to a worker thread. A capacity limiter bounds how many run at once, which bounds memory (64 MiB each)
and keeps a burst of logins from starving the database's worker threads.

A login for an unknown user (or one without a password) verifies against a dummy hash, so the answer
takes as long as for a real user: response time says nothing about which accounts exist.
"""

from __future__ import annotations

import os

import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()  # argon2id with argon2-cffi's current defaults (RFC 9106 low-memory profile)
# Created once at import: its cost is the same as a real user's hash.
_DUMMY_HASH = _hasher.hash("csms-dummy-password-for-unknown-users")
# At most this many argon2 computations at once (each holds 64 MiB while it runs). A RunVar because a
# Trio limiter belongs to one trio.run (tests start many).
_SLOTS: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("csms_argon2_slots")

MIN_LENGTH = 8
MAX_LENGTH = 128
# A few of the most common passwords of 8+ characters; a real deny list belongs to the product team.
_COMMON = frozenset({"password", "password1", "12345678", "123456789", "1234567890", "qwertyui", "qwerty123",
                     "11111111", "iloveyou", "abc12345", "00000000", "87654321", "11223344"})


def _slots() -> trio.CapacityLimiter:
    try:
        return _SLOTS.get()
    except LookupError:
        limiter = trio.CapacityLimiter(max(2, os.cpu_count() or 2))
        _SLOTS.set(limiter)
        return limiter


class WeakPassword(ValueError):
    """The password breaks the policy; the message says how, without repeating it."""


def check_policy(password: str) -> None:
    """Refuse passwords that are too short, too long, blank or among the most common.

    Raises:
        WeakPassword: with a message fit for the user.
    """
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"The password needs at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"The password may have at most {MAX_LENGTH} characters.")
    if not password.strip() or len(set(password)) < 3 or password.lower() in _COMMON:
        raise WeakPassword("The password is too easy to guess.")


async def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (computed in a worker thread)."""
    return await trio.to_thread.run_sync(_hasher.hash, password, limiter=_slots())


def _verify(password_hash: str | None, password: str) -> tuple[bool, bool]:
    try:
        ok = _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False, False
    return ok, ok and _hasher.check_needs_rehash(password_hash or _DUMMY_HASH)


async def verify_password(password_hash: str | None, password: str) -> tuple[bool, bool]:
    """Check ``password`` against ``password_hash`` (None: no such user, costs the same).

    Returns:
        ``(matches, needs_rehash)``: ``needs_rehash`` is true when the hash was made with older
        parameters and should be replaced by :func:`hash_password` now that the password is known.
    """
    return await trio.to_thread.run_sync(_verify, password_hash, password, limiter=_slots())
