"""The `csms` command line, run as a real process against the test database."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg


def csms(db_url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CSMS_DATABASE_URL=db_url)
    return subprocess.run([sys.executable, "-m", "csms.cli", "--log-level", "WARNING", *args], env=env,
                          input=stdin, capture_output=True, text=True, timeout=60, check=False)


def test_help_everywhere(db_url: str) -> None:
    for args in ([], ["station"], ["station", "add"], ["idtag", "add"], ["apikey", "create"]):
        out = csms(db_url, *args, "--help")
        assert out.returncode == 0, out.stderr
        assert "usage: csms" in out.stdout


def test_station_add_with_password_is_hashed(db_url: str) -> None:
    out = csms(db_url, "station", "add", "CLI-1", "--password-stdin", stdin="pw-from-stdin\n")
    assert out.returncode == 0, out.stderr
    assert "pw-from-stdin" not in out.stdout + out.stderr
    again = csms(db_url, "station", "add", "CLI-1")
    assert again.returncode == 1
    assert "already exists" in again.stderr
    with psycopg.connect(db_url) as conn:
        (hashed,) = conn.execute("SELECT password_hash FROM stations WHERE id = 'CLI-1'").fetchone()
    assert hashed.startswith("$argon2id$")


def test_bad_arguments_get_clear_errors(db_url: str) -> None:
    bad_id = csms(db_url, "station", "add", "has/slash")
    assert bad_id.returncode == 2
    assert "letters, digits" in bad_id.stderr
    bad_status = csms(db_url, "idtag", "add", "T1", "--status", "Maybe")
    assert bad_status.returncode == 2
    assert "invalid choice" in bad_status.stderr
    long_tag = csms(db_url, "idtag", "add", "X" * 21)
    assert long_tag.returncode == 2
    bad_time = csms(db_url, "idtag", "add", "T1", "--expires", "tomorrow")
    assert "ISO 8601" in bad_time.stderr


def test_idtag_and_apikey(db_url: str) -> None:
    assert csms(db_url, "idtag", "add", "Tag-1", "--status", "Blocked", "--expires", "2030-01-01T00:00:00+06:00"
                ).returncode == 0
    assert csms(db_url, "idtag", "add", "TAG-1").returncode == 0  # same tag, other case: updated
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT id_tag, status, expiry_date IS NULL FROM id_tags").fetchall()
    assert rows == [("Tag-1", "Accepted", True)]
    key = csms(db_url, "apikey", "create", "--name", "ops")
    assert key.returncode == 0
    token = key.stdout.strip()
    assert token.startswith("csms_")
    assert "shown only once" in key.stderr


def test_production_refuses_unsafe_settings(db_url: str) -> None:
    env = dict(os.environ, APP_ENV="production", CSMS_ACCEPT_UNKNOWN_STATIONS="1", CSMS_DATABASE_URL=db_url)
    out = subprocess.run([sys.executable, "-m", "csms.cli", "serve"], env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 2
    assert "CSMS_ACCEPT_UNKNOWN_STATIONS" in out.stderr
    env = dict(os.environ, APP_ENV="production")
    env.pop("CSMS_DATABASE_URL", None)
    out = subprocess.run([sys.executable, "-m", "csms.cli", "serve"], env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 2
    assert "CSMS_DATABASE_URL" in out.stderr
