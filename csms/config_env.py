"""Reading ``CSMS_*`` variables: the one error type and the parsers every settings module shares.

``csms.config`` builds the process settings with these; settings groups that live in their own modules
(``csms.config_payments``) use them too, so every malformed variable is reported the same way.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""


def env_int(env: dict[str, str], name: str, default: int) -> int:
    """``env[name]`` as an integer, or ``default`` when unset or empty."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def env_float(env: dict[str, str], name: str, default: float) -> float:
    """``env[name]`` as a number, or ``default`` when unset or empty."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def env_bool(env: dict[str, str], name: str, default: bool) -> bool:
    """``env[name]`` as 1/0/true/false/yes/no/on/off, or ``default`` when unset or empty."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be 1/0/true/false, got {raw!r}")


def env_list(env: dict[str, str], name: str) -> tuple[str, ...]:
    """``env[name]`` split on commas, items trimmed, empty items dropped."""
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())
