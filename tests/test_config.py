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


# Web push's production requirements are tested in tests/push/test_push_settings.py.
VAPID = {"CSMS_VAPID_PRIVATE_KEY_FILE": "/run/secrets/vapid.pem", "CSMS_VAPID_SUBJECT": "mailto:ops@example.com"}


def test_production_needs_a_database_and_refuses_dev_modes() -> None:
    with pytest.raises(ConfigError, match="CSMS_DATABASE_URL"):
        Settings.from_env({"APP_ENV": "production"}).check_production()
    with pytest.raises(ConfigError, match="CSMS_ACCEPT_UNKNOWN_STATIONS"):
        Settings.from_env({"APP_ENV": "production", "CSMS_DATABASE_URL": "postgresql:///x",
                           "CSMS_ACCEPT_UNKNOWN_STATIONS": "1"}).check_production()
    with pytest.raises(ConfigError, match="CSMS_JWT_PRIVATE_KEY_FILE"):
        Settings.from_env({"APP_ENV": "production", "CSMS_DATABASE_URL": "postgresql:///x"}).check_production()
    Settings.from_env({"APP_ENV": "production", "CSMS_DATABASE_URL": "postgresql:///x",
                       "CSMS_JWT_PRIVATE_KEY_FILE": "/run/secrets/jwt.pem", "CSMS_COOKIE_SECRET": "c" * 32,
                       "CSMS_CORS_ORIGINS": "https://app.example.com", **VAPID}).check_production()


PRODUCTION = {"APP_ENV": "production", "CSMS_DATABASE_URL": "postgresql:///x",
              "CSMS_JWT_PRIVATE_KEY_FILE": "/run/secrets/jwt.pem",
              "CSMS_COOKIE_SECRET": "c" * 40, "CSMS_CORS_ORIGINS": "https://app.example.com", **VAPID}


def test_auth_settings_from_env() -> None:
    auth = Settings.from_env({}).auth
    assert (auth.refresh_token_days, auth.login_rate_limit, auth.register_rate_limit, auth.cors_origins,
            auth.external_enabled) == (30, 10, 10, (), False)
    auth = Settings.from_env({
        "CSMS_CORS_ORIGINS": " https://App.Example.com/ , http://localhost:5173", "CSMS_REFRESH_TOKEN_DAYS": "7",
        "CSMS_TRUSTED_PROXIES": "10.0.0.0/8,127.0.0.1", "CSMS_EXTERNAL_JWKS_URL": "https://idp.example/jwks",
        "CSMS_EXTERNAL_JWT_ISSUER": "https://idp.example/", "CSMS_EXTERNAL_JWT_AUDIENCE": "csms"}).auth
    assert auth.cors_origins == ("https://app.example.com", "http://localhost:5173")
    assert auth.refresh_token_days == 7
    assert auth.trusted_proxies == ("10.0.0.0/8", "127.0.0.1")
    assert auth.external_enabled


@pytest.mark.parametrize(("env", "message"), [
    ({"CSMS_CORS_ORIGINS": "app.example.com"}, "not an origin"),
    ({"CSMS_CORS_ORIGINS": "https://app.example.com/path"}, "not an origin"),
    ({"CSMS_COOKIE_SECRET": "short"}, "CSMS_COOKIE_SECRET must have at least 32"),
    ({"CSMS_REFRESH_TOKEN_DAYS": "0"}, "CSMS_REFRESH_TOKEN_DAYS"),
    ({"CSMS_LOGIN_RATE_LIMIT": "0"}, "CSMS_LOGIN_RATE_LIMIT"),
    ({"CSMS_EXTERNAL_JWKS_URL": "https://idp.example/jwks"}, "CSMS_EXTERNAL_JWT_ISSUER"),
    ({"CSMS_EXTERNAL_JWT_HS256_SECRET": "s" * 40, "CSMS_EXTERNAL_JWT_ISSUER": "i"}, "CSMS_EXTERNAL_JWT_AUDIENCE"),
    ({"CSMS_EXTERNAL_JWT_HS256_SECRET": "short", "CSMS_EXTERNAL_JWT_ISSUER": "i", "CSMS_EXTERNAL_JWT_AUDIENCE": "a"},
     "HS256_SECRET must have at least 32"),
])
def test_malformed_auth_settings(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


@pytest.mark.parametrize(("change", "message"), [
    ({"CSMS_COOKIE_SECRET": ""}, "CSMS_COOKIE_SECRET"),
    ({"CSMS_CORS_ORIGINS": ""}, "CSMS_CORS_ORIGINS"),
    ({"CSMS_CORS_ORIGINS": "*"}, "wildcard|\\*"),
    ({"CSMS_CORS_ORIGINS": "https://app.example.com,*"}, "\\*"),
    ({"CSMS_CORS_ORIGINS": "http://app.example.com"}, "https://"),
    ({"CSMS_EXTERNAL_JWKS_URL": "http://idp.example/jwks", "CSMS_EXTERNAL_JWT_ISSUER": "i",
      "CSMS_EXTERNAL_JWT_AUDIENCE": "a"}, "CSMS_EXTERNAL_JWKS_URL must be https"),
])
def test_production_refuses_missing_or_unsafe_auth_settings(change: dict[str, str], message: str) -> None:
    Settings.from_env(PRODUCTION).check_production()
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({**PRODUCTION, **change}).check_production()


def test_development_cookie_secret_is_kept_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings.from_env({"CSMS_DATA_DIR": str(tmp_path)})
    secret = settings.cookie_secret()
    assert len(secret) >= 32
    assert settings.cookie_secret() == secret  # the same after a restart
    assert (tmp_path / "cookie-secret").stat().st_mode & 0o777 == 0o600
    assert Settings.from_env({"CSMS_COOKIE_SECRET": "z" * 32}).cookie_secret() == b"z" * 32
