"""Payment and rate-limit settings from the environment, and what production refuses."""

from __future__ import annotations

from dataclasses import replace

import pytest

from csms.config import ConfigError, Settings
from csms.supervisor import Csms
from tests.conftest import TEST_JWT_KEY

SECRET = "s" * 32
PAYMENTS = {"CSMS_ODENGI_URL": "https://pay.example.kg/", "CSMS_ODENGI_MERCHANT_ID": "m-1",
            "CSMS_ODENGI_API_SECRET": SECRET, "CSMS_ODENGI_WEBHOOK_SECRETS": f"{SECRET}, {'t' * 40}",
            "CSMS_ODENGI_WEBHOOK_ALLOWED_IPS": "203.0.113.0/24,2001:db8::1"}
PRODUCTION = {"APP_ENV": "production", "CSMS_DATABASE_URL": "postgresql:///x",
              "CSMS_JWT_PRIVATE_KEY_FILE": "/run/secrets/jwt.pem", "CSMS_COOKIE_SECRET": "c" * 40,
              "CSMS_CORS_ORIGINS": "https://app.example.com",
              "CSMS_VAPID_PRIVATE_KEY_FILE": "/run/secrets/vapid.pem", "CSMS_VAPID_SUBJECT": "mailto:ops@example.com"}


def test_defaults_are_off_with_the_documented_limits() -> None:
    s = Settings.from_env({})
    assert not s.payments.enabled
    assert (s.payments.invoice_ttl_s, s.payments.webhook_max_age_s) == (300.0, 300)
    assert (s.rate_limits.critical_per_minute, s.rate_limits.mutation_per_minute,
            s.rate_limits.webhook_per_minute) == (10, 60, 30)


def test_payment_settings_from_env() -> None:
    s = Settings.from_env({**PAYMENTS, "CSMS_INVOICE_TTL": "120", "CSMS_CRITICAL_RATE_LIMIT": "5"})
    p = s.payments
    assert p.enabled and p.odengi_url == "https://pay.example.kg"
    assert p.webhook_secrets == (SECRET, "t" * 40)
    assert p.webhook_allowed_ips == ("203.0.113.0/24", "2001:db8::1")
    assert (p.invoice_ttl_s, s.rate_limits.critical_per_minute) == (120.0, 5)


@pytest.mark.parametrize(("change", "message"), [
    ({"CSMS_ODENGI_WEBHOOK_SECRETS": ""}, "CSMS_ODENGI_WEBHOOK_SECRETS"),
    ({"CSMS_ODENGI_WEBHOOK_SECRETS": "short"}, "at least 32"),
    ({"CSMS_ODENGI_API_SECRET": ""}, "CSMS_ODENGI_API_SECRET"),
    ({"CSMS_ODENGI_MERCHANT_ID": ""}, "CSMS_ODENGI_MERCHANT_ID"),
    ({"CSMS_ODENGI_URL": "ftp://pay.example.kg"}, "http"),
    ({"CSMS_ODENGI_WEBHOOK_ALLOWED_IPS": "somewhere"}, "not an address"),
    ({"CSMS_INVOICE_TTL": "0"}, "CSMS_INVOICE_TTL"),
    ({"CSMS_WEBHOOK_RATE_LIMIT": "0"}, "CSMS_WEBHOOK_RATE_LIMIT"),
    ({"CSMS_MUTATION_RATE_LIMIT": "many"}, "CSMS_MUTATION_RATE_LIMIT must be an integer"),
])
def test_malformed_payment_settings(change: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({**PAYMENTS, **change})


@pytest.mark.parametrize(("change", "message"), [
    ({"CSMS_ODENGI_WEBHOOK_ALLOWED_IPS": ""}, "CSMS_ODENGI_WEBHOOK_ALLOWED_IPS"),
    ({"CSMS_ODENGI_URL": "http://pay.example.kg"}, "https"),
    ({"CSMS_ODENGI_CALLBACK_URL": "http://csms.example.kg/webhooks/payments/odengi"}, "CSMS_ODENGI_CALLBACK_URL"),
])
def test_production_refuses_unsafe_payment_settings(change: dict[str, str], message: str) -> None:
    Settings.from_env({**PRODUCTION, **PAYMENTS}).check_production()
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({**PRODUCTION, **PAYMENTS, **change}).check_production()


def test_production_refuses_half_configured_payments() -> None:
    Settings.from_env(PRODUCTION).check_production()  # no provider at all: top-ups are off
    secrets_without_url = {k: v for k, v in PAYMENTS.items() if k != "CSMS_ODENGI_URL"}
    with pytest.raises(ConfigError, match="CSMS_ODENGI_URL"):
        Settings.from_env({**PRODUCTION, **secrets_without_url}).check_production()


async def test_a_production_node_without_a_webhook_secret_does_not_start() -> None:
    settings = Settings.from_env({**PRODUCTION, **PAYMENTS, "CSMS_JWT_PRIVATE_KEY_FILE": str(TEST_JWT_KEY)})
    # Settings built in code rather than from the environment are checked at start-up all the same.
    settings = replace(settings, payments=replace(settings.payments, webhook_secrets=()))
    with pytest.raises(ConfigError, match="CSMS_ODENGI_WEBHOOK_SECRETS"):
        await Csms(settings).run()
