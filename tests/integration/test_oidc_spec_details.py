"""Smaller points of the specs a conforming relying party notices.

- OIDC Core §5.3.2: a claim without a value is left out, not sent as "".
- RFC 7662 §2.2: introspection reports a status and changes nothing; ``token_type`` is an
  RFC 6749 §5.1 access-token type, so a refresh token's answer has none.
- RFC 7515 §4.1.4: the ID token's ``kid`` names the key that signed it, even when a key
  rotation lands in the middle of the token request.
"""

from __future__ import annotations

from typing import Any

import pytest
from joserfc import jwt

from idp.provider.keys import KeyService
from idp.provider.server import IdTokens
from idp.runtime import Runtime
from tests.helpers import create_user
from tests.oidc import Browser, RelyingParty, register_client

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
