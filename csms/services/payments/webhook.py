"""Checking and applying a payment provider's webhook.

The checks run in this order, and the first that fails refuses the webhook with a 4xx status before
anything is written:

1. the source address is in the allowlist (``CSMS_ODENGI_WEBHOOK_ALLOWED_IPS``; empty allows any);
2. the timestamp is within ``CSMS_WEBHOOK_MAX_AGE`` (300 s) of our clock;
3. the HMAC-SHA256 signature over ``timestamp.body`` matches one of the configured secrets (constant
   time);
4. the provider's event id has not been received before (a replay gets 409).

The event id is claimed in the same transaction that applies the event (``crediting.apply_state``):
an event that fails to apply leaves no trace, and an applied one can never be applied again.
"""

from __future__ import annotations

import ipaddress
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from csms.services.payments.crediting import Applied, InvoiceMismatch, UnknownInvoice, apply_state
from csms.services.payments.provider import WebhookRejected
from csms.store import invoices as store

if TYPE_CHECKING:
    from collections.abc import Mapping

    from csms.config_payments import PaymentSettings
    from csms.services.payments.provider import PaymentNotice, PaymentProvider
    from csms.store.db import Conn, Database

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


class _Replay(Exception):
    pass


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """An accepted webhook: its event id and what it did."""

    event_id: str
    invoice_id: str
    outcome: str


class WebhookGate:
    """The checks and the application of webhooks for one provider."""

    def __init__(self, db: Database, provider: PaymentProvider, settings: PaymentSettings) -> None:
        self.db = db
        self.provider = provider
        self._allowed = tuple(ipaddress.ip_network(n, strict=False) for n in settings.webhook_allowed_ips)

    def address_allowed(self, client_ip: str) -> bool:
        """True if ``client_ip`` may post webhooks."""
        if not self._allowed:
            return True
        try:
            address = ipaddress.ip_address(client_ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._allowed)

    async def handle(self, client_ip: str, headers: Mapping[str, str], body: bytes, now: float) -> WebhookResult:
        """Check one webhook and apply it.

        Args:
            headers: the request headers with lower-case names.
            now: our clock, Unix seconds.

        Raises:
            WebhookRejected: a check failed, the event was already received, or it names no invoice of
                ours; nothing was changed.
        """
        if not self.address_allowed(client_ip):
            raise WebhookRejected(403, "source address not in the allowlist")
        if len(body) > MAX_BODY_BYTES:
            raise WebhookRejected(413, "body too large")
        notice = self.provider.verify_webhook(headers, body, now)
        try:
            uuid.UUID(notice.state.order_id)
        except ValueError:
            raise WebhookRejected(404, "order id is not one of our invoices") from None
        try:
            applied = await self.db.run(_apply, self.provider.name, notice)
        except _Replay:
            raise WebhookRejected(409, f"event {notice.event_id} was already received") from None
        except UnknownInvoice:
            raise WebhookRejected(404, f"event {notice.event_id} names no invoice of ours") from None
        except InvoiceMismatch:
            raise WebhookRejected(422, f"event {notice.event_id}: invoice id does not match the order") from None
        return WebhookResult(notice.event_id, applied.invoice.id, applied.outcome)


def _apply(conn: Conn, provider: str, notice: PaymentNotice) -> Applied:
    if not store.record_event(conn, provider, notice.event_id):
        raise _Replay()
    applied = apply_state(conn, provider, notice.state)
    state = notice.state
    store.finish_event(conn, provider, notice.event_id, invoice_id=applied.invoice.id, status=state.status,
                       payment_id=state.payment_id, amount_tyiyn=state.paid_tyiyn, outcome=applied.outcome)
    return applied
