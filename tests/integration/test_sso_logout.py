"""Signing out of an SSO session: at Entra too (RP-initiated logout), and when Entra's
sign-out page asks (front-channel logout by ``sid``)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from tests.helpers import create_user, csrf_token, events, sign_in
from tests.integration.test_account_access import client_session_id
from tests.oidc import RegisteredRP, register_client
from tests.sso import CLIENT_ID, LOGGED_OUT, TID, World, make_world, query


@pytest.fixture
def world(tmp_path: Path, database_url: str, redis_url: str,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with make_world(tmp_path, database_url, redis_url, monkeypatch) as w:
        yield w


def _logout(w: World) -> str:
    page = w.client.get("/account").get_data(as_text=True)
    response = w.client.post("/logout", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 303
    return response.headers["Location"]


def test_logout_of_an_sso_session_signs_out_at_entra(world: World) -> None:
    assert world.sign_in().status_code == 303
    target = _logout(world)
    assert target.startswith(world.fake.end_session_endpoint(TID) + "?")
    assert query(target) == {"client_id": CLIENT_ID, "post_logout_redirect_uri": LOGGED_OUT}
    assert world.client.get("/account").status_code == 303
    back = requests.get(target, allow_redirects=False, timeout=10)
    assert back.status_code == 302 and back.headers["Location"] == LOGGED_OUT
    assert world.fake.logouts[-1].redirected
    landing = world.client.get("/login/sso/logged-out")
    assert landing.status_code == 303 and "signed_out=1" in landing.headers["Location"]
    assert len(events(world.runtime, "account:logout")) == 1


def test_logout_of_a_password_session_stays_here(world: World) -> None:
    create_user(world.runtime, "alice@example.com")
    assert sign_in(world.client).status_code == 303
    assert _logout(world).endswith("/login?signed_out=1")
    assert world.fake.logouts == []


def test_front_channel_logout_ends_the_sessions_of_that_entra_session(world: World) -> None:
    assert world.sign_in().status_code == 303
    sid = world.fake.id_tokens[-1]["sid"]
    browser = world.client
    world.new_browser()
    assert world.client.get("/login/sso/front-logout?sid=someone-else").status_code == 200
    world.client = browser
    assert world.client.get("/account").status_code == 200
    url = world.fake.front_channel_logout_url(CLIENT_ID, sid)
    world.new_browser()  # an iframe on Entra's page: no cookie of ours
    response = world.client.get(url.removeprefix("http://127.0.0.1:8000"))
    assert response.status_code == 200
    assert f"frame-ancestors {world.fake.authority}" in response.headers[
        "Content-Security-Policy"]
    world.client = browser
    assert world.client.get("/account").status_code == 303
    assert len(events(world.runtime, "account:logout")) == 1


RP_LOGGED_OUT = "https://rp.example/logged-out"


def id_token_of(world: World, rp: RegisteredRP) -> str:
    """The code flow (PKCE) in the world's browser, signed in already: the ID token."""
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    authorize = world.client.get("/authorize?" + urlencode({
        "response_type": "code", "client_id": rp.client_id, "redirect_uri": rp.redirect_uri,
        "scope": "openid", "state": "s", "nonce": "n",
        "code_challenge": challenge.rstrip(b"=").decode(), "code_challenge_method": "S256"}))
    assert authorize.status_code == 302, authorize.get_data(as_text=True)[:300]
    [code] = parse_qs(urlsplit(authorize.headers["Location"]).query)["code"]
    assert rp.client_secret is not None
    basic = base64.b64encode(f"{rp.client_id}:{rp.client_secret}".encode()).decode()
    token = world.client.post("/token", headers={"Authorization": f"Basic {basic}"}, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": rp.redirect_uri,
        "code_verifier": verifier})
    assert token.status_code == 200, token.get_data(as_text=True)
    id_token: str = token.get_json()["id_token"]
    return id_token


