"""The station-offline job: tells owners when a station has had no connection for a while, and when it is back.

Every ``CSMS_PUSH_PRESENCE_INTERVAL`` seconds each csms process tries the job; a transaction-level
advisory lock lets one process at a time run it (the others skip that round). In one transaction it:

1. forgets stations that are connected again, and tells their owners "back online" if they were told
   "offline";
2. starts the clock for owned stations that have been seen before and now have no live connection;
3. tells owners about stations whose clock is older than ``CSMS_STATION_OFFLINE_AFTER``.

Presence is what the nodes write every few seconds (``charger_connections``, ``nodes``), so a charger
that disconnects is noticed within one flush plus one job interval, and announced
``CSMS_STATION_OFFLINE_AFTER`` later. The notifications are claimed like every other (once per
owner and outage) in the same transaction as the state change.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from csms.services import push_messages as messages
from csms.services.push_events import claim
from csms.store import push_presence as store

if TYPE_CHECKING:
    from csms.config import PushSettings
    from csms.services.push_sender import Delivery, PushSender
    from csms.store.db import Conn, Database

log = logging.getLogger(__name__)


def check_presence(conn: Conn, offline_after_s: float) -> list[Delivery] | None:
    """One round of the job; the deliveries it claimed, or None when another process holds the job."""
    if not store.try_job_lock(conn):
        return None
    out: list[Delivery] = []
    for change in store.back_online(conn):
        out += claim(conn, change.owner_id, f"station:{change.station_id}:online:{change.since.isoformat()}",
                     messages.station_online(change.station_id))
    store.notice_disconnected(conn)
    for change in store.newly_offline(conn, offline_after_s):
        out += claim(conn, change.owner_id, f"station:{change.station_id}:offline:{change.since.isoformat()}",
                     messages.station_offline(change.station_id, offline_after_s))
    return out


class StationPresenceJob:
    """Runs :func:`check_presence` periodically. Start :meth:`run` in a nursery."""

    def __init__(self, db: Database, settings: PushSettings, sender: PushSender) -> None:
        self.db = db
        self.settings = settings
        self.sender = sender
        self.rounds = 0  # rounds this process ran (not skipped)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Check every ``presence_interval_s`` until cancelled; failures are logged and retried next round."""
        task_status.started()
        while True:
            await trio.sleep(self.settings.presence_interval_s)
            try:
                await self.check()
            except Exception as exc:
                log.warning("push: station presence check failed: %s", type(exc).__name__)

    async def check(self) -> int:
        """Run one round now; returns how many deliveries it queued."""
        deliveries = await self.db.run(check_presence, self.settings.station_offline_after_s)
        if deliveries is None:
            return 0
        self.rounds += 1
        for delivery in deliveries:
            self.sender.enqueue(delivery)
        return len(deliveries)
