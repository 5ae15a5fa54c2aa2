"""The web push subsystem of one csms process: started in the supervisor's nursery.

``await nursery.start(PushService(...).run)`` starts, under one nursery:

- the sender (``push_sender``): a bounded queue and ``CSMS_PUSH_SENDERS`` delivery tasks;
- the producer (``push_events``): events → notifications, each claimed once across processes;
- the station-offline job (``push_presence``), one process at a time;
- maintenance: delivery times written in batches, subscriptions unused for
  ``CSMS_PUSH_SUBSCRIPTION_MAX_IDLE_DAYS`` deleted, claims older than 30 days forgotten.

Nothing here is on the path of charging, billing or payments: they only publish events, and push
reads them afterwards. A push service that is slow or down fills the bounded queue, which then drops.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import httpx
import trio

from csms.services import push_messages as messages
from csms.services.public_network import public_only_transport
from csms.services.push_events import PushProducer, deliveries_for
from csms.services.push_keys import VapidSigner
from csms.services.push_presence import StationPresenceJob
from csms.services.push_sender import PushSender
from csms.store import push as store

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from csms.config import PushSettings
    from csms.services.events import EventHub
    from csms.store.db import Database

log = logging.getLogger(__name__)

CLAIM_RETENTION_DAYS = 30


class PushService:
    """Web push for one process.

    Args:
        db: the database.
        settings: the push settings.
        key: the VAPID private key (``Settings.vapid_key()``).
        events: the process's events hub (None: no event-driven notifications, e.g. in API tests).
    """

    def __init__(self, db: Database, settings: PushSettings, key: ec.EllipticCurvePrivateKey,
                 events: EventHub | None, *, public_only: bool = False) -> None:
        self.db = db
        self.settings = settings
        self.events = events
        self.signer = VapidSigner(key, settings.subject)
        transport = public_only_transport(httpx.Limits(max_connections=settings.senders * 2)) if public_only else None
        self.sender = PushSender(db, settings, self.signer, transport=transport)
        self.producer = PushProducer(db, settings, self.sender)
        self.presence = StationPresenceJob(db, settings, self.sender)
        self.running = False

    @property
    def public_key(self) -> str:
        """The VAPID public key browsers subscribe with (``applicationServerKey``), base64url."""
        return self.signer.public_key

    async def run(self, *, task_status: trio.TaskStatus[PushService] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every part until cancelled; ``task_status.started(self)`` once all are running."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.sender.run)
            if self.events is not None:
                await nursery.start(self.producer.run, self.events)
            await nursery.start(self.presence.run)
            nursery.start_soon(self._maintain)
            self.running = True
            log.info("push ready: %d senders, queue of %d", self.settings.senders, self.settings.queue_size)
            task_status.started(self)
            try:
                await trio.sleep_forever()
            finally:
                self.running = False

    async def send_test(self, user_id: str) -> int:
        """Queue a test notification to each of the user's subscriptions; how many were queued."""
        subscriptions = await self.db.run(store.user_subscriptions, user_id)
        queued = 0
        for delivery in deliveries_for(subscriptions, messages.device_check()):
            queued += int(self.sender.enqueue(delivery))
        return queued

    async def maintain(self) -> None:
        """Write delivery times, delete unused subscriptions and forget old claims (one round)."""
        await self.sender.flush_used()
        removed = await self.db.run(store.delete_unused, self.settings.subscription_max_idle_days)
        if removed:
            log.info("push: deleted %d subscriptions unused for %d days", removed,
                     self.settings.subscription_max_idle_days)
        await self.db.run(store.delete_old_claims, CLAIM_RETENTION_DAYS)

    async def _maintain(self) -> None:
        try:
            while True:
                await trio.sleep(self.settings.maintenance_interval_s)
                try:
                    await self.maintain()
                except Exception as exc:
                    log.warning("push maintenance failed: %s", type(exc).__name__)
        finally:
            # Keep the delivery times of the last interval (they protect subscriptions from pruning).
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                try:
                    await self.sender.flush_used()
                except Exception as exc:
                    log.info("push: could not write delivery times on exit: %s", type(exc).__name__)