def test_rp_initiated_logout_of_an_sso_session_signs_out_at_entra_then_returns_to_the_rp(
    world: World,
) -> None:
    """RP-Initiated Logout 1.0 §3 for a session from SSO: through Entra's sign-out (else the
    next sign-in would go straight through Entra), then on to the relying service's
    registered post-logout URI with its state."""
    rp = register_client(world.runtime, "Shop", post_logout_redirect_uris=[RP_LOGGED_OUT])
    assert world.sign_in().status_code == 303
    params = {"id_token_hint": id_token_of(world, rp),
              "post_logout_redirect_uri": RP_LOGGED_OUT, "state": "st8"}

    done = world.client.get("/end-session?" + urlencode(params))

    assert done.status_code == 303
    target = done.headers["Location"]
    assert target.startswith(world.fake.end_session_endpoint(TID) + "?")
    assert query(target) == {"client_id": CLIENT_ID, "post_logout_redirect_uri": LOGGED_OUT}
    assert world.client.get("/account").status_code == 303
    back = requests.get(target, allow_redirects=False, timeout=10)
    assert back.status_code == 302 and back.headers["Location"] == LOGGED_OUT
    kept = world.client.get_cookie("idp_signed_out_return", path="/login/sso/logged-out")
    assert kept is not None
    landing = world.client.get("/login/sso/logged-out")
    assert landing.status_code == 303
    assert landing.headers["Location"] == RP_LOGGED_OUT + "?state=st8"
    # Once: the way back is forgotten, even with the cookie sent again.
    world.client.set_cookie("idp_signed_out_return", kept.value, path="/login/sso/logged-out")
    again = world.client.get("/login/sso/logged-out")
    assert again.status_code == 303 and "signed_out=1" in again.headers["Location"]


def test_the_way_back_from_entra_is_only_this_browsers(world: World) -> None:
    rp = register_client(world.runtime, "Shop", post_logout_redirect_uris=[RP_LOGGED_OUT])
    assert world.sign_in().status_code == 303
    params = {"id_token_hint": id_token_of(world, rp), "post_logout_redirect_uri": RP_LOGGED_OUT}
    assert world.client.get("/end-session?" + urlencode(params)).status_code == 303
    world.new_browser()  # another browser, without the cookie

    landing = world.client.get("/login/sso/logged-out")

    assert landing.status_code == 303 and "signed_out=1" in landing.headers["Location"]
    world.client.set_cookie("idp_signed_out_return", "made-up", path="/login/sso/logged-out")
    forged = world.client.get("/login/sso/logged-out")
    assert forged.status_code == 303 and "signed_out=1" in forged.headers["Location"]


def test_signing_out_this_device_from_the_devices_page_signs_out_at_entra(
    world: World,
) -> None:
    assert world.sign_in().status_code == 303
    listing = world.client.get("/account/sessions").get_data(as_text=True)
    sid = client_session_id(world.runtime, world.client)  # the form a stale tab would send

    done = world.client.post(f"/account/sessions/{sid}/end",
                             data={"csrf_token": csrf_token(listing)})

    assert done.status_code == 303
    assert done.headers["Location"].startswith(world.fake.end_session_endpoint(TID) + "?")
    assert world.client.get("/account").status_code == 303


def test_an_abandoned_sign_outs_return_is_not_followed_by_a_later_one(world: World) -> None:
    rp = register_client(world.runtime, "Shop", post_logout_redirect_uris=[RP_LOGGED_OUT])
    assert world.sign_in().status_code == 303
    params = {"id_token_hint": id_token_of(world, rp), "post_logout_redirect_uri": RP_LOGGED_OUT}
    assert world.client.get("/end-session?" + urlencode(params)).status_code == 303
    # Entra's page abandoned; later, signed in again, a plain "Sign out" through Entra.
    assert world.sign_in().status_code == 303
    assert _logout(world).startswith(world.fake.end_session_endpoint(TID) + "?")

    landing = world.client.get("/login/sso/logged-out")

    assert landing.status_code == 303 and "signed_out=1" in landing.headers["Location"]
