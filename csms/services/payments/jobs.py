"""The billing jobs of payments: invoice expiry and reconciliation with the provider.

- **Expiry** (every ``CSMS_INVOICE_EXPIRY_INTERVAL`` s): open invoices past their expiry become
  ``expired``. A payment approved later is still credited (``crediting``).
- **Reconciliation** (every ``CSMS_PAYMENT_RECONCILE_INTERVAL`` s): for invoices expired at least
  ``CSMS_PAYMENT_RECONCILE_AFTER`` s ago that the provider may still report on, ask the provider. An
  approval whose webhook was lost is credited; an invoice still payable there is cancelled there (its
  QR code must stop working). After ``CSMS_PAYMENT_RECONCILE_GIVE_UP`` s it stops asking and flags the
  invoice ``unreconciled`` for operators.

Several csms nodes may run these jobs on one database: the expiry takes rows ``FOR UPDATE SKIP
LOCKED``, and the reconciler leases each invoice (``next_check_at``) in the same way, so two nodes do
not work on the same invoice; and everything they write is idempotent anyway.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import trio

from csms.services.payments.crediting import apply_state, notify_invoice
from csms.services.payments.provider import ProviderError, ProviderNotFound
from csms.store import invoices as store

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from csms.config_payments import PaymentSettings
    from csms.services.payments.provider import InvoiceState, PaymentProvider
    from csms.store.db import Conn, Database
    from csms.store.invoices import Invoice

log = logging.getLogger(__name__)

RECONCILE_BATCH = 50


@dataclass(frozen=True, slots=True)
class Reconciled:
    """What one reconciliation round did (for logs and tests)."""

    checked: int = 0
    credited: int = 0
    cancelled_at_provider: int = 0
    failed: int = 0
    gave_up: int = 0


class BillingJobs:
    """Start with ``await nursery.start(jobs.run)``; runs until cancelled."""

    def __init__(self, db: Database, provider: PaymentProvider, settings: PaymentSettings) -> None:
        self.db = db
        self.provider = provider
        self.settings = settings

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run both jobs, each on its own interval."""
        s = self.settings
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._every, "invoice expiry", s.expiry_interval_s, self.expire_once)
            nursery.start_soon(self._every, "payment reconciliation", s.reconcile_interval_s, self.reconcile_once)
            task_status.started()

    async def _every(self, name: str, interval_s: float, job: Callable[[], Awaitable[object]]) -> None:
        while True:
            await trio.sleep(interval_s)
            try:
                await job()
            except Exception:
                # The next round tries again: a stuck invoice is better than a dead job.
                log.exception("%s round failed", name)

    async def expire_once(self) -> int:
        """Expire the open invoices that are due; returns how many."""
        expired = await self.db.run(_expire)
        if expired:
            log.info("invoice expiry: %d invoice(s) expired unpaid", expired)
        return expired

    async def reconcile_once(self) -> Reconciled:
        """Ask the provider about every invoice due for it (see the module docstring)."""
        s = self.settings
        due = await self.db.run(store.claim_for_reconcile, timedelta(seconds=s.reconcile_after_s),
                                timedelta(seconds=s.reconcile_interval_s), RECONCILE_BATCH)
        credited = cancelled = failed = 0
        for invoice in due:
            try:
                outcome, was_cancelled = await self._reconcile(invoice)
            except ProviderError as exc:
                # Its lease runs out and the next round asks again.
                log.warning("reconciling invoice %s: %s", invoice.id, exc)
                failed += 1
                continue
            credited += outcome == "credited"
            cancelled += was_cancelled
        gave_up = await self.db.run(_give_up, self.provider.name, timedelta(seconds=s.reconcile_give_up_s))
        done = Reconciled(len(due), credited, cancelled, failed, gave_up)
        if credited or cancelled or failed or gave_up:
            log.info("payment reconciliation: %d checked, %d credited (lost webhooks), %d cancelled at the "
                     "provider, %d failed, %d given up", *(getattr(done, f) for f in done.__slots__))
        return done

    async def _reconcile(self, invoice: Invoice) -> tuple[str, bool]:
        """Bring one invoice in line with the provider; returns (outcome, cancelled at the provider)."""
        cancelled = False
        state: InvoiceState | None
        try:
            state = await self.provider.invoice_state(invoice.id)
            if state.status in ("pending", "declined"):
                # Expired here but still payable there: close it there. A payment that got in first
                # comes back as approved and is credited below.
                state = await self.provider.cancel_invoice(invoice.id)
                cancelled = state.status != "approved"
        except ProviderNotFound:
            state = None
        if state is None:
            await self.db.run(_never_created, invoice.id)
            return "ignored", False
        applied = await self.db.run(apply_state, self.provider.name, state)
        return applied.outcome, cancelled


def _expire(conn: Conn) -> int:
    expired = store.expire_due(conn)
    for invoice in expired:
        notify_invoice(conn, invoice)
    return len(expired)


def _never_created(conn: Conn, invoice_id: str) -> None:
    """The provider has no such invoice: it was never registered, so nothing can be paid on it."""
    invoice = store.lock_invoice(conn, invoice_id)
    if invoice is not None and not invoice.provider_final:
        store.update_invoice(conn, invoice_id, provider_final=True)


def _give_up(conn: Conn, provider: str, older_than: timedelta) -> int:
    abandoned = store.give_up_reconciling(conn, older_than)
    for invoice in abandoned:
        store.record_anomaly(conn, provider, invoice.id, "unreconciled", {"status": invoice.status})
    return len(abandoned)
