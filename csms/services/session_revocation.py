"""Access tokens end with their login session: logout, a reused refresh token, or account deletion.

An access token is a signed JWT that lives 15 minutes; on its own it cannot be taken back. Each one
names its login session (``sid``: the refresh-token family), and :class:`SessionRevocations` answers
whether that session was revoked. The database is the truth, so every node agrees without a message
bus. Answers are cached for ``recheck_s``, so a busy client costs a query every few seconds, not on
every request:

- on the node that revoked the session, tokens stop working at once (:meth:`revoked`);
- on other nodes, within ``recheck_s``.

Tokens issued without a session (older tokens, tests) cannot be revoked this way and simply expire.

Open GraphQL WebSockets authenticated with a session's token are closed when it is revoked: at once on
this node, and by :meth:`SessionRevocations.sweep` (one query every ``recheck_s`` for the sessions of
all open sockets) when another node revoked it.
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from itertools import count
from typing import TYPE_CHECKING

import trio

from csms.store import refresh_tokens as store

if TYPE_CHECKING:
    from collections.abc import Callable

    from csms.store.db import Database

log = logging.getLogger(__name__)

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
        # session id -> what to call when it is revoked (open WebSockets), by registration number.
        self._watchers: dict[str, dict[int, Callable[[], None]]] = {}
        self._numbers = count()

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
        """``session_id`` was revoked: its tokens stop working here at once, and its open sockets close."""
        self._remember(session_id, True, trio.current_time())
        for on_revoked in list(self._watchers.pop(session_id, {}).values()):
            on_revoked()

    def watch(self, session_id: str, on_revoked: Callable[[], None]) -> Callable[[], None]:
        """Call ``on_revoked`` (once, synchronously) when ``session_id`` is revoked; returns the undo."""
        number = next(self._numbers)
        self._watchers.setdefault(session_id, {})[number] = on_revoked

        def unwatch() -> None:
            watchers = self._watchers.get(session_id)
            if watchers is not None:
                watchers.pop(number, None)
                if not watchers:
                    del self._watchers[session_id]

        return unwatch

    async def sweep(self) -> None:
        """Every ``recheck_s``, find the watched sessions another node revoked, until cancelled."""
        while True:
            await trio.sleep(self._recheck_s)
            watched = list(self._watchers)
            if not watched:
                continue
            try:
                revoked = await self._db.run(store.families_revoked, watched)
            except Exception as exc:  # the database is away: try again next round
                log.warning("checking open sockets' sessions failed: %s", type(exc).__name__)
                continue
            for session_id in revoked:
                self.revoked(session_id)

    def _remember(self, session_id: str, revoked: bool, now: float) -> None:
        self._known[session_id] = (revoked, now)
        self._known.move_to_end(session_id)
        while len(self._known) > self._max_entries:
            self._known.popitem(last=False)
