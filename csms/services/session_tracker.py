"""Which OCPP transactions belong to app sessions, kept in memory, and the queue of RemoteStops to send.

The MeterValues hot path asks :meth:`LiveSessions.is_live` (one set lookup) and only the messages of
session transactions pay for a session update; the benchmark's non-session traffic keeps its cheap
batched insert. The set is filled at start-up and refreshed by the reaper from the database (the
source of truth), and kept current by the StartTransaction and StopTransaction handlers in between.
Beside it, the session row each transaction's last update wrote (:meth:`LiveSessions.last_row`), from
which the next update is planned without reading the database (``csms.services.live_meter``); it is
only a guess that the write checks, so a stale one costs a fallback, never a wrong update.

A MeterValues that reaches a session's limit must not wait for the charger to answer a RemoteStop
(the charger's reader is busy with our answer), so the handler queues the stop here and
:meth:`LiveSessions.serve_stops`, running in the reaper's nursery, sends it. The queue is bounded;
when it is full the request is dropped with a warning and the session, already ``stopping``, is
settled by the reaper after the stop grace.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from csms.services.commands import CommandError

if TYPE_CHECKING:
    from csms.services.commands import ChargerCommands
    from csms.store.sessions import SessionRow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StopRequest:
    """A RemoteStopTransaction to send for a session."""

    session_id: str
    station_id: str
    transaction_id: int


class LiveSessions:
    """The transaction ids of charging sessions on this node, and the RemoteStop queue."""

    def __init__(self, queue_size: int = 1000) -> None:
        self._transactions: set[int] = set()
        self._rows: dict[int, SessionRow] = {}
        # Transactions added while a refresh reads the database: they may be missing from its answer.
        self._added_since_refresh: set[int] | None = None
        self._send, self._receive = trio.open_memory_channel[StopRequest](queue_size)

    def is_live(self, transaction_id: int) -> bool:
        """Whether MeterValues of this transaction update a session."""
        return transaction_id in self._transactions

    def last_row(self, transaction_id: int) -> SessionRow | None:
        """The session row the last update of this transaction wrote, if known."""
        return self._rows.get(transaction_id)

    def remember(self, transaction_id: int, row: SessionRow | None) -> None:
        """Keep the row an update wrote (None forgets it), for planning the next one."""
        if row is None or transaction_id not in self._transactions:
            self._rows.pop(transaction_id, None)
        else:
            self._rows[transaction_id] = row

    def add(self, transaction_id: int) -> None:
        """A session started charging with this transaction."""
        self._transactions.add(transaction_id)
        if self._added_since_refresh is not None:
            self._added_since_refresh.add(transaction_id)

    def discard(self, transaction_id: int) -> None:
        """The session of this transaction ended."""
        self._transactions.discard(transaction_id)
        self._rows.pop(transaction_id, None)

    def begin_refresh(self) -> None:
        """Note additions from now on, so :meth:`finish_refresh` keeps those the database read missed."""
        self._added_since_refresh = set()

    def finish_refresh(self, transaction_ids: set[int]) -> None:
        """Take the database's list plus what was added since :meth:`begin_refresh`.

        A transaction that ended meanwhile may come back until the next refresh; that only costs its
        (unlikely) late MeterValues a lookup that finds the session ended.
        """
        added = self._added_since_refresh or set()
        self._added_since_refresh = None
        self._transactions = set(transaction_ids) | added
        self._rows = {tx: row for tx, row in self._rows.items() if tx in self._transactions}

    def request_stop(self, request: StopRequest) -> None:
        """Queue a RemoteStop without waiting (see the module docstring for a full queue)."""
        try:
            self._send.send_nowait(request)
        except trio.WouldBlock:
            log.warning("RemoteStop queue full: session %s will be settled by the reaper", request.session_id)

    async def serve_stops(self, commands: ChargerCommands, *,
                          task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send queued RemoteStops one after another until cancelled."""
        task_status.started()
        async with self._receive:
            async for request in self._receive:
                await send_remote_stop(commands, request)


async def send_remote_stop(commands: ChargerCommands | None, request: StopRequest) -> bool:
    """Send one RemoteStopTransaction; True if the charger accepted it.

    A refusal, timeout or offline charger is only logged: the session stays ``stopping`` and the reaper
    bills its last durable reading after the stop grace.
    """
    if commands is None:
        return False
    try:
        answer = await commands.remote_stop(request.station_id, request.transaction_id)
    except CommandError as exc:
        log.info("RemoteStop for session %s on %s failed: %s", request.session_id, request.station_id,
                 type(exc).__name__)
        return False
    accepted = answer.get("status") == "Accepted"
    if not accepted:
        log.info("RemoteStop for session %s refused by %s", request.session_id, request.station_id)
    return accepted
