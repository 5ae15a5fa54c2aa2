"""What a subscriber of the events hub receives: :class:`Event`, and :class:`Subscription`, its bounded,
coalescing buffer (see :meth:`csms.services.events.EventHub.subscribe`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from collections.abc import Mapping

# Fields that tell apart events about different parts of one object: a station's connectors each keep
# their own latest status when a slow subscriber's events are coalesced.
PART_FIELDS: dict[str, str] = {"station_status": "connector_id"}


@dataclass(frozen=True, slots=True)
class Event:
    """One change, as delivered to subscribers.

    Attributes:
        topic: what kind of change (``station_status``, ``session``...).
        key: the object it is about (a station id, a session id, a user id).
        data: the published payload (ids and small live values); empty for a resync.
        seq: this process's running number of the event; later events have higher numbers.
        resync: True when events may have been missed (the LISTEN connection dropped, or the
            subscriber fell too far behind): reload the current state instead of reading ``data``.
        memo: scratch space shared by every subscriber handed this very event object, so that what
            they build from it (an update to send) is built once.
    """

    topic: str
    key: str
    data: Mapping[str, Any]
    seq: int
    resync: bool = False
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


class Subscription:
    """A subscriber's bounded, coalescing buffer of events. Create it with :meth:`EventHub.subscribe`.

    Iterate it (``async for event in sub``) or call :meth:`receive`. Iteration never ends on its own:
    the consumer stops by leaving the ``subscribe`` block (or being cancelled).
    """

    def __init__(self, keys: frozenset[tuple[str, str]], capacity: int, start_seq: int) -> None:
        self.keys = keys
        self.capacity = capacity
        self.start_seq = start_seq  # the hub's event number when this subscription began
        self.coalesced = 0  # events replaced by a newer one before they were read
        self.overflows = 0  # times the buffer collapsed into a resync
        self._pending: dict[tuple[str, str, str], Event] = {}
        self._lot = trio.lowlevel.ParkingLot()

    def offer(self, event: Event) -> None:
        """Queue ``event`` without ever waiting (called by the hub)."""
        part = "" if event.resync else str(event.data.get(PART_FIELDS.get(event.topic, ""), ""))
        slot = (event.topic, event.key, part)
        if event.resync:
            # A resync supersedes everything queued for that object.
            for queued in [s for s in self._pending if s[:2] == slot[:2]]:
                del self._pending[queued]
                self.coalesced += 1
        elif slot in self._pending:
            self.coalesced += 1
        elif len(self._pending) >= self.capacity:
            # Too far behind to keep every part: forget the details, reload the state instead.
            self.overflows += 1
            self.coalesced += len(self._pending)
            self._pending.clear()
            for topic, key in sorted(self.keys):
                self._pending[(topic, key, "")] = Event(topic, key, {}, event.seq, resync=True)
            self._lot.unpark_all()
            return
        self._pending[slot] = event
        self._lot.unpark_all()

    @property
    def pending(self) -> int:
        """How many events wait to be read."""
        return len(self._pending)

    async def receive(self) -> Event:
        """The oldest waiting event; waits for one if there is none."""
        while not self._pending:
            await self._lot.park()
        slot = next(iter(self._pending))
        return self._pending.pop(slot)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        return await self.receive()
