"""A subscription to whole topics of the events hub: every event, in order, never coalesced.

See :meth:`csms.services.events.EventHub.subscribe_topics`.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from csms.services.events import Event


class TopicSubscription:
    """Every event of some topics, oldest first, never coalesced. Create it with :meth:`EventHub.subscribe_topics`.

    For consumers that must see each change (a session that went ``charging`` and then ``completed``
    is two notifications), where :class:`Subscription` would keep only the latest per object.
    Publishing still never waits: when ``capacity`` events are waiting, a new one is dropped and
    counted in :attr:`dropped` (the consumer decides how to report it). A resync (the LISTEN
    connection dropped) arrives as one event per topic with ``resync=True`` and an empty key.
    """

    def __init__(self, topics: frozenset[str], capacity: int, start_seq: int) -> None:
        self.topics = topics
        self.capacity = capacity
        self.start_seq = start_seq
        self.dropped = 0  # events refused because the buffer was full
        self._queue: deque[Event] = deque()
        self._lot = trio.lowlevel.ParkingLot()

    def offer(self, event: Event) -> None:
        """Queue ``event`` without ever waiting (called by the hub); drop it when full."""
        if len(self._queue) >= self.capacity:
            self.dropped += 1
            return
        self._queue.append(event)
        self._lot.unpark_all()

    @property
    def pending(self) -> int:
        """How many events wait to be read."""
        return len(self._queue)

    async def receive(self) -> Event:
        """The oldest waiting event; waits for one if there is none."""
        while not self._queue:
            await self._lot.park()
        return self._queue.popleft()

    def __aiter__(self) -> TopicSubscription:
        return self

    async def __anext__(self) -> Event:
        return await self.receive()
