"""Publishing change events through PostgreSQL (``pg_notify`` on one channel).

A writer calls :func:`notify` inside the transaction that makes the change: PostgreSQL delivers the
notification only when that transaction commits, so no listener ever sees an event for a change that
was rolled back. Every csms process LISTENs on :data:`CHANNEL` (``csms.services.events``) and fans the
events out to subscriptions and push.

Payloads carry ids and small live values only, never secrets or personal data, and stay far below
PostgreSQL's 8,000-byte limit.

Topics and their payloads (all keys are strings):

- ``station_status``: ``station_id``, ``connector_id``, ``status``, ``error_code``
- ``station_connection``: ``station_id``, ``connected`` (bool)
- ``session``: ``session_id``, ``user_id``, ``station_id``, ``status``; from the billing code also
  ``received_us`` (when the charger message behind it arrived, epoch µs, for latency metrics) and
  ``state`` (the row's live state, see ``csms.store.session_events``)
- ``balance``: ``user_id``
- ``invoice``: ``invoice_id``, ``user_id``, ``status`` (``pending``, ``paid``, ``cancelled``...), and
  optionally ``amount_tyiyn`` (the credited amount, an integer). Published by payments when an invoice
  changes; web push tells the driver "payment confirmed" when ``status`` is ``paid``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from csms.store.db import Conn

CHANNEL = "csms_events"
MAX_PAYLOAD_BYTES = 7900


def notify(conn: Conn, topic: str, **fields: Any) -> None:
    """Queue the event ``{"topic": topic, **fields}``; it is sent when the transaction commits."""
    payload = json.dumps({"topic": topic, **fields}, separators=(",", ":"), default=str)
    if len(payload.encode()) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"event payload for {topic!r} is too large")
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
