"""Smaller points of the specs a conforming relying party notices.

- OIDC Core §5.3.2: a claim without a value is left out, not sent as "".
- RFC 7662 §2.2: introspection reports a status and changes nothing; ``token_type`` is an
  RFC 6749 §5.1 access-token type, so a refresh token's answer has none.
- RFC 7515 §4.1.4: the ID token's ``kid`` names the key that signed it, even when a key
  rotation lands in the middle of the token request.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urljoin

import pytest
from joserfc import jwt

from idp.provider.keys import KeyService
from idp.provider.server import IdTokens
from idp.runtime import Runtime
from tests.helpers import PASSWORD, create_user
from tests.oidc import Browser, RelyingParty, redirect_params, register_client

Live = tuple[str, Runtime]


def test_profile_claims_without_a_value_are_left_out(live: Live) -> None:
    base, rt = live
    create_user(rt, last_name="")
    rp = RelyingParty(base, register_client(rt))
    tokens, nonce = rp.sign_in(Browser(base))

    info = rp.userinfo(tokens["access_token"]).json()
    id_claims = rp.validate_id_token(tokens["id_token"], nonce)

    for claims in (info, id_claims):
        assert "family_name" not in claims
        assert claims["given_name"] == "Alice" and claims["name"] == "Alice"


def test_introspecting_a_rotated_refresh_token_changes_nothing(live: Live) -> None:
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt))
    first, _ = rp.sign_in(Browser(base))
    rotated = rp.refresh(first["refresh_token"])
    assert rotated.status_code == 200
    current = rotated.json()

    assert rp.introspect(first["refresh_token"]).json() == {"active": False}

    live_answer = rp.introspect(current["refresh_token"]).json()
    assert live_answer["active"] is True and "token_type" not in live_answer
    assert rp.introspect(current["access_token"]).json()["token_type"] == "Bearer"
    assert rp.refresh(current["refresh_token"]).status_code == 200  # the family lives on


def test_an_id_token_names_the_key_that_signed_it_across_a_rotation(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt))
    header_of = IdTokens.get_encode_header
    rotated: list[str] = []

    def header_then_rotation(self: IdTokens, client: Any) -> dict[str, str]:
        header = header_of(self, client)
        if not rotated:  # `idp keys rotate` commits right after the header was made
            with rt.session_factory() as db:
                rotated.extend(KeyService.from_settings(db, rt.settings).rotate("RS256"))
        return header

    monkeypatch.setattr(IdTokens, "get_encode_header", header_then_rotation)
    tokens, nonce = rp.sign_in(Browser(base))

    assert rotated  # the rotation did happen between the header and the signature
    decoded = jwt.decode(tokens["id_token"], rp.keyset(), algorithms=["RS256"])
    assert decoded.claims["nonce"] == nonce
    assert decoded.header["kid"] != rotated[0]  # signed by the key the header names


def test_revoking_another_clients_token_is_refused_and_revokes_nothing(live: Live) -> None:
    """RFC 7009 §2.1: the token must have been issued to the client asking; otherwise the
    request is refused and the client told. Tokens that are unknown stay a plain 200 (§2.2)."""
    base, rt = live
    create_user(rt)
    shop = RelyingParty(base, register_client(rt, "Shop"))
    wiki = RelyingParty(base, register_client(rt, "Wiki", redirect_uri="https://wiki.example/cb"))
    tokens, _ = shop.sign_in(Browser(base))

    for token in (tokens["refresh_token"], tokens["access_token"]):
        refused = wiki.revoke(token)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
        assert refused.headers["Cache-Control"] == "no-store"

    assert shop.introspect(tokens["access_token"]).json()["active"] is True
    assert shop.introspect(tokens["refresh_token"]).json()["active"] is True
    assert wiki.revoke("not-a-token-at-all").status_code == 200
    assert shop.revoke(tokens["refresh_token"]).status_code == 200
    assert shop.introspect(tokens["access_token"]).json() == {"active": False}


# id_token_hint at the authorization endpoint (OIDC Core §3.1.2.1) ---------------------------


def _code_for(
    rp: RelyingParty, browser: Browser, email: str = "alice@example.com", **params: str
) -> dict[str, str]:
    """Follow an authorization request in ``browser`` (signing in as ``email`` when the form
    shows); the parameters it leaves idp with."""
    url, _, _, verifier = rp.authorization_url(**params)
    response = browser.follow(url, email=email)
    assert response.status_code in (302, 303), response.text[:300]
    assert response.headers["Location"].startswith(rp.rp.redirect_uri)
    return {**redirect_params(response), "verifier": verifier}


def _hint_setup(live: Live) -> tuple[RelyingParty, str, str, Browser]:
    """Alice's ID token (the client's hint), Bob's access token, and Bob's browser."""
    base, rt = live
    create_user(rt)
    create_user(rt, "bob@example.com", first_name="Bob")
    rp = RelyingParty(base, register_client(rt))
    alice, _ = rp.sign_in(Browser(base))
    bobs = Browser(base)
    url, _, _, verifier = rp.authorization_url()
    code = redirect_params(bobs.follow(url, email="bob@example.com"))["code"]
    bob = rp.exchange(code, verifier)
    return rp, alice["id_token"], bob["access_token"], bobs


def test_a_hint_naming_someone_else_with_prompt_none_is_login_required(live: Live) -> None:
    rp, alice_hint, bob_access, bobs = _hint_setup(live)

    got = _code_for(rp, bobs, prompt="none", id_token_hint=alice_hint)

    assert got["error"] == "login_required" and "code" not in got
    # An access token is not an ID token: it names nobody.
    assert _code_for(rp, bobs, prompt="none", id_token_hint=bob_access)["error"] == (
        "login_required"
    )


def test_a_hint_naming_the_signed_in_user_issues_silently(live: Live) -> None:
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt))
    browser = Browser(base)
    tokens, _ = rp.sign_in(browser)

    got = _code_for(rp, browser, prompt="none", id_token_hint=tokens["id_token"])

    assert "code" in got


@pytest.mark.parametrize(
    ("signs_in_as", "gets"), [("alice@example.com", "code"), ("bob@example.com", "error")]
)
def test_a_hint_naming_someone_else_shows_the_sign_in_form_once(
    live: Live, signs_in_as: str, gets: str
) -> None:
    rp, alice_hint, _, bobs = _hint_setup(live)

    got = _code_for(rp, bobs, email=signs_in_as, id_token_hint=alice_hint)

    # Alice on the form: her code. Bob again: not whom the client named, login_required.
    assert gets in got
    if gets == "error":
        assert got["error"] == "login_required"
    else:
        tokens = rp.exchange(got["code"], got["verifier"])
        hinted = jwt.decode(alice_hint, rp.keyset(), algorithms=["RS256"]).claims["sub"]
        assert jwt.decode(tokens["id_token"], rp.keyset()).claims["sub"] == hinted


def test_without_a_session_the_form_is_shown_once_for_a_hint(live: Live) -> None:
    rp, alice_hint, _, _ = _hint_setup(live)
    browser = Browser(rp.base)
    url, _, _, _ = rp.authorization_url(id_token_hint=alice_hint)
    form = browser.http.get(url, allow_redirects=True, timeout=10)
    assert 'name="password"' in form.text

    response = browser.sign_in_form(form, "bob@example.com", PASSWORD)
    while response.status_code in (302, 303) and response.headers["Location"].startswith(
        ("/", rp.base)
    ):
        target = urljoin(response.url, response.headers["Location"])
        response = browser.http.get(target, allow_redirects=False, timeout=10)

    assert 'name="password"' not in response.text  # not a second form
    assert redirect_params(response)["error"] == "login_required"


def test_a_hint_whose_key_left_the_jwks_is_ignored(live: Live) -> None:
    """As at end-session (RP-Initiated Logout 1.0 §2): an old ID token whose key was rotated
    out can be neither trusted nor called forged; silent renewals keep working."""
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt))
    browser = Browser(base)
    tokens, _ = rp.sign_in(browser)
    _, payload, signature = tokens["id_token"].split(".")
    retired = base64.urlsafe_b64encode(
        json.dumps({"alg": "RS256", "typ": "JWT", "kid": "a-key-rotated-out-long-ago"}).encode()
    ).rstrip(b"=").decode()

    got = _code_for(rp, browser, prompt="none",
                    id_token_hint=f"{retired}.{payload}.{signature}")

    assert "code" in got
