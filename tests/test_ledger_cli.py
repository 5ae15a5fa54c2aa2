"""``csms ledger check`` and ``csms ledger adjust`` against a test database.

``check`` runs as a real process (the way operators and cron jobs run it); ``adjust`` runs through
``main()`` in this process, which is the same code without the interpreter start-up per call.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from csms.cli import main
from csms.services.tariffs import Price, energy_cost
from csms.store import ledger
from csms.store.users import create_user
from tests.ledger_scenarios import fund, insert_session

if TYPE_CHECKING:
    from collections.abc import Iterator


def ledger_cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CSMS_DATABASE_URL=db_url)
    return subprocess.run([sys.executable, "-m", "csms.cli", "--log-level", "WARNING", "ledger", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


def new_user(conn: psycopg.Connection[Any], role: str = "driver") -> str:
    with conn.transaction():
        return create_user(conn, role=role, email=f"{role}-{os.urandom(4).hex()}@example.test").id  # type: ignore[arg-type]


def billed_sessions(conn: psycopg.Connection[Any], *, overcharge: int = 0) -> str:
    """A driver with one completed session (charged ``overcharge`` more than the tariff says)."""
    driver, owner = new_user(conn), new_user(conn, "owner")
    due = energy_cost(12_345, Price(1_000, 150))
    with conn.transaction():
        fund(conn, driver, 50_000)
        revenue = ledger.user_account(conn, owner, "owner_revenue")
        session_id, _ = insert_session(conn, user_id=driver, revenue_account=revenue, energy_wh=12_345,
                                       price_per_kwh=1_000, fee=150, hold=20_000, charged=due + overcharge,
                                       settle=due + overcharge)
        insert_session(conn, user_id=driver, revenue_account=revenue, status="charging", hold=5_000)
    return session_id


def test_check_passes_a_sound_ledger(db_url: str, conn: psycopg.Connection[Any]) -> None:
    billed_sessions(conn)
    out = ledger_cli(db_url, "check")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout == ("ledger consistent: 4 accounts, 4 transfers, posted balances sum to 0 tyiyn, "
                          "1 open hold(s) of 5000 tyiyn in total, 2 charging session(s) checked\n")


def test_check_fails_on_a_wrong_charge_and_says_why(db_url: str, conn: psycopg.Connection[Any]) -> None:
    session_id = billed_sessions(conn, overcharge=1)
    out = ledger_cli(db_url, "check")
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert lines[0].startswith("ledger 1 PROBLEM(S): ")
    assert lines[1:] == [f"  - session {session_id} (completed): charged 12496 tyiyn, but 12345 Wh at 1000/kWh + "
                         "fee 150 costs 12495, capped by the hold of 20000: 12495"]


def test_adjust_credits_debits_and_is_audited(db_url: str, conn: psycopg.Connection[Any],
                                              monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
                                              ) -> None:
    monkeypatch.setenv("CSMS_DATABASE_URL", db_url)
    user = new_user(conn)
    assert main(["ledger", "adjust", "--user", user, "--amount", "2500", "--reason", "goodwill"]) == 0
    assert "adjusted: +2500 tyiyn" in capsys.readouterr().out
    assert main(["ledger", "adjust", "--user", user, "--amount", "-1000", "--reason", "typo fix"]) == 0
    assert "available 1500 tyiyn" in capsys.readouterr().out
    # More than is available: refused, nothing written.
    assert main(["ledger", "adjust", "--user", user, "--amount=-1501", "--reason", "too much"]) == 1
    assert "does not have that much" in capsys.readouterr().err
    assert ledger.wallet_available(conn, user) == 1_500
    rows = conn.execute("SELECT actor_kind, action, target, detail->>'amount_tyiyn', detail->>'reason'"
                        " FROM audit_log ORDER BY id").fetchall()
    assert rows == [("cli", "ledger.adjust", user, "2500", "goodwill"),
                    ("cli", "ledger.adjust", user, "-1000", "typo fix")]
    (actor,) = conn.execute("SELECT DISTINCT actor_id FROM audit_log").fetchone()
    assert actor
    assert main(["ledger", "check"]) == 0


def test_adjust_with_an_idempotency_key_applies_once(db_url: str, conn: psycopg.Connection[Any],
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CSMS_DATABASE_URL", db_url)
    user = new_user(conn)
    args = ["ledger", "adjust", "--user", user, "--amount", "700", "--reason", "refund", "--idempotency-key", "k1"]
    assert main(args) == 0
    assert main(args) == 0
    assert "already adjusted" in capsys.readouterr().out
    assert ledger.wallet_available(conn, user) == 700
    changed = ["ledger", "adjust", "--user", user, "--amount", "800", "--reason", "refund", "--idempotency-key", "k1"]
    assert main(changed) == 1
    assert "already used" in capsys.readouterr().err
    assert conn.execute("SELECT count(*) FROM audit_log").fetchone() == (1,)
    assert main(["ledger", "check"]) == 0


def test_adjust_refuses_bad_input(db_url: str, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CSMS_DATABASE_URL", db_url)
    unknown = "00000000-0000-0000-0000-000000000000"
    assert main(["ledger", "adjust", "--user", unknown, "--amount", "5", "--reason", "r"]) == 1
    assert f"no user {unknown}" in capsys.readouterr().err
    assert main(["ledger", "adjust", "--user", unknown, "--amount", "5", "--reason", " "]) == 2
    assert "reason of 1 to 500" in capsys.readouterr().err
    for bad in (["--user", "nope", "--amount", "5"], ["--user", unknown, "--amount", "0"],
                ["--user", unknown, "--amount", "1.5"], ["--user", unknown, "--amount", "10000001"]):
        with pytest.raises(SystemExit) as exit_:
            main(["ledger", "adjust", *bad, "--reason", "r"])
        assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "not a user id" in err
    assert "integer number of tyiyn" in err
    assert "at most 10000000" in err
