"""``csms user`` and ``csms apikey create --role/--user`` against the test database."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable

import psycopg
import pytest
from argon2 import PasswordHasher

from csms.cli import main
from csms.store.apikeys import verify_api_key
from tests.conftest import TEST_JWT_KEY

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``csms`` in this process; returns ``(exit status, stdout, stderr)``."""
    monkeypatch.setenv("CSMS_DATABASE_URL", db_url)

    def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            status = main(["--log-level", "WARNING", *args])
        except SystemExit as exit_:  # argparse refusing an argument
            status = int(exit_.code or 0)
        out = capsys.readouterr()
        return status, out.out, out.err

    return run


def test_user_create_bootstraps_an_admin_from_a_real_process(db_url: str) -> None:
    env = dict(os.environ, CSMS_DATABASE_URL=db_url)
    out = subprocess.run([sys.executable, "-m", "csms.cli", "--log-level", "WARNING", "user", "create", "--role",
                          "admin", "--email", "Ops@Example.KG", "--phone", "+996 555 00 11 22", "--name", "Ops",
                          "--password-stdin"], input="s3cret-admin-pw\n", env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert "created (admin)" in out.stdout
    assert "s3cret-admin-pw" not in out.stdout + out.stderr
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT role, status, email, phone, name, password_hash FROM users").fetchone()
    assert row is not None
    assert row[:5] == ("admin", "active", "Ops@Example.KG", "+996555001122", "Ops")
    assert row[5].startswith("$argon2id$")
    assert PasswordHasher().verify(row[5], "s3cret-admin-pw")


def test_user_create_refuses_bad_arguments(cli: Cli) -> None:
    cases = [
        (["--email", "not-an-email"], "", "email address is not valid"),
        (["--phone", "555-12"], "", "international format"),
        (["--email", "a@example.kg", "--role", "superuser"], "", "invalid choice"),
        (["--name", "x" * 201, "--email", "a@example.kg"], "", "at most 200"),
        ([], "", "--email or --phone"),
        (["--email", "a@example.kg", "--password-stdin"], "short\n", "at least 8"),
    ]
    for args, stdin, message in cases:
        status, _, err = cli("user", "create", *args, stdin=stdin)
        assert status == 2, args
        assert message in err, (args, err)


def test_user_create_twice_and_set_status(cli: Cli, db_url: str) -> None:
    assert cli("user", "create", "--email", "driver@example.kg")[0] == 0
    status, _, err = cli("user", "create", "--email", "DRIVER@example.kg")
    assert (status, err.strip()) == (1, "csms: this email is already registered")
    status, out, _ = cli("user", "set-status", "driver@example.kg", "blocked")
    assert status == 0
    assert out.strip().endswith("is blocked")
    assert cli("user", "set-status", "nobody@example.kg", "blocked")[0] == 2
    assert cli("user", "set-status", "driver@example.kg", "asleep")[0] == 2
    with psycopg.connect(db_url) as conn:
        audit = conn.execute("SELECT actor_kind, action, detail->>'to' FROM audit_log").fetchall()
    assert audit == [("cli", "user.set_status", "blocked")]


def test_apikey_roles(cli: Cli, db_url: str) -> None:
    assert cli("user", "create", "--role", "owner", "--email", "owner@example.kg")[0] == 0
    assert cli("user", "create", "--email", "driver@example.kg")[0] == 0
    assert cli("apikey", "create", "--name", "o", "--role", "owner")[0] == 2
    assert cli("apikey", "create", "--name", "a", "--user", "owner@example.kg")[0] == 2
    assert cli("apikey", "create", "--name", " ")[0] == 2
    status, _, err = cli("apikey", "create", "--name", "d", "--role", "owner", "--user", "driver@example.kg")
    assert status == 2
    assert "no owner" in err
    status, out, _ = cli("apikey", "create", "--name", "owner app", "--role", "owner", "--user", "owner@example.kg")
    assert status == 0
    with psycopg.connect(db_url) as conn:
        key = verify_api_key(conn, out.strip())
        owner_id = conn.execute("SELECT id::text FROM users WHERE role = 'owner'").fetchone()
    assert key is not None
    assert owner_id is not None
    assert (key.role, key.user_id) == ("owner", owner_id[0])


def test_production_refuses_to_serve_without_auth_settings(db_url: str) -> None:
    # The other refusals (CORS origins, wildcard, http origins) are unit-tested in tests/test_config.py.
    env = dict(os.environ, APP_ENV="production", CSMS_DATABASE_URL=db_url, CSMS_JWT_PRIVATE_KEY_FILE=str(TEST_JWT_KEY))
    for key in ("CSMS_COOKIE_SECRET", "CSMS_CORS_ORIGINS"):
        env.pop(key, None)
    out = subprocess.run([sys.executable, "-m", "csms.cli", "serve"], env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 2
    assert "CSMS_COOKIE_SECRET" in out.stderr
