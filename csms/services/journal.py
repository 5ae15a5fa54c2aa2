"""The append-only OCPP message journal: every frame in and out, written in the background.

The journal is for audit and debugging, not for billing (billing rows are group-committed before
the answer leaves), so the gateway never waits for it: frames go to a bounded buffer that a writer
task flushes with COPY every ``flush_s`` or every ``batch`` frames. When the buffer is full the
frame is dropped and counted, because slowing down every charger for an audit row would be worse;
the drop count is logged and exported.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from csms.store.db import Conn, Database

log = logging.getLogger(__name__)

JournalRow = tuple[str, str, int | None, str | None, str | None, str, datetime]


class Journal:
    """Buffered writer of ``ocpp_journal`` rows. Start with ``nursery.start(journal.run)``."""

    def __init__(self, db: Database, *, enabled: bool = True, capacity: int = 100_000,
                 batch: int = 2_000, flush_s: float = 0.2) -> None:
        self._db = db
        self.enabled = enabled
        self._send, self._receive = trio.open_memory_channel[JournalRow](capacity)
        self._batch = batch
        self._flush_s = flush_s
        self.dropped = 0
        self.written = 0

    def record(self, station_id: str, direction: str, message_type: int | None, action: str | None,
               unique_id: str | None, payload: str) -> None:
        """Queue one frame; never blocks."""
        if not self.enabled:
            return
        try:
            self._send.send_nowait(
                (station_id, direction, message_type, action, unique_id, payload, datetime.now(UTC))
            )
        except trio.WouldBlock:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 10_000 == 0:
                log.warning("OCPP journal buffer full: %d frames dropped so far", self.dropped)
        except trio.ClosedResourceError:
            self.dropped += 1

    def close(self) -> None:
        """Stop accepting frames; :meth:`run` flushes what is buffered and returns."""
        self._send.close()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Flush loop; returns after :meth:`close` once everything buffered is written."""
        task_status.started()
        async with self._receive:
            closed = False
            while not closed:
                rows: list[JournalRow] = []
                try:
                    rows.append(await self._receive.receive())
                except trio.EndOfChannel:
                    return
                with trio.move_on_after(self._flush_s):
                    while len(rows) < self._batch:
                        try:
                            rows.append(await self._receive.receive())
                        except trio.EndOfChannel:
                            closed = True
                            break
                with trio.CancelScope(shield=True):
                    try:
                        await self._db.run(_copy_rows, rows)
                        self.written += len(rows)
                    except Exception as exc:
                        self.dropped += len(rows)
                        log.error("OCPP journal write failed, %d frames lost: %s", len(rows), exc)

    async def prune(self, retention_days: int) -> int:
        """Delete journal rows older than the retention period; returns how many."""
        cutoff = datetime.now(UTC) - timedelta(days=retention_days)
        return await self._db.run(_prune, cutoff)


def _copy_rows(conn: Conn, rows: list[JournalRow]) -> None:
    with conn.cursor() as cur, cur.copy(
        "COPY ocpp_journal (station_id, direction, message_type, action, unique_id, payload, received_at) "
        "FROM STDIN"
    ) as copy:
        for row in rows:
            copy.write_row(row)


def _prune(conn: Conn, cutoff: datetime) -> int:
    cur = conn.execute("DELETE FROM ocpp_journal WHERE received_at < %s", (cutoff,))
    return cur.rowcount
