"""PostgreSQL access from Trio: psycopg 3 (sync) and psycopg-pool, one worker-thread hop per transaction.

psycopg's async API does not run under Trio, so every database call is a plain function
``fn(conn, *args)`` that runs a whole transaction in a worker thread (see DESIGN.md). Trio
cancellation is turned into a server-side cancel (``conn.cancel_safe()``) sent *while the connection
is still held*, and the caller waits until the thread has given the connection back, so a cancelled
call never leaks a connection or leaves a backend idle in transaction.

A cancelled call may still have committed (the COMMIT can win the race with the cancel), so
every writer must be idempotent.
"""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import psycopg
import psycopg_pool
import trio
from psycopg import sql

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

Conn = psycopg.Connection[Any]


class StoreError(Exception):
    """Base of the store boundary: the database failed or refused an operation."""


class DatabaseUnavailable(StoreError):
    """No connection to PostgreSQL could be had in time."""


class Database:
    """A pool of connections used from Trio tasks.

    Waiting for a free connection happens in Trio (a semaphore sized like the pool), not in a worker
    thread, so a cancelled wait costs nothing and threads are only used for real work.
    """

    def __init__(self, pool: psycopg_pool.ConnectionPool[Any], dsn: str) -> None:
        self.pool = pool
        self.dsn = dsn
        self._gate = trio.Semaphore(pool.max_size)

    async def run(self, fn: Callable[Concatenate[Conn, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(conn, *args, **kwargs)`` in one transaction in a worker thread.

        Args:
            fn: a plain function doing all its queries on the given connection.

        Returns:
            What ``fn`` returns, after COMMIT.

        Raises:
            trio.Cancelled: the query was cancelled server-side; the transaction may still have committed.
            StoreError: a connection could not be had.
            psycopg.Error: whatever ``fn`` raised (the transaction was rolled back).
        """
        return await self._run(True, fn, *args, **kwargs)

    async def run_autocommit(
        self, fn: Callable[Concatenate[Conn, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Like :meth:`run` but without a transaction block (for CREATE DATABASE and the like)."""
        return await self._run(False, fn, *args, **kwargs)

    async def _run(
        self, tx: bool, fn: Callable[Concatenate[Conn, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        lock = threading.Lock()
        done = threading.Event()
        state: dict[str, Any] = {}

        def work() -> T | None:
            try:
                with self.pool.connection(timeout=30) as conn:
                    with lock:
                        if state.get("cancelled"):
                            return None
                        state["conn"] = conn
                    try:
                        if not tx:
                            return fn(conn, *args, **kwargs)
                        with conn.transaction():  # COMMIT on success, ROLLBACK on any exception
                            return fn(conn, *args, **kwargs)
                    finally:
                        with lock:  # no cancel request may be in flight once the connection goes back
                            done.set()
            except psycopg_pool.PoolTimeout:
                raise DatabaseUnavailable("no database connection available in 30 s") from None

        async with self._gate:
            try:
                result = await trio.to_thread.run_sync(work, abandon_on_cancel=True)
            except trio.Cancelled:
                with lock:
                    state["cancelled"] = True
                    conn = state.get("conn")
                if conn is not None:

                    def cancel_until_done() -> None:
                        while True:
                            with lock:
                                if done.is_set():
                                    return
                                conn.cancel_safe()  # repeated if fn goes on to send another query
                            done.wait(0.1)

                    with trio.CancelScope(shield=True):
                        await trio.to_thread.run_sync(cancel_until_done)
                raise
            return result  # type: ignore[return-value]


@asynccontextmanager
async def open_database(dsn: str, size: int = 10) -> AsyncIterator[Database]:
    """Open a connection pool of ``size`` connections and close it on exit.

    Raises:
        DatabaseUnavailable: the pool could not fill within 30 s.
    """
    pool: psycopg_pool.ConnectionPool[Any] = psycopg_pool.ConnectionPool(
        dsn, min_size=size, max_size=size, open=False, kwargs={"autocommit": True}, name="csms"
    )

    def _open() -> None:
        pool.open()
        try:
            pool.wait(timeout=30)
        except psycopg_pool.PoolTimeout:
            pool.close()
            raise DatabaseUnavailable("could not connect to the database") from None

    await trio.to_thread.run_sync(_open)
    try:
        yield Database(pool, dsn)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(pool.close)


def identifier(name: str) -> sql.Identifier:
    """Quote a SQL identifier (database or channel name)."""
    return sql.Identifier(name)
