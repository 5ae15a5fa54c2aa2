"""Numbered migrations: applied once, in order, under an advisory lock; edits are refused."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from csms.store.embedded import uri_for_database
from csms.store.migrations import MigrationError, load_migrations, migrate, migrations_dir


@pytest.fixture
def empty_db(pg_base_uri: str) -> Iterator[str]:
    name = "t_empty_migrations"
    with psycopg.connect(pg_base_uri, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    yield uri_for_database(pg_base_uri, name)
    with psycopg.connect(pg_base_uri, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_two_nodes_migrating_at_once_apply_each_file_once(empty_db: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def node() -> None:
        try:
            with psycopg.connect(empty_db, autocommit=True) as conn:
                results.append(migrate(conn, load_migrations()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=node) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    names = [m.name for m in load_migrations()]
    assert sorted(results, key=len) == [[], names]  # one node applied everything, the other nothing
    with psycopg.connect(empty_db) as conn:
        rows = conn.execute("SELECT name FROM schema_migrations ORDER BY version").fetchall()
    assert [r[0] for r in rows] == names


def test_edited_migration_is_refused(db_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), folder)
    first = sorted(folder.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after the fact\n")
    with psycopg.connect(db_url, autocommit=True) as conn, pytest.raises(MigrationError, match="edited"):
        migrate(conn, load_migrations(folder))


def test_failed_migration_rolls_back(db_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), folder)
    (folder / "9999_broken.sql").write_text("CREATE TABLE half_done (id int);\nSELECT 1/0;\n")
    with psycopg.connect(db_url, autocommit=True) as conn:
        with pytest.raises(MigrationError, match="9999_broken"):
            migrate(conn, load_migrations(folder))
        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM schema_migrations WHERE version = 9999").fetchone() == (0,)


def test_misnamed_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1_bad.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"0001_name\.sql"):
        load_migrations(tmp_path)
