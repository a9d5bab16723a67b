"""Token-signing keys of the OpenID Connect provider and the JWK Set that publishes them.

- RFC 7517 (JWK) §4, §5: every key is a JWK; the JWK Set at ``jwks_uri`` holds only public
  members (never ``d``, ``p``, ``q``, ``dp``, ``dq``, ``qi``), each with ``use: "sig"``.
- RFC 7518 §3.3 / §3.4: one RS256 key (RSA, 2048 bits, the minimum §3.3 allows) and one ES256
  key (P-256) are current at any time.
- RFC 7638: a key's ``kid`` is the SHA-256 JWK thumbprint of its public key, so a kid names one
  key forever.
- OIDC Core §10.1.1 (rotation): a new key signs at once and is published at once; the key it
  replaces stays in the JWK Set until every token it signed has expired (``max_token_lifetime``
  plus a 5-minute clock-skew margin), then leaves it. Relying parties refetch the JWK Set when
  they meet an unknown ``kid``.

Private keys are stored only encrypted: AES-256-GCM under a key derived from ``IDP_SECRET_KEY``
by HKDF-SHA256 (info ``b"idp signing keys"``), a random 96-bit nonce, the kid as associated data
(a ciphertext cannot be moved to another row), stored as ``"v1:" + base64url(nonce || ct)``.

Caching (several processes share one database):

- *Which key is current* is never cached: it is one SELECT of ``kid`` on the partial unique index
  ``(alg) WHERE retired_at IS NULL`` per signature. A rotation done by ``idp keys rotate`` in
  another process therefore applies to the very next token everywhere, and no process can sign
  with a key that the JWK Set served by a sibling process does not list yet.
- *Decrypted private keys and imported public keys* are cached process-wide by kid (thread-safe,
  bounded). A kid is a thumbprint, so an entry can never go stale. Private entries are also keyed
  by a fingerprint of the derived encryption key: a service holding another secret key never
  reuses them and gets :class:`KeyDecryptionError` as it should.
- *The JWK Set document* is not cached in-process: it is one small SELECT, and a cached copy
  could lag a rotation made elsewhere by a few seconds, during which a relying party fetching it
  would miss the kid of tokens already issued. HTTP caching of the endpoint is the place for it.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, TypeAlias

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeyParameters, KeySet, RSAKey
from sqlalchemy import Connection, bindparam, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp.events import EventTag, record_event
from idp.models.base import utcnow
from idp.models.keys import SigningKey
from idp.security.secretbox import SecretBox, SecretBoxError
from idp.settings import Settings

log = logging.getLogger("idp.provider.keys")

SigningJWK: TypeAlias = RSAKey | ECKey

ALGORITHMS: Final = ("RS256", "ES256")
RSA_KEY_BITS: Final = 2048
EC_CURVE: Final = "P-256"
# Tokens are checked with some leeway for clocks that run behind ours.
CLOCK_SKEW: Final = timedelta(minutes=5)
# RFC 7517 §6.3.2 (RSA) and §6.2.2 (EC) private members, plus oct's "k" (§6.4.1).
PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

_FORMAT = "v1"
_HKDF_INFO = b"idp signing keys"
_ROTATE_ATTEMPTS = 3
_CACHE_LIMIT = 64


# Domain errors ---------------------------------------------------------------------------
class SigningKeyError(Exception):
    """Base of the errors of this module."""


class UnsupportedAlgorithmError(SigningKeyError, ValueError):
    """``alg`` is not one of :data:`ALGORITHMS` (RFC 7518 §3.1 names)."""

    def __init__(self, alg: str) -> None:
        super().__init__(f"unsupported signing algorithm {alg!r}: use {' or '.join(ALGORITHMS)}")
        self.alg = alg


class NoSigningKeyError(SigningKeyError):
    """No key of ``alg`` is current: keys were never created (``ensure_keys``)."""

    def __init__(self, alg: str) -> None:
        super().__init__(f"no current {alg} signing key; `idp keys rotate` creates one")
        self.alg = alg


class KeyDecryptionError(SigningKeyError):
    """The stored private key ``kid`` cannot be opened: another secret key, or a damaged row."""

    def __init__(self, kid: str, reason: str | None = None) -> None:
        message = reason or (
            "signing keys cannot be decrypted with this IDP_SECRET_KEY; restore the secret key "
            "they were created with, or run `idp keys rotate --secret-key-changed` to sign with "
            "new keys"
        )
        super().__init__(f"{message} (key {kid})")
        self.kid = kid


class KeyRotationConflictError(SigningKeyError):
    """Other processes kept rotating ``alg`` at the same moment; nothing was changed."""

    def __init__(self, alg: str) -> None:
        super().__init__(f"could not rotate the {alg} key: concurrent rotations; try again")
        self.alg = alg


# Encryption at rest ----------------------------------------------------------------------
def _associated_data(kid: str) -> str:
    return f"idp signing key {_FORMAT} {kid}"


class _KeyBox:
    """Seals private JWKs with AES-256-GCM under a key derived from the secret key."""

    def __init__(self, secret_key: str) -> None:
        self._box = SecretBox(secret_key, _HKDF_INFO)
        # Names the derived key in the process cache without revealing it.
        self.tag = self._box.tag

    def seal(self, kid: str, plaintext: bytes) -> str:
        return self._box.seal(_associated_data(kid), plaintext)

    def open(self, kid: str, stored: str) -> bytes:
        try:
            return self._box.open(_associated_data(kid), stored)
        except SecretBoxError as exc:
            reason = str(exc)
            raise KeyDecryptionError(
                kid, None if reason.startswith("cannot be decrypted") else f"signing key {reason}"
            ) from None


@functools.lru_cache(maxsize=8)
def _key_box(secret_key: str) -> _KeyBox:
    """The box of a secret key, derived once per process: HKDF on every request (a KeyService
    is built per request) cost more than the rest of building the service. A box holds no state
    besides its derived key, and AES-GCM objects are safe to share between threads."""
    return _KeyBox(secret_key)


class _KeyCache:
    """Imported keys by kid, shared by every service and thread of this process.

    Entries never go stale (a kid is its key's thumbprint); the size bound only keeps a process
    that lives through many rotations from holding every key it ever used.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._private: dict[tuple[str, str], SigningJWK] = {}
        self._public: dict[str, SigningJWK] = {}

    @staticmethod
    def _put(store: dict[Any, SigningJWK], name: Any, key: SigningJWK) -> None:
        if name not in store and len(store) >= _CACHE_LIMIT:
            del store[next(iter(store))]
        store[name] = key

    def private(self, box_tag: str, kid: str) -> SigningJWK | None:
        with self._lock:
            return self._private.get((box_tag, kid))

    def put_private(self, box_tag: str, kid: str, key: SigningJWK) -> None:
        with self._lock:
            self._put(self._private, (box_tag, kid), key)

    def public(self, kid: str) -> SigningJWK | None:
        with self._lock:
            return self._public.get(kid)

    def put_public(self, kid: str, key: SigningJWK) -> None:
        with self._lock:
            self._put(self._public, kid, key)

    def forget(self, kids: Iterable[str]) -> None:
        gone = set(kids)
        with self._lock:
            for name in [n for n in self._private if n[1] in gone]:
                del self._private[name]
            for kid in gone:
                self._public.pop(kid, None)

    def clear(self) -> None:
        with self._lock:
            self._private.clear()
            self._public.clear()


_CACHE = _KeyCache()


def clear_key_cache() -> None:
    """Drop every cached key of this process (tests; never needed for correctness)."""
    _CACHE.clear()


# Key material ----------------------------------------------------------------------------
def check_alg(alg: str) -> str:
    if alg not in ALGORITHMS:
        raise UnsupportedAlgorithmError(alg)
    return alg


def _generate(alg: str) -> SigningJWK:
    """A new key pair whose kid is its RFC 7638 thumbprint."""
    params: KeyParameters = {"alg": alg, "use": "sig"}
    if alg == "RS256":
        return RSAKey.generate_key(RSA_KEY_BITS, parameters=params, private=True, auto_kid=True)
    return ECKey.generate_key(EC_CURVE, parameters=params, private=True, auto_kid=True)


def _import(alg: str, data: dict[str, Any]) -> SigningJWK:
    if alg == "RS256":
        return RSAKey.import_key(data)
    return ECKey.import_key(data)


@dataclass(frozen=True)
class KeyInfo:
    """What an operator sees of one key (``idp keys list``); no key material."""

    kid: str
    alg: str
    created_at: datetime
    activated_at: datetime
    retired_at: datetime | None
    published: bool

    @property
    def current(self) -> bool:
        return self.retired_at is None


@dataclass(frozen=True)
class _Published:
    kid: str
    alg: str
    public_jwk: dict[str, Any]
    activated_at: datetime
    retired_at: datetime | None


# Statements run on every request, built once: building a select and its cache key each time
# cost about as much CPU as executing it. The SQL sent is the same.
CURRENT_KID = (
    select(SigningKey.kid)
    .where(SigningKey.alg == bindparam("alg"), SigningKey.retired_at.is_(None))
    .order_by(SigningKey.activated_at.desc())
    .limit(1)
)
# A key is published while it is current or was retired after the cutoff (see ``retention``);
# statements using it take the cutoff from :meth:`KeyService.published_cutoff`.
PUBLISHED_AT_CUTOFF = or_(
    SigningKey.retired_at.is_(None), SigningKey.retired_at > bindparam("cutoff")
)
_PUBLISHED = select(
    SigningKey.kid,
    SigningKey.alg,
    SigningKey.public_jwk,
    SigningKey.activated_at,
    SigningKey.retired_at,
).where(PUBLISHED_AT_CUTOFF)


# The service -----------------------------------------------------------------------------
class KeyService:
    """Creates, rotates, publishes and hands out the provider's signing keys.

    ``max_token_lifetime`` is the longest lifetime of any token signed with these keys: a retired
    key stays published for that long plus :data:`CLOCK_SKEW`. ``ensure_keys``, ``rotate`` and
    ``purge_expired`` commit their own transactions; call them outside another unit of work.
    """

    def __init__(
        self,
        db: Session,
        secret_key: str,
        *,
        max_token_lifetime: timedelta,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if not secret_key:
            raise ValueError("a secret key is required to protect the signing keys")
        if max_token_lifetime <= timedelta(0):
            raise ValueError("max_token_lifetime must be positive")
        self.db = db
        # Where the current kid is read (default: the session's connection); requests set
        # their autocommit reader (idp.services.provider_services), so that a grant needs no
        # transaction to learn which key signs. Still read on every signature.
        self.reader: Callable[[], Connection] = db.connection
        self._read_current: dict[str, str | None] = {}
        self.max_token_lifetime = max_token_lifetime
        self.clock = clock
        self._box = _key_box(secret_key)

    @classmethod
    def from_settings(
        cls, db: Session, settings: Settings, clock: Callable[[], datetime] = utcnow
    ) -> KeyService:
        """A service keeping retired keys published as long as access or ID tokens live."""
        minutes = max(settings.access_token_minutes, settings.id_token_minutes)
        return cls(
            db, settings.secret_key, max_token_lifetime=timedelta(minutes=minutes), clock=clock
        )

    @property
    def retention(self) -> timedelta:
        """How long a retired key stays in the JWK Set (OIDC Core §10.1.1)."""
        return self.max_token_lifetime + CLOCK_SKEW

    # Creating and rotating -------------------------------------------------------------
    def ensure_keys(self) -> None:
        """Create a current key for every algorithm that has none. Idempotent; commits.

        Processes starting together may all find no key: the partial unique index lets one
        insert win, the others roll back and find the winner's key.
        """
        for alg in ALGORITHMS:
            if self._current_kid(alg) is not None:
                continue
            # End the read transaction before the slow key generation, so the insert starts a
            # fresh one (on SQLite its first statement then waits for the write lock).
            self.db.commit()
            key = _generate(alg)
            self.db.add(self._row(alg, key, self.clock()))
            try:
                self.db.commit()
            except IntegrityError:
                self.db.rollback()
                if self._current_kid(alg) is None:
                    raise
                continue
            self._cache_private(key)
            log.info("created %s signing key %s", alg, key.kid)

    def check_secret_key(self) -> None:
        """Raise :class:`KeyDecryptionError` unless this service's secret key opens every
        current signing key: whoever is about to seal something (a new key, an SSO secret)
        must hold the key the servers use, else the servers could not open it."""
        for alg in ALGORITHMS:
            try:
                self.signing_key(alg)
            except NoSigningKeyError:
                continue

    def rotate(
        self, alg: str | None = None, *, recorded_by: Mapping[str, Any] | None = None
    ) -> list[str]:
        """Make a new key current for ``alg`` (or every algorithm); return the new kids.

        The key it replaces gets ``retired_at`` and stays published (OIDC Core §10.1.1).
        Commits once per algorithm. With ``recorded_by`` (details naming who rotated, e.g.
        :func:`idp.events.by_operator`), each rotation's transaction also records an
        ``oauth:keys:rotate`` event.
        """
        algs = ALGORITHMS if alg is None else (check_alg(alg),)
        return [self._rotate_one(a, recorded_by) for a in algs]

    def _rotate_one(self, alg: str, recorded_by: Mapping[str, Any] | None) -> str:
        key = _generate(alg)
        kid = str(key.kid)
        for _ in range(_ROTATE_ATTEMPTS):
            self.db.commit()  # start from a fresh transaction, see ensure_keys
            now = self.clock()
            self.db.execute(
                update(SigningKey)
                .where(SigningKey.alg == alg, SigningKey.retired_at.is_(None))
                .values(retired_at=now)
                .execution_options(synchronize_session=False)
            )
            self.db.add(self._row(alg, key, now))
            if recorded_by is not None:
                details = {"alg": alg, "kid": kid, **recorded_by}
                record_event(self.db, EventTag.SIGNING_KEYS_ROTATED, details=details)
            try:
                self.db.commit()
            except IntegrityError:
                # Another process made its own new key current meanwhile: retire that one too.
                self.db.rollback()
                continue
            self._cache_private(key)
            log.info("rotated %s signing key: %s is now current", alg, kid)
            return kid
        raise KeyRotationConflictError(alg)

    def purge_expired(self) -> int:
        """Delete retired keys that have left the JWK Set; return how many. Commits."""
        cutoff = self.clock() - self.retention
        expired = SigningKey.retired_at.is_not(None), SigningKey.retired_at <= cutoff
        kids = list(self.db.scalars(select(SigningKey.kid).where(*expired)))
        if kids:
            self.db.execute(
                delete(SigningKey)
                .where(SigningKey.kid.in_(kids), *expired)
                .execution_options(synchronize_session=False)
            )
        self.db.commit()
        _CACHE.forget(kids)
        return len(kids)

    def _row(self, alg: str, key: SigningJWK, now: datetime) -> SigningKey:
        kid = str(key.kid)
        private = json.dumps(key.as_dict(private=True), separators=(",", ":"), sort_keys=True)
        return SigningKey(
            kid=kid,
            alg=alg,
            private_key=self._box.seal(kid, private.encode()),
            public_jwk=key.as_dict(private=False),
            created_at=now,
            activated_at=now,
            retired_at=None,
        )

    def _cache_private(self, key: SigningJWK) -> None:
        _CACHE.put_private(self._box.tag, str(key.kid), key)

    # Signing ---------------------------------------------------------------------------
    def _current_kid(self, alg: str) -> str | None:
        # Core on :attr:`reader`: the ORM execution layer around this one-column SELECT cost
        # more CPU than the query. Never cached: read on every signature.
        if alg in self._read_current:  # read by this request a moment ago (see below)
            return self._read_current.pop(alg)
        kid: str | None = self.reader().execute(CURRENT_KID, {"alg": alg}).scalar()
        return kid

    def remember_current_kid(self, alg: str, kid: str | None) -> None:
        """The current kid of ``alg``, just read from the database by this request together
        with something else (``TokenService.prefetch_grant``): the next signature uses it
        instead of reading it again. Used once; never kept beyond the request."""
        self._read_current[alg] = kid

    def current_kid(self, alg: str = "RS256") -> str | None:
        """The kid that signs ``alg`` tokens now, read from the database (never cached)."""
        return self._current_kid(check_alg(alg))

    def signing_key(self, alg: str = "RS256") -> SigningJWK:
        """The current private key of ``alg`` with its kid, ready for ``joserfc.jwt.encode``.

        Put ``key.kid`` in the JWS header (RFC 7515 §4.1.4) so verifiers pick the right key.
        The returned object is shared across threads: treat it as read-only.
        Raises :class:`NoSigningKeyError`, :class:`KeyDecryptionError`.
        """
        kid = self._current_kid(check_alg(alg))
        if kid is None:
            raise NoSigningKeyError(alg)
        key = _CACHE.private(self._box.tag, kid)
        if key is not None:
            return key
        stored = self.db.scalar(select(SigningKey.private_key).where(SigningKey.kid == kid))
        if stored is None:  # purged between the two reads
            raise NoSigningKeyError(alg)
        key = self._unseal(alg, kid, stored)
        _CACHE.put_private(self._box.tag, kid, key)
        return key

    def _unseal(self, alg: str, kid: str, stored: str) -> SigningJWK:
        plaintext = self._box.open(kid, stored)
        try:
            key = _import(alg, json.loads(plaintext))
        except (JoseError, ValueError, TypeError, KeyError):
            raise KeyDecryptionError(kid, "decrypted signing key is not a valid JWK") from None
        # RFC 7638: the kid must be the thumbprint of the key we are about to sign with.
        if not key.is_private or key.thumbprint() != kid or key.kid != kid:
            raise KeyDecryptionError(kid, "decrypted signing key does not match its kid")
        return key

    # Publishing ------------------------------------------------------------------------
    def _published(self) -> list[_Published]:
        """Current keys, then retired keys still within their retention, newest first."""
        rows = self.db.execute(_PUBLISHED, {"cutoff": self.published_cutoff()}).all()
        published = [_Published(r[0], r[1], r[2], r[3], r[4]) for r in rows]
        published.sort(
            key=lambda p: (p.retired_at is not None, -p.activated_at.timestamp(), p.alg, p.kid)
        )
        return published

    def public_jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The JWK Set document for ``jwks_uri`` (RFC 7517 §5): public members only."""
        return {
            "keys": [
                {name: value for name, value in p.public_jwk.items() if name not in PRIVATE_MEMBERS}
                for p in self._published()
            ]
        }

    def published_cutoff(self) -> datetime:
        """The ``cutoff`` of :data:`PUBLISHED_AT_CUTOFF` now."""
        return self.clock() - self.retention

    def verification_keyset(self) -> KeySet:
        """The published public keys, for verifying our own tokens (id_token_hint, RFC 7662)."""
        keys: list[Key] = [self.public_key(p.kid, p.alg, p.public_jwk) for p in self._published()]
        return KeySet(keys)

    @staticmethod
    def public_key(kid: str, alg: str, public_jwk: dict[str, Any]) -> SigningJWK:
        """The imported public key of a published row (cached by kid)."""
        key = _CACHE.public(kid)
        if key is None:
            public = {k: v for k, v in public_jwk.items() if k not in PRIVATE_MEMBERS}
            key = _import(alg, public)
            _CACHE.put_public(kid, key)
        return key

    def list_keys(self) -> list[KeyInfo]:
        """Every stored key, newest first, with whether it is still published."""
        cutoff = self.clock() - self.retention
        rows = self.db.scalars(
            select(SigningKey).order_by(SigningKey.activated_at.desc(), SigningKey.kid)
        )
        return [
            KeyInfo(
                kid=row.kid,
                alg=row.alg,
                created_at=row.created_at,
                activated_at=row.activated_at,
                retired_at=row.retired_at,
                published=row.retired_at is None or row.retired_at > cutoff,
            )
            for row in rows
        ]
