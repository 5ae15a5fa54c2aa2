"""The session reaper: finishes what chargers and clients leave unfinished, so no hold is stuck.

Every ``CSMS_REAPER_INTERVAL`` seconds it:

- fails sessions that got no StartTransaction within ``CSMS_SESSION_START_TIMEOUT`` (hold voided in
  full, id tag retired so a late start is answered Expired);
- stops sessions charging longer than ``CSMS_SESSION_MAX_DURATION`` (RemoteStop; the StopTransaction
  bills what was delivered);
- settles sessions whose charger sent no StopTransaction within ``CSMS_SESSION_STOP_GRACE`` after the
  RemoteStop, billing the last meter reading that group commit made durable (a StopTransaction that
  comes later is recorded as an anomaly and bills nothing more);
- prunes idempotency keys older than 24 hours;
- reloads the set of live session transactions from the database.

Each session is handled in its own transaction under its row lock, with its status re-checked, so the
reaper and a StopTransaction arriving at the same moment never both settle it. The reaper also runs
the task that sends queued RemoteStops (:meth:`LiveSessions.serve_stops`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

import trio

from csms.services import idempotency
from csms.services import session_billing as billing
from csms.services.clock import utcnow
from csms.services.session_tracker import StopRequest
from csms.store import sessions as store
from csms.store.stations import record_anomaly

if TYPE_CHECKING:
    from collections.abc import Callable

    from csms.config import Settings
    from csms.services.commands import ChargerCommands
    from csms.services.session_tracker import LiveSessions
    from csms.store.db import Conn, Database

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Sweep:
    """What one reaper round did (for logs and tests)."""

    failed: int = 0
    stopped: int = 0
    settled: int = 0
    keys_pruned: int = 0


class SessionReaper:
    """Start with ``await nursery.start(reaper.run)``; runs until cancelled."""

    def __init__(self, db: Database, commands: ChargerCommands | None, live: LiveSessions,
                 settings: Settings) -> None:
        self.db = db
        self.commands = commands
        self.live = live
        self.settings = settings

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load the live sessions, then sweep every interval; the RemoteStop sender runs alongside."""
        # The gateway may already be accepting chargers: keep what their StartTransactions add meanwhile.
        self.live.begin_refresh()
        self.live.finish_refresh(await self.db.run(store.active_transaction_ids))
        async with trio.open_nursery() as nursery:
            if self.commands is not None:
                await nursery.start(self.live.serve_stops, self.commands)
            task_status.started()
            while True:
                await trio.sleep(self.settings.reaper_interval_s)
                try:
                    done = await self.sweep()
                except Exception:
                    # The next round tries again; a stuck session is better than a dead reaper.
                    log.exception("session reaper round failed")
                    continue
                if done != Sweep(keys_pruned=done.keys_pruned):
                    log.info("session reaper: %d failed (no start), %d stopped (max duration), "
                             "%d settled from meter values", done.failed, done.stopped, done.settled)

    async def sweep(self) -> Sweep:
        """One round of every job (see the module docstring)."""
        s = self.settings
        now = utcnow()
        failed = stopped = settled = 0
        self.live.begin_refresh()
        for session_id in await self.db.run(store.due_for_start_timeout,
                                            now - timedelta(seconds=s.session_start_timeout_s)):
            failed += bool(await self._one(_fail_unstarted, session_id))
        for session_id in await self.db.run(store.due_for_max_duration,
                                            now - timedelta(seconds=s.session_max_duration_s)):
            stop = await self._one(_stop_overlong, session_id)
            if stop is not None:
                stopped += 1
                self.live.request_stop(stop)
        for session_id in await self.db.run(store.due_for_stop_grace,
                                            now - timedelta(seconds=s.session_stop_grace_s)):
            tx_id = await self._one(_settle_from_meter, session_id)
            if tx_id is not None:
                settled += 1
                self.live.discard(tx_id)
        pruned = await self.db.run(idempotency.prune)
        self.live.finish_refresh(await self.db.run(store.active_transaction_ids))
        return Sweep(failed, stopped, settled, pruned)

    async def _one(self, job: Callable[[Conn, str], T], session_id: str) -> T | None:
        """Run one session's job in its own transaction; a failure is logged and skips only that session."""
        try:
            return await self.db.run(job, session_id)
        except Exception:
            log.exception("session reaper: %s failed for session %s", job.__name__, session_id)
            return None


def _fail_unstarted(conn: Conn, session_id: str) -> bool:
    row = store.lock_session(conn, session_id)
    return row is not None and billing.fail(conn, row, "start_timeout")


def _stop_overlong(conn: Conn, session_id: str) -> StopRequest | None:
    row = store.lock_session(conn, session_id)
    if row is None or not billing.request_stop(conn, row, "MaxDuration"):
        return None
    assert row.transaction_id is not None  # charging sessions have their transaction
    return StopRequest(row.id, row.station_id, row.transaction_id)


def _settle_from_meter(conn: Conn, session_id: str) -> int | None:
    """Bill a stopping session whose StopTransaction never came; returns its transaction id."""
    row = store.lock_session(conn, session_id)
    if row is None or row.status != "stopping" or row.transaction_id is None or row.meter_start_wh is None:
        return None
    # The session's own live energy was written in the same transactions as the samples, so both are
    # durable; the larger wins (the stored samples may be ahead when live updates were skipped).
    register = store.last_durable_register_wh(conn, row.station_id, row.transaction_id)
    meter_stop = max(row.meter_start_wh + row.energy_wh, register if register is not None else 0)
    charged = billing.settle(conn, row, meter_stop, utcnow(), None, "meter_values")
    record_anomaly(conn, row.station_id, "session_settled_without_stop",
                   {"sessionId": row.id, "transactionId": row.transaction_id, "meterStopWh": meter_stop,
                    "chargedTyiyn": charged})
    return row.transaction_id
