"""The one process: database, writers, OCPP gateway and API under one nursery tree.

Start order (each service reports ready with ``task_status.started()`` before the next starts):
database (embedded server if no URL) → migrations → group committer and journal → OCPP gateway →
presence → session reaper (and its RemoteStop sender) → events (LISTEN) → push → payments (when
configured: provider client, invoice expiry, reconciliation) → API. Stop order on
SIGINT/SIGTERM or :meth:`Csms.stop`: stop the API and stop accepting chargers, close chargers with
1001 under a deadline, then drain the committer and the journal so nothing confirmed or journaled is
lost, then stop the database.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import sys
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
import trio

from csms.api.app import create_app
from csms.api.context import ApiServices
from csms.api.server import serve_api
from csms.ocpp.gateway import Gateway
from csms.ocpp.handlers.context import Deps, VendorHandler
from csms.ocpp.router import ROUTES_16
from csms.services.command_relay import CHANNEL as RELAY_CHANNEL
from csms.services.command_relay import CommandRelay
from csms.services.commands import ChargerCommands
from csms.services.commit import GroupCommitter
from csms.services.events import EventHub
from csms.services.journal import Journal
from csms.services.live_meter import LiveMeterWriter
from csms.services.metrics import OcppMetrics
from csms.services.payments.service import serve_payments
from csms.services.push import PushService
from csms.services.reapers import SessionReaper
from csms.services.session_tracker import LiveSessions
from csms.services.stations import StationService
from csms.services.transactions import TransactionService
from csms.store.db import Database, open_database
from csms.store.embedded import embedded_server, uri_for_database
from csms.store.migrations import load_migrations, migrate

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from csms.config import Settings

log = logging.getLogger(__name__)

EMBEDDED_DB_NAME = "csms"


@dataclass(frozen=True)
class Ready:
    """What a started csms reports: where it listens."""

    ocpp_port: int
    http_port: int


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[Database]:
    """Open the configured database, or the embedded one, and bring its schema up to date."""
    if settings.database_url:
        async with open_database(settings.database_url, settings.db_pool_size) as db:
            await db.run_autocommit(migrate, load_migrations())
            yield db
        return
    async with embedded_server(settings.data_dir / "pg") as base:
        await trio.to_thread.run_sync(_create_database, base, EMBEDDED_DB_NAME)
        async with open_database(uri_for_database(base, EMBEDDED_DB_NAME), settings.db_pool_size) as db:
            await db.run_autocommit(migrate, load_migrations())
            yield db


def _create_database(base_uri: str, name: str) -> None:
    with psycopg.connect(base_uri, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')


# Net new container objects between young collections (Python's default is 700; see _tune_gc).
YOUNG_GC_THRESHOLD = 50_000


def _tune_gc() -> None:
    """Keep the cyclic garbage collector from pausing the event loop for hundreds of milliseconds.

    Measured with 10,000 chargers (shared/bench S2): full collections took 200-940 ms each, most of
    it re-scanning the objects every library creates at import (GraphQL schema, JSON schemas, ...),
    and they ran every few seconds while chargers connected; p99 latency was about 1 s. Freezing the
    start-up objects (they live as long as the process) and collecting the youngest generation less
    often brought p99 to about 30 ms. Objects created later are still collected as usual.

    The middle generation is collected at every other collection (threshold 0) instead of every
    eleventh: its pause is proportional to what it holds, the survivors of the young collections
    since the last one. When many long-lived objects arrive together (a thousand live subscribers
    connecting, each ~400 objects), the default let ten young collections' survivors pile up there,
    and the one collection that moved them on paused csms for 250-330 ms (issue #3's benchmark,
    measured with a GC callback); now each move is at most two young collections' worth, and no
    pause over 100 ms was left after the subscribers had connected.
    """
    gc.collect()
    gc.freeze()
    third = gc.get_threshold()[2]
    gc.set_threshold(YOUNG_GC_THRESHOLD, 0, third)
    if _report_gc_pause not in gc.callbacks:
        gc.callbacks.append(_report_gc_pause)


_gc_started = [0.0]


def _report_gc_pause(phase: str, info: dict[str, int]) -> None:
    """Log collections long enough to show in charger latency (every task waits for them)."""
    if phase == "start":
        _gc_started[0] = time.perf_counter()
        return
    paused = time.perf_counter() - _gc_started[0]
    if paused > 0.1:
        log.warning("garbage collection (generation %d) paused csms for %.0f ms", info["generation"],
                    paused * 1000)


class Csms:
    """A whole csms node. ``await nursery.start(csms.run)`` returns :class:`Ready`."""

    def __init__(self, settings: Settings, *, vendors: dict[str, VendorHandler] | None = None) -> None:
        self.settings = settings
        self.vendors = dict(vendors or {})  # DataTransfer handlers by vendorId
        self.node_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = trio.Event()
        self.gateway: Gateway | None = None
        self.commands: ChargerCommands | None = None
        self.db: Database | None = None
        self.stations: StationService | None = None
        self.reaper: SessionReaper | None = None
        self.events: EventHub | None = None
        self.push: PushService | None = None
        self._metrics: list[Callable[[], list[str]]] = []  # GET /metrics sources besides the events hub
        self._transactions: TransactionService | None = None
        # Loaded (or, in development, created) up front so a bad key fails start-up, not the first login.
        self._signer = settings.token_signer()
        self._vapid_key = settings.vapid_key()

    async def add_station(self, station_id: str, password: str | None = None) -> bool:
        """Register a charge point (as `csms station add` does); False if it exists."""
        assert self.stations is not None, "csms is not running"
        return await self.stations.add_station(station_id, password)

    def stop(self) -> None:
        """Begin a graceful stop (same as SIGTERM)."""
        self._stop.set()

    async def run(self, *, handle_signals: bool = False,
                  task_status: trio.TaskStatus[Ready] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`stop` (or SIGINT/SIGTERM when ``handle_signals``).

        Raises:
            ConfigError: production mode without what it needs (before anything starts).
        """
        self.settings.check_production()
        async with trio.open_nursery() as watcher:
            if handle_signals:
                # Watched for the whole run, so that a second signal during the (bounded) graceful
                # stop is absorbed instead of killing the process before it stops its database.
                await watcher.start(self._watch_signals)
            try:
                await self._run(task_status)
            finally:
                watcher.cancel_scope.cancel()

    async def _run(self, task_status: trio.TaskStatus[Ready]) -> None:
        s = self.settings
        # Database calls run in worker threads that need the interpreter lock back after every wait on
        # libpq. With the default 5 ms switch interval a busy event loop makes each of those waits cost
        # up to 5 ms, and a group commit makes several: measured, batches took ~40 ms instead of ~5.
        sys.setswitchinterval(s.gil_switch_interval_s)
        async with database(s) as db:
            self.db = db
            committer = GroupCommitter(db, max_batch=s.commit_batch_max, max_wait_s=s.commit_batch_wait_s,
                                       writers=s.commit_writers)
            journal = Journal(db, enabled=s.journal_enabled)
            deps_metrics = OcppMetrics(ROUTES_16)
            stations = StationService(db, committer, node_id=self.node_id,
                                      accept_unknown=s.accept_unknown_stations)
            self.stations = stations
            live = LiveSessions()
            live_writer = LiveMeterWriter(db.dsn)
            self._metrics = [deps_metrics.render, committer.render_metrics, journal.render_metrics,
                             live_writer.render_metrics]
            self._transactions = TransactionService(committer, live, live_writer)
            deps = Deps(stations=stations, transactions=self._transactions, metrics=deps_metrics,
                        heartbeat_interval_s=s.heartbeat_interval_s, vendors=self.vendors)
            gateway = Gateway(s, deps, ROUTES_16, journal)
            self._metrics.append(gateway.admission.render_metrics)
            self.gateway = gateway
            self.commands = ChargerCommands(gateway.send_call, gateway.is_connected)
            self.reaper = SessionReaper(db, self.commands, live, s)
            async with trio.open_nursery() as writers:
                await writers.start(committer.run)
                await writers.start(live_writer.run)
                await writers.start(journal.run)
                try:
                    await self._run_front(db, gateway, stations, journal, task_status)
                finally:
                    # Everything that was confirmed is already committed; this drains the rest.
                    committer.close()
                    live_writer.close()
                    journal.close()
            log.info("group commit: %d operations in %d batches (%.1f per batch), %.1f s writing; "
                     "journal: %d frames written, %d dropped", committer.operations, committer.batches,
                     committer.mean_batch, committer.busy_s, journal.written, journal.dropped)
        log.info("csms stopped")

    async def _run_front(self, db: Database, gateway: Gateway, stations: StationService, journal: Journal,
                         task_status: trio.TaskStatus[Ready]) -> None:
        s = self.settings
        async with trio.open_nursery() as front:
            listeners = await front.start(gateway.serve)
            ocpp_port = listeners[0].socket.getsockname()[1]
            async with trio.open_nursery() as aux:
                await aux.start(stations.run_presence)
                if self.reaper is not None:
                    await aux.start(self.reaper.run)
                # Before the API, so that the first subscription already has its events; when it stops
                # (with the API), open subscription sockets close with 1001.
                # Commands for chargers on other nodes travel on the events connection too.
                relay = await aux.start(CommandRelay(db, self.node_id, gateway.send_call,
                                                     default_timeout_s=s.call_timeout_s).run)
                self._metrics.append(relay.render_metrics)
                hub = EventHub(db.dsn, capacity=s.events_buffer)
                hub.channel_handlers[RELAY_CHANNEL] = relay.notified
                self.events = await aux.start(hub.run)
                assert self.commands is not None
                self.commands.relay = relay
                # Live-session updates reach this process's subscribers as they commit (no NOTIFY trip).
                assert self._transactions is not None
                self._transactions.publish_to(self.events.publish_committed)
                # After the events (it consumes them) and before the API (vapidPublicKey, sendTestPush).
                self.push = await aux.start(PushService(db, s.push, self._vapid_key, self.events,
                                                         public_only=s.production).run)
                services = ApiServices(db=db, settings=s, signer=self._signer, commands=self.commands,
                                       events=self.events, push=self.push, metrics=list(self._metrics))
                if s.payments.enabled:
                    # Billing: invoice expiry and reconciliation, and the provider client the API uses.
                    services.extra["payments"] = await aux.start(serve_payments, db, s.payments)
                app = create_app(services)
                binds = await aux.start(serve_api, app, s)
                http_port = int(binds[0].rsplit(":", 1)[1])
                aux.start_soon(self._prune_journal, journal)
                _tune_gc()
                log.info("csms ready: OCPP on %s:%d%s, GraphQL on http://%s:%d/graphql",
                         s.ocpp_host, ocpp_port, s.ocpp_path_prefix, s.http_host, http_port)
                task_status.started(Ready(ocpp_port, http_port))
                await self._stop.wait()
                log.info("stopping: closing chargers and the API")
                aux.cancel_scope.cancel()
            gateway.stop()
            front.cancel_scope.deadline = trio.current_time() + s.shutdown_grace_s

    async def _watch_signals(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if self._stop.is_set():
                    log.info("received %s: already stopping (within CSMS_SHUTDOWN_GRACE; SIGKILL is safe too)",
                             name)
                    continue
                log.info("received %s: stopping", name)
                self.stop()

    async def _prune_journal(self, journal: Journal) -> None:
        while True:
            await trio.sleep(60)
            try:
                removed = await journal.prune(self.settings.journal_retention_days)
                if removed:
                    log.info("pruned %d OCPP journal rows older than %d days", removed,
                             self.settings.journal_retention_days)
            except Exception as exc:
                log.warning("journal pruning failed: %s", exc)
            await trio.sleep(3600 - 60)
