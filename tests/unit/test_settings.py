"""Settings: defaults, config file, environment, and one clear error per bad value."""

from __future__ import annotations

import dataclasses
import os
import stat
import tomllib
from pathlib import Path

import pytest

from idp.settings import DEFAULT_CONFIG, Settings, SettingsError, ensure_secret_key, load_settings


def test_defaults_match_the_contract() -> None:
    s = load_settings(environ={})
    assert s.issuer == "http://127.0.0.1:8000"
    assert s.redis_url == "" and s.smtp_url == ""
    assert s.mail_from == "idp@localhost"
    assert s.entra_authority == "https://login.microsoftonline.com"
    assert s.graph_url == "https://graph.microsoft.com"
    assert (s.argon2_memory_kib, s.argon2_time_cost, s.argon2_parallelism) == (19456, 2, 1)
    assert s.database_url.startswith("sqlite:///") and s.database_url.endswith("idp.sqlite3")
    assert s.uses_embedded_database and not s.secure_cookies


def test_every_setting_is_documented_in_default_toml() -> None:
    documented = tomllib.loads(DEFAULT_CONFIG.read_text())
    assert set(documented) == {f.name for f in dataclasses.fields(Settings)}
    lines = DEFAULT_CONFIG.read_text().splitlines()
    for name in documented:  # a comment stands above each setting (or its group)
        i = next(i for i, ln in enumerate(lines) if ln.startswith(f"{name} ="))
        while i > 0 and "=" in lines[i - 1] and not lines[i - 1].startswith("#"):
            i -= 1
        assert lines[i - 1].startswith("#"), name


