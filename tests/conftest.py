"""Shared fixtures: one embedded PostgreSQL per test session, one fresh database per test.

The template database is migrated once; each test gets ``CREATE DATABASE ... TEMPLATE`` (a file copy,
a few milliseconds) so tests never see each other's rows.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio

from csms.config import Settings
from csms.services.tokens import TokenSigner
from csms.store.db import Database, open_database
from csms.store.embedded import start_embedded, stop_embedded, uri_for_database
from csms.store.migrations import load_migrations, migrate
from csms.store.users import create_user
from csms.supervisor import Csms, Ready
from simulators.chargepoint import ChargePoint

REPO = Path(__file__).resolve().parents[1]
# One access-token key for the whole run, shared by every node and API a test starts, so tests can
# mint user tokens (make_user) that the server accepts.
TEST_JWT_KEY = REPO / "var" / "test-jwt-es256.pem"
try:
    TEST_SIGNER = TokenSigner.from_file(TEST_JWT_KEY, create=True)
except FileExistsError:  # another pytest process created it at the same moment
    TEST_SIGNER = TokenSigner.from_file(TEST_JWT_KEY, create=False)

# Per process: several pytest runs may share one embedded server (a developer's and a helper's).
TEMPLATE = f"csms_template_{os.getpid()}"
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
def template_db(pg_base_uri: str) -> Iterator[str]:
    """Create and migrate the template database once per session."""
    with psycopg.connect(pg_base_uri, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {TEMPLATE}")
    with psycopg.connect(uri_for_database(pg_base_uri, TEMPLATE), autocommit=True) as conn:
        migrate(conn, load_migrations())
    yield TEMPLATE
    with psycopg.connect(pg_base_uri, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")


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


@dataclass
class Node:
    """A running csms node on the test's database."""

    csms: Csms
    ready: Ready
    db: Database
    settings: Settings

    @property
    def ocpp_url(self) -> str:
        """The OCPP endpoint prefix; append a station id."""
        return f"ws://127.0.0.1:{self.ready.ocpp_port}/ocpp/"

    @property
    def graphql_url(self) -> str:
        """The GraphQL endpoint."""
        return f"http://127.0.0.1:{self.ready.http_port}/graphql"


def node_settings(db_url: str, **overrides: object) -> Settings:
    """Settings for a test node: ephemeral ports, a small pool, no pings unless asked."""
    base = Settings(database_url=db_url, http_port=0, ocpp_port=0, db_pool_size=4, ping_interval_s=0,
                    commit_batch_wait_s=0.001, call_timeout_s=5.0, shutdown_grace_s=3.0,
                    jwt_private_key_file=TEST_JWT_KEY)
    return replace(base, **overrides)  # type: ignore[arg-type]


@asynccontextmanager
async def running_node(settings: Settings, **csms_kwargs: Any) -> AsyncIterator[Node]:
    """Run a csms node for the duration of the block, then stop it gracefully."""
    async with trio.open_nursery() as nursery:
        csms = Csms(settings, **csms_kwargs)
        ready = await nursery.start(csms.run)
        assert csms.db is not None
        try:
            yield Node(csms, ready, csms.db, settings)
        finally:
            csms.stop()


@pytest.fixture
async def node(db_url: str) -> AsyncIterator[Node]:
    """A csms node (gateway + API) on a fresh database."""
    async with running_node(node_settings(db_url)) as n:
        yield n


@asynccontextmanager
async def charger(node: Node, station_id: str, **kwargs: Any) -> AsyncIterator[ChargePoint]:
    """A registered, booted simulated charger; it disconnects when the block ends."""
    cp = ChargePoint(node.ocpp_url, station_id, **kwargs)
    async with trio.open_nursery() as nursery:
        await nursery.start(cp.run)
        try:
            yield cp
        finally:
            nursery.cancel_scope.cancel()


async def add_station(node: Node, station_id: str, password: str | None = None) -> None:
    """Register a station the way `csms station add` does."""
    await node.csms.add_station(station_id, password)


async def make_user(db: Database, role: str = "driver", *, email: str | None = None) -> tuple[str, str]:
    """Create an active user with ``role`` and return ``(user_id, access_token)``."""
    address = email or f"{role}-{next(_counter)}-{os.getpid()}@example.test"
    user = await db.run(lambda conn: create_user(conn, role=role, email=address, name=role))  # type: ignore[arg-type]
    return user.id, TEST_SIGNER.issue(user.id, role)
