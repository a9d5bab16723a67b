"""Spec rules a relying service relies on at the edges of the OpenID Connect provider:
unsupported request objects, parameters sent without a value, missing response and grant
types, ``prompt=select_account`` and ID token hints whose key was retired. Black-box through
HTTP."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import pytest
import requests
from sqlalchemy import update

from idp.models import utcnow
from idp.models.keys import SigningKey
from idp.provider.keys import KeyService
from idp.runtime import Runtime
from tests.helpers import create_user, csrf_token
from tests.integration.test_oidc_logout import LOGGED_OUT, end_session, signed_in
from tests.integration.test_oidc_rules import (
    assert_oauth_error,
    authorize_code,
    leaves_to,
    token_request,
)
from tests.oidc import Browser, RelyingParty, register_client

Live = tuple[str, Runtime]


def _get(browser: Browser, url: str) -> requests.Response:
    return browser.http.get(url, allow_redirects=False, timeout=10)


# OIDC Core §6.1, §6.2, §3.1.2.6: request objects are not supported ------------------------


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported"),
        ({"request_uri": "https://rp.example/request.jwt"}, "request_uri_not_supported"),
    ],
)
def test_a_request_object_is_refused_at_the_redirect_uri_not_ignored(
    live: Live, extra: dict[str, str], error: str
) -> None:
    base, rt = live
    create_user(rt)
    browser = Browser(base)
    rp = RelyingParty(base, register_client(rt))
    authorize_code(rp, browser)  # signed in: a code would be issued at once if ignored
    url, state, _, _ = rp.authorization_url()

    got = leaves_to(_get(browser, url + "&" + urlencode(extra)), rp.rp.redirect_uri)

    assert got["error"] == error and got["state"] == state and got["iss"] == base
    assert "code" not in got


def test_a_request_object_only_request_is_refused_as_not_supported(live: Live) -> None:
    """RFC 9101 style: client_id, redirect_uri and the request object, nothing else."""
    base, rt = live
    rp = RelyingParty(base, register_client(rt))
    query = {
        "client_id": rp.rp.client_id,
        "redirect_uri": rp.rp.redirect_uri,
        "request_uri": "urn:example:request",
        "state": "s-ro",
    }

    got = leaves_to(_get(Browser(base), base + "/authorize?" + urlencode(query)),
                    rp.rp.redirect_uri)

    assert got["error"] == "request_uri_not_supported" and got["state"] == "s-ro"


# RFC 6749 §3.1: a parameter sent without a value is omitted --------------------------------


@pytest.mark.parametrize("name", ["max_age", "prompt", "login_hint", "ui_locales", "request"])
def test_an_empty_parameter_counts_as_omitted(live: Live, name: str) -> None:
    base, rt = live
    create_user(rt)
    browser = Browser(base)
    rp = RelyingParty(base, register_client(rt))
    authorize_code(rp, browser)
    url, state, _, _ = rp.authorization_url()

    got = leaves_to(_get(browser, f"{url}&{name}="), rp.rp.redirect_uri)

    assert "code" in got and got["state"] == state, got


# RFC 6749 §4.1.2.1, §5.2: missing response_type and grant_type -----------------------------


@pytest.mark.parametrize("response_type", [None, ""])
def test_a_missing_response_type_gets_invalid_request(
    live: Live, response_type: str | None
) -> None:
    base, rt = live
    rp = RelyingParty(base, register_client(rt))
    query = {"client_id": rp.rp.client_id, "redirect_uri": rp.rp.redirect_uri,
             "scope": "openid", "state": "s-rt"}
    if response_type is not None:
        query["response_type"] = response_type
    browser = Browser(base)

    got = leaves_to(_get(browser, base + "/authorize?" + urlencode(query)), rp.rp.redirect_uri)
    assert got["error"] == "invalid_request" and got["state"] == "s-rt" and got["iss"] == base

    unknown = _get(browser, base + "/authorize?" + urlencode({**query, "client_id": "nobody"}))
    assert unknown.status_code == 400 and "Location" not in unknown.headers
    assert "invalid_request" in unknown.text


@pytest.mark.parametrize("grant_type", [None, ""])
def test_a_token_request_without_grant_type_gets_invalid_request(
    live: Live, grant_type: str | None
) -> None:
    base, rt = live
    rp = RelyingParty(base, register_client(rt))
    data = {"code": "x", "redirect_uri": rp.rp.redirect_uri}
    if grant_type is not None:
        data["grant_type"] = grant_type

    assert_oauth_error(token_request(rp, data), 400, "invalid_request")


# OIDC Core §3.1.2.1: prompt=select_account --------------------------------------------------


def test_prompt_select_account_with_none_is_invalid(live: Live) -> None:
    """The form itself: test_oidc_rules.test_prompt_login_shows_the_form_although_signed_in."""
    base, rt = live
    create_user(rt)
    browser = Browser(base)
    rp = RelyingParty(base, register_client(rt))
    rp.sign_in(browser)

    both = rp.authorization_url(prompt="none select_account")[0]

    assert leaves_to(_get(browser, both), rp.rp.redirect_uri)["error"] == "invalid_request"


def test_discovery_lists_select_account(live: Live) -> None:
    base, _ = live
    meta = requests.get(base + "/.well-known/openid-configuration", timeout=10).json()
    assert "select_account" in meta["prompt_values_supported"]


# RP-Initiated Logout 1.0 §2: an old ID token as hint ----------------------------------------


def _retire_all_keys_but_new_ones(rt: Runtime) -> None:
    """Rotate, then let the old keys leave the JWKS (their tokens could all have expired)."""
    with rt.session_factory() as db:
        keys = KeyService.from_settings(db, rt.settings)
        old = [info.kid for info in keys.list_keys()]
        keys.rotate()
        db.execute(
            update(SigningKey)
            .where(SigningKey.kid.in_(old))
            .values(retired_at=utcnow() - keys.retention - timedelta(minutes=1))
        )
        db.commit()


def test_an_id_token_hint_whose_key_left_the_jwks_asks_the_user_first(live: Live) -> None:
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt, post_logout_redirect_uris=[LOGGED_OUT]))
    browser = Browser(base)
    tokens, _ = rp.sign_in(browser)
    _retire_all_keys_but_new_ones(rt)
    params = {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": LOGGED_OUT,
              "state": "st-old"}

    page = end_session(browser, **params)

    assert page.status_code == 200 and "Sign out?" in page.text, page.status_code
    assert "Location" not in page.headers
    assert signed_in(browser)
    confirmed = browser.http.post(base + "/end-session",
                                  data={"csrf_token": csrf_token(page.text), **params},
                                  allow_redirects=False, timeout=10)
    assert confirmed.status_code == 303
    assert not confirmed.headers["Location"].startswith(LOGGED_OUT)  # unverifiable: not followed
    assert not signed_in(browser)
