"""Signing keys: encrypted at rest, rotated without breaking issued tokens, published as JWKS."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from idp.db import make_engine, make_session_factory
from idp.models.base import Base
from idp.models.keys import SigningKey
from idp.provider.keys import (
    CLOCK_SKEW,
    KeyDecryptionError,
    KeyService,
    NoSigningKeyError,
    UnsupportedAlgorithmError,
    clear_key_cache,
)

SECRET = "test-secret-key-0123456789-abcdefghijklmnop"
OTHER_SECRET = "another-secret-key-9876543210-zyxwvutsrqpo"
LIFETIME = timedelta(minutes=60)
PRIVATE = {"d", "p", "q", "dp", "dq", "qi"}
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    clear_key_cache()
    yield
    clear_key_cache()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'keys.sqlite3'}"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    Base.metadata.create_all(engine, tables=[Base.metadata.tables[SigningKey.__tablename__]])
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def db(sessions: sessionmaker[Session]) -> Iterator[Session]:
    with sessions() as session:
        yield session


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def keys(db: Session, clock: FakeClock) -> KeyService:
    return KeyService(db, SECRET, max_token_lifetime=LIFETIME, clock=clock)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rfc7638_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 §3: SHA-256 of the required members, sorted, without whitespace."""
    required = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in required}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


def sign(keys: KeyService, alg: str = "RS256") -> str:
    key = keys.signing_key(alg)
    return jwt.encode({"alg": alg, "kid": key.kid}, {"sub": "alice", "iss": "test"}, key)


def verifies_with_jwks(token: str, jwks: dict[str, Any]) -> bool:
    try:
        jwt.decode(
            token, KeySet.import_key_set({"keys": jwks["keys"]}), algorithms=["RS256", "ES256"]
        )
    except Exception:
        return False
    return True


def published_kids(keys: KeyService) -> list[str]:
    return [k["kid"] for k in keys.public_jwks()["keys"]]


def current_kids(db: Session) -> dict[str, str]:
    rows = db.execute(select(SigningKey.alg, SigningKey.kid).where(SigningKey.retired_at.is_(None)))
    return {alg: kid for alg, kid in rows}


def test_ensure_keys_creates_one_rs256_and_one_es256_key_and_is_idempotent(
    keys: KeyService, db: Session, sessions: sessionmaker[Session]
) -> None:
    keys.ensure_keys()
    first = current_kids(db)
    keys.ensure_keys()
    with sessions() as other:
        KeyService(other, SECRET, max_token_lifetime=LIFETIME).ensure_keys()

    assert set(first) == {"RS256", "ES256"}
    assert current_kids(db) == first
    assert db.scalar(select(func.count()).select_from(SigningKey)) == 2
    assert keys.signing_key("RS256").kid == first["RS256"]
    assert keys.signing_key("ES256").kid == first["ES256"]


def test_processes_racing_to_create_keys_end_with_one_current_key_per_algorithm(
    keys: KeyService, db: Session, sessions: sessionmaker[Session]
) -> None:
    with sessions() as other_db:
        late = KeyService(other_db, SECRET, max_token_lifetime=LIFETIME)
        # The late process looked before the first one committed: it saw no keys at all.
        real_lookup = late._current_kid
        seen: set[str] = set()

        def stale_lookup(alg: str) -> str | None:
            if alg not in seen:
                seen.add(alg)
                return None
            return real_lookup(alg)

        late._current_kid = stale_lookup  # type: ignore[method-assign]
        keys.ensure_keys()
        winners = current_kids(db)
        late.ensure_keys()  # inserts collide with the winners' keys: no error, no second key

        assert late.signing_key("RS256").kid == winners["RS256"]
    assert current_kids(db) == winners
    assert db.scalar(select(func.count()).select_from(SigningKey)) == 2


def test_private_keys_are_stored_encrypted(keys: KeyService, db: Session) -> None:
    keys.ensure_keys()
    for alg in ("RS256", "ES256"):
        private = keys.signing_key(alg).as_dict(private=True)
        stored = db.execute(
            text("SELECT private_key FROM signing_keys WHERE kid = :kid"), {"kid": private["kid"]}
        ).scalar_one()

        assert stored.startswith("v1:")
        assert str(private["d"]) not in stored
        assert '"d"' not in stored
        raw = base64.urlsafe_b64decode(stored[3:] + "=" * (-len(stored[3:]) % 4))
        assert str(private["d"]).encode() not in raw
        assert b'"d"' not in raw


def test_keys_cannot_be_decrypted_with_another_secret_key(
    keys: KeyService, sessions: sessionmaker[Session]
) -> None:
    keys.ensure_keys()
    kid = keys.signing_key("RS256").kid  # now cached in this process, under the right secret

    with sessions() as other_db:
        wrong = KeyService(other_db, OTHER_SECRET, max_token_lifetime=LIFETIME)
        with pytest.raises(KeyDecryptionError) as caught:
            wrong.signing_key("RS256")

    assert caught.value.kid == kid
    assert "cannot be decrypted with this IDP_SECRET_KEY" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_ciphertext_moved_to_another_key_or_damaged_is_refused(
    keys: KeyService, db: Session
) -> None:
    keys.ensure_keys()
    kids = current_kids(db)
    es256_ciphertext = db.scalar(
        select(SigningKey.private_key).where(SigningKey.kid == kids["ES256"])
    )
    clear_key_cache()

    db.execute(
        update(SigningKey)
        .where(SigningKey.kid == kids["RS256"])
        .values(private_key=es256_ciphertext)
    )
    with pytest.raises(KeyDecryptionError):
        keys.signing_key("RS256")

    db.execute(
        update(SigningKey).where(SigningKey.kid == kids["ES256"]).values(private_key="garbage")
    )
    with pytest.raises(KeyDecryptionError, match="unknown format"):
        keys.signing_key("ES256")


