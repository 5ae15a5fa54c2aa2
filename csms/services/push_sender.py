"""Delivering web push messages: a bounded queue and sender tasks (RFC 8030, 8291, 8292).

Producers call :meth:`PushSender.enqueue`, which never waits: when the queue is full the message is
dropped and counted (push must never slow charging, billing or payments down). Each sender task takes
one :class:`Delivery` at a time:

1. encrypts the payload for the subscription with ``pywebpush.WebPusher(...).encode(..., "aes128gcm")``
   (no I/O; pywebpush's own senders need requests or asyncio and are not used);
2. signs VAPID for the endpoint's origin (cached per origin, ``csms.services.push_keys``);
3. POSTs it with ``httpx.AsyncClient`` with a ``TTL``, an ``Urgency`` and a ``Topic`` (so a newer
   message about the same thing replaces an undelivered older one at the push service).

Outcomes: 2xx is delivered; 404 and 410 mean the subscription is gone, and it is deleted; 429 (after
its ``Retry-After``, if that is not too long), 5xx and network errors are retried up to
``max_retries`` times with exponential backoff; anything else is given up. A retry waits in its sender
task, so a slow push service slows only push.

Logs never hold an endpoint (it is a capability URL) or a payload: only the endpoint's host and a
short hash that tells subscriptions apart.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import trio
from pywebpush import WebPusher, WebPushException

from csms.services.clock import utcnow
from csms.services.public_network import NonPublicAddress
from csms.store import push as store

if TYPE_CHECKING:
    from csms.config import PushSettings
    from csms.services.push_keys import VapidSigner
    from csms.store.db import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message for one subscription."""

    subscription_id: str
    endpoint: str
    p256dh: str
    auth: str
    payload: bytes
    urgency: str
    tag: str
    kind: str


def redact(endpoint: str) -> str:
    """What logs may say about an endpoint: its host and an 8-character hash."""
    digest = hashlib.sha256(endpoint.encode()).hexdigest()[:8]
    return f"{urlsplit(endpoint).hostname or '?'}#{digest}"


def audience(endpoint: str) -> str:
    """The VAPID ``aud``: the origin of the push service (scheme, host and port)."""
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


def topic_for(tag: str) -> str:
    """An RFC 8030 ``Topic`` (at most 32 base64url characters) naming what a message is about."""
    return base64.urlsafe_b64encode(hashlib.sha256(tag.encode()).digest()).rstrip(b"=").decode()[:32]