def test_environment_overrides_config_file_which_overrides_defaults(tmp_path: Path) -> None:
    config = tmp_path / "idp.toml"
    config.write_text('mail_from = "file@example.com"\nsession_idle_minutes = 10\n')
    s = load_settings(environ={"IDP_CONFIG": str(config), "IDP_SESSION_IDLE_MINUTES": "15"})
    assert s.mail_from == "file@example.com"
    assert s.session_idle_minutes == 15


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"IDP_ISSUER": "ftp://x"}, "IDP_ISSUER"),
        ({"IDP_ISSUER": "http://id.example.com"}, "IDP_ISSUER"),  # https required off loopback
        ({"IDP_ISSUER": "https://id.example.com/?a=b"}, "IDP_ISSUER"),
        ({"IDP_ISSUER": "HTTP://id.example.com"}, "IDP_ISSUER"),  # http off loopback after all
        ({"IDP_ISSUER": "HTTPS://id.example.com"}, "IDP_ISSUER"),  # would lose Secure cookies
        ({"IDP_ISSUER": "https://id.example.com?"}, "IDP_ISSUER"),
        ({"IDP_ISSUER": "https://id.example.com/#"}, "IDP_ISSUER"),
        ({"IDP_ISSUER": "https://admin:pw@id.example.com"}, "IDP_ISSUER"),
        ({"IDP_ISSUER": "https://id.example.com/a b"}, "IDP_ISSUER"),
        ({"IDP_GRAPH_URL": "HTTPS://graph.microsoft.com"}, "IDP_GRAPH_URL"),
        ({"IDP_SESSION_IDLE_MINUTES": "ten"}, "IDP_SESSION_IDLE_MINUTES"),
        ({"IDP_SESSION_IDLE_MINUTES": "0"}, "IDP_SESSION_IDLE_MINUTES"),
        (
            {"IDP_SESSION_IDLE_MINUTES": "90", "IDP_SESSION_ABSOLUTE_MINUTES": "60"},
            "IDP_SESSION_ABSOLUTE_MINUTES",
        ),
        ({"IDP_DATABASE_URL": "mysql://x/y"}, "IDP_DATABASE_URL"),
        ({"IDP_DATABASE_URL": "::not a url::"}, "IDP_DATABASE_URL"),
        ({"IDP_DATABASE_URL": "postgresql://idp@db:/idp"}, "IDP_DATABASE_URL"),
        ({"IDP_DATABASE_URL": "postgresql://idp@db:x/idp"}, "IDP_DATABASE_URL"),
        ({"IDP_DATABASE_URL": "0://::"}, "IDP_DATABASE_URL"),
        ({"IDP_DATABASE_URL": "postgresql://idp@db:99999/idp"}, "IDP_DATABASE_URL"),
        ({"IDP_REDIS_URL": "http://localhost"}, "IDP_REDIS_URL"),
        ({"IDP_REDIS_URL": "redis://cache:6379/0?socket_timeout=5s"}, "IDP_REDIS_URL"),
        ({"IDP_REDIS_URL": "unix:///run/redis.sock?db=first"}, "IDP_REDIS_URL"),
        ({"IDP_SMTP_URL": "mail.example.com:25"}, "IDP_SMTP_URL"),
        ({"IDP_MAIL_FROM": "nobody"}, "IDP_MAIL_FROM"),
        ({"IDP_MAIL_FROM": "idp@example.com\r\nBcc: all@evil.example"}, "IDP_MAIL_FROM"),
        ({"IDP_MAIL_FROM": "idp@"}, "IDP_MAIL_FROM"),
        ({"IDP_MAIL_FROM": "@example.com"}, "IDP_MAIL_FROM"),
        ({"IDP_SECRET_KEY": "short"}, "IDP_SECRET_KEY"),
        ({"IDP_ARGON2_MEMORY_KIB": "4"}, "IDP_ARGON2_MEMORY_KIB"),
        ({"IDP_PASSWORD_MAX_LENGTH": "20"}, "IDP_PASSWORD_MAX_LENGTH"),
        ({"IDP_PROXY_HOPS": "-1"}, "IDP_PROXY_HOPS"),
        ({"IDP_LOG_LEVEL": "LOUD"}, "IDP_LOG_LEVEL"),
        ({"IDP_ACCESS_TOKEN_ALG": "HS256"}, "IDP_ACCESS_TOKEN_ALG"),
        ({"IDP_ACCESS_TOKEN_ALG": "none"}, "IDP_ACCESS_TOKEN_ALG"),
        ({"IDP_ENTRA_AUTHORITY": "login.microsoftonline.com"}, "IDP_ENTRA_AUTHORITY"),
        ({"IDP_CONFIG": "/nonexistent/idp.toml"}, "IDP_CONFIG"),
        ({"IDP_DATABASE_URL": "sqlite://"}, "IDP_DATABASE_URL"),  # in memory: keeps nothing
        ({"IDP_DATABASE_URL": "sqlite:///:memory:"}, "IDP_DATABASE_URL"),
        # bytes that are not UTF-8 (os.environ holds them as lone surrogates)
        ({"IDP_SECRET_KEY": "\udcff" * 40}, "IDP_SECRET_KEY"),
        ({"IDP_REDIS_PREFIX": "idp\udcff:"}, "IDP_REDIS_PREFIX"),
        ({"IDP_SMTP_URL": "smtp://\udcff@mail.example.com:25"}, "IDP_SMTP_URL"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(environ=env)
    message = str(info.value)
    assert message.startswith(named + ":")
    assert "\n" not in message


DURATIONS = [
    f.name
    for f in dataclasses.fields(Settings)
    if f.name.rpartition("_")[2] in ("seconds", "minutes", "hours", "days")
]


@pytest.mark.parametrize("name", DURATIONS)
def test_a_duration_too_long_for_a_date_names_the_setting(name: str) -> None:
    """A duration past year 9999 used to load, then fail every sign-in, grant or worker start
    with OverflowError ("now + duration" is no date): refused at start with one line."""
    variable = "IDP_" + name.upper()
    with pytest.raises(SettingsError) as info:
        load_settings(environ={variable: str(10**12)})
    assert str(info.value).startswith(variable + ":") and "\n" not in str(info.value)
    defaults = load_settings(environ={})
    assert load_settings(environ={variable: str(getattr(defaults, name))})  # defaults pass


def test_a_sender_with_a_display_name_is_accepted() -> None:
    assert load_settings(environ={"IDP_MAIL_FROM": "Example ID <id@example.com>"}).mail_from \
        == "Example ID <id@example.com>"


def test_ten_years_is_still_a_valid_duration() -> None:
    s = load_settings(environ={"IDP_REFRESH_TOKEN_DAYS": "3650",
                               "IDP_SESSION_ABSOLUTE_MINUTES": str(3650 * 1440)})
    assert s.refresh_token_days == 3650


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("IDP_SMTP_URL", "smtp://mailer:s3cr#t@smtp.example.com:587"),
        ("IDP_SMTP_URL", "smtps://mailer:pa/ss:w0rd@smtp.example.com:99999"),
        ("IDP_REDIS_URL", "redis://:s3cr#t@cache.internal:6379/0"),
        ("IDP_ENTRA_AUTHORITY", "ftp://admin:s3cr#t@login.example.com"),
    ],
)
def test_a_bad_url_never_prints_its_password(name: str, url: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(environ={name: url})
    message = str(info.value)
    assert message.startswith(name + ":") and "***@" in message
    assert "s3cr" not in message and "w0rd" not in message


def test_a_config_file_that_is_not_utf8_names_it(tmp_path: Path) -> None:
    """It escaped as "'utf-8' codec can't decode byte 0xff ...", naming neither the
    setting nor the file."""
    config = tmp_path / "idp.toml"
    config.write_bytes(b'mail_from = "\xff@example.com"\n')
    with pytest.raises(SettingsError) as info:
        load_settings(environ={"IDP_CONFIG": str(config)})
    assert str(info.value) == (
        f"IDP_CONFIG: cannot read {config}: not UTF-8 text (invalid start byte at byte 13)"
    )


def test_unknown_key_in_config_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "idp.toml"
    config.write_text('isuer = "https://typo.example.com"\n')
    with pytest.raises(SettingsError, match="unknown setting 'isuer'"):
        load_settings(environ={"IDP_CONFIG": str(config)})


def test_https_issuer_turns_on_secure_cookies() -> None:
    s = load_settings(environ={"IDP_ISSUER": "https://id.example.com/"})
    assert s.issuer == "https://id.example.com"
    assert s.secure_cookies


def test_secret_key_is_generated_once_with_private_permissions(tmp_path: Path) -> None:
    s = load_settings(environ={"IDP_DATA_DIR": str(tmp_path / "var")})
    first = ensure_secret_key(s)
    second = ensure_secret_key(s)
    assert len(first.secret_key) >= 32
    assert first.secret_key == second.secret_key
    mode = stat.S_IMODE(os.stat(tmp_path / "var" / "secret_key").st_mode)
    assert mode == 0o600


def test_a_key_file_that_is_not_utf8_names_the_setting(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "secret_key").write_bytes(b"\xff" * 48)
    s = load_settings(environ={"IDP_DATA_DIR": str(tmp_path / "var")})
    with pytest.raises(SettingsError) as info:
        ensure_secret_key(s)
    assert str(info.value) == (
        f"IDP_SECRET_KEY: {tmp_path / 'var' / 'secret_key'} does not hold UTF-8 text"
    )


def test_processes_starting_together_share_the_generated_key(tmp_path: Path) -> None:
    """`idp serve` and `idp worker` started at the same moment on a fresh data dir: one
    created the key file, the other read it before it was written and stopped with "holds a
    key shorter than 32 characters" (8 of 10 rounds of 16 starts failed so)."""
    import threading

    for round_ in range(10):
        s = load_settings(environ={"IDP_DATA_DIR": str(tmp_path / str(round_))})
        barrier = threading.Barrier(16)
        keys: list[str] = []
        errors: list[str] = []

        def start() -> None:
            barrier.wait()
            try:
                keys.append(ensure_secret_key(s).secret_key)
            except SettingsError as exc:
                errors.append(str(exc))

        threads = [threading.Thread(target=start) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [] and len(keys) == 16 and len(set(keys)) == 1


def test_given_secret_key_is_used_as_is(tmp_path: Path) -> None:
    key = "k" * 40
    s = ensure_secret_key(
        load_settings(environ={"IDP_SECRET_KEY": key, "IDP_DATA_DIR": str(tmp_path)})
    )
    assert s.secret_key == key
    assert not (tmp_path / "secret_key").exists()
