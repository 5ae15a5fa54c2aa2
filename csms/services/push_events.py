"""Turning change events into push notifications, each sent once across every csms process.

:class:`PushProducer` reads every event of the topics it cares about from the process's events hub
(``EventHub.subscribe_topics``: in order, never coalesced) and plans the notifications:

- ``session`` → the driver: charging started (``charging``), complete with energy and cost
  (``completed``), did not start, with the reason (``failed``); the station's owner: a new session
  (``charging``) and a completed one with its revenue (``completed``);
- ``station_status`` ``Faulted`` on a connector that is charging → its driver: a charger fault;
- ``balance`` → the driver: low balance, once per downward crossing of ``CSMS_LOW_BALANCE_TYIYN``;
- ``invoice`` with ``status: paid`` → the driver: payment confirmed.

**Once across processes.** Every csms process hears every event, so each one plans the same
notifications. Before enqueueing, a process *claims* each (user, event key) pair with an
``INSERT ... ON CONFLICT DO NOTHING`` into ``push_notifications`` (:func:`claim`), in the same
transaction as the reads that planned it; only the process whose insert wins sends. Delivery is
therefore at most once: a process that claims and then dies (or whose queue is full) loses that
notification, which we prefer to duplicates. Claims happen only for users who have a subscription.

Planning runs in the consumer task, one event at a time; a failing plan is logged (event topic and
error class only) and skipped, never retried, and never reaches the code that published the event.
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import trio

from csms.services import push_messages as messages
from csms.services.push_sender import Delivery
from csms.store import ledger
from csms.store import push as store
from csms.store.session_views import get_session

if TYPE_CHECKING:
    from collections.abc import Mapping

    from csms.config import PushSettings
    from csms.services.events import Event, EventHub
    from csms.services.push_messages import Notification
    from csms.services.push_sender import PushSender
    from csms.store.db import Conn, Database
    from csms.store.push import PushSubscriptionRow

log = logging.getLogger(__name__)

TOPICS = ("session", "balance", "invoice", "station_status")
# Events waiting for the consumer; past this they are dropped (and counted) rather than held.
EVENT_BUFFER = 10_000
# Event keys this process already planned: a charging session publishes a `charging` event with every
# MeterValues, and only the first one can notify.
_RECENT_KEYS = 10_000


def deliveries_for(subscriptions: list[PushSubscriptionRow], note: Notification) -> list[Delivery]:
    """One delivery of ``note`` per subscription."""
    payload = note.payload()
    return [Delivery(s.id, s.endpoint, s.p256dh, s.auth, payload, note.urgency, note.tag, note.kind)
            for s in subscriptions]


def claim(conn: Conn, user_id: str, event_key: str, note: Notification) -> list[Delivery]:
    """Claim ``event_key`` for ``user_id``; the deliveries to send if this call won the claim."""
    subscriptions = store.user_subscriptions(conn, user_id)
    if not subscriptions or not store.claim_notification(conn, user_id, event_key, note.kind):
        return []
    return deliveries_for(subscriptions, note)


def _uuid(raw: Any) -> str | None:
    try:
        return str(uuid.UUID(str(raw)))
    except ValueError:
        return None


def plan_session(conn: Conn, session_id: str, status: str) -> list[Delivery]:
    """The notifications of one session status change (to its driver and its station's owner)."""
    view = get_session(conn, session_id)
    if view is None:
        return []
    plans: list[tuple[str | None, str, Notification]] = []
    if status == "charging":
        plans = [(view.user_id, "charging", messages.charging_started(view)),
                 (view.owner_id, "owner-charging", messages.owner_session_started(view))]
    elif status == "completed":
        plans = [(view.user_id, "completed", messages.charging_completed(view)),
                 (view.owner_id, "owner-completed", messages.owner_session_completed(view))]
    elif status == "failed":
        plans = [(view.user_id, "failed", messages.charging_failed(view))]
    out: list[Delivery] = []
    for user_id, what, note in plans:
        if user_id is not None:
            out += claim(conn, user_id, f"session:{view.id}:{what}", note)
    return out


def plan_fault(conn: Conn, station_id: str, connector_id: int, error_code: str) -> list[Delivery]:
    """A charger fault, to the drivers of the sessions charging on that connector (0: the whole station)."""
    out: list[Delivery] = []
    for session_id in store.charging_sessions_at(conn, station_id, connector_id):
        view = get_session(conn, session_id)
        if view is not None:
            out += claim(conn, view.user_id, f"session:{view.id}:fault", messages.charging_fault(view, error_code))
    return out


def plan_balance(conn: Conn, user_id: str, threshold_tyiyn: int) -> list[Delivery]:
    """Low balance, when the wallet has just crossed below the threshold.

    Users without a wallet (an owner hears ``balance`` events about their revenue) get nothing.
    """
    if not store.has_subscriptions(conn, user_id) or ledger.find_user_account(conn, user_id) is None:
        return []
    available = ledger.wallet_available(conn, user_id)
    crossing = store.record_balance_side(conn, user_id, available < threshold_tyiyn)
    if crossing is None:
        return []
    return claim(conn, user_id, f"low_balance:{crossing}", messages.low_balance(available))


def plan_invoice(conn: Conn, invoice_id: str, user_id: str, amount_tyiyn: int | None) -> list[Delivery]:
    """Payment confirmed, with the new available balance."""
    if not store.has_subscriptions(conn, user_id):
        return []
    note = messages.payment_confirmed(invoice_id, amount_tyiyn, ledger.wallet_available(conn, user_id))
    return claim(conn, user_id, f"invoice:{invoice_id}:paid", note)


class PushProducer:
    """Plans notifications from events and hands them to the sender. Start :meth:`run` in a nursery."""

    def __init__(self, db: Database, settings: PushSettings, sender: PushSender) -> None:
        self.db = db
        self.settings = settings
        self.sender = sender
        self.planned = 0  # deliveries handed to the sender
        self.handled = 0  # events considered
        self._recent: OrderedDict[str, None] = OrderedDict()

    async def run(self, hub: EventHub, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Consume events until cancelled."""
        with hub.subscribe_topics(*TOPICS, capacity=EVENT_BUFFER) as events:
            task_status.started()
            reported = 0
            async for event in events:
                if events.dropped > reported:
                    log.warning("push: %d events dropped, the notification planner fell behind",
                                events.dropped - reported)
                    reported = events.dropped
                if event.resync:
                    continue  # notifications for events missed while LISTEN was down are not sent
                self.handled += 1
                try:
                    deliveries = await self.plan(event)
                except Exception as exc:
                    log.warning("push: could not plan notifications for a %s event: %s", event.topic,
                                type(exc).__name__)
                    continue
                for delivery in deliveries:
                    self.planned += 1
                    self.sender.enqueue(delivery)

    async def plan(self, event: Event) -> list[Delivery]:
        """The deliveries one event calls for (claimed by this process)."""
        data = event.data
        if event.topic == "session":
            return await self._session(data)
        if event.topic == "station_status":
            if data.get("status") != "Faulted":
                return []
            connector = data.get("connector_id")
            if not isinstance(connector, int) or not isinstance(data.get("station_id"), str):
                return []
            return await self.db.run(plan_fault, data["station_id"], connector, str(data.get("error_code", "")))
        user_id = _uuid(data.get("user_id"))
        if user_id is None:
            return []
        if event.topic == "balance":
            return await self.db.run(plan_balance, user_id, self.settings.low_balance_tyiyn)
        if event.topic == "invoice" and data.get("status") == "paid":
            invoice_id = str(data.get("invoice_id", ""))[:100]
            amount = data.get("amount_tyiyn")
            amount = amount if isinstance(amount, int) and not isinstance(amount, bool) else None
            return await self.db.run(plan_invoice, invoice_id, user_id, amount)
        return []

    async def _session(self, data: Mapping[str, Any]) -> list[Delivery]:
        session_id, status = _uuid(data.get("session_id")), data.get("status")
        if session_id is None or status not in ("charging", "completed", "failed"):
            return []
        key = f"{session_id}:{status}"
        if key in self._recent:
            return []
        deliveries = await self.db.run(plan_session, session_id, str(status))
        self._recent[key] = None
        while len(self._recent) > _RECENT_KEYS:
            self._recent.popitem(last=False)
        return deliveries
