"""Access tokens end with their login session: logout, a reused refresh token, or account deletion.

An access token is a signed JWT that lives 15 minutes; on its own it cannot be taken back. Each one
names its login session (``sid``: the refresh-token family), and :class:`SessionRevocations` answers
whether that session was revoked. The database is the truth, so every node agrees without a message
bus. Answers are cached for ``recheck_s``, so a busy client costs a query every few seconds, not on
every request:

- on the node that revoked the session, tokens stop working at once (:meth:`revoked`);
- on other nodes, within ``recheck_s``.

Tokens issued without a session (older tokens, tests) cannot be revoked this way and simply expire.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from typing import TYPE_CHECKING

import trio

from csms.store import refresh_tokens as store

if TYPE_CHECKING:
    from csms.store.db import Database

RECHECK_S = 5.0
_MAX_ENTRIES = 100_000  # sessions remembered; the least recently checked are forgotten first


class SessionRevocations:
    """Whether login sessions were revoked, cached per session (see the module docstring)."""

    def __init__(self, db: Database, *, recheck_s: float = RECHECK_S, max_entries: int = _MAX_ENTRIES) -> None:
        self._db = db
        self._recheck_s = recheck_s
        self._max_entries = max_entries
        # session id -> (revoked, when checked); revoked sessions stay revoked, so those never expire.
        self._known: OrderedDict[str, tuple[bool, float]] = OrderedDict()

    async def is_revoked(self, session_id: str) -> bool:
        """Whether the session ``session_id`` was revoked (an id that is not ours counts as revoked)."""
        now = trio.current_time()
        known = self._known.get(session_id)
        if known is not None and (known[0] or now - known[1] < self._recheck_s):
            self._known.move_to_end(session_id)
            return known[0]
        try:
            uuid.UUID(session_id)
        except ValueError:
            return True  # we only issue UUIDs; a token naming anything else was not made here
        revoked = await self._db.run(store.family_revoked, session_id)
        self._remember(session_id, revoked, now)
        return revoked

    def revoked(self, session_id: str) -> None:
        """This node just revoked ``session_id``: its tokens stop working here at once."""
        self._remember(session_id, True, trio.current_time())

    def _remember(self, session_id: str, revoked: bool, now: float) -> None:
        self._known[session_id] = (revoked, now)
        self._known.move_to_end(session_id)
        while len(self._known) > self._max_entries:
            self._known.popitem(last=False)
