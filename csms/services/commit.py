"""Group commit: many small billing-relevant writes from many chargers, one transaction.

A handler calls :meth:`GroupCommitter.submit` and gets its answer only after COMMIT, so a charger
that got a CALLRESULT never needs to resend (DESIGN.md "Hot paths"). A writer task takes whatever
is queued (up to ``max_batch`` operations, waiting at most ``max_wait_s`` for more), merges all meter
samples into one INSERT, runs the other operations in order, and commits once.

A few writers run at once so that one batch's round trips overlap the next one's: a batch spends
most of its time waiting on PostgreSQL and on the interpreter lock. That is safe because a charger
has at most one CALL in flight (OCPP-J), so one station's operations are never in two batches at
the same time; operations of different stations touch different rows.

If a batch fails, each operation is retried in its own transaction so one bad row cannot fail its
neighbours; every operation must therefore be idempotent (they are: see ``csms/store``).

The queue is bounded: when it is full, ``submit`` blocks, which slows readers of the chargers that
are sending — backpressure rather than unbounded memory.

Meter samples alone (every MeterValues outside an app-started session) have their own lane with one
writer, and a batch of them is one statement, so it skips the worker thread: the writer sends it in
autocommit on its own connection driven by the event loop (:mod:`csms.store.native`); if that
connection fails, the batch is written the usual way. Operations with a function (transactions,
status notifications) run in a worker thread in their own lane, so they never hold up the samples.

Urgent operations (``submit(..., urgent=True)``: the MeterValues of a charging session a driver may be
watching live) have their own queue and writers, which commit whatever is queued at once instead of
waiting behind the batches of ordinary meter values: under the benchmark's flood those wait tens of
milliseconds in the queue. Two urgent writers, because a session update costs several round trips
(its row lock, update and event): with one, updates queued behind each other under load. This is as
safe as the parallel ordinary writers, for the same reason (one CALL in flight per charger).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import trio

from csms.services.clock import EARLIEST_PLAUSIBLE, MAX_FUTURE_SKEW
from csms.services.metrics import Histogram, counter
from csms.store.native import NativeConnection, NativeError
from csms.store.transactions import UNIQUE_VIOLATION, MeterSamples, insert_meter_samples, meter_samples_statement

if TYPE_CHECKING:
    from collections.abc import Callable

    from csms.store.db import Conn, Database

log = logging.getLogger(__name__)
T = TypeVar("T")
# After a batch held a stored value, this many batches skip stored values without trying the plain
# INSERT first (about a second under a flood; a replaying charger's queue is usually that long).
_SKIP_STORED_BATCHES = 50


class CommitError(Exception):
    """The database did not accept the write; the charger gets an InternalError and will retry."""


@dataclass(eq=False)
class _Op(Generic[T]):
    fn: Callable[[Conn], T] | None
    rows: list[MeterSamples]
    done: trio.Event = field(default_factory=trio.Event)
    result: Any = None
    error: BaseException | None = None


class GroupCommitter:
    """The single writer of billing-relevant rows. Start it with ``nursery.start(committer.run)``."""

    def __init__(self, db: Database, *, max_batch: int = 500, max_wait_s: float = 0.0,
                 writers: int = 2, urgent_writers: int = 2, queue_size: int = 10_000,
                 native: bool = True) -> None:
        self._db = db
        self._native = native
        self._writers = writers
        self._urgent_writers = urgent_writers
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._send, self._receive = trio.open_memory_channel[_Op[Any]](queue_size)
        self._samples_send, self._samples_receive = trio.open_memory_channel[_Op[Any]](queue_size)
        self._urgent_send, self._urgent_receive = trio.open_memory_channel[_Op[Any]](queue_size)
        self.batches = 0
        self.operations = 0
        self.busy_s = 0.0  # time spent writing batches (for /metrics and benchmarks)
        self.replayed_batches = 0  # sample batches written again because they held stored values
        self._skip_stored_for = 0  # batches left to write with the statement that skips stored values
        self.batch_seconds = Histogram("csms_commit_batch_seconds",
                                       "Time to write and commit one group-commit batch (all lanes).")
        self.wait_seconds = Histogram("csms_commit_wait_seconds",
                                      "Time an operation waited for its commit: queue and batch (all lanes).")

    async def submit(self, fn: Callable[[Conn], T] | None, rows: list[MeterSamples] | None = None, *,
                     urgent: bool = False) -> T:
        """Queue ``fn`` (and meter samples to insert) and wait until they are committed.

        ``fn`` None means samples alone, which are written without a worker thread.

        Args:
            urgent: commit in the urgent lane (see the module docstring), for the few writes someone
                is waiting to see.

        Returns:
            What ``fn`` returned inside the committed transaction.

        Raises:
            CommitError: the write failed even on its own.
            trio.ClosedResourceError: the committer has stopped.
        """
        op: _Op[T] = _Op(fn, rows or [])
        send = self._urgent_send if urgent else self._samples_send if fn is None else self._send
        queued = trio.current_time()
        try:
            send.send_nowait(op)  # no checkpoint on the common path: done.wait() is one anyway
        except trio.WouldBlock:
            await send.send(op)
        await op.done.wait()
        self.wait_seconds.observe(trio.current_time() - queued)
        if op.error is not None:
            raise CommitError(str(op.error)) from op.error
        return op.result  # type: ignore[no-any-return]

    async def submit_rows(self, rows: list[MeterSamples]) -> None:
        """Queue meter samples alone and wait until they are committed."""
        await self.submit(None, rows)

    def close(self) -> None:
        """Stop accepting work; the writers drain what is queued and return."""
        self._send.close()
        self._samples_send.close()
        self._urgent_send.close()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the writer tasks. Returns after :meth:`close` once the queues are drained."""
        async with self._receive, self._samples_receive, self._urgent_receive, trio.open_nursery() as nursery:
            for _ in range(self._writers):
                nursery.start_soon(self._writer, self._receive.clone(), self._max_wait_s)
            # One writer for samples alone: it takes everything queued while its last statement ran, so
            # its batches grow with the load; measured under S1, one writer made batches of ~100 and 1.4x
            # the throughput of two (batches of ~25 kept PostgreSQL, not csms, the bottleneck).
            nursery.start_soon(self._writer, self._samples_receive.clone(), self._max_wait_s)
            for _ in range(self._urgent_writers):
                nursery.start_soon(self._writer, self._urgent_receive.clone(), 0.0)
            task_status.started()

    async def _writer(self, receive: trio.MemoryReceiveChannel[_Op[Any]], max_wait_s: float) -> None:
        native = NativeConnection(self._db.dsn) if self._native else None
        try:
            await self._write_batches(receive, max_wait_s, native)
        finally:
            if native is not None:
                native.close()

    async def _write_batches(self, receive: trio.MemoryReceiveChannel[_Op[Any]], max_wait_s: float,
                             native: NativeConnection | None) -> None:
        async with receive:
            while True:
                try:
                    first = await receive.receive()
                except trio.EndOfChannel:
                    return
                batch = [first]
                self._drain_into(receive, batch)
                if len(batch) < self._max_batch and max_wait_s > 0:
                    await trio.sleep(max_wait_s)
                    self._drain_into(receive, batch)
                # Shielded: a batch that reached the database must finish and release its waiters,
                # or chargers would be left without an answer for writes that did commit.
                with trio.CancelScope(shield=True):
                    await self._write(batch, native)

    def _drain_into(self, receive: trio.MemoryReceiveChannel[_Op[Any]], batch: list[_Op[Any]]) -> None:
        while len(batch) < self._max_batch:
            try:
                batch.append(receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                return

    async def _write(self, batch: list[_Op[Any]], native: NativeConnection | None) -> None:
        started = trio.current_time()
        size = len(batch)
        if native is not None:
            plain = [op for op in batch if op.fn is None]
            if plain and await self._write_native(native, plain):
                batch = [op for op in batch if op.fn is not None]
        if batch:
            await self._write_in_thread(batch)
        elapsed = trio.current_time() - started
        self.batches += 1
        self.operations += size
        self.busy_s += elapsed
        self.batch_seconds.observe(elapsed)
        if elapsed > 0.5:
            log.warning("group commit of %d operations took %.0f ms", size, elapsed * 1000)
        for op in batch:
            op.done.set()

    async def _write_in_thread(self, batch: list[_Op[Any]]) -> None:
        try:
            results = await self._db.run(_apply_batch, batch)
        except Exception as exc:  # one bad operation: retry each alone so the others still commit
            log.warning("group commit of %d operations failed (%s); retrying one by one", len(batch), exc)
            for op in batch:
                try:
                    op.result = (await self._db.run(_apply_batch, [op]))[0]
                except Exception as single:
                    log.error("write failed: %s", single)
                    op.error = single
        else:
            for op, result in zip(batch, results, strict=True):
                op.result = result

    async def _write_native(self, native: NativeConnection, ops: list[_Op[Any]]) -> bool:
        """Commit the samples of ``ops`` in one autocommit statement and release their waiters.

        Returns False (nothing released) when that failed; the caller then writes them the usual way,
        which is safe even if the statement did commit, because stored samples are skipped.
        """
        rows = [row for op in ops for row in op.rows]
        try:
            if self._skip_stored_for:
                # Replays come in runs (a charger reconnecting sends its whole queue), and a failed
                # statement is wasted work: for a while, every batch skips stored values at once.
                self._skip_stored_for -= 1
                query, params = meter_samples_statement(rows, EARLIEST_PLAUSIBLE, MAX_FUTURE_SKEW)
                await native.execute(query, params, prepare=b"csms_meter_samples")
            else:
                await self._write_new_samples(native, rows)
        except NativeError as exc:
            log.warning("direct write of %d meter messages failed (%s); writing them in a thread", len(ops), exc)
            return False
        for op in ops:
            op.done.set()
        return True

    async def _write_new_samples(self, native: NativeConnection, rows: list[MeterSamples]) -> None:
        query, params = meter_samples_statement(rows, EARLIEST_PLAUSIBLE, MAX_FUTURE_SKEW, skip_stored=False)
        try:
            await native.execute(query, params, prepare=b"csms_new_meter_samples")
        except NativeError as exc:
            if exc.sqlstate != UNIQUE_VIOLATION:
                raise
            # A value in the batch is stored already (a replay): nothing was written, so the batch
            # goes again with the statement that skips stored values.
            self.replayed_batches += 1
            self._skip_stored_for = _SKIP_STORED_BATCHES
            query, params = meter_samples_statement(rows, EARLIEST_PLAUSIBLE, MAX_FUTURE_SKEW)
            await native.execute(query, params, prepare=b"csms_meter_samples")

    def render_metrics(self) -> list[str]:
        """Group-commit counters in the Prometheus text format (for ``GET /metrics``)."""
        return [*counter("csms_commit_batches_total", "Group-commit batches written.", self.batches),
                *counter("csms_commit_operations_total", "Operations committed by group commit.", self.operations),
                *counter("csms_commit_busy_seconds_total", "Time spent writing group-commit batches.", self.busy_s),
                *counter("csms_commit_replayed_sample_batches_total", "Meter-sample batches written again, "
                         "skipping values already stored (a charger's replay).", self.replayed_batches),
                *self.batch_seconds.render(), *self.wait_seconds.render()]

    @property
    def mean_batch(self) -> float:
        """Average operations per committed batch (for /metrics and benchmarks)."""
        return self.operations / self.batches if self.batches else math.nan


def _apply_batch(conn: Conn, batch: list[_Op[Any]]) -> list[Any]:
    rows = [row for op in batch for row in op.rows]
    insert_meter_samples(conn, rows, EARLIEST_PLAUSIBLE, MAX_FUTURE_SKEW)
    return [op.fn(conn) if op.fn is not None else None for op in batch]
