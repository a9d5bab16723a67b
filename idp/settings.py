"""Typed settings: config/default.toml, then the file named by IDP_CONFIG, then IDP_* variables.

Every setting is documented in config/default.toml; this module only knows their types and the
rules a value must obey. A bad value raises :class:`SettingsError` naming the setting, which the
command line turns into one line on stderr.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import time
import tomllib
from collections.abc import Mapping
from email.utils import parseaddr
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import SplitResult, urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from idp.net import is_loopback

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "default.toml"
ENV_PREFIX = "IDP_"
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
ACCESS_TOKEN_ALGS = ("RS256", "ES256")  # RFC 9068 §2.1, RFC 7518 §3.3 and §3.4


class SettingsError(Exception):
    """A setting is missing, malformed or contradicts another; ``name`` is its variable name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{env_name(name)}: {message}")
        self.name = name


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


@dataclasses.dataclass(frozen=True)
class Settings:
    """The validated configuration of one idp instance (see config/default.toml)."""

    issuer: str
    secret_key: str
    data_dir: str
    database_url: str
    redis_url: str
    redis_prefix: str
    smtp_url: str
    mail_from: str
    entra_authority: str
    graph_url: str
    session_idle_minutes: int
    session_absolute_minutes: int
    argon2_memory_kib: int
    argon2_time_cost: int
    argon2_parallelism: int
    password_min_length: int
    password_max_length: int
    proxy_hops: int
    authorization_code_seconds: int
    access_token_minutes: int
    access_token_alg: str
    id_token_minutes: int
    refresh_token_days: int
    lockout_default_threshold: int
    lockout_min_threshold: int
    lockout_max_threshold: int
    lockout_window_minutes: int
    unlock_link_minutes: int
    login_attempts_per_ip_per_minute: int
    login_attempts_global_per_minute: int
    second_factor_attempts_per_minute: int
    alert_failure_window_minutes: int
    event_retention_days: int
    password_reset_link_minutes: int
    email_verification_link_hours: int
    email_requests_per_address_per_hour: int
    email_requests_per_ip_per_hour: int
    signup_enabled: bool
    unverified_account_days: int
    invitation_days: int
    email_change_link_minutes: int
    log_level: str
    log_format: str
    metrics_token: str
    outbox_lease_seconds: int

    @property
    def secure_cookies(self) -> bool:
        """Cookies get ``Secure`` (and the ``__Host-`` prefix) whenever the issuer is https."""
        return self.issuer.startswith("https://")

    @property
    def uses_embedded_database(self) -> bool:
        return make_url(self.database_url).get_backend_name() == "sqlite"

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and validated again."""
        return load_settings(overrides={**dataclasses.asdict(self), **changes}, environ={})


def default_database_path(data_dir: str) -> Path:
    """The SQLite file of the embedded default database."""
    return (Path(data_dir) / "idp.sqlite3").resolve()


def _fields() -> dict[str, type]:
    hints = get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings)}


def _read_toml(path: Path, name: str) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise SettingsError(name, f"file not found: {path}") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(name, f"cannot read {path}: {exc}") from None
    except UnicodeDecodeError as exc:  # it escaped as "'utf-8' codec can't decode byte ..."
        raise SettingsError(name, f"cannot read {path}: not UTF-8 text ({exc.reason} "
                            f"at byte {exc.start})") from None


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _coerce(name: str, kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise SettingsError(name, f"must be true or false, not {value!r}")
    if kind is int:
        if isinstance(value, bool):
            raise SettingsError(name, f"must be a whole number, not {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise SettingsError(name, f"must be a whole number, not {value!r}")
    if not isinstance(value, str):
        raise SettingsError(name, f"must be a string, not {value!r}")
    if not _is_utf8(value):
        # Bytes that are not UTF-8 reach os.environ as lone surrogates: such a value loaded,
        # then failed wherever it was first encoded (a migrated database, then a traceback).
        raise SettingsError(name, "is not UTF-8 text")
    return value.strip()


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge the layers, coerce types and validate; raise :class:`SettingsError` on bad input."""
    env = os.environ if environ is None else environ
    fields = _fields()
    raw: dict[str, Any] = dict(_read_toml(DEFAULT_CONFIG, "config"))
    config_file = env.get("IDP_CONFIG")
    if config_file:
        extra = _read_toml(Path(config_file), "config")
        unknown = sorted(set(extra) - set(fields))
        if unknown:
            raise SettingsError("config", f"unknown setting {unknown[0]!r} in {config_file}")
        raw.update(extra)
    for name in fields:
        if env_name(name) in env:
            raw[name] = env[env_name(name)]
    raw.update(overrides or {})
    missing = sorted(set(fields) - set(raw))
    if missing:
        raise SettingsError(missing[0], "is missing from config/default.toml")
    values = {name: _coerce(name, kind, raw[name]) for name, kind in fields.items()}
    return _validate(values)


