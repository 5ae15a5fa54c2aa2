"""The session settings: CSMS_* variables, defaults, and refusal of nonsense."""

from __future__ import annotations

import pytest

from csms.config import ConfigError, Settings


def test_defaults_and_variables() -> None:
    d = Settings.from_env({})
    assert (d.session_start_timeout_s, d.session_max_duration_s, d.session_stop_grace_s, d.reaper_interval_s) == (
        600, 43_200, 900, 30)
    s = Settings.from_env({"CSMS_SESSION_START_TIMEOUT": "120", "CSMS_SESSION_MAX_DURATION": "3600",
                           "CSMS_SESSION_STOP_GRACE": "60.5", "CSMS_REAPER_INTERVAL": "5"})
    assert (s.session_start_timeout_s, s.session_max_duration_s, s.session_stop_grace_s, s.reaper_interval_s) == (
        120, 3600, 60.5, 5)


@pytest.mark.parametrize("name", ["CSMS_SESSION_START_TIMEOUT", "CSMS_SESSION_MAX_DURATION",
                                  "CSMS_SESSION_STOP_GRACE", "CSMS_REAPER_INTERVAL"])
@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_bad_values_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})
