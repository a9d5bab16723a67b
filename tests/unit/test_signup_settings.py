"""The settings of password reset, email verification and sign-up: defaults and bad values."""

from __future__ import annotations

import pytest

from idp.settings import SettingsError, load_settings


def test_defaults() -> None:
    s = load_settings(environ={})
    assert s.signup_enabled is False  # off unless the instance turns it on
    assert s.password_reset_link_minutes == 30
    assert s.email_verification_link_hours == 24
    assert (s.email_requests_per_address_per_hour, s.email_requests_per_ip_per_hour) == (5, 30)


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("1", True), ("yes", True),
                                                  ("false", False), ("0", False), ("off", False)])
def test_signup_enabled_reads_booleans(value: str, expected: bool) -> None:
    assert load_settings(environ={"IDP_SIGNUP_ENABLED": value}).signup_enabled is expected


@pytest.mark.parametrize(("env", "named"), [
    ({"IDP_SIGNUP_ENABLED": "maybe"}, "IDP_SIGNUP_ENABLED"),
    ({"IDP_PASSWORD_RESET_LINK_MINUTES": "0"}, "IDP_PASSWORD_RESET_LINK_MINUTES"),
    ({"IDP_PASSWORD_RESET_LINK_MINUTES": "2000"}, "IDP_PASSWORD_RESET_LINK_MINUTES"),
    ({"IDP_EMAIL_VERIFICATION_LINK_HOURS": "500"}, "IDP_EMAIL_VERIFICATION_LINK_HOURS"),
    ({"IDP_EMAIL_REQUESTS_PER_ADDRESS_PER_HOUR": "0"}, "IDP_EMAIL_REQUESTS_PER_ADDRESS_PER_HOUR"),
    ({"IDP_EMAIL_REQUESTS_PER_IP_PER_HOUR": "x"}, "IDP_EMAIL_REQUESTS_PER_IP_PER_HOUR"),
])
def test_bad_values_name_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(environ=env)
    assert str(raised.value).startswith(named + ":")
