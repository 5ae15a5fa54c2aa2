"""The payments subsystem of one csms process, started by the supervisor.

``await nursery.start(serve_payments, db, settings.payments)`` opens the provider adapter (and its HTTP
client), starts the billing jobs, and reports the :class:`Payments` object that the API uses. It runs
until cancelled, then closes the HTTP client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from csms.services.payments.jobs import BillingJobs
from csms.services.payments.odengi import OdengiProvider
from csms.services.payments.topups import TopUps
from csms.services.payments.webhook import WebhookGate

if TYPE_CHECKING:
    from csms.config_payments import PaymentSettings
    from csms.services.payments.provider import PaymentProvider
    from csms.store.db import Database


class Payments:
    """Top-ups, the webhook gate and the billing jobs over one provider."""

    def __init__(self, db: Database, provider: PaymentProvider, settings: PaymentSettings) -> None:
        self.provider = provider
        self.settings = settings
        self.top_ups = TopUps(db, provider, settings)
        self.webhooks = WebhookGate(db, provider, settings)
        self.jobs = BillingJobs(db, provider, settings)


async def serve_payments(db: Database, settings: PaymentSettings, *,
                         task_status: trio.TaskStatus[Payments] = trio.TASK_STATUS_IGNORED) -> None:
    """Run the payments subsystem until cancelled; ``task_status.started(payments)`` once ready."""
    async with OdengiProvider.open(settings) as provider:
        payments = Payments(db, provider, settings)
        async with trio.open_nursery() as nursery:
            await nursery.start(payments.jobs.run)
            task_status.started(payments)
