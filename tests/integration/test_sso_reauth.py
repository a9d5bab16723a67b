"""Accounts that sign in only with their organization (no password here) confirm sensitive
changes by a fresh sign-in instead of a password: the page sends them to sign in again at
Entra with ``prompt=login`` (OIDC Core §3.1.2.1), and within 5 minutes of that sign-in they may
delete their account. An ordinary sign-in does not count: Entra may complete it silently."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import select
from werkzeug.test import TestResponse

from idp.models import User
from idp.models.accounts import Role
from idp.security import reauth
from tests.fake_entra import REMOVE
from tests.helpers import PASSWORD, create_user, csrf_token, sign_in
from tests.sso import ADA, TID, World, make_world, query


@pytest.fixture
def world(tmp_path: Path, database_url: str, redis_url: str,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with make_world(tmp_path, database_url, redis_url, monkeypatch) as w:
        create_user(w.runtime, "owner@contoso.com", organization="Contoso", role=Role.OWNER)
        assert w.sign_in().status_code == 303  # Ada, just in time, without a password
        yield w


def ada_exists(w: World) -> bool:
    with w.runtime.session_factory() as db:
        return db.scalar(select(User).where(User.email == "ada@contoso.com")) is not None


def _sign_in_again_at_entra(w: World) -> None:
    """The page's "Sign in again": idp asks Entra for a fresh sign-in and comes back."""
    form = w.client.get("/login/sso", query_string={
        "login_hint": "ada@contoso.com", "prompt": "login", "next": "/account/delete"})
    to_entra = w.client.post("/login/sso", data={
        "csrf_token": csrf_token(form.get_data(as_text=True)), "email": "ada@contoso.com",
        "prompt": "login", "next": "/account/delete"})
    assert query(to_entra.headers["Location"])["prompt"] == "login"
    w.fake.next_login(TID, ADA)
    back = w.callback(w.entra(to_entra.headers["Location"]))
    assert back.status_code == 303 and back.headers["Location"] == "/account/delete"


def _delete(w: World) -> TestResponse:
    page = w.client.get("/account/delete").get_data(as_text=True)
    assert 'data-testid="reauth-sso"' in page and 'type="password"' not in page
    return w.client.post("/account/delete", data={"csrf_token": csrf_token(page),
                                                  "password": ""})


def test_a_fresh_sso_sign_in_confirms_deletion(world: World) -> None:
    _sign_in_again_at_entra(world)
    done = _delete(world)
    assert done.status_code == 303 and done.headers["Location"].endswith("/account/deleted")
    assert not ada_exists(world)


def test_an_ordinary_sso_sign_in_does_not_confirm(world: World) -> None:
    """Ada signed in a minute ago, but Entra may have done it silently from its own session
    (as for a relying service's domain_hint): whoever sits at her browser must still prove it
    is her at Entra."""
    refused = _delete(world)
    assert refused.status_code == 400
    assert "sign in again with your organization" in refused.get_data(as_text=True)
    world.new_browser()
    hinted = world.client.get("/login", query_string={"domain_hint": "contoso.com",
                                                      "prompt": "login"})
    # Entra is asked to authenticate again for the relying service, but that sign-in is not
    # idp's re-authentication for a sensitive change
    assert query(hinted.headers["Location"])["prompt"] == "login"
    world.fake.next_login(TID, ADA)
    assert world.callback(world.entra(hinted.headers["Location"])).status_code == 303
    assert _delete(world).status_code == 400
    assert ada_exists(world)


@pytest.mark.parametrize("auth_time", ["an hour ago", "absent"])
def test_a_sign_in_entra_completed_from_its_own_session_does_not_confirm(
        world: World, auth_time: str) -> None:
    """Whoever sits at Ada's browser follows "Sign in again" but drops ``prompt=login`` from
    the address on its way to Entra, which then signs her in silently: the ID token says she
    last authenticated an hour ago (or does not say), so nothing was proven."""
    world.new_browser()
    form = world.client.get("/login/sso", query_string={
        "login_hint": "ada@contoso.com", "prompt": "login", "next": "/account/delete"})
    to_entra = world.client.post("/login/sso", data={
        "csrf_token": csrf_token(form.get_data(as_text=True)), "email": "ada@contoso.com",
        "prompt": "login", "next": "/account/delete"})
    url = to_entra.headers["Location"]
    params = {k: v for k, v in query(url).items() if k != "prompt"}
    stripped = url.split("?", 1)[0] + "?" + urlencode(params)
    world.fake.next_login(TID, ADA)
    world.fake.tamper_next_id_token(
        auth_time=int(time.time()) - 3600 if auth_time == "an hour ago" else REMOVE)
    back = world.callback(world.entra(stripped))
    assert back.status_code == 303  # signed in, as any sign-in
    refused = _delete(world)
    assert refused.status_code == 400
    assert "sign in again with your organization" in refused.get_data(as_text=True)
    assert ada_exists(world)


def test_an_old_sign_in_must_be_renewed_at_entra(world: World,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reauth, "RECENT_SIGN_IN_SECONDS", -1)  # every sign-in is too old
    page = world.client.get("/account/delete").get_data(as_text=True)
    refused = world.client.post("/account/delete", data={"csrf_token": csrf_token(page),
                                                         "password": "anything at all"})
    assert refused.status_code == 400
    assert "sign in again with your organization" in refused.get_data(as_text=True)
    assert ada_exists(world)
    # the page's link asks Entra for a fresh sign-in and comes back to the page
    again = world.client.get("/login/sso", query_string={
        "login_hint": "ada@contoso.com", "prompt": "login", "next": "/account/delete"})
    form = again.get_data(as_text=True)
    assert 'name="prompt" value="login"' in form
    to_entra = world.client.post("/login/sso", data={
        "csrf_token": csrf_token(form), "email": "ada@contoso.com", "prompt": "login",
        "next": "/account/delete"})
    url = to_entra.headers["Location"]
    assert url.startswith(world.fake.authorization_endpoint(TID))
    assert query(url)["prompt"] == "login"


def test_accounts_with_a_password_still_type_it(world: World) -> None:
    world.new_browser()
    assert sign_in(world.client, "owner@contoso.com", PASSWORD).status_code == 303
    page = world.client.get("/account/email").get_data(as_text=True)
    assert 'type="password"' in page and 'data-testid="reauth-sso"' not in page
