"""Settings of web push (VAPID keys, delivery, and when drivers and owners are notified).

Production needs a VAPID key file and subject (``csms vapid generate`` makes the key); development
creates a key in the data directory on first use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from csms.config_env import ConfigError, env_float, env_int, env_list

# PushSettings field → (variable, parser, minimum); every number is checked against its minimum.
_PUSH_NUMBERS: dict[str, tuple[str, Any, float]] = {
    "senders": ("CSMS_PUSH_SENDERS", env_int, 1), "queue_size": ("CSMS_PUSH_QUEUE", env_int, 1),
    "ttl_s": ("CSMS_PUSH_TTL", env_int, 1), "timeout_s": ("CSMS_PUSH_TIMEOUT", env_float, 0.001),
    "max_retries": ("CSMS_PUSH_RETRIES", env_int, 0), "retry_backoff_s": ("CSMS_PUSH_RETRY_BACKOFF", env_float, 0.001),
    "max_retry_after_s": ("CSMS_PUSH_MAX_RETRY_AFTER", env_float, 0),
    "subscription_max_idle_days": ("CSMS_PUSH_SUBSCRIPTION_MAX_IDLE_DAYS", env_int, 1),
    "low_balance_tyiyn": ("CSMS_LOW_BALANCE_TYIYN", env_int, 0),
    "station_offline_after_s": ("CSMS_STATION_OFFLINE_AFTER", env_float, 0.001),
    "presence_interval_s": ("CSMS_PUSH_PRESENCE_INTERVAL", env_float, 0.001),
    "maintenance_interval_s": ("CSMS_PUSH_MAINTENANCE_INTERVAL", env_float, 0.001),
}


@dataclass(frozen=True)
class PushSettings:
    """Web push (VAPID): keys, delivery, and when drivers and owners are notified (``csms.services.push``)."""

    # The VAPID key (P-256 PEM from `csms vapid generate`); unset in development: data_dir/vapid-private.pem.
    vapid_private_key_file: Path | None = None
    vapid_subject: str | None = None  # RFC 8292 `sub`: a mailto: or https: contact for push services
    senders: int = 4  # concurrent deliveries
    queue_size: int = 1000  # deliveries waiting; a full queue drops (counted)
    ttl_s: int = 86_400  # how long a push service keeps a message for an offline browser
    timeout_s: float = 10.0  # one request to a push service
    max_retries: int = 3  # after the first attempt, on 429, 5xx and network errors, with backoff
    retry_backoff_s: float = 1.0
    max_retry_after_s: float = 60.0  # a longer Retry-After gives the message up
    subscription_max_idle_days: int = 90
    low_balance_tyiyn: int = 10_000  # 100 som
    station_offline_after_s: float = 300.0
    presence_interval_s: float = 30.0  # how often the station-offline job runs
    maintenance_interval_s: float = 300.0  # pruning of unused subscriptions and old claims
    allowed_hosts: tuple[str, ...] = ()  # if set, endpoints must be on these hosts or their subdomains

    @property
    def subject(self) -> str:
        """The VAPID ``sub`` claim: the configured one, or a development placeholder."""
        return self.vapid_subject or "mailto:csms@localhost"

    @classmethod
    def from_env(cls, e: dict[str, str]) -> PushSettings:
        """The ``CSMS_VAPID_*``, ``CSMS_PUSH_*`` and notification variables; ConfigError if one is malformed."""
        d, key_file, subject = cls(), e.get("CSMS_VAPID_PRIVATE_KEY_FILE"), e.get("CSMS_VAPID_SUBJECT") or None
        if subject is not None and not re.match(r"^(mailto:[^@\s]+@[^@\s]+|https://[^\s/]+\S*)$", subject):
            raise ConfigError("CSMS_VAPID_SUBJECT must be a mailto: address or an https:// URL")
        numbers = {f: parse(e, name, getattr(d, f)) for f, (name, parse, _) in _PUSH_NUMBERS.items()}
        for f, (name, _, minimum) in _PUSH_NUMBERS.items():
            if numbers[f] < minimum:
                raise ConfigError(f"{name} must be at least {minimum}, got {numbers[f]}")
        return cls(vapid_private_key_file=Path(key_file) if key_file else None, vapid_subject=subject,
                   allowed_hosts=tuple(h.lower().lstrip(".") for h in env_list(e, "CSMS_PUSH_ALLOWED_HOSTS")),
                   **numbers)

    def check_production(self) -> None:
        """Production needs a VAPID key file and a subject (ConfigError names the missing variable)."""
        if self.vapid_private_key_file is None:
            raise ConfigError("production needs CSMS_VAPID_PRIVATE_KEY_FILE (create one with `csms vapid generate`)")
        if self.vapid_subject is None:
            raise ConfigError("production needs CSMS_VAPID_SUBJECT (mailto: or https: contact for push services)")
