"""Settings read from the environment, in one place.

Every knob has a `CSMS_` variable and a default that suits a developer's machine. Production mode
(`APP_ENV=production`) is stricter: see :meth:`Settings.check_production`.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from csms.config_env import ConfigError, env_bool, env_float, env_int, env_list
from csms.config_payments import PaymentSettings, RateLimitSettings
from csms.config_push import PushSettings
from csms.services import push_keys
from csms.services.tokens import TokenSigner

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["AuthSettings", "ConfigError", "PaymentSettings", "PushSettings", "RateLimitSettings", "Settings"]


# The parsers are shared with the settings groups kept in their own modules (csms.config_payments).
_int, _float, _bool, _list = env_int, env_float, env_bool, env_list


def _origin(raw: str) -> str:
    """An origin as browsers send it: ``scheme://host[:port]``, lower case, no path or trailing slash."""
    origin = raw.strip().rstrip("/").lower()
    if origin == "*":
        return origin
    scheme, sep, rest = origin.partition("://")
    if scheme not in ("http", "https") or not sep or not rest or "/" in rest:
        raise ConfigError(f"CSMS_CORS_ORIGINS: {raw!r} is not an origin like https://app.example.com")
    return origin


@dataclass(frozen=True)
class AuthSettings:
    """Accounts and authentication: sessions, browser cookies, CORS, rate limits, external tokens."""

    refresh_token_days: int = 30
    # A refresh retried within this many seconds (its answer was lost) gets the same successor back.
    refresh_reuse_grace_s: float = 10.0
    # Signs the browser's CSRF tokens; unset in development means data_dir/cookie-secret, created on first use.
    cookie_secret: str | None = None
    # Origins allowed to call the API from a browser with credentials; empty in development means any
    # http://localhost:* and http://127.0.0.1:* origin.
    cors_origins: tuple[str, ...] = ()
    # Reverse proxies whose X-Forwarded-For is believed (addresses or CIDR networks).
    trusted_proxies: tuple[str, ...] = ()
    login_rate_limit: int = 10  # per minute, per client IP and per login name
    register_rate_limit: int = 10  # per minute, per client IP
    external_jwt_issuer: str | None = None
    external_jwt_audience: str | None = None
    external_jwks_url: str | None = None
    external_jwt_hs256_secret: str | None = None
    external_jwks_refetch_s: float = 60.0
    external_jwks_cache_s: float = 3600.0

    @property
    def external_enabled(self) -> bool:
        """True when tokens of an external identity provider are accepted."""
        return bool(self.external_jwks_url or self.external_jwt_hs256_secret)

    @classmethod
    def from_env(cls, e: dict[str, str]) -> AuthSettings:
        """The ``CSMS_*`` auth variables of ``e``.

        Raises:
            ConfigError: a variable is malformed, or an external provider is half configured.
        """
        d = cls()
        s = cls(
            refresh_token_days=_int(e, "CSMS_REFRESH_TOKEN_DAYS", d.refresh_token_days),
            refresh_reuse_grace_s=_float(e, "CSMS_REFRESH_REUSE_GRACE", d.refresh_reuse_grace_s),
            cookie_secret=e.get("CSMS_COOKIE_SECRET") or None,
            cors_origins=tuple(_origin(o) for o in _list(e, "CSMS_CORS_ORIGINS")),
            trusted_proxies=_list(e, "CSMS_TRUSTED_PROXIES"),
            login_rate_limit=_int(e, "CSMS_LOGIN_RATE_LIMIT", d.login_rate_limit),
            register_rate_limit=_int(e, "CSMS_REGISTER_RATE_LIMIT", d.register_rate_limit),
            external_jwt_issuer=e.get("CSMS_EXTERNAL_JWT_ISSUER") or None,
            external_jwt_audience=e.get("CSMS_EXTERNAL_JWT_AUDIENCE") or None,
            external_jwks_url=e.get("CSMS_EXTERNAL_JWKS_URL") or None,
            external_jwt_hs256_secret=e.get("CSMS_EXTERNAL_JWT_HS256_SECRET") or None,
            external_jwks_refetch_s=_float(e, "CSMS_EXTERNAL_JWKS_REFETCH_INTERVAL", d.external_jwks_refetch_s),
            external_jwks_cache_s=_float(e, "CSMS_EXTERNAL_JWKS_CACHE_TTL", d.external_jwks_cache_s),
        )
        s.check()
        return s

    def check(self) -> None:
        """Refuse inconsistent values (in every environment).

        Raises:
            ConfigError: naming the variable.
        """
        if self.refresh_token_days < 1:
            raise ConfigError("CSMS_REFRESH_TOKEN_DAYS must be at least 1")
        if self.login_rate_limit < 1 or self.register_rate_limit < 1:
            raise ConfigError("CSMS_LOGIN_RATE_LIMIT and CSMS_REGISTER_RATE_LIMIT must be at least 1")
        if self.cookie_secret is not None and len(self.cookie_secret) < 32:
            raise ConfigError("CSMS_COOKIE_SECRET must have at least 32 characters")
        if self.external_enabled and not (self.external_jwt_issuer and self.external_jwt_audience):
            raise ConfigError("an external identity provider needs CSMS_EXTERNAL_JWT_ISSUER and "
                              "CSMS_EXTERNAL_JWT_AUDIENCE")
        if self.external_jwt_hs256_secret is not None and len(self.external_jwt_hs256_secret) < 32:
            raise ConfigError("CSMS_EXTERNAL_JWT_HS256_SECRET must have at least 32 characters")
        if self.external_jwks_url and not self.external_jwks_url.startswith(("https://", "http://")):
            raise ConfigError("CSMS_EXTERNAL_JWKS_URL must be an http(s) URL")

    def check_production(self) -> None:
        """What production needs on top of :meth:`check`.

        Raises:
            ConfigError: naming the variable.
        """
        if self.cookie_secret is None:
            raise ConfigError("production needs CSMS_COOKIE_SECRET (signs the browser's CSRF tokens)")
        if not self.cors_origins:
            raise ConfigError("production needs CSMS_CORS_ORIGINS (the browser origins allowed to call the API)")
        if "*" in self.cors_origins:
            raise ConfigError("CSMS_CORS_ORIGINS=* with credentials is refused in production: list the origins")
        if any(o.startswith("http://") for o in self.cors_origins):
            raise ConfigError("CSMS_CORS_ORIGINS: production origins must be https:// (cookies are Secure)")
        if self.external_jwks_url and not self.external_jwks_url.startswith("https://"):
            raise ConfigError("CSMS_EXTERNAL_JWKS_URL must be https:// in production")


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
    # Charger messages admitted to handling per event-loop turn (csms.ocpp.admission); 0: no limit.
    ocpp_turn_budget: int = 16
    # Group commit: a batch closes at this many operations or after this long, whichever comes first.
    commit_batch_max: int = 500
    commit_batch_wait_s: float = 0.0
    commit_writers: int = 2
    journal_enabled: bool = True
    journal_retention_days: int = 30
    shutdown_grace_s: float = 10.0
    gil_switch_interval_s: float = 0.0005
    # ES256 key for our access tokens; unset in development means data_dir/jwt-es256.pem, created on first use.
    jwt_private_key_file: Path | None = None
    # Charging sessions started from the app (csms.services.reapers): a session with no StartTransaction
    # this long after it was requested fails with a full refund; one charging longer than the maximum is
    # stopped and billed; one whose charger sends no StopTransaction this long after RemoteStop is billed
    # for its last durable meter reading. The reaper looks every reaper_interval_s.
    session_start_timeout_s: float = 600.0
    session_max_duration_s: float = 43_200.0
    session_stop_grace_s: float = 900.0
    reaper_interval_s: float = 30.0
    auth: AuthSettings = field(default_factory=AuthSettings)
    # Live GraphQL subscriptions (graphql-transport-ws) and the events feeding them.
    ws_init_timeout_s: float = 10.0
    ws_max_operations: int = 100
    events_buffer: int = 64
    payments: PaymentSettings = field(default_factory=PaymentSettings)
    rate_limits: RateLimitSettings = field(default_factory=RateLimitSettings)
    push: PushSettings = field(default_factory=PushSettings)

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
            ocpp_turn_budget=_int(e, "CSMS_OCPP_TURN_BUDGET", d.ocpp_turn_budget),
            commit_batch_max=_int(e, "CSMS_COMMIT_BATCH_MAX", d.commit_batch_max),
            commit_batch_wait_s=_float(e, "CSMS_COMMIT_BATCH_WAIT", d.commit_batch_wait_s),
            commit_writers=_int(e, "CSMS_COMMIT_WRITERS", d.commit_writers),
            journal_enabled=_bool(e, "CSMS_JOURNAL", d.journal_enabled),
            journal_retention_days=_int(e, "CSMS_JOURNAL_RETENTION_DAYS", d.journal_retention_days),
            shutdown_grace_s=_float(e, "CSMS_SHUTDOWN_GRACE", d.shutdown_grace_s),
            gil_switch_interval_s=_float(e, "CSMS_GIL_SWITCH_INTERVAL", d.gil_switch_interval_s),
            jwt_private_key_file=Path(e["CSMS_JWT_PRIVATE_KEY_FILE"]) if e.get("CSMS_JWT_PRIVATE_KEY_FILE") else None,
            session_start_timeout_s=_float(e, "CSMS_SESSION_START_TIMEOUT", d.session_start_timeout_s),
            session_max_duration_s=_float(e, "CSMS_SESSION_MAX_DURATION", d.session_max_duration_s),
            session_stop_grace_s=_float(e, "CSMS_SESSION_STOP_GRACE", d.session_stop_grace_s),
            reaper_interval_s=_float(e, "CSMS_REAPER_INTERVAL", d.reaper_interval_s),
            auth=AuthSettings.from_env(e),
            ws_init_timeout_s=_float(e, "CSMS_WS_INIT_TIMEOUT", d.ws_init_timeout_s),
            ws_max_operations=_int(e, "CSMS_WS_MAX_OPERATIONS", d.ws_max_operations),
            events_buffer=_int(e, "CSMS_EVENTS_BUFFER", d.events_buffer),
            payments=PaymentSettings.from_env(e),
            rate_limits=RateLimitSettings.from_env(e),
            push=PushSettings.from_env(e),
        )
        for name, value in (("CSMS_SESSION_START_TIMEOUT", s.session_start_timeout_s),
                            ("CSMS_SESSION_MAX_DURATION", s.session_max_duration_s),
                            ("CSMS_SESSION_STOP_GRACE", s.session_stop_grace_s),
                            ("CSMS_REAPER_INTERVAL", s.reaper_interval_s)):
            if not value > 0:
                raise ConfigError(f"{name} must be a positive number of seconds, got {value}")
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
        self.auth.check_production()
        self.payments.check_production()
        self.push.check_production()

    def token_signer(self) -> TokenSigner:
        """The access-token signer: the configured key, or in development one kept in the data dir."""
        if self.jwt_private_key_file is not None:
            try:
                return TokenSigner.from_file(self.jwt_private_key_file, create=False)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"CSMS_JWT_PRIVATE_KEY_FILE: {exc}") from None
        return TokenSigner.from_file(self.data_dir / "jwt-es256.pem", create=True)

    def vapid_key(self) -> ec.EllipticCurvePrivateKey:
        """The VAPID key: ``CSMS_VAPID_PRIVATE_KEY_FILE``, or in development one kept in the data dir."""
        if self.production:
            self.check_production()  # never create a key in production (and report problems in order)
        try:
            if self.push.vapid_private_key_file is not None:
                return push_keys.load_key(self.push.vapid_private_key_file)
            return push_keys.load_or_create(self.data_dir / push_keys.DEFAULT_KEY_NAME)
        except push_keys.VapidKeyError as exc:
            raise ConfigError(f"CSMS_VAPID_PRIVATE_KEY_FILE: {exc}") from None

    def cookie_secret(self) -> bytes:
        """The key that signs CSRF tokens: ``CSMS_COOKIE_SECRET``, or in development one kept in the data dir."""
        if self.auth.cookie_secret is not None:
            return self.auth.cookie_secret.encode()
        path = self.data_dir / "cookie-secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written 0600 to a private temporary file, then linked into place: the secret never has wider
            # permissions, and a second process starting at the same moment reads a complete file.
            tmp = path.with_name(f".cookie-secret.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_urlsafe(32).encode())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # the other process won; use its secret
            finally:
                tmp.unlink()
        secret = path.read_bytes().strip()
        if len(secret) < 32:
            raise ConfigError(f"{path} holds fewer than 32 bytes; delete it to make a new one")
        return secret
