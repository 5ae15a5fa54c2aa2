"""One PostgreSQL connection driven from the Trio event loop itself, for the hot write paths.

Everything else in csms runs whole transactions in worker threads (:mod:`csms.store.db`, DESIGN.md).
That costs two thread hops per call, and on a busy single core each hop waits for the interpreter
lock and for the OS to schedule the other thread: measured under the S1 flood, a group commit of
~20 MeterValues spent ~5 ms in PostgreSQL and ~18 ms getting into and out of its worker thread.

The hot writes (meter samples, the OCPP journal) are single statements, so they need no transaction
block: in autocommit a statement is committed (and with ``synchronous_commit`` durable) when its
result arrives. This module sends such a statement with libpq's asynchronous API (``psycopg.pq``,
psycopg's public libpq wrapper) and waits for the socket with Trio, so the only wait is PostgreSQL.

A connection is used by one task at a time (each writer task owns one). Any failure, or a
cancellation in the middle of a statement, leaves the connection in an unknown state, so it is
closed; the owner opens a new one for its next statement. A statement that failed that way may
still have committed, so callers must be idempotent (the hot writes are: see ``csms/store``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import psycopg
import trio
from psycopg import pq

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger(__name__)

APPLICATION_NAME = "csms-direct"  # how these connections show in pg_stat_activity
_OK = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)


class NativeError(Exception):
    """The statement failed (``sqlstate`` says why) or the connection broke (``sqlstate`` is None)."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class NativeConnection:
    """An autocommit connection whose statements run on the event loop (see the module docstring)."""

    def __init__(self, dsn: str, application_name: str = APPLICATION_NAME) -> None:
        self._dsn = dsn
        self._application_name = application_name
        self._conn: psycopg.Connection[Any] | None = None
        self._prepared: set[bytes] = set()
        self.statements = 0

    async def execute(self, query: bytes, params: Sequence[bytes | None],
                      prepare: bytes | None = None) -> list[tuple[bytes | None, ...]]:
        """Run one statement with text parameters (``$1``, ``$2``, ...) and return its rows as text.

        Args:
            prepare: a name to prepare the statement under on first use, for statements run often
                (planning a large statement costs more than running it on a small batch).

        Raises:
            NativeError: PostgreSQL refused the statement, or the connection failed (then it may or
                may not have committed).
        """
        pgconn = await self._connection()
        ok = False
        try:
            if prepare is None:
                pgconn.send_query_params(query, params)
            else:
                if prepare not in self._prepared:
                    pgconn.send_prepare(prepare, query)
                    prepared = await _result(pgconn)
                    if prepared.status not in _OK:
                        ok = True  # the connection is fine; the statement is wrong
                        raise _error(prepared)
                    self._prepared.add(prepare)
                pgconn.send_query_prepared(prepare, params)
            result = await _result(pgconn)
            ok = True
        except psycopg.Error as exc:
            raise NativeError(f"database connection failed: {exc}") from exc
        except trio.Cancelled:
            # Stop the statement on the server too (as csms.store.db does), then drop the connection.
            await self._cancel_on_server()
            raise
        finally:
            if not ok:
                self._close()
        self.statements += 1
        if result.status not in _OK:
            raise _error(result)
        return [tuple(result.get_value(r, c) for c in range(result.nfields)) for r in range(result.ntuples)]

    async def _connection(self) -> pq.abc.PGconn:
        if self._conn is None or self._conn.closed:
            try:
                # Connecting is rare and may block on DNS or TLS: a worker thread is fine for it.
                conn = await trio.to_thread.run_sync(
                    lambda: psycopg.connect(self._dsn, autocommit=True, application_name=self._application_name))
            except psycopg.Error as exc:
                raise NativeError(f"could not connect to the database: {exc}") from exc
            conn.pgconn.nonblocking = 1
            self._conn = conn
            self._prepared.clear()
        return self._conn.pgconn

    async def _cancel_on_server(self) -> None:
        conn = self._conn
        if conn is None or conn.closed:
            return
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            try:
                await trio.to_thread.run_sync(conn.cancel_safe, abandon_on_cancel=True)
            except psycopg.Error as exc:
                log.warning("could not cancel a statement on the server: %s", exc)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None or conn.closed:
            return
        # Trio must forget the descriptor before it is closed, or a later wait on a reused number
        # would be confused with this one.
        trio.lowlevel.notify_closing(conn.pgconn.socket)
        conn.close()

    def close(self) -> None:
        """Close the connection (the next :meth:`execute` opens a new one)."""
        self._close()


def _error(result: pq.abc.PGresult) -> NativeError:
    message = (result.error_message or b"").decode(errors="replace").strip()
    sqlstate = result.error_field(pq.DiagnosticField.SQLSTATE)
    return NativeError(message, sqlstate.decode() if sqlstate else None)


async def _result(pgconn: pq.abc.PGconn) -> pq.abc.PGresult:
    """Send what was queued and wait for the command's result (the first error if it has several)."""
    fd = pgconn.socket
    # libpq's rule for non-blocking connections: flush until it returns 0, reading whatever the
    # server sends meanwhile so that neither side can block the other.
    while pgconn.flush():
        await trio.lowlevel.wait_writable(fd)
        pgconn.consume_input()
    last: pq.abc.PGresult | None = None
    while True:
        while pgconn.is_busy():
            await trio.lowlevel.wait_readable(fd)
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            break
        if last is None or last.status in _OK:  # keep the first error if there is one
            last = result
    if last is None:
        raise psycopg.OperationalError("no result from the server")
    return last