def retry_after_s(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max((parsedate_to_datetime(value) - utcnow()).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


class PushSender:
    """The delivery queue and its sender tasks. Start :meth:`run` in a nursery.

    Counters (per process): ``sent``, ``gone`` (subscriptions deleted after 404/410), ``retries``,
    ``failed`` (given up), ``dropped`` (the queue was full).
    """

    def __init__(self, db: Database, settings: PushSettings, signer: VapidSigner, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.db = db
        self.settings = settings
        self.signer = signer
        # Production passes csms.services.public_network's transport: endpoints come from browsers.
        self._transport = transport
        self._send, self._receive = trio.open_memory_channel[Delivery](settings.queue_size)
        self.sent = self.gone = self.retries = self.failed = self.dropped = 0
        # Subscriptions delivered to since the last flush (last_used_at is written in batches).
        self.used: set[str] = set()

    def enqueue(self, delivery: Delivery) -> bool:
        """Queue a message without waiting; False (dropped and counted) when the queue is full."""
        try:
            self._send.send_nowait(delivery)
        except trio.WouldBlock:
            self.dropped += 1
            log.warning("push queue full: dropped a %s notification (%d dropped so far)", delivery.kind,
                        self.dropped)
            return False
        return True

    @property
    def queued(self) -> int:
        """Messages waiting for a sender."""
        return self._receive.statistics().current_buffer_used

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the sender tasks until cancelled (queued messages are then lost)."""
        timeout = httpx.Timeout(self.settings.timeout_s)
        limits = httpx.Limits(max_connections=self.settings.senders * 2)
        async with httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False,
                                     transport=self._transport) as client, \
                trio.open_nursery() as nursery:
            for _ in range(self.settings.senders):
                nursery.start_soon(self._sender, client)
            task_status.started()

    async def _sender(self, client: httpx.AsyncClient) -> None:
        async for delivery in self._receive:
            try:
                await self.deliver(client, delivery)
            except Exception as exc:  # one bad message must not stop the sender
                self.failed += 1
                log.warning("push to %s failed: %s", redact(delivery.endpoint), type(exc).__name__)

    async def deliver(self, client: httpx.AsyncClient, delivery: Delivery) -> str:
        """Send one message with retries; returns the outcome (``sent``, ``gone`` or ``failed``)."""
        try:
            body = self._encrypt(delivery)
        except (WebPushException, ValueError) as exc:
            # Keys are checked when a browser subscribes, so this is a corrupted row: drop it.
            log.warning("push to %s: cannot encrypt (%s); deleting the subscription", redact(delivery.endpoint),
                        type(exc).__name__)
            await self.db.run(store.delete_subscription, delivery.subscription_id)
            self.gone += 1
            return "gone"
        for attempt in range(self.settings.max_retries + 1):
            wait = await self._attempt(client, delivery, body, attempt)
            if isinstance(wait, str):
                return wait
            if attempt == self.settings.max_retries:
                break
            self.retries += 1
            await trio.sleep(wait)
        self.failed += 1
        log.warning("push to %s: gave up after %d attempts", redact(delivery.endpoint), self.settings.max_retries + 1)
        return "failed"

    def _encrypt(self, delivery: Delivery) -> bytes:
        subscription = {"endpoint": delivery.endpoint, "keys": {"p256dh": delivery.p256dh, "auth": delivery.auth}}
        encoded = WebPusher(subscription).encode(delivery.payload, "aes128gcm")
        return bytes(encoded["body"])

    def _backoff(self, attempt: int) -> float:
        # Jitter keeps many senders from retrying in lockstep against one struggling service.
        return float(self.settings.retry_backoff_s * (2 ** attempt) * random.uniform(0.5, 1.0))

    async def _attempt(self, client: httpx.AsyncClient, delivery: Delivery, body: bytes,
                       attempt: int) -> str | float:
        """One POST; an outcome string when done, else how long to wait before retrying."""
        headers = {
            "Authorization": self.signer.authorization(audience(delivery.endpoint)),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "TTL": str(self.settings.ttl_s),
            "Urgency": delivery.urgency,
            "Topic": topic_for(delivery.tag),
        }
        try:
            with trio.fail_after(self.settings.timeout_s + 1):
                response = await client.post(delivery.endpoint, content=body, headers=headers)
        except NonPublicAddress:
            # Final: the endpoint's name points into a private network (see csms.services.public_network).
            self.failed += 1
            log.warning("push to %s refused: its host resolves to no public address", redact(delivery.endpoint))
            return "failed"
        except (httpx.HTTPError, trio.TooSlowError) as exc:
            log.info("push to %s: %s; will retry", redact(delivery.endpoint), type(exc).__name__)
            return self._backoff(attempt)
        status = response.status_code
        if 200 <= status < 300:
            self.sent += 1
            self.used.add(delivery.subscription_id)
            return "sent"
        if status in (404, 410):
            await self.db.run(store.delete_subscription, delivery.subscription_id)
            self.gone += 1
            log.info("push subscription %s is gone (%d); deleted", redact(delivery.endpoint), status)
            return "gone"
        if status == 429:
            after = retry_after_s(response.headers.get("retry-after"))
            if after is not None and after > self.settings.max_retry_after_s:
                self.failed += 1
                log.warning("push to %s: rate limited for %.0f s; message given up", redact(delivery.endpoint), after)
                return "failed"
            return after if after is not None else self._backoff(attempt)
        if status >= 500:
            log.info("push to %s: HTTP %d; will retry", redact(delivery.endpoint), status)
            return self._backoff(attempt)
        self.failed += 1
        log.warning("push to %s refused with HTTP %d", redact(delivery.endpoint), status)
        return "failed"

    async def flush_used(self) -> None:
        """Write ``last_used_at`` for the subscriptions delivered to since the last flush."""
        used, self.used = sorted(self.used), set()
        if used:
            await self.db.run(store.mark_used, used)
