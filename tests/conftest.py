"""Shared fixtures: one embedded PostgreSQL per test session, one fresh database per test.

The template database is migrated once; each test gets ``CREATE DATABASE ... TEMPLATE`` (a file copy,
a few milliseconds) so tests never see each other's rows.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from csms.store.db import Database, open_database
from csms.store.embedded import start_embedded, stop_embedded, uri_for_database
from csms.store.migrations import load_migrations, migrate

TEMPLATE = "csms_template"
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_base_uri() -> Iterator[str]:
    """URI of the session's PostgreSQL: ``CSMS_TEST_DATABASE_URL`` or an embedded server."""
    external = os.environ.get("CSMS_TEST_DATABASE_URL")
    if external:
        yield external
        return
    pgdata = Path(os.environ.get("CSMS_TEST_PGDATA", "var/test-pg"))
    uri = start_embedded(pgdata)
    try:
        yield uri
    finally:
        stop_embedded(pgdata)


@pytest.fixture(scope="session")
def template_db(pg_base_uri: str) -> str:
    """Create and migrate the template database once per session."""
    with psycopg.connect(pg_base_uri, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {TEMPLATE}")
    with psycopg.connect(uri_for_database(pg_base_uri, TEMPLATE), autocommit=True) as conn:
        migrate(conn, load_migrations())
    return TEMPLATE


@pytest.fixture
def db_url(pg_base_uri: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for one test; dropped afterwards."""
    name = f"t_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(pg_base_uri, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    try:
        yield uri_for_database(pg_base_uri, name)
    finally:
        with psycopg.connect(pg_base_uri, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """A connection pool on the test's database."""
    async with open_database(db_url, size=4) as database:
        yield database
