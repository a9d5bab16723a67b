"""A relying service signs a user in through idp with authlib's client (code + PKCE), validates
the tokens against the JWKS, and uses userinfo, refresh, introspection, revocation and logout."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask

from idp import create_app
from idp.runtime import Runtime
from tests.conftest import empty_tables, make_settings
from tests.helpers import create_user
from tests.oidc import Browser, RelyingParty, register_client, serve
from tests.services import free_port


@pytest.fixture
def live(tmp_path: Path, database_url: str, redis_url: str) -> Iterator[tuple[str, Runtime]]:
    port = free_port()
    app: Flask = create_app(make_settings(tmp_path, database_url=database_url,
                                          redis_url=redis_url,
                                          issuer=f"http://127.0.0.1:{port}"))
    rt: Runtime = app.extensions["idp"]
    try:
        with serve(app, port) as base:
            yield base, rt
    finally:
        empty_tables(rt)
        rt.store.delete_prefix()
        rt.close()


def test_full_code_flow_with_pkce(live: tuple[str, Runtime]) -> None:
    base, rt = live
    user = create_user(rt)
    rp = RelyingParty(base, register_client(rt))
    token, nonce = rp.sign_in(Browser(base))
    claims = rp.validate_id_token(token["id_token"], nonce)
    assert claims["sub"] == user.id
    assert claims["sid"] and claims["auth_time"] and claims["amr"] == ["pwd"]
    assert claims["email"] == "alice@example.com"
    at = rp.validate_access_token(token["access_token"])
    assert at["sub"] == user.id and at["sid"] == claims["sid"]
    assert rp.userinfo(token["access_token"]).json()["email"] == "alice@example.com"
    assert rp.introspect(token["access_token"]).json()["active"] is True
    refreshed = rp.refresh(token["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] != token["refresh_token"]
    assert rp.revoke(refreshed.json()["refresh_token"]).status_code == 200
    assert rp.introspect(refreshed.json()["access_token"]).json()["active"] is False
    assert requests.get(base + "/healthz", timeout=5).status_code == 200
