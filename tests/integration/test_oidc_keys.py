"""Signing-key rotation as relying services see it (OIDC Core §10.1.1): tokens signed before a
rotation keep validating against the JWKS until they could have expired; then the retired key
leaves the JWKS and its tokens are refused."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from joserfc.errors import JoseError
from sqlalchemy import update

from idp.models import utcnow
from idp.models.keys import SigningKey
from idp.provider.keys import KeyService
from idp.runtime import Runtime
from tests.helpers import create_user
from tests.oidc import Browser, RelyingParty, register_client, token_header

Live = tuple[str, Runtime]


def kid_of(token: str) -> str:
    return str(token_header(token)["kid"])


def published_kids(base: str) -> set[str]:
    response = requests.get(base + "/jwks", timeout=10)
    assert response.status_code == 200
    return {key["kid"] for key in response.json()["keys"]}


def test_a_token_signed_before_a_rotation_validates_until_its_key_leaves_the_jwks(
    live: Live,
) -> None:
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt))
    before, nonce = rp.sign_in(Browser(base))
    old_kid = kid_of(before["access_token"])
    old_kids = published_kids(base)
    assert old_kid in old_kids

    with rt.session_factory() as db:
        keys = KeyService.from_settings(db, rt.settings)
        new_rs256_kid, new_es256_kid = keys.rotate()
        retention = keys.retention

    assert published_kids(base) == old_kids | {new_rs256_kid, new_es256_kid}
    rp.validate_access_token(before["access_token"])
    rp.validate_id_token(before["id_token"], nonce)
    assert rp.userinfo(before["access_token"]).status_code == 200
    assert rp.introspect(before["access_token"]).json()["active"] is True
    after, after_nonce = rp.sign_in(Browser(base))
    assert kid_of(after["access_token"]) == new_rs256_kid != old_kid
    assert kid_of(after["id_token"]) == new_rs256_kid
    refreshed = rp.refresh(before["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert kid_of(refreshed.json()["access_token"]) == new_rs256_kid

    # Every token the old keys signed has expired: they leave the JWKS.
    with rt.session_factory() as db:
        db.execute(
            update(SigningKey)
            .where(SigningKey.kid.in_(old_kids))
            .values(retired_at=utcnow() - retention - timedelta(minutes=1))
        )
        db.commit()

    assert published_kids(base) == {new_rs256_kid, new_es256_kid}
    with pytest.raises(JoseError):
        rp.validate_access_token(before["access_token"])
    userinfo = rp.userinfo(before["access_token"])
    assert userinfo.status_code == 401
    assert 'error="invalid_token"' in userinfo.headers["WWW-Authenticate"]
    assert rp.introspect(before["access_token"]).json() == {"active": False}
    rp.validate_access_token(after["access_token"])
    rp.validate_id_token(after["id_token"], after_nonce)
    assert rp.userinfo(after["access_token"]).status_code == 200


def test_a_retired_key_stays_published_exactly_as_long_as_its_tokens_may_live(
    live: Live,
) -> None:
    base, rt = live
    create_user(rt)
    RelyingParty(base, register_client(rt)).sign_in(Browser(base))  # keys exist
    with rt.session_factory() as db:
        keys = KeyService.from_settings(db, rt.settings)
        old_kid = keys.current_kid("RS256")
        assert old_kid is not None
        new_kid, _ = keys.rotate()
        rotated_at = utcnow()
        lifetime = timedelta(minutes=max(rt.settings.access_token_minutes,
                                         rt.settings.id_token_minutes))

        def published_at(moment_after_rotation: timedelta) -> set[str]:
            later = KeyService.from_settings(
                db, rt.settings, clock=lambda: rotated_at + moment_after_rotation
            )
            return {key["kid"] for key in later.public_jwks()["keys"]}

        assert {old_kid, new_kid} <= published_at(lifetime)
        assert old_kid not in published_at(keys.retention + timedelta(minutes=1))
        assert new_kid in published_at(timedelta(days=365))
