"""The retention setting: 400 days by default, a whole number of days from 1 to 36500."""

from __future__ import annotations

import pytest

from idp.settings import SettingsError, load_settings


def test_events_are_kept_400_days_by_default() -> None:
    assert load_settings(environ={}).event_retention_days == 400
    assert load_settings(environ={"IDP_EVENT_RETENTION_DAYS": "30"}).event_retention_days == 30


@pytest.mark.parametrize("value", ["0", "-5", "36501", "a year"])
def test_a_bad_retention_names_the_setting(value: str) -> None:
    with pytest.raises(SettingsError, match=r"^IDP_EVENT_RETENTION_DAYS: "):
        load_settings(environ={"IDP_EVENT_RETENTION_DAYS": value})
