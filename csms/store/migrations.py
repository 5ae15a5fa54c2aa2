"""Numbered SQL migrations, applied in order, each in its own transaction.

Files are named ``NNNN_description.sql`` in the repository's ``migrations/`` folder (or
``$CSMS_MIGRATIONS_DIR``). Each applied file is recorded with its SHA-256, so an edited migration is
detected and refused rather than silently diverging. A session-level advisory lock serialises
nodes that start at the same moment.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from csms.store.db import Conn, StoreError

log = logging.getLogger(__name__)

# An arbitrary constant: every csms node takes this advisory lock while migrating.
_LOCK_KEY = 0x6353_4D53  # "cSMS"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(StoreError):
    """A migration file is malformed, was edited after being applied, or failed."""


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's text."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations_dir() -> Path:
    """Where the migration files live: ``$CSMS_MIGRATIONS_DIR`` or the repository's ``migrations/``."""
    env = os.environ.get("CSMS_MIGRATIONS_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "migrations"


def load_migrations(folder: Path | None = None) -> list[Migration]:
    """Read and order the migration files.

    Raises:
        MigrationError: a file is misnamed or two files share a number.
    """
    folder = folder or migrations_dir()
    if not folder.is_dir():
        raise MigrationError(f"migrations folder not found: {folder}")
    found: dict[int, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"migration file name must look like 0001_name.sql: {path.name}")
        version = int(m.group(1))
        if version in found:
            raise MigrationError(f"two migrations numbered {version}: {found[version].name}, {path.name}")
        found[version] = Migration(version, path.name, path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def migrate(conn: Conn, migrations: list[Migration]) -> list[str]:
    """Apply the migrations not yet applied. Run with an autocommit connection.

    Returns:
        The names of the files applied now.

    Raises:
        MigrationError: an applied migration was edited, or one failed (it is rolled back).
    """
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = conn.execute("SELECT version, name, checksum FROM schema_migrations").fetchall()
        applied = {int(r[0]): (str(r[1]), str(r[2])) for r in rows}
        done: list[str] = []
        for mig in migrations:
            if mig.version in applied:
                name, checksum = applied[mig.version]
                if checksum != mig.checksum:
                    raise MigrationError(
                        f"migration {mig.name} was edited after it was applied (as {name}); "
                        "add a new migration instead"
                    )
                continue
            try:
                with conn.transaction():
                    conn.execute(mig.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (mig.version, mig.name, mig.checksum),
                    )
            except MigrationError:
                raise
            except Exception as exc:
                raise MigrationError(f"migration {mig.name} failed: {exc}") from None
            log.info("applied migration %s", mig.name)
            done.append(mig.name)
        unknown = sorted(set(applied) - {m.version for m in migrations})
        if unknown:
            log.warning("database has migrations this code does not know: %s", unknown)
        return done
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
