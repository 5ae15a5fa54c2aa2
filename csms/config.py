"""Settings read from the environment, in one place.

Every knob has a `CSMS_` variable and a default that suits a developer's machine. Production mode
(`APP_ENV=production`) is stricter: see :meth:`Settings.check_production`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from csms.services.tokens import TokenSigner


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be 1/0/true/false, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    """All runtime settings of one csms process."""

    app_env: str = "development"
    data_dir: Path = field(default_factory=lambda: Path("var"))
    database_url: str | None = None
    db_pool_size: int = 10
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    ocpp_host: str = "127.0.0.1"
    ocpp_port: int = 9000
    ocpp_path_prefix: str = "/ocpp/"
    ocpp_tls_cert: str | None = None
    ocpp_tls_key: str | None = None
    accept_unknown_stations: bool = False
    heartbeat_interval_s: int = 300
    call_timeout_s: float = 30.0
    ping_interval_s: float = 60.0
    max_frame_bytes: int = 65536
    # Group commit: a batch closes at this many operations or after this long, whichever comes first.
    commit_batch_max: int = 500
    commit_batch_wait_s: float = 0.002
    commit_writers: int = 3
    journal_enabled: bool = True
    journal_retention_days: int = 30
    shutdown_grace_s: float = 10.0
    gil_switch_interval_s: float = 0.0005
    # ES256 key for our access tokens; unset in development means data_dir/jwt-es256.pem, created on first use.
    jwt_private_key_file: Path | None = None
    # Live GraphQL subscriptions (graphql-transport-ws) and the events feeding them.
    ws_init_timeout_s: float = 10.0
    ws_max_operations: int = 100
    events_buffer: int = 64

    @property
    def production(self) -> bool:
        """True when running with `APP_ENV=production`."""
        return self.app_env == "production"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Build settings from environment variables (or a given mapping, for tests).

        Raises:
            ConfigError: a variable is malformed.
        """
        e = dict(os.environ if env is None else env)
        d = cls()
        prefix = e.get("CSMS_OCPP_PATH_PREFIX", d.ocpp_path_prefix)
        if not prefix.startswith("/"):
            prefix = "/" + prefix
        if not prefix.endswith("/"):
            prefix += "/"
        s = replace(
            d,
            app_env=e.get("APP_ENV", d.app_env),
            data_dir=Path(e.get("CSMS_DATA_DIR") or d.data_dir),
            database_url=e.get("CSMS_DATABASE_URL") or None,
            db_pool_size=_int(e, "CSMS_DB_POOL_SIZE", d.db_pool_size),
            http_host=e.get("CSMS_HTTP_HOST", d.http_host),
            http_port=_int(e, "CSMS_HTTP_PORT", d.http_port),
            ocpp_host=e.get("CSMS_OCPP_HOST", d.ocpp_host),
            ocpp_port=_int(e, "CSMS_OCPP_PORT", d.ocpp_port),
            ocpp_path_prefix=prefix,
            ocpp_tls_cert=e.get("CSMS_OCPP_TLS_CERT") or None,
            ocpp_tls_key=e.get("CSMS_OCPP_TLS_KEY") or None,
            accept_unknown_stations=_bool(e, "CSMS_ACCEPT_UNKNOWN_STATIONS", d.accept_unknown_stations),
            heartbeat_interval_s=_int(e, "CSMS_HEARTBEAT_INTERVAL", d.heartbeat_interval_s),
            call_timeout_s=_float(e, "CSMS_CALL_TIMEOUT", d.call_timeout_s),
            ping_interval_s=_float(e, "CSMS_PING_INTERVAL", d.ping_interval_s),
            max_frame_bytes=_int(e, "CSMS_MAX_FRAME_BYTES", d.max_frame_bytes),
            commit_batch_max=_int(e, "CSMS_COMMIT_BATCH_MAX", d.commit_batch_max),
            commit_batch_wait_s=_float(e, "CSMS_COMMIT_BATCH_WAIT", d.commit_batch_wait_s),
            commit_writers=_int(e, "CSMS_COMMIT_WRITERS", d.commit_writers),
            journal_enabled=_bool(e, "CSMS_JOURNAL", d.journal_enabled),
            journal_retention_days=_int(e, "CSMS_JOURNAL_RETENTION_DAYS", d.journal_retention_days),
            shutdown_grace_s=_float(e, "CSMS_SHUTDOWN_GRACE", d.shutdown_grace_s),
            gil_switch_interval_s=_float(e, "CSMS_GIL_SWITCH_INTERVAL", d.gil_switch_interval_s),
            jwt_private_key_file=Path(e["CSMS_JWT_PRIVATE_KEY_FILE"]) if e.get("CSMS_JWT_PRIVATE_KEY_FILE") else None,
            ws_init_timeout_s=_float(e, "CSMS_WS_INIT_TIMEOUT", d.ws_init_timeout_s),
            ws_max_operations=_int(e, "CSMS_WS_MAX_OPERATIONS", d.ws_max_operations),
            events_buffer=_int(e, "CSMS_EVENTS_BUFFER", d.events_buffer),
        )
        if bool(s.ocpp_tls_cert) != bool(s.ocpp_tls_key):
            raise ConfigError("CSMS_OCPP_TLS_CERT and CSMS_OCPP_TLS_KEY must be set together")
        if s.events_buffer < 1 or s.ws_max_operations < 1 or s.ws_init_timeout_s <= 0:
            raise ConfigError("CSMS_EVENTS_BUFFER, CSMS_WS_MAX_OPERATIONS and CSMS_WS_INIT_TIMEOUT must be positive")
        return s

    def check_production(self) -> None:
        """Refuse settings that are unsafe outside a developer's machine.

        Raises:
            ConfigError: production mode with a development-only setting.
        """
        if not self.production:
            return
        if self.accept_unknown_stations:
            raise ConfigError("CSMS_ACCEPT_UNKNOWN_STATIONS is a development mode; refused in production")
        if self.database_url is None:
            raise ConfigError("production needs CSMS_DATABASE_URL (the embedded database is for development)")
        if self.jwt_private_key_file is None:
            raise ConfigError("production needs CSMS_JWT_PRIVATE_KEY_FILE (the ES256 key that signs access tokens)")

    def token_signer(self) -> TokenSigner:
        """The access-token signer: the configured key, or in development one kept in the data dir."""
        if self.jwt_private_key_file is not None:
            try:
                return TokenSigner.from_file(self.jwt_private_key_file, create=False)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"CSMS_JWT_PRIVATE_KEY_FILE: {exc}") from None
        return TokenSigner.from_file(self.data_dir / "jwt-es256.pem", create=True)
