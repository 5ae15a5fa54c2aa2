"""Push settings, the VAPID key (development's key on first use, `csms vapid generate`, production's
refusals), and the cached VAPID signature."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from typing import TYPE_CHECKING

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from csms.cli import main
from csms.config import ConfigError, Settings
from csms.services.push_keys import JWT_LIFETIME_S, VapidSigner, load_key, public_key_b64
from tests.conftest import TEST_JWT_KEY
from tests.test_config import PRODUCTION

if TYPE_CHECKING:
    from pathlib import Path

WITHOUT_VAPID = {k: v for k, v in PRODUCTION.items() if not k.startswith("CSMS_VAPID")}


def test_push_settings_from_env() -> None:
    push = Settings.from_env({}).push
    assert (push.ttl_s, push.max_retries, push.low_balance_tyiyn, push.station_offline_after_s,
            push.subscription_max_idle_days, push.subject) == (86_400, 3, 10_000, 300.0, 90, "mailto:csms@localhost")
    push = Settings.from_env({"CSMS_VAPID_SUBJECT": "https://ops.example.kg", "CSMS_LOW_BALANCE_TYIYN": "5000",
                              "CSMS_STATION_OFFLINE_AFTER": "120", "CSMS_PUSH_TTL": "3600",
                              "CSMS_PUSH_ALLOWED_HOSTS": "fcm.googleapis.com, .push.apple.com"}).push
    assert (push.subject, push.low_balance_tyiyn, push.station_offline_after_s, push.ttl_s, push.allowed_hosts) == (
        "https://ops.example.kg", 5000, 120.0, 3600, ("fcm.googleapis.com", "push.apple.com"))


@pytest.mark.parametrize(("env", "message"), [
    ({"CSMS_VAPID_SUBJECT": "ops@example.com"}, "CSMS_VAPID_SUBJECT"),
    ({"CSMS_VAPID_SUBJECT": "http://ops.example.com"}, "CSMS_VAPID_SUBJECT"),
    ({"CSMS_PUSH_QUEUE": "0"}, "CSMS_PUSH_QUEUE"),
    ({"CSMS_PUSH_RETRIES": "-1"}, "CSMS_PUSH_RETRIES"),
    ({"CSMS_LOW_BALANCE_TYIYN": "-1"}, "CSMS_LOW_BALANCE_TYIYN"),
    ({"CSMS_STATION_OFFLINE_AFTER": "0"}, "CSMS_STATION_OFFLINE_AFTER"),
    ({"CSMS_PUSH_TIMEOUT": "soon"}, "CSMS_PUSH_TIMEOUT"),
])
def test_malformed_push_settings(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_production_needs_a_vapid_key_and_subject() -> None:
    with pytest.raises(ConfigError, match="CSMS_VAPID_PRIVATE_KEY_FILE"):
        Settings.from_env(WITHOUT_VAPID).check_production()
    with pytest.raises(ConfigError, match="CSMS_VAPID_SUBJECT"):
        Settings.from_env({**WITHOUT_VAPID, "CSMS_VAPID_PRIVATE_KEY_FILE": "/run/secrets/vapid.pem"}).check_production()


def test_development_key_is_created_once_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings.from_env({"CSMS_DATA_DIR": str(tmp_path)})
    key = settings.vapid_key()
    path = tmp_path / "vapid-private.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert public_key_b64(settings.vapid_key()) == public_key_b64(key)


def test_a_configured_key_must_exist_and_be_p256(tmp_path: Path) -> None:
    missing = Settings.from_env({"CSMS_VAPID_PRIVATE_KEY_FILE": str(tmp_path / "nope.pem")})
    with pytest.raises(ConfigError, match="CSMS_VAPID_PRIVATE_KEY_FILE"):
        missing.vapid_key()
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    with pytest.raises(ConfigError, match="not an unencrypted PEM"):
        Settings.from_env({"CSMS_VAPID_PRIVATE_KEY_FILE": str(garbage)}).vapid_key()
    p384 = tmp_path / "p384.pem"
    p384.write_bytes(ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(ConfigError, match="P-256"):
        Settings.from_env({"CSMS_VAPID_PRIVATE_KEY_FILE": str(p384)}).vapid_key()


def test_csms_vapid_generate_and_public_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CSMS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("CSMS_VAPID_PRIVATE_KEY_FILE", raising=False)
    assert main(["vapid", "generate"]) == 0
    printed = capsys.readouterr().out.strip()
    path = tmp_path / "vapid-private.pem"
    assert printed == public_key_b64(load_key(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # An existing key is kept: replacing it would silence every subscribed browser.
    assert main(["vapid", "generate"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert public_key_b64(load_key(path)) == printed
    assert main(["vapid", "generate", "--force"]) == 0
    replaced = capsys.readouterr().out.strip()
    assert replaced != printed and replaced == public_key_b64(load_key(path))
    # --out, and public-key reading CSMS_VAPID_PRIVATE_KEY_FILE.
    other = tmp_path / "secrets" / "vapid.pem"
    assert main(["vapid", "generate", "--out", str(other)]) == 0
    generated = capsys.readouterr().out.strip()
    monkeypatch.setenv("CSMS_VAPID_PRIVATE_KEY_FILE", str(other))
    assert main(["vapid", "public-key"]) == 0
    assert capsys.readouterr().out.strip() == generated
    monkeypatch.setenv("CSMS_VAPID_PRIVATE_KEY_FILE", str(tmp_path / "missing.pem"))
    assert main(["vapid", "public-key"]) == 1
    assert "csms vapid generate" in capsys.readouterr().err


def test_production_serve_refuses_without_vapid_and_creates_no_key(db_url: str, tmp_path: Path) -> None:
    env = {**os.environ, **WITHOUT_VAPID, "CSMS_DATABASE_URL": db_url, "CSMS_JWT_PRIVATE_KEY_FILE": str(TEST_JWT_KEY),
           "CSMS_DATA_DIR": str(tmp_path)}
    env.pop("CSMS_VAPID_PRIVATE_KEY_FILE", None)
    env.pop("CSMS_VAPID_SUBJECT", None)
    out = subprocess.run([sys.executable, "-m", "csms.cli", "serve"], env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 2
    assert "CSMS_VAPID_PRIVATE_KEY_FILE" in out.stderr
    assert not (tmp_path / "vapid-private.pem").exists()


def test_vapid_header_is_cached_per_audience_until_near_expiry() -> None:
    now = [1_800_000_000.0]
    key = ec.generate_private_key(ec.SECP256R1())
    signer = VapidSigner(key, "mailto:ops@example.com", clock=lambda: now[0])
    first = signer.authorization("https://fcm.googleapis.com")
    assert signer.authorization("https://fcm.googleapis.com") == first
    signer.authorization("https://updates.push.services.mozilla.com")
    assert signer.signatures == 2
    scheme, _, params = first.partition(" ")
    parts = dict(p.strip().split("=", 1) for p in params.split(","))
    assert scheme == "vapid" and parts["k"] == public_key_b64(key)
    claims = jwt.decode(parts["t"], key=key.public_key(), algorithms=["ES256"], audience="https://fcm.googleapis.com",
                        options={"verify_exp": False})
    assert claims == {"aud": "https://fcm.googleapis.com", "sub": "mailto:ops@example.com",
                      "exp": int(now[0]) + JWT_LIFETIME_S}
    now[0] += JWT_LIFETIME_S - 3600 - 1  # still more than an hour left: cached
    assert signer.authorization("https://fcm.googleapis.com") == first
    now[0] += 2  # under an hour left: a fresh one
    assert signer.authorization("https://fcm.googleapis.com") != first
    assert signer.signatures == 3