def _split(name: str, value: str) -> SplitResult:
    """``urlsplit`` whose ValueError (e.g. "http://[::1", a port beyond 65535) names the
    setting instead of escaping as a traceback."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- reading it checks the port is a number in range
    except ValueError:
        raise SettingsError(name, f"is not a valid URL: {_redacted(value)!r}") from None
    return parts


def _redacted(url: str) -> str:
    """``url`` without what stands between ``//`` and the last ``@`` (user and password: SMTP
    and Redis URLs carry them), for error lines that end up in logs."""
    return re.sub(r"//[^@]*@", "//***@", url, count=1)


def _check_base_url(name: str, value: str) -> str:
    """A base URL: ``http(s)://host[:port][/path]``, written so that its text says what it is
    (the issuer is compared as a string, and ``Secure`` cookies and the https rule read its
    scheme from the text: "HTTP://" must not pass for anything else). OIDC Discovery 1.0 §3:
    no query or fragment; nor user information, spaces or control characters."""
    parts = _split(name, value)
    if not value.startswith(("http://", "https://")) or not parts.hostname:
        raise SettingsError(
            name, f"must be an http(s) URL (scheme in lowercase), not {_redacted(value)!r}"
        )
    if "?" in value or "#" in value:
        raise SettingsError(name, "must not have a query or fragment")
    if "@" in parts.netloc:
        raise SettingsError(name, "must not contain a user name or password")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise SettingsError(name, "must not contain spaces or control characters")
    return value.rstrip("/")


_TEN_YEARS = {"seconds": 3650 * 86400, "minutes": 3650 * 1440, "hours": 3650 * 24, "days": 3650}
_OWN_UPPER_BOUND = {
    "authorization_code_seconds",
    "event_retention_days",
    "password_reset_link_minutes",
    "email_verification_link_hours",
    "unverified_account_days",
}


def _validate(v: dict[str, Any]) -> Settings:
    # OIDC Discovery 1.0 §3: the issuer is an https URL without query or fragment.
    issuer = _check_base_url("issuer", v["issuer"])
    host = urlsplit(issuer).hostname or ""
    if issuer.startswith("http://") and not is_loopback(host):
        raise SettingsError("issuer", "must use https unless the host is loopback")
    v["issuer"] = issuer
    v["entra_authority"] = _check_base_url("entra_authority", v["entra_authority"])
    v["graph_url"] = _check_base_url("graph_url", v["graph_url"])

    try:
        data_dir = Path(v["data_dir"] or "./var").expanduser()
        v["data_dir"] = str(data_dir)
        if not v["database_url"]:
            v["database_url"] = f"sqlite:///{default_database_path(str(data_dir))}"
    except (RuntimeError, OSError) as exc:  # "~nosuchuser", a symlink loop
        raise SettingsError("data_dir", f"cannot be used: {exc}") from None
    try:
        url = make_url(v["database_url"])
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise SettingsError("database_url", "is not a valid SQLAlchemy URL") from None
    if url.port is not None and not 0 < url.port < 65536:
        raise SettingsError("database_url", "has a port outside 1-65535")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise SettingsError("database_url", "must be a sqlite:// or postgresql:// URL")
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        # Each connection had a database of its own: `idp db upgrade` said "up to date" and
        # every command then found no tables; a server lost everything at each restart.
        raise SettingsError(
            "database_url", "must name a SQLite file (sqlite:////path/idp.sqlite3), not memory"
        )

    sentinel = v["redis_url"].startswith("redis+sentinel://")
    if (
        v["redis_url"]
        and not sentinel  # several host:port pairs: parse_sentinel_url checks those
        and _split("redis_url", v["redis_url"]).scheme not in ("redis", "rediss", "unix")
    ):
        raise SettingsError(
            "redis_url", "must start with redis://, rediss://, unix:// or redis+sentinel://"
        )
    if v["redis_url"] and not sentinel:
        from redis.connection import parse_url

        try:  # what redis-py reads at start: a bad option there was a traceback, not a line
            parse_url(v["redis_url"])  # type: ignore[no-untyped-call]
        except ValueError as exc:
            raise SettingsError("redis_url", str(exc)) from None
    if sentinel:
        from idp.store import parse_sentinel_url

        try:
            parse_sentinel_url(v["redis_url"])
        except ValueError as exc:
            raise SettingsError("redis_url", f"bad Sentinel URL: {exc}") from None
    if v["smtp_url"]:
        smtp = _split("smtp_url", v["smtp_url"])
        if smtp.scheme not in ("smtp", "smtps") or not smtp.hostname:
            raise SettingsError("smtp_url", "must be smtp://[user:pass@]host:port or smtps://...")
    # Every mail's From header and SMTP envelope sender: a line break in it made every mail
    # fail at the worker (and a header of someone's choosing), an address without a local
    # part or domain was refused by every SMTP server; both only showed up at delivery.
    local, _, domain = parseaddr(v["mail_from"])[1].rpartition("@")
    if not local or not domain or not v["mail_from"].isprintable():
        raise SettingsError(
            "mail_from", 'must be an email address (idp@example.com or "Name <idp@example.com>")'
        )

    for name in (
        "session_idle_minutes",
        "session_absolute_minutes",
        "argon2_time_cost",
        "argon2_parallelism",
        "password_min_length",
        "authorization_code_seconds",
        "access_token_minutes",
        "id_token_minutes",
        "refresh_token_days",
        "lockout_min_threshold",
        "lockout_window_minutes",
        "unlock_link_minutes",
        "login_attempts_per_ip_per_minute",
        "login_attempts_global_per_minute",
        "second_factor_attempts_per_minute",
        "alert_failure_window_minutes",
        "event_retention_days",
        "outbox_lease_seconds",
        "password_reset_link_minutes",
        "email_verification_link_hours",
        "email_requests_per_address_per_hour",
        "email_requests_per_ip_per_hour",
        "unverified_account_days",
        "invitation_days",
        "email_change_link_minutes",
    ):
        if v[name] < 1:
            raise SettingsError(name, "must be at least 1")
    # Durations without a tighter bound below: at most ten years, so that "now + duration"
    # stays a date (Python's datetime ends in 9999; a larger value failed every sign-in,
    # token grant or worker start with OverflowError instead of stopping the start here).
    for name, value in v.items():
        unit = name.rpartition("_")[2]
        if unit in _TEN_YEARS and name not in _OWN_UPPER_BOUND and value > _TEN_YEARS[unit]:
            raise SettingsError(name, f"must be at most {_TEN_YEARS[unit]} (ten years)")
    if v["session_absolute_minutes"] < v["session_idle_minutes"]:
        raise SettingsError("session_absolute_minutes", "must be >= IDP_SESSION_IDLE_MINUTES")
    if v["argon2_memory_kib"] < 8 * v["argon2_parallelism"]:
        raise SettingsError("argon2_memory_kib", "must be at least 8 x IDP_ARGON2_PARALLELISM")
    if v["password_max_length"] < max(64, v["password_min_length"]):
        raise SettingsError("password_max_length", "must be >= 64 and >= IDP_PASSWORD_MIN_LENGTH")
    if v["authorization_code_seconds"] > 600:
        raise SettingsError("authorization_code_seconds", "must be at most 600 (RFC 6749 §4.1.2)")
    if not (
        v["lockout_min_threshold"] <= v["lockout_default_threshold"] <= v["lockout_max_threshold"]
    ):
        raise SettingsError(
            "lockout_default_threshold",
            "must lie between IDP_LOCKOUT_MIN_THRESHOLD and IDP_LOCKOUT_MAX_THRESHOLD",
        )
    if v["event_retention_days"] > 36500:
        raise SettingsError("event_retention_days", "must be at most 36500 (100 years)")
    if v["password_reset_link_minutes"] > 1440:
        raise SettingsError("password_reset_link_minutes", "must be at most 1440 (one day)")
    if v["email_verification_link_hours"] > 168:
        raise SettingsError("email_verification_link_hours", "must be at most 168 (one week)")
    if v["unverified_account_days"] * 24 < v["email_verification_link_hours"]:
        # Otherwise an account could be deleted while its verification link still works.
        raise SettingsError(
            "unverified_account_days",
            "must cover IDP_EMAIL_VERIFICATION_LINK_HOURS (a link outlives its account)",
        )
    if v["unverified_account_days"] > 3650:
        raise SettingsError("unverified_account_days", "must be at most 3650 (ten years)")
    if v["proxy_hops"] < 0:
        raise SettingsError("proxy_hops", "must be 0 or more")
    if v["access_token_alg"] not in ACCESS_TOKEN_ALGS:
        raise SettingsError("access_token_alg", "must be RS256 or ES256")
    v["log_level"] = v["log_level"].upper()
    if v["log_level"] not in _LOG_LEVELS:
        raise SettingsError("log_level", f"must be one of {', '.join(_LOG_LEVELS)}")
    v["log_format"] = v["log_format"].lower()
    if v["log_format"] not in ("text", "json"):
        raise SettingsError("log_format", "must be text or json")
    if v["metrics_token"] and len(v["metrics_token"]) < 32:
        raise SettingsError("metrics_token", "must be at least 32 characters (or empty)")
    if v["secret_key"] and len(v["secret_key"]) < 32:
        raise SettingsError("secret_key", "must be at least 32 characters")
    if not v["redis_prefix"]:
        raise SettingsError("redis_prefix", "must not be empty")
    return Settings(**v)


def ensure_secret_key(settings: Settings) -> Settings:
    """Return settings with a secret key, generating one once into the data dir if none is set
    (CONTRACT.md). A server database needs the servers' ``IDP_SECRET_KEY``: the commands that
    seal something with the key refuse one that cannot open the current signing keys
    (``idp.cli``), so a key made up by a command run elsewhere seals nothing."""
    if settings.secret_key:
        return settings
    path = Path(settings.data_dir) / "secret_key"
    if path.parent.exists() and not path.parent.is_dir():
        raise SettingsError("data_dir", f"{path.parent} is not a directory")
    try:  # every failure names the setting (a data dir that is a file was a bare "Errno 20")
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            _create_secret_key(path)
        key = _read_secret_key(path)
    except OSError as exc:
        raise SettingsError("data_dir", f"cannot keep the secret key in {path}: {exc}") from None
    except UnicodeDecodeError:  # a key file written by hand: it escaped as a codec error
        raise SettingsError("secret_key", f"{path} does not hold UTF-8 text") from None
    if len(key) < 32:
        raise SettingsError("secret_key", f"{path} holds a key shorter than 32 characters")
    return dataclasses.replace(settings, secret_key=key)


def _create_secret_key(path: Path) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process generated it first
        return
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(48))


def _read_secret_key(path: Path) -> str:
    """The key in ``path``. A process starting at the same moment as the one that creates it
    (``idp serve`` and ``idp worker`` at boot) can find the file created but not yet written:
    it failed with "holds a key shorter than 32 characters"; it now waits for the write."""
    for _ in range(40):
        key = path.read_text().strip()
        if key:
            return key
        time.sleep(0.025)  # at most a second in all: the write is one call away
    return key
