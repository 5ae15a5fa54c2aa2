"""``Idempotency-Key`` for mutations that move money (startCharging, stopCharging, later top-ups).

A client that retries a request (a timeout, a flaky mobile network) sends the same key again and must
get the first result instead of a second charge. The key is scoped to the caller and the operation
(table ``idempotency_keys``, primary key ``(principal, operation, key)``) and remembered for 24 hours;
the same key with a different request is refused with ``IDEMPOTENCY_KEY_REUSED``.

Use it inside the transaction that does the work::

    stored = claim(conn, principal, "startCharging", key, fingerprint(request))
    if stored is not None:
        return stored                      # a retry: the first result
    ... do the work ...
    complete(conn, principal, "startCharging", key, {"session_id": ...})

Because the claim and the work commit together, a crash or a cancelled call leaves either both or
neither, and a concurrent retry with the same key waits on the key's unique index until the first
commits, then reads its result. An operation that cannot finish in one transaction completes later;
until then a retry gets ``IDEMPOTENCY_KEY_IN_PROGRESS``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    from collections.abc import Mapping

    from csms.store.db import Conn

TTL = timedelta(hours=24)
MAX_KEY_LENGTH = 200


class IdempotencyError(Exception):
    """A refused use of an idempotency key; ``code`` is the API's error code."""

    code = "IDEMPOTENCY_ERROR"


class KeyReused(IdempotencyError):
    """The key was used for a different request by the same caller within 24 hours."""

    code = "IDEMPOTENCY_KEY_REUSED"


class KeyInProgress(IdempotencyError):
    """The first request with this key has not finished yet."""

    code = "IDEMPOTENCY_KEY_IN_PROGRESS"


def valid_key(key: str) -> bool:
    """Keys are 1-200 printable ASCII characters (a UUID is the usual choice)."""
    return 0 < len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable()


def fingerprint(request: Mapping[str, Any]) -> bytes:
    """SHA-256 of a request's canonical JSON: equal inputs give equal fingerprints."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).digest()


def claim(conn: Conn, principal: str, operation: str, key: str, request_sha256: bytes) -> dict[str, Any] | None:
    """Take the key for this request, or return the stored result of the first one.

    Returns:
        None when the caller now owns the key (do the work, then :func:`complete`); else the first
        request's result.

    Raises:
        KeyReused: the key belongs to a different request.
        KeyInProgress: the first request has not completed.
    """
    row = conn.execute(
        """INSERT INTO idempotency_keys (principal, operation, key, request_sha256) VALUES (%s, %s, %s, %s)
           ON CONFLICT DO NOTHING RETURNING 1""",
        (principal, operation, key, request_sha256),
    ).fetchone()
    if row is not None:
        return None
    existing = conn.execute(
        """SELECT request_sha256, response, created_at < now() - %s FROM idempotency_keys
           WHERE principal = %s AND operation = %s AND key = %s FOR UPDATE""",
        (TTL, principal, operation, key),
    ).fetchone()
    assert existing is not None  # it conflicted and keys are only deleted when expired (prune)
    stored_sha, response, expired = bytes(existing[0]), existing[1], bool(existing[2])
    if expired:
        # Older than 24 h and not pruned yet: the key starts over.
        conn.execute(
            """UPDATE idempotency_keys SET request_sha256 = %s, response = NULL, created_at = now()
               WHERE principal = %s AND operation = %s AND key = %s""",
            (request_sha256, principal, operation, key),
        )
        return None
    if not hmac.compare_digest(stored_sha, request_sha256):
        raise KeyReused()
    if response is None:
        raise KeyInProgress()
    return dict(response)


def complete(conn: Conn, principal: str, operation: str, key: str, response: Mapping[str, Any]) -> None:
    """Store the result that retries with this key will get."""
    conn.execute(
        "UPDATE idempotency_keys SET response = %s WHERE principal = %s AND operation = %s AND key = %s",
        (Jsonb(dict(response)), principal, operation, key),
    )


def prune(conn: Conn, ttl: timedelta = TTL) -> int:
    """Delete keys older than ``ttl``; returns how many."""
    return conn.execute("DELETE FROM idempotency_keys WHERE created_at < now() - %s", (ttl,)).rowcount
