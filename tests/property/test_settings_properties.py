"""Property: whatever the environment holds, settings either load or stop the start with a
SettingsError naming an IDP_* setting (the one line the command prints), never another
exception and its traceback."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idp.settings import Settings, SettingsError, env_name, load_settings

# Reproducible, and a busy CI machine is not a bug.
SLOW_OK = settings(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
NAMES = [env_name(f.name) for f in dataclasses.fields(Settings)]

# Environment values cannot hold NUL; anything else can arrive.
env_text = st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=40)
numbers = st.integers(min_value=-(10**6), max_value=10**6).map(str)
urls = st.builds(
    lambda scheme, rest: f"{scheme}://{rest}",
    st.sampled_from(
        [
            "http",
            "https",
            "redis",
            "redis+sentinel",
            "smtp",
            "smtps",
            "postgresql",
            "sqlite",
            "ftp",
            "",
        ]
    ),
    st.one_of(
        env_text,
        st.sampled_from(
            ["[::1", "[x]", "h:99999999", "~nobody/x", "u:p@h:25", "a:1,b:x/m", "a:1,b:2/m"]
        ),
    ),
)
values = st.one_of(env_text, numbers, urls, st.sampled_from(["~nosuchuser/var", " 5 ", "1e3"]))
environments = st.dictionaries(st.sampled_from(NAMES), values, min_size=1, max_size=4)


@settings(SLOW_OK, max_examples=500)
@given(environ=environments)
def test_any_environment_loads_or_names_the_bad_setting(environ: dict[str, str]) -> None:
    try:
        loaded = load_settings(environ=environ)
    except SettingsError as exc:
        assert str(exc).startswith(env_name(exc.name) + ": "), str(exc)
        assert env_name(exc.name) in NAMES, exc.name
        assert "\n" not in str(exc).split(": ", 1)[0]
    else:
        assert isinstance(loaded, Settings)


@settings(SLOW_OK, max_examples=200)
@given(name=st.sampled_from(NAMES), value=values)
def test_a_single_bad_value_is_blamed_on_its_own_setting_or_the_one_it_contradicts(
    name: str, value: str
) -> None:
    try:
        load_settings(environ={name: value})
    except SettingsError as exc:
        named = env_name(exc.name)
        # A value can be fine alone and contradict a default (e.g. idle > absolute minutes):
        # then the other setting is named, and its message names this one.
        assert named == name or name in str(exc), (name, value, str(exc))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IDP_DATA_DIR", "~nosuchuser/var"),
        ("IDP_ISSUER", "http://[::1"),
        ("IDP_ISSUER", "http://127.0.0.1:99999"),
        ("IDP_REDIS_URL", "redis://[x"),
        ("IDP_SMTP_URL", "smtp://mail.example:99999999"),
        ("IDP_ENTRA_AUTHORITY", "https://[login"),
    ],
)
def test_values_that_used_to_escape_as_tracebacks_name_their_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(environ={name: value})
    assert str(raised.value).startswith(name + ": ")
