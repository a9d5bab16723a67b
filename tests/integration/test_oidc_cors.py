"""CORS for the endpoints a browser-based relying service (a public client with PKCE) calls
itself: discovery, JWKS, token, userinfo (OIDC Core §5.3) and revocation; and none on the
endpoints that are navigations, server-to-server calls or cookie-authenticated pages."""

from __future__ import annotations

import pytest
import requests

from idp.runtime import Runtime
from tests.helpers import create_user
from tests.oidc import Browser, RelyingParty, register_client

Live = tuple[str, Runtime]
SPA = "https://spa.example"


# OIDC Core §5.3 and browser-based clients: CORS ---------------------------------------------


CORS_ENDPOINTS = [
    ("/.well-known/openid-configuration", "GET"),
    ("/jwks", "GET"),
    ("/token", "POST"),
    ("/userinfo", "GET"),
    ("/userinfo", "POST"),
    ("/revoke", "POST"),
]


def _preflight(base: str, path: str, method: str) -> requests.Response:
    return requests.options(base + path, timeout=10, headers={
        "Origin": SPA,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type",
    })


@pytest.mark.parametrize(("path", "method"), CORS_ENDPOINTS)
def test_browser_clients_may_call_the_public_endpoints_from_any_origin(
    live: Live, path: str, method: str
) -> None:
    base, _ = live

    preflight = _preflight(base, path, method)

    assert preflight.status_code == 204, preflight.status_code
    h = preflight.headers
    assert h["Access-Control-Allow-Origin"] == "*"
    assert method in [m.strip() for m in h["Access-Control-Allow-Methods"].split(",")]
    allowed = {v.strip().lower() for v in h["Access-Control-Allow-Headers"].split(",")}
    assert allowed >= {"authorization", "content-type"}
    assert int(h["Access-Control-Max-Age"]) > 0
    assert "Access-Control-Allow-Credentials" not in h and "Set-Cookie" not in h

    answer = requests.request(method, base + path, headers={"Origin": SPA}, timeout=10)
    assert answer.status_code < 500
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in answer.headers
    if path == "/userinfo":
        assert answer.status_code == 401
        assert "WWW-Authenticate" in answer.headers["Access-Control-Expose-Headers"]


def test_a_browser_client_reads_userinfo_with_its_token(live: Live) -> None:
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt, "Spa", public=True))
    tokens, _ = rp.sign_in(Browser(base))

    answer = requests.get(base + "/userinfo", timeout=10, headers={
        "Origin": SPA, "Authorization": f"Bearer {tokens['access_token']}"})

    assert answer.status_code == 200 and answer.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize(
    ("path", "method"),
    [("/introspect", "POST"), ("/account", "GET"), ("/authorize", "GET"),
     ("/end-session", "GET")],
)
def test_cookie_and_server_side_endpoints_get_no_cors(live: Live, path: str, method: str) -> None:
    base, _ = live

    for answer in (
        _preflight(base, path, method),
        requests.request(method, base + path, headers={"Origin": SPA}, timeout=10,
                         allow_redirects=False),
    ):
        cors = [name for name in answer.headers if name.lower().startswith("access-control-")]
        assert cors == [], (path, answer.request.method, cors)
