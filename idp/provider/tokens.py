"""Issuing, checking and revoking tokens.

- Access tokens are JWTs per RFC 9068 (``typ: at+jwt``) that relying services validate locally
  against our JWKS; each ``jti`` is recorded so introspection (RFC 7662) and userinfo report
  live status: a revoked token, a revoked family or an ended session makes it inactive.
- Refresh tokens are random, stored as SHA-256, rotated at each use; presenting a rotated one
  again revokes the whole family (RFC 9700 §4.14.2).
- Revocation follows RFC 7009: a client may revoke only its own tokens; the answer is the same
  whether or not the token was known.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from authlib.oauth2.rfc6749 import scope_to_list
from joserfc import jwt
from joserfc.errors import JoseError
from sqlalchemy import (
    Connection,
    Table,
    Text,
    and_,
    bindparam,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from idp.db import HotSelect, HotWrite
from idp.models import Event, User, utcnow
from idp.models.keys import SigningKey
from idp.models.tokens import AccessToken, RefreshToken, TokenFamily
from idp.provider.claims import ClaimValues, logo_organization_id_column
from idp.provider.clients import CLIENTS, ClientService, secret_digest
from idp.provider.keys import (
    CLOCK_SKEW,
    CURRENT_KID,
    PUBLISHED_AT_CUTOFF,
    KeyService,
    SigningJWK,
)
from idp.settings import ACCESS_TOKEN_ALGS as SIGNABLE_ACCESS_TOKEN_ALGS
from idp.settings import Settings

ACCESS_TOKEN_TYPE = "at+jwt"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# Statements of every token request, built once (building a statement and its cache key on
# every request cost about as much CPU as executing it). Issued rows are inserted with Core on
# the session's connection (same transaction): no ORM object and unit-of-work flush per row.
_INSERT_FAMILY = insert(cast(Table, TokenFamily.__table__))
_INSERT_ACCESS_TOKEN = insert(cast(Table, AccessToken.__table__))
_INSERT_EVENT = insert(cast(Table, Event.__table__))


def _one_statement_grant() -> Any:
    """PostgreSQL only: a client-credentials grant's three rows (its token family, its
    access token, its ``oauth:token:grant`` event) in ONE statement, ``WITH family AS (INSERT
    ...), token AS (INSERT ...) INSERT INTO events ...``. Run in autocommit, the statement is
    its own transaction: the three rows are written together or not at all, as when they were
    three INSERTs between ``BEGIN`` and ``COMMIT`` (five round trips, now one). PostgreSQL runs
    every data-modifying WITH part exactly once, and checks the token's foreign key to its
    family at the end of the statement. Parameters: ``f_<column>``, ``a_<column>``,
    ``e_<column>``."""
    families = cast(Table, TokenFamily.__table__)
    tokens = cast(Table, AccessToken.__table__)
    events = cast(Table, Event.__table__)

    def values(table: Table, prefix: str) -> dict[str, Any]:
        return {
            c.name: bindparam(prefix + c.name, type_=c.type)
            for c in table.c
            if not (table is events and c.name == "id")
        }

    family = insert(families).values(values(families, "f_")).cte("new_family")
    token = insert(tokens).values(values(tokens, "a_")).cte("new_token")
    return insert(events).values(values(events, "e_")).add_cte(family, token)


_GRANT_IN_ONE_STATEMENT = HotWrite(_one_statement_grant())


def _authenticated_grant() -> Any:
    """PostgreSQL only: a client-credentials grant by a client authenticated with its secret,
    in ONE round trip (RFC 6749 §4.4, §2.3.1). The statement

    - finds the client by id and the SHA-256 of the presented secret (a lookup by digest, as
      for refresh tokens, RFC 6819 §5.1.4.1.3), confidential clients only (public clients
      have no secret and may not use this grant), registered with every requested scope
      (``scopes``, a list; RFC 6749 §3.3);
    - only then, and only while a key of ``alg`` (the access tokens' algorithm) is current,
      inserts the grant's token family,
      access token and ``oauth:token:grant`` event (data-modifying WITH parts, each feeding
      the next, so all three are written or none);
    - returns one row: how many events it wrote (1 or 0) and the current kid, which then
      signs the token (the signature is not stored, so it is made after the write).

    Run in autocommit, the statement is its own transaction. Parameters: ``client_id``,
    ``secret_hash``, ``scopes``, ``alg``, ``f_<column>``, ``a_<column>``, ``e_<column>``."""
    families = cast(Table, TokenFamily.__table__)
    tokens = cast(Table, AccessToken.__table__)
    events = cast(Table, Event.__table__)
    current_kid = CURRENT_KID.scalar_subquery()

    def insert_from(table: Table, prefix: str, source: Any, name: str, *where: Any) -> Any:
        """``INSERT INTO table SELECT <the prefixed parameters> FROM source [WHERE ...]
        RETURNING <its first key column>``, as a CTE: one row written per row of ``source``."""
        names = [c.name for c in table.c if not (table is events and c.name == "id")]
        values = [bindparam(prefix + n, type_=table.c[n].type) for n in names]
        rows = select(*values).select_from(source).where(*where)
        return insert(table).from_select(names, rows).returning(table.c[0]).cte(name)

    registered_scopes = func.string_to_array(CLIENTS.c.allowed_scopes, " ", type_=ARRAY(Text))
    client = (
        select(CLIENTS.c.client_id)
        .where(
            CLIENTS.c.client_id == bindparam("client_id"),
            CLIENTS.c.secret_hash == bindparam("secret_hash"),
            CLIENTS.c.public.is_(False),
            registered_scopes.contains(bindparam("scopes", type_=ARRAY(Text))),
        )
        .cte("authenticated_client")
    )
    family = insert_from(families, "f_", client, "new_family", current_kid.is_not(None))
    token = insert_from(tokens, "a_", family, "new_token")
    event = insert_from(events, "e_", token, "new_event")
    written = select(func.count()).select_from(event).scalar_subquery()
    return select(written, current_kid).add_cte(client, family, token, event)


_HOT_AUTHENTICATED_GRANT = HotSelect(_authenticated_grant())
_LIVE_STATUS = (
    select(
        AccessToken.revoked_at,
        TokenFamily.revoked_at,
        TokenFamily.user_id,
        TokenFamily.client_id,
    )
    .join(TokenFamily, TokenFamily.id == AccessToken.family_id)
    .where(AccessToken.jti == bindparam("jti"))
)
# The same status and, in the same round trip, the token's signing key if it is published: one
# row whatever exists (NULLs for what does not).
_KEY_AND_LIVE_STATUS = (
    select(
        SigningKey.alg,
        SigningKey.public_jwk,
        TokenFamily.id,
        AccessToken.revoked_at,
        TokenFamily.revoked_at,
        TokenFamily.user_id,
        TokenFamily.client_id,
    )
    .select_from(select(literal(1)).subquery())
    .outerjoin(SigningKey, and_(SigningKey.kid == bindparam("kid"), PUBLISHED_AT_CUTOFF))
    .outerjoin(AccessToken, AccessToken.jti == bindparam("jti"))
    .outerjoin(TokenFamily, TokenFamily.id == AccessToken.family_id)
)
# For userinfo: the same row and, still in that one round trip, what the claims are made of
# (the user's columns and the organization logo's subquery; NULLs when there is no user).
_KEY_LIVE_STATUS_AND_CLAIMS = _KEY_AND_LIVE_STATUS.add_columns(
    User.id,
    User.first_name,
    User.last_name,
    User.email,
    User.email_verified,
    User.avatar_id,
    logo_organization_id_column(),
).outerjoin(User, User.id == TokenFamily.user_id)
# For introspection: the same row and, still in that one round trip, the row of the client
# that presents itself (NULLs when there is no such client).
_KEY_LIVE_STATUS_AND_CLIENT = _KEY_AND_LIVE_STATUS.add_columns(*CLIENTS.c).outerjoin(
    CLIENTS, CLIENTS.c.client_id == bindparam("client_id")
)
# For a client-credentials grant: the presenting client's row and the current kid of the
# access tokens' algorithm, in one round trip (one row; NULLs for a client that does not exist).
_CLIENT_AND_CURRENT_KID = (
    select(*CLIENTS.c, CURRENT_KID.scalar_subquery())
    .select_from(select(literal(1)).subquery())
    .outerjoin(CLIENTS, CLIENTS.c.client_id == bindparam("client_id"))
)
_HOT_KEY_AND_LIVE_STATUS = HotSelect(_KEY_AND_LIVE_STATUS)
_HOT_KEY_LIVE_STATUS_AND_CLAIMS = HotSelect(_KEY_LIVE_STATUS_AND_CLAIMS)
_HOT_KEY_LIVE_STATUS_AND_CLIENT = HotSelect(_KEY_LIVE_STATUS_AND_CLIENT)
_HOT_CLIENT_AND_CURRENT_KID = HotSelect(_CLIENT_AND_CURRENT_KID)
MAX_TOKEN_LENGTH = 8192


# What access tokens may be signed with (IDP_ACCESS_TOKEN_ALG picks the one that signs; tokens
# signed with the other before a change stay valid until they expire).
ACCESS_TOKEN_ALGS = list(SIGNABLE_ACCESS_TOKEN_ALGS)


class _AccessTokenClaims(jwt.JWTClaimsRegistry):
    """joserfc's claim checks (RFC 7519 §4.1), except that ``iat`` may lie up to
    :data:`~idp.provider.keys.CLOCK_SKEW` ahead of this process's clock: on several nodes, a
    token issued by one whose clock runs a second ahead is checked at once by another
    (introspection, userinfo). ``exp`` is checked without leeway."""

    def validate_iat(self, value: object) -> None:
        ahead = isinstance(value, int | float) and not isinstance(value, bool) and value > self.now
        if ahead and cast(float, value) <= self.now + CLOCK_SKEW.total_seconds():
            return
        super().validate_iat(value)


class _VerifiedTokens:
    """The header and claims of tokens whose signature a published key verified (RFC 7515
    §5.2), remembered per process for the last :attr:`size` tokens.

    Relying services present the same access token again and again (introspection, userinfo);
    its signature under one key is a fixed fact, so it is checked once (and its kid and jti
    are not decoded again, see :func:`_peek`). Keyed by the token; the entry holds the ``kid``
    of the key that verified it (a kid never names other key material). Only successes are
    remembered: a failure raises, and nothing is stored. Everything that changes with time
    (expiry, the key still published, revocation) is checked by the caller on every request.
    Callers must not modify the returned dicts. At most ``size`` tokens of at most
    :data:`MAX_TOKEN_LENGTH`: a few MiB per process."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._entries: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def __call__(
        self, token: str, kid: str, key: SigningJWK
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        found = self._entries.get(token)
        if found is not None and found[0] == kid:
            return found[1], found[2]
        decoded = jwt.decode(token, key, algorithms=ACCESS_TOKEN_ALGS)  # raises when invalid
        with self._lock:
            while len(self._entries) >= self.size:
                del self._entries[next(iter(self._entries))]  # the oldest (insertion order)
            self._entries[token] = (kid, decoded.header, decoded.claims)
        return decoded.header, decoded.claims

    def kid_and_jti(self, token: str) -> tuple[str, str] | None:
        """The kid and jti of a token verified before, else None."""
        found = self._entries.get(token)
        if found is None or not isinstance(jti := found[2].get("jti"), str):
            return None
        return found[0], jti


_verified = _VerifiedTokens()


def _claim_values(row: tuple[Any, ...]) -> ClaimValues | None:
    """The claim values in columns 7.. of :data:`_KEY_LIVE_STATUS_AND_CLAIMS`'s row."""
    values = row[7:]
    if values[0] is None:
        return None
    user_id, first_name, last_name, email, email_verified, avatar_id, logo_org_id = values
    return ClaimValues(
        user_id=user_id,
        first_name=first_name,
        last_name=last_name,
        email=email,
        email_verified=bool(email_verified),
        avatar_id=avatar_id,
        logo_organization_id=logo_org_id,
    )


def _client_family_row(family_id: str, client_id: str, scope: str, now: datetime) -> dict[str, Any]:
    """The token family of a client-credentials grant (no user, no session)."""
    return {
        "id": family_id,
        "client_id": client_id,
        "user_id": None,
        "session_id": None,
        "scope": scope,
        "auth_time": None,
        "amr": "",
        "created_at": now,
        "revoked_at": None,
        "revoked_reason": None,
    }


def _access_token_row(jti: str, family_id: str, expires: datetime) -> dict[str, Any]:
    return {"jti": jti, "family_id": family_id, "expires_at": expires, "revoked_at": None}


def _prefixed(prefix: str, row: dict[str, Any]) -> dict[str, Any]:
    return {prefix + name: value for name, value in row.items()}


def _b64url_json(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def _peek(token: str) -> tuple[str, str] | None:
    """The ``kid`` (header) and ``jti`` (payload) of a compact JWS, read WITHOUT verifying
    anything, or None when they are not both strings. Only to look them up; never trusted."""
    if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        return None
    known = _verified.kid_and_jti(token)
    if known is not None:
        return known
    header, payload, _ = token.split(".")
    try:
        kid = _b64url_json(header).get("kid")
        jti = _b64url_json(payload).get("jti")
    except (ValueError, TypeError, AttributeError):  # not base64url, not JSON, not an object
        return None
    return (kid, jti) if isinstance(kid, str) and isinstance(jti, str) else None


@dataclass(frozen=True)
class Principal:
    """Who a token is for: a user in a browser session, as authlib's "user" object."""

    user: User
    session_id: str | None
    auth_time: int
    amr: list[str] = field(default_factory=lambda: ["pwd"])
    family_id: str | None = None

    def get_user_id(self) -> str:
        return self.user.id


@dataclass(frozen=True)
class LiveToken:
    """A valid, active access token."""

    claims: dict[str, Any]
    user_id: str | None
    client_id: str
    # What userinfo needs, when it was asked for (``with_claims``) and read with the status.
    claim_values: ClaimValues | None = None


class NotIssuedToClient(Exception):
    """A client asked to revoke a token that was issued to another client (RFC 7009 §2.1)."""


class TokenService:
    def __init__(
        self,
        db: Session,
        keys: KeyService,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
        reader: Callable[[], Connection] | None = None,
        *,
        one_statement_grants: bool = False,
    ) -> None:
        """``reader`` gives the connection the read-only checks run on (default: the
        session's); the request passes an autocommit one (:func:`idp.runtime.request_reader`).

        ``one_statement_grants`` (PostgreSQL, with an autocommit ``reader``): a
        client-credentials grant's rows are not written by :meth:`issue` but kept in
        :attr:`pending_grant` until :meth:`write_grant` writes them with the grant's event in
        one statement (see :func:`_one_statement_grant`)."""
        self.db = db
        self.reader = reader or db.connection
        self.one_statement_grants = one_statement_grants and reader is not None
        # The family and access-token rows an unwritten client-credentials grant needs.
        self.pending_grant: dict[str, Any] | None = None
        # Status rows this request already read, by (kid, jti) (see prefetch_introspection).
        self._statuses: dict[tuple[str, str], tuple[Any, ...]] = {}
        self.keys = keys
        self.issuer = settings.issuer
        self.access_lifetime = timedelta(minutes=settings.access_token_minutes)
        # RFC 9068 §2.1: access tokens are signed with RS256 unless the operator chose ES256.
        self.access_token_alg = settings.access_token_alg
        self.refresh_lifetime = timedelta(days=settings.refresh_token_days)
        self.clock = clock

    # Issuing -----------------------------------------------------------------------------
    def _family(self, client_id: str, principal: Principal | None, scope: str) -> str:
        """The principal's family, created on first use (one per authorization code)."""
        family_id = principal.family_id if principal else None
        if family_id and self.db.get(TokenFamily, family_id) is not None:
            return family_id
        family_id = family_id or str(uuid.uuid4())
        self.db.flush()  # what the caller added goes first, as before (a no-op when clean)
        self.db.connection().execute(
            _INSERT_FAMILY,
            {
                "id": family_id,
                "client_id": client_id,
                "user_id": principal.user.id if principal else None,
                "session_id": principal.session_id if principal else None,
                "scope": scope,
                "auth_time": (
                    datetime.fromtimestamp(principal.auth_time, UTC) if principal else None
                ),
                "amr": " ".join(principal.amr) if principal else "",
                "created_at": self.clock(),
                "revoked_at": None,
                "revoked_reason": None,
            },
        )
        return family_id

    def issue(
        self,
        client_id: str,
        principal: Principal | None,
        scope: str,
        *,
        grant_type: str,
        include_refresh_token: bool,
        refresh_scope: str | None = None,
    ) -> dict[str, Any]:
        """The token response (RFC 6749 §5.1). The caller commits (or, for a pending
        client-credentials grant, calls :meth:`write_grant`).

        ``refresh_scope``: the scope of the new refresh token when it is not the access
        token's (a refresh asking for less keeps the refresh token's scope, RFC 6749 §6)."""
        deferred = principal is None and self.one_statement_grants
        family_id = str(uuid.uuid4()) if deferred else self._family(client_id, principal, scope)
        now = self.clock()
        expires = now + self.access_lifetime
        jti = uuid.uuid4().hex
        response = self._access_token_response(client_id, principal, scope, jti, now, expires)
        token_row = _access_token_row(jti, family_id, expires)
        if deferred:
            self.pending_grant = {
                "family": _client_family_row(family_id, client_id, scope, now),
                "token": token_row,
            }
        else:
            self.db.connection().execute(_INSERT_ACCESS_TOKEN, token_row)
        kept = scope if refresh_scope is None else refresh_scope
        if include_refresh_token and principal is not None and "offline_access" in kept.split():
            refresh = secrets.token_urlsafe(32)
            self.db.add(
                RefreshToken(
                    token_hash=token_digest(refresh),
                    family_id=family_id,
                    scope=kept,
                    created_at=now,
                    expires_at=now + self.refresh_lifetime,
                )
            )
            response["refresh_token"] = refresh
        return response

    def _access_token_response(
        self,
        client_id: str,
        principal: Principal | None,
        scope: str,
        jti: str,
        now: datetime,
        expires: datetime,
    ) -> dict[str, Any]:
        """RFC 6749 §5.1 with an RFC 9068 access token signed by the current key of
        :attr:`access_token_alg`."""
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": principal.user.id if principal else client_id,
            "aud": client_id,
            "client_id": client_id,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": jti,
            "scope": scope,
        }
        if principal is not None:
            claims["auth_time"] = principal.auth_time
            claims["amr"] = principal.amr
            if principal.session_id:
                claims["sid"] = principal.session_id
        alg = self.access_token_alg
        key = self.keys.signing_key(alg)
        access_token = jwt.encode(
            {"alg": alg, "typ": ACCESS_TOKEN_TYPE, "kid": key.kid}, claims, key
        )
        return {
            "token_type": "Bearer",
            "access_token": access_token,
            "expires_in": int(self.access_lifetime.total_seconds()),
            "scope": scope,
        }

    def grant_authenticated(
        self, client_id: str, secret: str, scope: str, event: dict[str, Any]
    ) -> dict[str, Any] | None:
        """A client-credentials grant (RFC 6749 §4.4) for ``client_id`` presenting ``secret``,
        written with ``event`` (:func:`idp.events.event_values`) in one round trip
        (:func:`_authenticated_grant`, PostgreSQL with one-statement grants only), then signed.

        Returns the token response, or None when nothing was written: the client is unknown,
        public, presented another secret or asked for a scope it was not registered with, or
        no key is current. The caller then goes the usual way (reading the client, authlib),
        which refuses with the right error."""
        if not self.one_statement_grants:
            return None
        now = self.clock()
        expires = now + self.access_lifetime
        jti = uuid.uuid4().hex
        family_id = str(uuid.uuid4())
        params = {
            "client_id": client_id,
            "secret_hash": secret_digest(secret),
            "scopes": scope_to_list(scope),
            "alg": self.access_token_alg,
            "e_occurred_at": now,
            **_prefixed("e_", event),
            **_prefixed("f_", _client_family_row(family_id, client_id, scope, now)),
            **_prefixed("a_", _access_token_row(jti, family_id, expires)),
        }
        written, kid = _HOT_AUTHENTICATED_GRANT.one(self.reader(), params)
        if not written or kid is None:
            return None
        self.keys.remember_current_kid(self.access_token_alg, kid)
        return self._access_token_response(client_id, None, scope, jti, now, expires)

    def write_grant(self, event: dict[str, Any]) -> None:
        """Write the pending client-credentials grant: its family, its access token and
        ``event`` (:func:`idp.events.event_values`). On PostgreSQL with nothing else pending
        in the session, one autocommit statement; otherwise INSERTs in the session's
        transaction, committed here."""
        pending, self.pending_grant = self.pending_grant, None
        assert pending is not None
        if not self.db.in_transaction():
            params = {"e_occurred_at": self.clock(), **_prefixed("e_", event)}
            params.update(_prefixed("f_", pending["family"]))
            params.update(_prefixed("a_", pending["token"]))
            _GRANT_IN_ONE_STATEMENT.execute(self.reader(), params)
            return
        connection = self.db.connection()
        connection.execute(_INSERT_FAMILY, pending["family"])
        connection.execute(_INSERT_ACCESS_TOKEN, pending["token"])
        connection.execute(_INSERT_EVENT, {"occurred_at": self.clock(), **event})
        self.db.commit()

    # Refresh tokens ------------------------------------------------------------------------
    def claim_refresh_token(self, token: str, client_id: str) -> RefreshToken | None:
        """Use a refresh token once: mark it used atomically and return it, or None.

        Of two concurrent uses only one claims the token; the other (like any later use of a
        rotated token) is a reuse and revokes the family, committed at once."""
        row = self.find_refresh_token(token, client_id)
        if row is None:
            return None
        claimed = self.db.execute(
            update(RefreshToken)
            .where(RefreshToken.id == row.id, RefreshToken.used_at.is_(None))
            .values(used_at=self.clock())
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            self.db.rollback()
            self.revoke_family(row.family_id, "refresh_token_reuse")
            self.db.commit()
            return None
        return row

    def find_refresh_token(
        self, token: str, client_id: str, *, detect_reuse: bool = True
    ) -> RefreshToken | None:
        """The live refresh token, or None. A rotated token presented again revokes its
        family (and commits that revocation), unless ``detect_reuse`` is false: introspection
        (RFC 7662) only reports a status; reuse is a use at the token endpoint (RFC 9700
        §4.14.2)."""
        if not token or len(token) > 200:
            return None
        row = self.db.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == token_digest(token))
        )
        if row is None:
            return None
        family = self.db.get(TokenFamily, row.family_id)
        if family is None or family.client_id != client_id:
            return None
        if row.used_at is not None:
            if detect_reuse:
                self.revoke_family(family.id, "refresh_token_reuse")
                self.db.commit()
            return None
        if family.revoked_at is not None or row.expires_at <= self.clock():
            return None
        return row

    # Revocation ----------------------------------------------------------------------------
    def revoke_family(self, family_id: str, reason: str) -> None:
        self.db.execute(
            update(TokenFamily)
            .where(TokenFamily.id == family_id, TokenFamily.revoked_at.is_(None))
            .values(revoked_at=self.clock(), revoked_reason=reason)
        )

    def revoke(self, token: str, client_id: str) -> None:
        """RFC 7009 §2.1: revoke a refresh token (and its family) or an access token issued
        to ``client_id``. Unknown and invalid tokens are ignored (§2.2); a token issued to
        another client raises :class:`NotIssuedToClient` ("the request is refused and the
        client is informed of the error"), and nothing is revoked."""
        row = self.db.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == token_digest(token))
        )
        if row is not None:
            family = self.db.get(TokenFamily, row.family_id)
            if family is not None and family.client_id != client_id:
                raise NotIssuedToClient
            if family is not None:
                self.revoke_family(family.id, "revoked_by_client")
            return
        claims = self._decode(token)
        if claims is None:
            return
        if claims.get("client_id") != client_id:
            raise NotIssuedToClient
        self.db.execute(
            update(AccessToken)
            .where(AccessToken.jti == str(claims.get("jti")), AccessToken.revoked_at.is_(None))
            .values(revoked_at=self.clock())
        )

    # Checking ------------------------------------------------------------------------------
    def _decode(
        self, token: str, key: tuple[str, SigningJWK] | None = None
    ) -> dict[str, Any] | None:
        """Claims of an access token we signed and that has not expired, else None.

        ``key`` is the ``(kid, key)`` of the published key the token names (its signature
        checks are remembered, see :class:`_VerifiedTokens`); without it every published key
        is tried."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        try:
            if key is not None:
                header, verified = _verified(token, *key)
            else:
                decoded = jwt.decode(
                    token, self.keys.verification_keyset(), algorithms=ACCESS_TOKEN_ALGS
                )
                header, verified = decoded.header, decoded.claims
            if header.get("typ", "").lower() not in (ACCESS_TOKEN_TYPE, "application/at+jwt"):
                return None
            _AccessTokenClaims(
                now=int(self.clock().timestamp()),
                iss={"essential": True, "value": self.issuer},
                exp={"essential": True},
                jti={"essential": True},
            ).validate(verified)
        except (JoseError, ValueError, TypeError):
            return None
        claims: dict[str, Any] = dict(verified)
        return claims

    def live_access_token(self, token: str, *, with_claims: bool = False) -> LiveToken | None:
        """The token if it is valid and still active (not revoked, family and session live).

        One query reads the published key named by the token's ``kid`` together with the live
        status of its ``jti`` (both read unverified, only to look them up); the signature and
        claims are then checked exactly as :meth:`_decode` does with all published keys (joserfc
        picks the key by ``kid`` anyway), and the status counts only for a token that passed.
        ``with_claims`` (userinfo) reads the user's claim values in that same query: one round
        trip for the whole answer. The query runs on :attr:`reader` (autocommit in requests)."""
        peeked = _peek(token)
        if peeked is None:  # no kid or jti to look up: the general path decides
            return self._live_access_token(token)
        kid, jti = peeked
        prefetched = None if with_claims else self._statuses.pop((kid, jti), None)
        row: tuple[Any, ...] = prefetched or (
            _HOT_KEY_LIVE_STATUS_AND_CLAIMS if with_claims else _HOT_KEY_AND_LIVE_STATUS
        ).one(self.reader(), {"kid": kid, "jti": jti, "cutoff": self.keys.published_cutoff()})
        alg, public_jwk = row[0], row[1]
        if alg is None:  # no published key of that kid: nothing can verify the token
            return None
        claims = self._decode(token, (kid, self.keys.public_key(kid, alg, public_jwk)))
        if claims is None:
            return None
        if str(claims["jti"]) != jti:  # cannot happen: the payload verified is the one peeked
            return self._live_access_token(token)
        # Ending a session revokes its families, so the family's state is the live status.
        if row[2] is None or row[3] is not None or row[4] is not None:
            return None
        values = _claim_values(row) if with_claims else None
        return LiveToken(claims=claims, user_id=row[5], client_id=row[6], claim_values=values)

    def prefetch_introspection(self, token: str, client_id: str, clients: ClientService) -> None:
        """Read, in one query, what an introspection by ``client_id`` will need: the token's
        key and live status, and the client's row for its authentication (handed to
        ``clients``). Without it the request makes two round trips (client, then token).

        Nothing is decided here: authlib authenticates the client with the row afterwards, and
        :meth:`live_access_token` verifies the token before its status counts, as always. Both
        were read from the database by this request: nothing is cached beyond it."""
        if len(client_id) > 64:
            return
        peeked = _peek(token)
        if peeked is None:
            return
        kid, jti = peeked
        row = _HOT_KEY_LIVE_STATUS_AND_CLIENT.one(
            self.reader(),
            {
                "kid": kid,
                "jti": jti,
                "cutoff": self.keys.published_cutoff(),
                "client_id": client_id,
            },
        )
        self._statuses[(kid, jti)] = row
        columns = dict(zip(CLIENTS.c.keys(), row[7:], strict=True))
        clients.remember(client_id, columns if columns["id"] is not None else None)

    def prefetch_grant(self, client_id: str, clients: ClientService) -> None:
        """Read, in one query, what a client-credentials grant by ``client_id`` will need: the
        client's row for its authentication (handed to ``clients``) and the kid that signs
        access tokens now (handed to :attr:`keys`). Without it those are two round trips.
        Nothing is decided here and nothing outlives the request (see
        :meth:`prefetch_introspection`)."""
        if len(client_id) > 64:
            return
        row = _HOT_CLIENT_AND_CURRENT_KID.one(
            self.reader(), {"client_id": client_id, "alg": self.access_token_alg}
        )
        columns = dict(zip(CLIENTS.c.keys(), row[:-1], strict=True))
        clients.remember(client_id, columns if columns["id"] is not None else None)
        self.keys.remember_current_kid(self.access_token_alg, row[-1])

    def _live_access_token(self, token: str) -> LiveToken | None:
        """:meth:`live_access_token` in two steps: verify with every published key, then read
        the status."""
        claims = self._decode(token)
        if claims is None:
            return None
        row = self.reader().execute(_LIVE_STATUS, {"jti": str(claims["jti"])}).one_or_none()
        # Ending a session revokes its families, so the family's state is the live status.
        if row is None or row[0] is not None or row[1] is not None:
            return None
        return LiveToken(claims=claims, user_id=row[2], client_id=row[3])

    def introspect(self, token: str, client_id: str) -> dict[str, Any]:
        """RFC 7662 §2.2. Only the client the token was issued to learns about it."""
        live = self.live_access_token(token)
        if live is not None and live.client_id == client_id:
            c = live.claims
            body: dict[str, Any] = {
                k: c[k]
                for k in (
                    "scope",
                    "client_id",
                    "sub",
                    "aud",
                    "iss",
                    "exp",
                    "iat",
                    "jti",
                    "sid",
                    "auth_time",
                )
                if k in c
            }
            return {"active": True, "token_type": "Bearer", **body}
        row = self.find_refresh_token(token, client_id, detect_reuse=False) if token else None
        if row is not None:
            family = self.db.get(TokenFamily, row.family_id)
            assert family is not None
            # No token_type: RFC 7662 §2.2 means an RFC 6749 §5.1 access token type.
            return {
                "active": True,
                "scope": row.scope,
                "client_id": family.client_id,
                "sub": family.user_id,
                "exp": int(row.expires_at.timestamp()),
                "iat": int(row.created_at.timestamp()),
                "iss": self.issuer,
            }
        return {"active": False}
