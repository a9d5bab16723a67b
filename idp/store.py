"""The hot-state store: Redis, or an in-process stand-in, and every key name in one place.

Durable truth lives in the database; what is kept here can be lost (a Redis restart or flush)
and is rebuilt from the database when needed.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote

import redis

from idp.settings import Settings

log = logging.getLogger("idp.store")


TIMEOUTS: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 5}


def connect_redis(settings: Settings, *, warn_in_process: bool = True) -> redis.Redis:
    """A client for ``IDP_REDIS_URL``, or an in-process store when it is unset (saying so,
    unless ``warn_in_process`` is false: a one-shot command, whose store is gone when it
    ends, is not a second process sharing hot state)."""
    if settings.redis_url.startswith(SENTINEL_SCHEME):
        return connect_sentinel(settings.redis_url)
    if settings.redis_url:
        return redis.Redis.from_url(settings.redis_url, health_check_interval=30, **TIMEOUTS)
    import fakeredis

    if warn_in_process:
        log.warning(
            "IDP_REDIS_URL is unset: using an in-process store, correct for one process only; "
            "set IDP_REDIS_URL before running several processes or nodes"
        )
    return fakeredis.FakeRedis()


SENTINEL_SCHEME = "redis+sentinel://"


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, int, str | None]:
    """``redis+sentinel://[:password@]host[:port][,host[:port]...]/service[/db]`` ->
    (sentinels, service name, db, password). The password is the data nodes' (and, as with
    most managed offerings, the sentinels')."""
    rest = url[len(SENTINEL_SCHEME) :]
    netloc, _, path = rest.partition("/")
    credentials, _, hosts = netloc.rpartition("@")
    password = unquote(credentials.partition(":")[2]) or None if credentials else None
    sentinels = []
    for entry in hosts.split(","):
        host, _, port = entry.strip().rpartition(":") if ":" in entry else (entry, "", "26379")
        if not host or not port.isdigit():
            raise ValueError(f"not host:port: {entry!r}")
        sentinels.append((host.strip("[]"), int(port)))
    service, _, db = path.strip("/").partition("/")
    if not service or (db and not db.isdigit()):
        raise ValueError("give /service_name[/db] after the sentinels")
    return sentinels, service, int(db or 0), password


def connect_sentinel(url: str) -> redis.Redis:
    """The current master of a Redis Sentinel service; after a failover the next command is
    sent to the new master (redis-py asks the sentinels again on connection errors)."""
    from redis.sentinel import Sentinel

    sentinels, service, db, password = parse_sentinel_url(url)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        sentinels, sentinel_kwargs={"password": password, **TIMEOUTS}, password=password, **TIMEOUTS
    )
    master: redis.Redis = sentinel.master_for(service, db=db)  # type: ignore[no-untyped-call]
    return master


class Store:
    """Key-prefixed access to the store. Key names are built only by the methods below."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # Key names -------------------------------------------------------------------------
    def session_key(self, token_hash: str) -> str:
        """Cached ``session -> user`` lookup of a browser session (by cookie token hash)."""
        return self.key("session", token_hash)

    def session_touch_key(self, session_id: str) -> str:
        """Throttle for writing a session's last activity to the database."""
        return self.key("session-touch", session_id)

    def session_ended_key(self, token_hash: str) -> str:
        """Set briefly when a session ends, so a request racing the ending cannot put the
        session back into the cache from a database read made before the ending committed."""
        return self.key("session-ended", token_hash)

    def session_seen_key(self, session_id: str) -> str:
        """A session's latest activity (POSIX timestamp), fresher than the database's copy,
        which is written at most once a minute."""
        return self.key("session-seen", session_id)

    def code_key(self, code_digest: str) -> str:
        """An unredeemed authorization code (by SHA-256 of the code)."""
        return self.key("code", code_digest)

    def used_code_key(self, code_digest: str) -> str:
        """A redeemed code, remembered to detect replay; holds its token family id."""
        return self.key("code-used", code_digest)

    def two_factor_enrollment_key(self, session_id: str) -> str:
        """A TOTP seed shown on the enrollment page and not yet confirmed (sealed), by the
        browser session that asked for it."""
        return self.key("2fa-enrollment", session_id)

    def alert_failure_window_key(self, user_id: str) -> str:
        """An open failed-sign-in alert window of a user (its alert is already queued)."""
        return self.key("alert-failures", user_id)

    def alert_success_count_key(self, user_id: str) -> str:
        """Successful-sign-in alerts queued for a user in the current hour (flood cap)."""
        return self.key("alert-successes", user_id)

    # Health ----------------------------------------------------------------------------
    def sso_state_key(self, state_digest: str) -> str:
        """A pending SSO sign-in (connection, nonce, PKCE verifier), by SHA-256 of ``state``;
        taken once by the callback."""
        return self.key("sso-state", state_digest)

    def sso_link_key(self, token_digest: str) -> str:
        """An Entra identity waiting to be linked to the local account with its email, once
        the browser that signed in with Entra proves that account's password."""
        return self.key("sso-link", token_digest)

    def sso_code_key(self, token_digest: str, part: str) -> str:
        """The mailed confirmation code of a pending SSO identity (``part``: "code" holds its
        digest, "attempts" counts guesses, "sends" counts mails)."""
        return self.key("sso-code", part, token_digest)

    def sso_session_key(self, session_id: str) -> str:
        """The Entra tenant and app a browser session signed in through (for logout)."""
        return self.key("sso-session", session_id)

    def entra_sid_key(self, sid: str) -> str:
        """The local sessions started by one Entra session ``sid`` (front-channel logout)."""
        return self.key("entra-sid", sid)

    def entra_metadata_key(self, tenant_id: str) -> str:
        """A tenant's cached OpenID Provider metadata (JSON)."""
        return self.key("entra-meta", tenant_id)

    def entra_jwks_key(self, tenant_id: str) -> str:
        """A tenant's cached signing keys (JWKS JSON)."""
        return self.key("entra-jwks", tenant_id)

    def entra_jwks_refetch_key(self, tenant_id: str) -> str:
        """Set while a JWKS refetch for an unknown ``kid`` is not allowed again."""
        return self.key("entra-jwks-refetch", tenant_id)

    def ping(self) -> bool:
        return bool(self.client.ping())

    def delete_prefix(self) -> None:
        """Remove every key under this prefix (tests and `idp` maintenance only)."""
        batch: list[Any] = []
        for key in self.client.scan_iter(match=self.prefix + "*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                self.client.delete(*batch)
                batch = []
        if batch:
            self.client.delete(*batch)
