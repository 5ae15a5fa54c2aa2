"""Settings from the environment, and what production mode refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from csms.config import ConfigError, Settings


def test_defaults_and_overrides() -> None:
    s = Settings.from_env({})
    assert (s.ocpp_port, s.http_port, s.data_dir, s.database_url) == (9000, 8000, Path("var"), None)
    s = Settings.from_env({"CSMS_OCPP_PORT": "9100", "CSMS_OCPP_PATH_PREFIX": "cp", "CSMS_ACCEPT_UNKNOWN_STATIONS": "yes",
                           "CSMS_COMMIT_BATCH_WAIT": "0.01"})
    assert (s.ocpp_port, s.ocpp_path_prefix, s.accept_unknown_stations, s.commit_batch_wait_s) == (
        9100, "/cp/", True, 0.01)


@pytest.mark.parametrize(("env", "message"), [
    ({"CSMS_OCPP_PORT": "nine"}, "CSMS_OCPP_PORT must be an integer"),
    ({"CSMS_JOURNAL": "maybe"}, "CSMS_JOURNAL must be"),
    ({"CSMS_CALL_TIMEOUT": "soon"}, "CSMS_CALL_TIMEOUT must be a number"),
    ({"CSMS_OCPP_TLS_CERT": "cert.pem"}, "set together"),
])
def test_malformed_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_production_needs_a_database_and_refuses_dev_modes() -> None:
    with pytest.raises(ConfigError, match="CSMS_DATABASE_URL"):
        Settings.from_env({"APP_ENV": "production"}).check_production()
    with pytest.raises(ConfigError, match="CSMS_ACCEPT_UNKNOWN_STATIONS"):
        Settings.from_env({"APP_ENV": "production", "CSMS_DATABASE_URL": "postgresql:///x",
                           "CSMS_ACCEPT_UNKNOWN_STATIONS": "1"}).check_production()
    with pytest.raises(ConfigError, match="CSMS_JWT_PRIVATE_KEY_FILE"):
        Settings.from_env({"APP_ENV": "production", "CSMS_DATABASE_URL": "postgresql:///x"}).check_production()
    Settings.from_env({"APP_ENV": "production", "CSMS_DATABASE_URL": "postgresql:///x",
                       "CSMS_JWT_PRIVATE_KEY_FILE": "/run/secrets/jwt.pem"}).check_production()
