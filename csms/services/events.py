"""Change events for this process: one LISTEN loop on PostgreSQL feeding an in-process broadcaster.

Writers publish with :func:`csms.store.events.notify` inside their transaction (the topics and their
payloads are listed there); PostgreSQL delivers a notification only on commit, to every process that
listens on :data:`~csms.store.events.CHANNEL`. So a subscription on one csms process sees changes made
by any other process on the same database, and never sees a rolled-back change.

:class:`EventHub` owns the one LISTEN connection of the process (no per-subscriber connections) and
fans each event out to the subscribers of its ``(topic, key)``:

- Each subscriber has its own bounded buffer (:class:`Subscription`). Publishing never waits: an event
  for something already waiting in the buffer *replaces* it (latest per key, so a slow subscriber gets
  coalesced updates), and a buffer that is still full collapses into one ``resync`` event that tells
  the subscriber to reload the current state. A slow subscriber therefore never blocks the others or
  the LISTEN loop.
- If the LISTEN connection drops, the loop reconnects with exponential backoff and then sends every
  subscriber a ``resync`` event, because notifications sent while nobody listened are lost.
- :meth:`EventHub.load` lets many subscribers that watch the same object share one database read per
  event instead of each reading it; :attr:`Event.memo` lets them share what they build from one event.
- :meth:`EventHub.subscribe_topics` receives *every* event of whole topics, in order and without
  coalescing (:class:`TopicSubscription`), for consumers that react to each change (push
  notifications); its buffer is bounded too, and a full one drops and counts.
- :attr:`EventHub.metrics` measures how old stamped events are when they arrive here, and (recorded
  by the WebSocket layer) when their updates leave (``csms.services.metrics``, ``GET /metrics``).
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
import trio
from psycopg import sql

from csms.services.event_subscription import Event, Subscription
from csms.services.metrics import LiveMetrics, counter, gauge, received_at
from csms.services.topic_subscription import TopicSubscription
from csms.store.events import CHANNEL

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Mapping

log = logging.getLogger(__name__)

T = TypeVar("T")

# The payload field that names the object an event is about, per topic (see csms.store.events).
KEY_FIELDS: dict[str, str] = {
    "station_status": "station_id",
    "station_connection": "station_id",
    "session": "session_id",
    "balance": "user_id",
    "invoice": "invoice_id",
}
DEFAULT_CAPACITY = 64
# How many payloads each path of publish_committed remembers: the other path comes within a few turns of
# the event loop, so only the most recent few matter; the oldest are forgotten first.
_RECENT_PAYLOADS = 4096


def _remember(recent: OrderedDict[str, None], payload: str) -> None:
    recent[payload] = None
    if len(recent) > _RECENT_PAYLOADS:
        recent.popitem(last=False)


def _take(recent: OrderedDict[str, None], payload: str) -> bool:
    """Whether ``payload`` was remembered (and forget it)."""
    if payload in recent:
        del recent[payload]
        return True
    return False


@dataclass
class _Load:
    started_seq: int
    done: trio.Event = field(default_factory=trio.Event)
    ok: bool = False
    value: Any = None


class EventHub:
    """The process's events: a LISTEN loop (:meth:`run`) and the subscribers it feeds.

    Args:
        dsn: the database to LISTEN on (None: no loop; only :meth:`publish` feeds subscribers).
        capacity: the default size of each subscriber's buffer (distinct objects or parts waiting).
        reconnect_min_s, reconnect_max_s: backoff between attempts to reconnect the LISTEN connection.
        max_shared_loads: how many recent :meth:`load` results are kept for sharing.
    """

    def __init__(self, dsn: str | None, *, capacity: int = DEFAULT_CAPACITY, reconnect_min_s: float = 0.1,
                 reconnect_max_s: float = 5.0, max_shared_loads: int = 10_000) -> None:
        self.dsn = dsn
        self.capacity = capacity
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.seq = 0
        self.received = 0  # notifications read from PostgreSQL
        self.reconnects = 0
        self.listener_pid: int | None = None  # the LISTEN connection's backend, while connected
        # Set when the service stops: open subscription sockets close so clients reconnect elsewhere.
        self.stopping = trio.Event()
        self._stop_callbacks: set[Callable[[], None]] = set()
        self._subscribers: dict[tuple[str, str], set[Subscription]] = {}
        self._topic_subscribers: dict[str, set[TopicSubscription]] = {}
        self._loads: OrderedDict[tuple[str, str], _Load] = OrderedDict()
        self._max_loads = max_shared_loads
        self.metrics = LiveMetrics()  # how old events are on arrival and on delivery (GET /metrics)
        # For publish_committed: payloads delivered by one path whose other path has not come yet.
        self._committed_here: OrderedDict[str, None] = OrderedDict()
        self._notified: OrderedDict[str, None] = OrderedDict()
        #: Notifications of other channels this process LISTENs on, by channel (the command relay's).
        self.channel_handlers: dict[str, Callable[[str], None]] = {}

    def on_stopping(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Have ``callback`` called once when the hub stops (at once if it has); returns its cancel.

        A callback instead of a task waiting on :attr:`stopping`: a task per subscription socket cost
        a thousand tasks, and their objects, with a thousand subscribers.
        """
        if self.stopping.is_set():
            callback()
            return _nothing
        self._stop_callbacks.add(callback)
        return lambda: self._stop_callbacks.discard(callback)

    # -- subscribers -----------------------------------------------------------------------------

    @contextmanager
    def subscribe(self, *keys: tuple[str, str], capacity: int | None = None) -> Iterator[Subscription]:
        """Receive the events of each ``(topic, key)`` until the block ends.

        Subscribe *before* reading the current state, so that no change between the read and the
        subscription is missed (at worst the same state is seen twice).
        """
        sub = Subscription(frozenset(keys), capacity or self.capacity, self.seq)
        for k in sub.keys:
            self._subscribers.setdefault(k, set()).add(sub)
        try:
            yield sub
        finally:
            for k in sub.keys:
                subs = self._subscribers.get(k)
                if subs is not None:
                    subs.discard(sub)
                    if not subs:
                        del self._subscribers[k]

    @contextmanager
    def subscribe_topics(self, *topics: str, capacity: int | None = None) -> Iterator[TopicSubscription]:
        """Receive every event of each topic in ``topics``, in order, until the block ends.

        Args:
            capacity: events that may wait before new ones are dropped (default: the hub's capacity).
        """
        sub = TopicSubscription(frozenset(topics), capacity or self.capacity, self.seq)
        for topic in sub.topics:
            self._topic_subscribers.setdefault(topic, set()).add(sub)
        try:
            yield sub
        finally:
            for topic in sub.topics:
                subs = self._topic_subscribers.get(topic)
                if subs is not None:
                    subs.discard(sub)
                    if not subs:
                        del self._topic_subscribers[topic]

    @property
    def subscriber_count(self) -> int:
        """Open subscriptions (one subscription watching two keys or topics counts twice)."""
        return sum(len(s) for s in self._subscribers.values()) + sum(len(s) for s in self._topic_subscribers.values())

    def publish(self, topic: str, data: Mapping[str, Any]) -> int:
        """Deliver one event to the subscribers of its object; returns how many got it.

        The LISTEN loop calls this for every notification. An unknown topic or a payload without the
        topic's key field is dropped (logged at debug level: another csms version may publish more).
        """
        key_field = KEY_FIELDS.get(topic)
        key = data.get(key_field) if key_field else None
        if key is None:
            log.debug("events: ignoring %r without a key", topic)
            return 0
        self.seq += 1
        subs = self._subscribers.get((topic, str(key)), set())
        watchers = self._topic_subscribers.get(topic, set())
        if not subs and not watchers:
            return 0
        event = Event(topic, str(key), data, self.seq)
        for sub in subs:
            sub.offer(event)
        for watcher in watchers:
            watcher.offer(event)
        return len(subs) + len(watchers)

    def resync_all(self) -> None:
        """Tell every subscriber it may have missed events (each reloads the current state)."""
        self.seq += 1
        for (topic, key), subs in self._subscribers.items():
            event = Event(topic, key, {}, self.seq, resync=True)
            for sub in subs:
                sub.offer(event)
        for topic, watchers in self._topic_subscribers.items():
            event = Event(topic, "", {}, self.seq, resync=True)
            for watcher in watchers:
                watcher.offer(event)

    def publish_committed(self, payload: str) -> None:
        """Deliver a change this process has just committed, without waiting for its NOTIFY.

        The NOTIFY still arrives (it is what other processes get), before or after this call: its payload
        is the same text, so whichever comes second is recognised and dropped. Order stays right for
        subscribers: a session event older than the state a subscriber has is not applied (it reads the
        session instead).
        """
        if _take(self._notified, payload):
            return  # the NOTIFY won the race and was delivered already
        _remember(self._committed_here, payload)
        self._dispatch(payload)

    def _dispatch(self, payload: str) -> None:
        try:
            data = json.loads(payload)
            topic = data["topic"]
        except (ValueError, TypeError, KeyError):
            log.warning("events: ignoring a malformed notification (%d bytes)", len(payload))
            return
        self.metrics.event_arrived(received_at(data))
        self.publish(str(topic), data)

    def render_metrics(self) -> list[str]:
        """This hub's figures in the Prometheus text format (served by ``GET /metrics``)."""
        return [
            *gauge("csms_live_subscriptions", "Open subscriptions to change events.", self.subscriber_count),
            *counter("csms_events_received_total", "Change notifications read from PostgreSQL.", self.received),
            *counter("csms_events_listen_reconnects_total", "Times the LISTEN connection was reopened.",
                     self.reconnects),
            *self.metrics.render(),
        ]

    # -- shared reads ----------------------------------------------------------------------------

    async def load(self, name: str, key: str, fresh_after: int, fn: Callable[[], Awaitable[T]]) -> T:
        """Read ``(name, key)`` once for every subscriber that needs it after event ``fresh_after``.

        A read that *started* after the hub received event ``fresh_after`` sees that event's commit
        (PostgreSQL notifies only after commit), so its result serves every subscriber asking for
        that event or an earlier one. Concurrent callers wait for one read instead of each making
        their own: with a thousand subscribers on one charging session, one event costs one query.

        Args:
            name: what is read (``"session"``, ``"wallet"``): results of different reads never mix.
            key: the object's key.
            fresh_after: the ``seq`` of the event (or of the subscription's start) being answered.
            fn: the read; it is called at most once per shared load.

        Raises:
            Exception: whatever ``fn`` raised (each waiter then retries on its own).
        """
        slot = (name, key)
        entry = self._loads.get(slot)
        if entry is not None and entry.started_seq >= fresh_after:
            await entry.done.wait()
            if entry.ok:
                return entry.value  # type: ignore[no-any-return]
            return await fn()  # the shared read failed or its caller was cancelled: read alone
        entry = _Load(self.seq)
        self._loads[slot] = entry
        self._loads.move_to_end(slot)
        while len(self._loads) > self._max_loads:
            self._loads.popitem(last=False)  # waiters keep their own reference
        try:
            entry.value = await fn()
            entry.ok = True
            return entry.value  # type: ignore[no-any-return]
        finally:
            if not entry.ok and self._loads.get(slot) is entry:
                del self._loads[slot]
            entry.done.set()

    # -- the LISTEN loop -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[EventHub] = trio.TASK_STATUS_IGNORED) -> None:
        """LISTEN until cancelled; ``task_status.started(self)`` once listening.

        Without a ``dsn`` it only waits (tests feed it with :meth:`publish`). On exit :attr:`stopping`
        is set.

        Raises:
            psycopg.OperationalError: the first connection failed (start-up fails loudly; later
                drops are retried forever with backoff).
        """
        conn: psycopg.Connection[Any] | None = None
        try:
            if self.dsn is None:
                task_status.started(self)
                await trio.sleep_forever()
            conn = await self._connect()
            task_status.started(self)
            while True:
                try:
                    await self._drain(conn)
                except psycopg.Error as exc:
                    # The class name only: a driver message may name hosts or users.
                    log.warning("events: LISTEN connection lost (%s); reconnecting", type(exc).__name__)
                await self._close(conn)
                conn = None
                conn = await self._reconnect()
                self.reconnects += 1
                log.info("events: listening again; subscribers reload what they may have missed")
                self.resync_all()
        finally:
            self.stopping.set()
            callbacks, self._stop_callbacks = self._stop_callbacks, set()
            for callback in callbacks:
                callback()
            self.listener_pid = None
            if conn is not None:
                with trio.CancelScope(shield=True):
                    await self._close(conn)

    async def _connect(self) -> psycopg.Connection[Any]:
        assert self.dsn is not None
        dsn, handlers = self.dsn, list(self.channel_handlers)

        def connect() -> psycopg.Connection[Any]:
            # TCP keepalives: a silently dead network path is noticed within about a minute (libpq
            # ignores them on Unix sockets, where a dead server shows at once).
            conn = psycopg.connect(dsn, autocommit=True, application_name="csms-events", keepalives=1,
                                   keepalives_idle=30, keepalives_interval=10, keepalives_count=3)
            try:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
                for channel in handlers:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            except BaseException:
                conn.close()
                raise
            return conn

        conn = await trio.to_thread.run_sync(connect)
        self.listener_pid = conn.info.backend_pid
        return conn

    async def _reconnect(self) -> psycopg.Connection[Any]:
        delay = self.reconnect_min_s
        while True:
            await trio.sleep(delay)
            try:
                return await self._connect()
            except psycopg.Error as exc:
                log.warning("events: reconnecting failed (%s); next try in %.1f s", type(exc).__name__,
                            min(delay * 2, self.reconnect_max_s))
                delay = min(delay * 2, self.reconnect_max_s)

    async def _drain(self, conn: psycopg.Connection[Any]) -> None:
        """Dispatch notifications as they arrive; returns or raises when the connection is lost.

        Trio waits on the libpq socket itself, so no thread is parked; ``notifies(timeout=0)`` then
        reads whatever arrived without blocking.
        """
        while not conn.closed:
            await trio.lowlevel.wait_readable(conn.fileno())
            for note in conn.notifies(timeout=0):
                handler = self.channel_handlers.get(note.channel)
                if handler is not None:
                    handler(note.payload)
                else:
                    self.notified(note.payload)

    def notified(self, payload: str) -> None:
        """Deliver a notification read from PostgreSQL (unless publish_committed delivered it already)."""
        self.received += 1
        if _take(self._committed_here, payload):
            return
        _remember(self._notified, payload)
        self._dispatch(payload)

    async def _close(self, conn: psycopg.Connection[Any]) -> None:
        self.listener_pid = None
        await trio.to_thread.run_sync(conn.close)


def _nothing() -> None:
    pass


__all__ = ["DEFAULT_CAPACITY", "KEY_FIELDS", "Event", "EventHub", "Subscription", "TopicSubscription"]
