"""The embedded PostgreSQL launcher: a server left running by a SIGKILLed csms is adopted, then stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest


def _postmaster_pid(pgdata: Path) -> int | None:
    pidfile = pgdata / "postmaster.pid"
    if not pidfile.exists():
        return None
    pid = int(pidfile.read_text().splitlines()[0])
    return pid if psutil.pid_exists(pid) else None


def _migrate(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CSMS_DATABASE_URL"}
    env["CSMS_DATA_DIR"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", "csms.cli", "--log-level", "INFO", "migrate"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(os.environ.get("CSMS_TEST_DATABASE_URL") is not None, reason="tests use an external server")
def test_killed_owner_server_is_adopted_then_stopped(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Not under /tmp/pytest-of-root's 0700 parents: the server runs as its own unprivileged user.
    data_dir = Path("var") / f"embedded-test-{os.getpid()}"
    pgdata = data_dir / "pg"
    # A csms that dies with SIGKILL while its embedded server runs:
    env = {k: v for k, v in os.environ.items() if k != "CSMS_DATABASE_URL"}
    env.update(CSMS_DATA_DIR=str(data_dir), CSMS_OCPP_PORT="0", CSMS_HTTP_PORT="0")
    proc = subprocess.Popen([sys.executable, "-m", "csms.cli", "--log-level", "INFO", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "csms ready" in line:
                break
        server = _postmaster_pid(pgdata)
        assert server is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert _postmaster_pid(pgdata) == server  # left running by the dead csms
        # The next csms adopts it (same server process), and as the last owner stops it on exit.
        out = _migrate(data_dir)
        assert out.returncode == 0, out.stderr
        assert f"adopting the embedded PostgreSQL (pid {server})" in out.stderr
        assert _postmaster_pid(pgdata) is None
        # And a later start finds a clean data directory.
        out = _migrate(data_dir)
        assert out.returncode == 0, out.stderr
        assert _postmaster_pid(pgdata) is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
        import shutil

        from csms.store.embedded import stop_embedded

        stop_embedded(pgdata.absolute())
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.mark.skipif(os.environ.get("CSMS_TEST_DATABASE_URL") is not None, reason="tests use an external server")
def test_embedded_server_does_not_zero_fill_wal(pg_base_uri: str) -> None:
    # The test session's server was started by start_embedded: its settings are the embedded ones.
    import psycopg

    with psycopg.connect(pg_base_uri) as conn:
        row = conn.execute("SHOW wal_init_zero").fetchone()
    assert row == ("off",)
