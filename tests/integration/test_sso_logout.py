"""Signing out of an SSO session: at Entra too (RP-initiated logout), and when Entra's
sign-out page asks (front-channel logout by ``sid``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.helpers import create_user, csrf_token, events, sign_in
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
