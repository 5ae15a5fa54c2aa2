"""The fast lane of a charging session's MeterValues: planned in memory, written in one statement.

A driver watching a session live waits for each MeterValues to be committed and published. Written
the usual way (a worker thread: lock the row, update it, publish the event, commit), that took
~135 ms at the median and ~280 ms at p99 while the benchmark's S1 flood saturated the event loop:
the thread needs the interpreter lock back after every one of its round trips, and a busy loop
gives it back only after its switch interval (issue #3's benchmark).

Here the reader plans the change from the session row csms wrote last
(:class:`~csms.services.session_tracker.LiveSessions` keeps it) and sends it as one autocommit
compare-and-set statement on a connection driven by the event loop (:mod:`csms.store.session_live`,
:mod:`csms.store.native`), from its own task while one of a few connections is free; otherwise a
writer task sends the changes of every session queued meanwhile in one statement. Committed events
go straight to this process's subscribers from the task that wrote them. An update whose session had changed
meanwhile, or any failure, comes back as "not written": the caller then writes it the usual way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from csms.services.clock import EARLIEST_PLAUSIBLE, MAX_FUTURE_SKEW
from csms.services.metrics import Histogram, counter
from csms.store.native import NativeConnection, NativeError
from csms.store.session_live import PREPARED_NAME, LiveUpdate, live_update_statement

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

APPLICATION_NAME = "csms-live"  # how these connections show in pg_stat_activity


@dataclass(eq=False)
class _Pending:
    update: LiveUpdate
    done: trio.Event = field(default_factory=trio.Event)
    event: str | None = None


class LiveMeterWriter:
    """Writes live session updates on the event loop. Start it with ``nursery.start(writer.run)``.

    Args:
        dsn: the database to write to.
        direct: connections for writes made by the caller's own task (see :meth:`write`).
        writers: writer tasks (each owns a connection) for the updates that find no direct one free.
        max_batch: updates per statement at most.
    """

    def __init__(self, dsn: str, *, direct: int = 4, writers: int = 2, max_batch: int = 200,
                 queue_size: int = 1000) -> None:
        self._dsn = dsn
        self._writers = writers
        self._max_batch = max_batch
        self._send, self._receive = trio.open_memory_channel[_Pending](queue_size)
        # Connections a caller may write on directly; when all are busy, updates queue for the writers.
        self._idle = [NativeConnection(dsn, APPLICATION_NAME) for _ in range(direct)]
        #: Hands a committed event to this process's subscribers (``EventHub.publish_committed``).
        self.publish: Callable[[str], None] | None = None
        self.written = 0  # updates written here
        self.conflicts = 0  # updates whose session had changed (written the usual way instead)
        self.failures = 0  # updates whose statement failed (written the usual way instead)
        self.statement_seconds = Histogram("csms_live_update_seconds",
                                           "Time to write and commit one live session update statement.")

    async def write(self, update: LiveUpdate) -> str | None:
        """Write one update and wait for its commit.

        Returns:
            The change event it published, or None when it was not written (the session changed since
            ``update.expected``, the statement failed, or the writer is stopped): write it under the
            row lock instead. Its meter samples may be stored either way.
        """
        pending = _Pending(update)
        if self._idle:
            # A connection is free: write from this task, which saves the writer task's turn of the
            # scheduler (under load each turn is milliseconds). Shielded like the writers' batches.
            native = self._idle.pop()
            try:
                with trio.CancelScope(shield=True):
                    await self._write(native, [pending])
            finally:
                self._idle.append(native)
            return pending.event
        try:
            self._send.send_nowait(pending)
        except trio.WouldBlock:
            return None  # full: the usual path has its own queue and backpressure
        except trio.ClosedResourceError:
            return None
        await pending.done.wait()
        return pending.event

    def close(self) -> None:
        """Stop accepting updates; the writers finish what is queued and return."""
        self._send.close()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the writer tasks until :meth:`close` and the queue is drained."""
        try:
            async with self._receive, trio.open_nursery() as nursery:
                for _ in range(self._writers):
                    nursery.start_soon(self._writer, self._receive.clone())
                task_status.started()
        finally:
            idle, self._idle = self._idle, []
            for native in idle:
                native.close()

    async def _writer(self, receive: trio.MemoryReceiveChannel[_Pending]) -> None:
        native = NativeConnection(self._dsn, APPLICATION_NAME)
        try:
            async with receive:
                async for first in receive:
                    batch = [first]
                    while len(batch) < self._max_batch:
                        try:
                            batch.append(receive.receive_nowait())
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                    # Shielded: a statement that reached the database must release its waiters.
                    with trio.CancelScope(shield=True):
                        await self._write(native, batch)
        finally:
            native.close()

    async def _write(self, native: NativeConnection, batch: list[_Pending]) -> None:
        query, params = live_update_statement([p.update for p in batch], EARLIEST_PLAUSIBLE, MAX_FUTURE_SKEW)
        started = trio.current_time()
        try:
            rows = await native.execute(query, params, prepare=PREPARED_NAME)
        except NativeError as exc:
            # All of them go the usual way, which is safe even if this did commit: a session already
            # updated is found with nothing new to apply, and stored samples are skipped.
            log.warning("live update of %d sessions failed (%s); writing them under the row lock", len(batch), exc)
            self.failures += len(batch)
        else:
            self.statement_seconds.observe(trio.current_time() - started)
            for index, payload, _ in rows:
                assert index is not None
                assert payload is not None
                batch[int(index)].event = payload.decode()
            written = [p.event for p in batch if p.event is not None]
            self.written += len(written)
            self.conflicts += len(batch) - len(written)
            if self.publish is not None:
                for event in written:
                    self.publish(event)
        for pending in batch:
            pending.done.set()

    def render_metrics(self) -> list[str]:
        """Counters in the Prometheus text format (for ``GET /metrics``)."""
        return [*counter("csms_live_updates_written_total",
                         "Live session updates written in the fast lane.", self.written),
                *counter("csms_live_updates_conflicts_total",
                         "Live session updates whose session had changed (written under the row lock).",
                         self.conflicts),
                *counter("csms_live_updates_failed_total",
                         "Live session updates whose statement failed (written under the row lock).",
                         self.failures),
                *self.statement_seconds.render()]
