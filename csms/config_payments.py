"""Settings of QR top-ups (the O!Dengi-style payment provider) and of the API's rate limits.

Payments are on when ``CSMS_ODENGI_URL`` is set. Then csms needs the merchant id, the API secret that
signs our requests to the provider, and at least one webhook secret (several, comma-separated, while
the provider rotates them). Production refuses to start with payments half configured, without webhook
secrets, without a source-IP allowlist for webhooks, or with a provider URL that is not https.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from csms.config_env import ConfigError, env_float, env_int, env_list

MIN_SECRET_CHARS = 32


@dataclass(frozen=True)
class PaymentSettings:
    """QR top-ups: the provider, webhook checks, the invoice lifetime and the billing jobs."""

    provider: str = "odengi"
    # The provider's API base URL; None switches payments off (topUp answers PAYMENTS_UNAVAILABLE).
    odengi_url: str | None = None
    merchant_id: str | None = None
    api_secret: str | None = None
    # Any one of these may sign a webhook (rotation: add the new secret, then remove the old one).
    webhook_secrets: tuple[str, ...] = ()
    # Source addresses or CIDR networks allowed to post webhooks; empty allows any (development only).
    webhook_allowed_ips: tuple[str, ...] = ()
    # Our webhook's public URL, sent with every invoice; None means the provider's configured default.
    callback_url: str | None = None
    request_timeout_s: float = 10.0
    # A webhook's timestamp may differ from our clock by at most this much.
    webhook_max_age_s: int = 300
    # How long a top-up invoice (and its QR code) can be paid.
    invoice_ttl_s: float = 300.0
    expiry_interval_s: float = 5.0
    reconcile_interval_s: float = 30.0
    # The reconciler asks the provider about an unfinished invoice this long after it expired...
    reconcile_after_s: float = 30.0
    # ...and stops asking (flagging it for operators) this long after it expired.
    reconcile_give_up_s: float = 86_400.0
    max_amount_tyiyn: int = 10_000_000  # 100,000 som

    @property
    def enabled(self) -> bool:
        """True when a payment provider is configured."""
        return self.odengi_url is not None

    @classmethod
    def from_env(cls, e: dict[str, str]) -> PaymentSettings:
        """The ``CSMS_ODENGI_*`` and invoice variables of ``e``.

        Raises:
            ConfigError: a variable is malformed, or payments are half configured.
        """
        d = cls()
        s = cls(
            odengi_url=(e.get("CSMS_ODENGI_URL") or "").rstrip("/") or None,
            merchant_id=e.get("CSMS_ODENGI_MERCHANT_ID") or None,
            api_secret=e.get("CSMS_ODENGI_API_SECRET") or None,
            webhook_secrets=env_list(e, "CSMS_ODENGI_WEBHOOK_SECRETS"),
            webhook_allowed_ips=env_list(e, "CSMS_ODENGI_WEBHOOK_ALLOWED_IPS"),
            callback_url=e.get("CSMS_ODENGI_CALLBACK_URL") or None,
            request_timeout_s=env_float(e, "CSMS_ODENGI_TIMEOUT", d.request_timeout_s),
            webhook_max_age_s=env_int(e, "CSMS_WEBHOOK_MAX_AGE", d.webhook_max_age_s),
            invoice_ttl_s=env_float(e, "CSMS_INVOICE_TTL", d.invoice_ttl_s),
            expiry_interval_s=env_float(e, "CSMS_INVOICE_EXPIRY_INTERVAL", d.expiry_interval_s),
            reconcile_interval_s=env_float(e, "CSMS_PAYMENT_RECONCILE_INTERVAL", d.reconcile_interval_s),
            reconcile_after_s=env_float(e, "CSMS_PAYMENT_RECONCILE_AFTER", d.reconcile_after_s),
            reconcile_give_up_s=env_float(e, "CSMS_PAYMENT_RECONCILE_GIVE_UP", d.reconcile_give_up_s),
        )
        s.check()
        return s

    def check(self) -> None:
        """Refuse inconsistent values (in every environment).

        Raises:
            ConfigError: naming the variable.
        """
        for name, value in (("CSMS_ODENGI_TIMEOUT", self.request_timeout_s), ("CSMS_INVOICE_TTL", self.invoice_ttl_s),
                            ("CSMS_INVOICE_EXPIRY_INTERVAL", self.expiry_interval_s),
                            ("CSMS_PAYMENT_RECONCILE_INTERVAL", self.reconcile_interval_s),
                            ("CSMS_PAYMENT_RECONCILE_GIVE_UP", self.reconcile_give_up_s),
                            ("CSMS_WEBHOOK_MAX_AGE", self.webhook_max_age_s)):
            if not value > 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        if self.reconcile_after_s < 0:
            raise ConfigError("CSMS_PAYMENT_RECONCILE_AFTER must not be negative")
        for network in self.webhook_allowed_ips:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ConfigError(f"CSMS_ODENGI_WEBHOOK_ALLOWED_IPS: {network!r} is not an address or "
                                  "network") from None
        if not self.enabled:
            return
        assert self.odengi_url is not None
        if not self.odengi_url.startswith(("https://", "http://")):
            raise ConfigError("CSMS_ODENGI_URL must be an http(s) URL")
        if not self.merchant_id or not self.api_secret:
            raise ConfigError("CSMS_ODENGI_URL needs CSMS_ODENGI_MERCHANT_ID and CSMS_ODENGI_API_SECRET")
        if not self.webhook_secrets:
            raise ConfigError("CSMS_ODENGI_URL needs CSMS_ODENGI_WEBHOOK_SECRETS (webhooks are refused without one)")
        if any(len(secret) < MIN_SECRET_CHARS for secret in (self.api_secret, *self.webhook_secrets)):
            raise ConfigError(f"CSMS_ODENGI_API_SECRET and every CSMS_ODENGI_WEBHOOK_SECRETS entry need at least "
                              f"{MIN_SECRET_CHARS} characters")

    def check_production(self) -> None:
        """What production needs on top of :meth:`check`.

        Raises:
            ConfigError: naming the variable.
        """
        configured = (self.merchant_id, self.api_secret, self.webhook_secrets, self.webhook_allowed_ips)
        if not self.enabled:
            if any(configured):
                raise ConfigError("CSMS_ODENGI_* settings are given but CSMS_ODENGI_URL is not")
            return
        assert self.odengi_url is not None
        if not self.webhook_secrets:
            raise ConfigError("production needs CSMS_ODENGI_WEBHOOK_SECRETS")
        if not self.webhook_allowed_ips:
            raise ConfigError("production needs CSMS_ODENGI_WEBHOOK_ALLOWED_IPS (the provider's webhook addresses)")
        if not self.odengi_url.startswith("https://"):
            raise ConfigError("CSMS_ODENGI_URL must be https:// in production")
        if self.callback_url is not None and not self.callback_url.startswith("https://"):
            raise ConfigError("CSMS_ODENGI_CALLBACK_URL must be https:// in production")


@dataclass(frozen=True)
class RateLimitSettings:
    """Requests per minute for GraphQL mutations (per client IP and per caller) and for webhooks (per IP)."""

    # login, register, topUp, startCharging (csms.api.ratelimit_guard.CRITICAL).
    critical_per_minute: int = 10
    # Every other mutation, all of them counted together.
    mutation_per_minute: int = 60
    webhook_per_minute: int = 30

    @classmethod
    def from_env(cls, e: dict[str, str]) -> RateLimitSettings:
        """The ``CSMS_*_RATE_LIMIT`` variables of ``e``.

        Raises:
            ConfigError: a limit is malformed or below 1.
        """
        d = cls()
        s = cls(critical_per_minute=env_int(e, "CSMS_CRITICAL_RATE_LIMIT", d.critical_per_minute),
                mutation_per_minute=env_int(e, "CSMS_MUTATION_RATE_LIMIT", d.mutation_per_minute),
                webhook_per_minute=env_int(e, "CSMS_WEBHOOK_RATE_LIMIT", d.webhook_per_minute))
        if min(s.critical_per_minute, s.mutation_per_minute, s.webhook_per_minute) < 1:
            raise ConfigError("CSMS_CRITICAL_RATE_LIMIT, CSMS_MUTATION_RATE_LIMIT and CSMS_WEBHOOK_RATE_LIMIT must be "
                              "at least 1")
        return s
