"""``IDP_ACCESS_TOKEN_ALG=ES256``: access tokens (RFC 9068) signed with the current ES256 key
(RFC 7518 §3.4) by every way a token is issued, and honoured like RS256 ones at userinfo,
introspection and revocation; tokens signed before the setting changed stay valid."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from joserfc.errors import JoseError

from idp import create_app
from idp.provider.keys import KeyService
from idp.runtime import Runtime
from tests.helpers import create_user
from tests.integration.conftest import live_server
from tests.oidc import Browser, RelyingParty, register_client, serve, token_header
from tests.services import free_port

Live = tuple[str, Runtime]
ES256_ONLY = ("ES256",)


@pytest.fixture
def es256(tmp_path: Path, database_url: str, redis_url: str) -> Iterator[Live]:
    with live_server(tmp_path, database_url, redis_url, access_token_alg="ES256") as served:
        yield served


def current_kid(rt: Runtime, alg: str) -> str | None:
    with rt.session_factory() as db:
        return KeyService.from_settings(db, rt.settings).current_kid(alg)


def test_a_users_access_tokens_are_es256_and_work_everywhere(es256: Live) -> None:
    base, rt = es256
    create_user(rt)
    rp = RelyingParty(base, register_client(rt))

    tokens, nonce = rp.sign_in(Browser(base))

    access = tokens["access_token"]
    header = token_header(access)
    assert header["alg"] == "ES256" and header["typ"] == "at+jwt"
    assert header["kid"] == current_kid(rt, "ES256")
    claims = rp.validate_access_token(access, algorithms=ES256_ONLY)
    with pytest.raises(JoseError):  # a resource server accepting RS256 only refuses it
        rp.validate_access_token(access)
    rp.validate_id_token(tokens["id_token"], nonce)  # ID tokens keep the client's RS256
    userinfo = rp.userinfo(access)
    assert userinfo.status_code == 200 and userinfo.json()["sub"] == claims["sub"]
    assert rp.introspect(access).json()["active"] is True
    refreshed = rp.refresh(tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert token_header(refreshed.json()["access_token"])["alg"] == "ES256"

    assert rp.revoke(access).status_code == 200
    assert rp.introspect(access).json() == {"active": False}
    assert rp.userinfo(access).status_code == 401


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_client_credentials_tokens_are_es256(es256: Live, method: str) -> None:
    """On PostgreSQL client_secret_basic takes the one-round-trip grant and
    client_secret_post authlib's; on SQLite both go through authlib."""
    base, rt = es256
    service = RelyingParty(base, register_client(rt, "Batch"))
    client_id, secret = service.rp.client_id, service.rp.client_secret
    assert secret is not None
    data = {"grant_type": "client_credentials"}
    auth = None
    if method == "client_secret_basic":
        auth = (client_id, secret)
    else:
        data |= {"client_id": client_id, "client_secret": secret}

    response = requests.post(base + "/token", data=data, auth=auth, timeout=10)

    assert response.status_code == 200, response.text
    access = response.json()["access_token"]
    assert token_header(access)["alg"] == "ES256"
    assert token_header(access)["kid"] == current_kid(rt, "ES256")
    assert service.validate_access_token(access, algorithms=ES256_ONLY)["sub"] == client_id
    assert service.introspect(access).json()["active"] is True


def test_tokens_signed_before_the_switch_stay_valid(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    """A deployment moving to ES256 node by node: each node honours the other's tokens."""
    with live_server(tmp_path, database_url, redis_url) as (base, rt):
        create_user(rt)
        rp = RelyingParty(base, register_client(rt))
        before, _ = rp.sign_in(Browser(base))
        assert token_header(before["access_token"])["alg"] == "RS256"
        switched = create_app(dataclasses.replace(rt.settings, access_token_alg="ES256"))
        try:
            with serve(switched, free_port()) as new_node:
                auth = (rp.rp.client_id, rp.rp.client_secret or "")
                granted = requests.post(
                    new_node + "/token",
                    data={"grant_type": "client_credentials"},
                    auth=auth,
                    timeout=10,
                )
                assert granted.status_code == 200, granted.text
                after = granted.json()["access_token"]
                assert token_header(after)["alg"] == "ES256"

                old_at_new = requests.get(
                    new_node + "/userinfo",
                    headers={"Authorization": f"Bearer {before['access_token']}"},
                    timeout=10,
                )
                assert old_at_new.status_code == 200, old_at_new.text
                introspected = requests.post(
                    new_node + "/introspect",
                    data={"token": before["access_token"]},
                    auth=auth,
                    timeout=10,
                )
                assert introspected.json()["active"] is True
                assert rp.introspect(after).json()["active"] is True  # the old node, new token
                rp.validate_access_token(before["access_token"])
                rp.validate_access_token(after, algorithms=("RS256", "ES256"))
        finally:
            switched.extensions["idp"].close()
