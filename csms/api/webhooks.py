"""``POST /webhooks/payments/odengi``: the payment provider's signed notifications.

The handler only does HTTP: it limits requests per source address (``CSMS_WEBHOOK_RATE_LIMIT``, 30 a
minute), reads the body, and hands address, headers and body to the payments service, which checks
them in order (allowlist, timestamp, signature, event id) and applies the event
(``csms.services.payments.webhook``).

Answers: 200 applied; 400 malformed; 401 stale timestamp or bad signature; 403 source address not
allowed; 404 no such invoice (or payments not configured); 409 event already received (a provider
may treat it as delivered); 413 body too large; 422 the invoice id contradicts the order; 429 too many
requests (with ``Retry-After``). Refusals are logged with their reason, never with a secret, a
signature, a body or the sender's address.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING

from quart import Response, request

from csms.api.ratelimits import address_key
from csms.services.payments.provider import WebhookRejected
from csms.services.ratelimit import RateLimited

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from csms.api.client_address import ClientAddress
    from csms.api.context import ApiServices
    from csms.services.payments.service import Payments

log = logging.getLogger(__name__)

PATH = "/webhooks/payments/odengi"


def _answer(status: int, body: dict[str, object], headers: dict[str, str] | None = None) -> Response:
    response = Response(json.dumps(body, separators=(",", ":")), status=status, content_type="application/json")
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def odengi_webhook_view(services: ApiServices, addresses: ClientAddress) -> Callable[[], Awaitable[Response]]:
    """The view function of the O!Dengi webhook route."""

    async def odengi_webhook() -> Response:
        client_ip = addresses.client_ip(request.remote_addr or "", request.headers.get("x-forwarded-for"))
        limiter = services.rate_limits.get("webhook:ip", services.settings.rate_limits.webhook_per_minute)
        try:
            limiter.acquire(address_key(client_ip))
        except RateLimited as exc:
            log.warning("payment webhook refused (429): over the rate limit")
            return _answer(429, {"error": "rate_limited"}, {"Retry-After": str(exc.retry_after_whole_s)})
        payments: Payments | None = services.extra.get("payments")
        if payments is None:
            log.warning("payment webhook refused (404): payments are not configured")
            return _answer(404, {"error": "payments_not_configured"})
        raw = await request.get_data(cache=False, as_text=False)
        body = raw if isinstance(raw, bytes) else raw.encode()
        headers = {name.lower(): value for name, value in request.headers.items()}
        try:
            result = await payments.webhooks.handle(client_ip, headers, body, time.time())
        except WebhookRejected as exc:
            log.warning("payment webhook refused (%d): %s", exc.status, exc.reason)
            return _answer(exc.status, {"error": exc.reason})
        log.info("payment webhook %s for invoice %s: %s", result.event_id, result.invoice_id, result.outcome)
        return _answer(200, {"status": "ok", "outcome": result.outcome})

    return odengi_webhook