def test_token_signed_before_rotation_verifies_against_the_jwks_after_it(
    keys: KeyService,
) -> None:
    keys.ensure_keys()
    old_rs = sign(keys, "RS256")
    old_es = sign(keys, "ES256")
    old_kid = keys.signing_key("RS256").kid

    new_kids = keys.rotate()

    assert len(new_kids) == 2
    assert keys.signing_key("RS256").kid in new_kids
    assert keys.signing_key("RS256").kid != old_kid
    jwks = keys.public_jwks()
    assert verifies_with_jwks(old_rs, jwks)
    assert verifies_with_jwks(old_es, jwks)
    assert verifies_with_jwks(sign(keys, "RS256"), jwks)
    keyset = keys.verification_keyset()
    for token in (old_rs, old_es, sign(keys, "ES256")):
        jwt.decode(token, keyset, algorithms=["RS256", "ES256"])


def test_rotating_one_algorithm_leaves_the_other_current_key_alone(
    keys: KeyService, db: Session
) -> None:
    keys.ensure_keys()
    before = current_kids(db)

    (new_kid,) = keys.rotate("ES256")

    after = current_kids(db)
    assert after == {"RS256": before["RS256"], "ES256": new_kid}
    with pytest.raises(UnsupportedAlgorithmError):
        keys.rotate("HS256")


def test_retired_key_leaves_the_jwks_once_every_token_it_signed_has_expired(
    keys: KeyService, db: Session, clock: FakeClock
) -> None:
    keys.ensure_keys()
    old_kid = keys.signing_key("RS256").kid
    clock.advance(timedelta(days=3))
    keys.rotate("RS256")
    retired_at = db.scalar(select(SigningKey.retired_at).where(SigningKey.kid == old_kid))
    assert retired_at == clock.now

    clock.advance(LIFETIME + CLOCK_SKEW - timedelta(seconds=1))
    assert old_kid in published_kids(keys)
    assert keys.purge_expired() == 0

    clock.advance(timedelta(seconds=2))
    assert old_kid not in published_kids(keys)
    assert old_kid not in [k.kid for k in keys.verification_keyset()]
    assert len(published_kids(keys)) == 2
    assert keys.purge_expired() == 1
    assert db.get(SigningKey, old_kid) is None
    assert keys.signing_key("RS256").kid != old_kid


def test_jwks_lists_current_keys_first_then_retired_keys_newest_first(
    keys: KeyService, db: Session, clock: FakeClock
) -> None:
    keys.ensure_keys()
    first = current_kids(db)["RS256"]
    clock.advance(timedelta(minutes=1))
    (second,) = keys.rotate("RS256")
    clock.advance(timedelta(minutes=1))
    (third,) = keys.rotate("RS256")
    es256 = current_kids(db)["ES256"]

    kids = published_kids(keys)

    assert kids == [third, es256, second, first]
    assert kids == published_kids(keys)


def test_rotation_by_another_process_takes_effect_without_restart(
    keys: KeyService, db_url: str
) -> None:
    keys.ensure_keys()
    before = keys.signing_key("RS256").kid  # decrypted and cached in this process
    old_token = sign(keys)

    script = textwrap.dedent(
        """
        import sys
        from datetime import timedelta
        from idp.db import make_engine, make_session_factory
        from idp.provider.keys import KeyService

        with make_session_factory(make_engine(sys.argv[1]))() as db:
            service = KeyService(db, sys.argv[2], max_token_lifetime=timedelta(minutes=60))
            print(service.rotate("RS256")[0])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, db_url, SECRET],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rotated_kid = done.stdout.strip().splitlines()[-1]

    assert rotated_kid != before
    assert keys.signing_key("RS256").kid == rotated_kid
    assert published_kids(keys)[:1] == [rotated_kid]
    assert before in published_kids(keys)
    assert verifies_with_jwks(old_token, keys.public_jwks())
    assert verifies_with_jwks(sign(keys), keys.public_jwks())


def test_decrypted_keys_are_shared_by_services_of_the_same_process(
    keys: KeyService, sessions: sessionmaker[Session]
) -> None:
    keys.ensure_keys()
    with sessions() as other_db:
        other = KeyService(other_db, SECRET, max_token_lifetime=LIFETIME)
        assert other.signing_key("ES256") is keys.signing_key("ES256")


def test_jwks_never_contains_private_parameters(keys: KeyService) -> None:
    keys.ensure_keys()
    keys.rotate()

    published = keys.public_jwks()["keys"]

    assert len(published) == 4
    for jwk in published:
        assert not PRIVATE & set(jwk)
        assert jwk["use"] == "sig"
        assert (jwk["kty"], jwk["alg"]) in {("RSA", "RS256"), ("EC", "ES256")}
    assert not any(key.is_private for key in keys.verification_keyset())


def test_kids_are_rfc7638_thumbprints_of_the_public_keys(keys: KeyService) -> None:
    keys.ensure_keys()
    keys.rotate()

    for jwk in keys.public_jwks()["keys"]:
        assert jwk["kid"] == rfc7638_thumbprint(jwk)
    for alg in ("RS256", "ES256"):
        public = keys.signing_key(alg).as_dict(private=False)
        assert keys.signing_key(alg).kid == rfc7638_thumbprint(public)


def test_signing_before_any_key_exists_is_a_clear_error(keys: KeyService) -> None:
    with pytest.raises(NoSigningKeyError) as caught:
        keys.signing_key("RS256")
    assert caught.value.alg == "RS256"
    assert keys.public_jwks() == {"keys": []}
    with pytest.raises(UnsupportedAlgorithmError):
        keys.signing_key("none")
