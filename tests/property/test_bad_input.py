"""Property: whatever arrives at a form or protocol endpoint (random bytes, random fields,
random credentials, the real client with random parameters) idp answers with a client error or
a normal page, never a 500 or a stack trace, and nothing durable changes: no account, session,
token, consent or client appears.

Runs on the Flask test client (both database backends) so hundreds of requests stay fast.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import OperationalError

from idp.models import Membership, Organization, User, UserSession
from idp.models.clients import Client, Consent
from idp.models.credentials import OneTimeToken, RecoveryCode
from idp.models.tokens import AccessToken, RefreshToken, TokenFamily
from idp.runtime import Runtime
from idp.security import csrf
from tests.helpers import count
from tests.oidc import RegisteredRP, register_client

DURABLE = (
    User,
    Organization,
    Membership,
    UserSession,
    TokenFamily,
    RefreshToken,
    AccessToken,
    Consent,
    Client,
    OneTimeToken,
    RecoveryCode,
)
# RFC 6749 §5.2: error and error_description characters.
ERROR_CHARS = re.compile(r"^[\x20\x21\x23-\x5B\x5D-\x7E]*$")
JSON_ERRORS = ("/token", "/introspect", "/revoke")

FIELDS = (
    "email",
    "password",
    "csrf_token",
    "next",
    "grant_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "refresh_token",
    "client_id",
    "client_secret",
    "scope",
    "token",
    "token_type_hint",
    "access_token",
    "response_type",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "login_hint",
    "id_token_hint",
    "post_logout_redirect_uri",
)
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials", "password")
CONTENT_TYPES = (
    "application/x-www-form-urlencoded",
    "application/json",
    "multipart/form-data; boundary=x",
    "text/plain",
    "application/x-www-form-urlencoded; charset=utf-16",
    "",
)
TARGETS = (
    ("POST", "/login"),
    ("POST", "/token"),
    ("POST", "/introspect"),
    ("POST", "/revoke"),
    ("GET", "/authorize"),
    ("POST", "/authorize"),
    ("GET", "/userinfo"),
    ("POST", "/userinfo"),
    ("GET", "/end-session"),
)
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

text = st.text(max_size=80)


def field_values(rp: RegisteredRP) -> st.SearchStrategy[str]:
    """Random text, and the values that get a request past the first checks."""
    assert rp.client_secret is not None
    return st.one_of(
        text,
        st.sampled_from(
            [rp.client_id, rp.client_secret, rp.redirect_uri, "openid", "code", "S256"]
        ),
        st.sampled_from(GRANT_TYPES),
    )


def forms(rp: RegisteredRP) -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(st.one_of(st.sampled_from(FIELDS), text), field_values(rp), max_size=8)


# What reaches idp in a header value (RFC 9110 §5.5; WSGI decodes the bytes as latin-1):
# no CR, LF or NUL.
header_text = st.text(
    alphabet=st.characters(max_codepoint=0xFF, blacklist_characters="\r\n\x00"),
    max_size=80,
)


def authorizations(rp: RegisteredRP) -> st.SearchStrategy[str | None]:
    assert rp.client_secret is not None
    basic = st.tuples(st.sampled_from([rp.client_id, ""]) | text, text | st.just(rp.client_secret))
    return st.one_of(
        st.none(),
        st.builds(
            lambda u: f"Basic {base64.b64encode(u[0].encode() + b':' + u[1].encode()).decode()}",
            basic,
        ),
        st.builds(lambda t: f"Bearer {t}", header_text),
        st.builds(lambda t: "Basic " + t, header_text),
        header_text,
    )


@pytest.fixture
def rp(runtime: Runtime) -> RegisteredRP:
    return register_client(runtime)


def snapshot(runtime: Runtime) -> dict[str, int]:
    return {model.__name__: count(runtime, model) for model in DURABLE}


def check(response: Any, method: str, path: str) -> None:
    """What every answer to bad input must look like."""
    body = response.get_data()
    assert response.status_code < 500, (method, path, response.status_code, body[:300])
    assert b"Traceback" not in body and b'File "/' not in body, (method, path)
    if path in JSON_ERRORS and response.status_code >= 400:
        assert response.mimetype == "application/json", (path, response.status_code, body[:200])
        data = response.get_json()
        assert ERROR_CHARS.match(data["error"]), data
        assert ERROR_CHARS.match(data.get("error_description", "")), data
        assert "no-store" in response.headers.get("Cache-Control", ""), path
    if path == "/userinfo" and response.status_code in (400, 401, 403):
        assert response.headers["WWW-Authenticate"].startswith("Bearer "), response.headers


def send(
    client: FlaskClient,
    method: str,
    path: str,
    *,
    form: dict[str, str] | None = None,
    body: bytes | None = None,
    content_type: str = "",
    authorization: str | None = None,
) -> Any:
    headers = {"Authorization": authorization} if authorization is not None else {}
    if method == "GET":
        return client.open(path, method="GET", query_string=form or {}, headers=headers)
    if body is not None:
        if content_type:
            headers["Content-Type"] = content_type
        return client.open(path, method=method, data=body, headers=headers)
    return client.open(path, method=method, data=form or {}, headers=headers)


def csrf_token(client: FlaskClient) -> str:
    """The CSRF token a person's browser would hold after opening the sign-in page."""
    page = client.get("/login").get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page[:300]
    return match.group(1)


def issued_tokens(method: str, path: str, response: Any) -> bool:
    """The one legitimate change: the real client asking for a token with its real secret."""
    return (method, path) == ("POST", "/token") and response.status_code == 200


@pytest.mark.parametrize(("method", "path"), TARGETS, ids=[f"{m} {p}" for m, p in TARGETS])
def test_random_fields_are_refused_cleanly_and_change_nothing(
    app: Flask, runtime: Runtime, rp: RegisteredRP, method: str, path: str
) -> None:
    statuses: set[int] = set()

    @SETTINGS
    @given(form=forms(rp), authorization=authorizations(rp), with_csrf=st.booleans())
    def one_request(form: dict[str, str], authorization: str | None, with_csrf: bool) -> None:
        before = snapshot(runtime)
        with app.test_client() as client:
            if with_csrf and method == "POST":
                form = {**form, "csrf_token": csrf_token(client)}
            response = send(client, method, path, form=form, authorization=authorization)
        check(response, method, path)
        statuses.add(response.status_code)
        if path == "/authorize" and response.status_code in (302, 303):
            # Only the registered redirect URI, byte for byte, or idp's own sign-in page.
            location = response.headers["Location"]
            assert location.startswith((rp.redirect_uri + "?", "/login")), location
        if not issued_tokens(method, path, response):
            assert snapshot(runtime) == before, (form, response.status_code)

    one_request()
    assert statuses, "no request was made"


# The other forms a person can send without being signed in (with a made-up link token).
OTHER_FORMS = (
    "/login/code",
    "/login/sso",
    "/login/sso/link",
    "/authorize/consent",
    "/logout",
    "/password/forgot",
    "/password/reset/aBcD1234aBcD1234",
    "/signup",
    "/unlock",
    "/unlock/aBcD1234aBcD1234",
    "/verify-email/aBcD1234aBcD1234",
    "/invitations/aBcD1234aBcD1234/register",
)


@pytest.mark.parametrize("path", OTHER_FORMS)
def test_random_fields_at_the_other_anonymous_forms_are_refused_cleanly(
    app: Flask, runtime: Runtime, rp: RegisteredRP, path: str
) -> None:
    before = snapshot(runtime)

    @settings(SETTINGS, max_examples=20)
    @given(form=forms(rp), with_csrf=st.booleans())
    def one_request(form: dict[str, str], with_csrf: bool) -> None:
        with app.test_client() as client:
            if with_csrf:
                form = {**form, "csrf_token": csrf_token(client)}
            response = send(client, "POST", path, form=form)
        check(response, "POST", path)

    one_request()
    assert snapshot(runtime) == before


@pytest.mark.parametrize(("method", "path"), TARGETS, ids=[f"{m} {p}" for m, p in TARGETS])
def test_random_bytes_are_refused_cleanly_and_change_nothing(
    app: Flask, runtime: Runtime, method: str, path: str
) -> None:
    before = snapshot(runtime)

    @SETTINGS
    @given(body=st.binary(max_size=400), content_type=st.sampled_from(CONTENT_TYPES))
    def one_request(body: bytes, content_type: str) -> None:
        with app.test_client() as client:
            if method == "GET":
                response = client.get(path + "?" + body.decode("latin-1"))
            else:
                response = send(client, method, path, body=body, content_type=content_type)
        check(response, method, path)

    one_request()
    assert snapshot(runtime) == before


# What the properties found, pinned as examples -----------------------------------------


@pytest.mark.parametrize("path", JSON_ERRORS)
@pytest.mark.parametrize(
    "header",
    ["x ", "Basic  ", "Basic " + base64.b64encode(b"\xff:\xfe").decode(), "Basic \u00e9t\u00e9"],
)
def test_an_unreadable_basic_header_is_a_failed_client_authentication(
    client: FlaskClient, path: str, header: str
) -> None:
    """RFC 6749 §5.2: invalid_client with 401 and a challenge (it was a 500)."""
    response = client.post(
        path,
        data={"grant_type": "client_credentials", "token": "t"},
        headers={"Authorization": header},
    )
    assert response.status_code == 401, response.get_data()
    assert response.get_json()["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


@pytest.mark.parametrize(
    "params",
    [
        {"response_type": "c\u00f6de"},
        {"response_type": 'co"de'},
        {"response_type": "code", "redirect_uri": "https://rp.example/c\u00fc"},
    ],
)
def test_an_authorization_request_with_unprintable_input_is_shown_as_invalid(
    client: FlaskClient, rp: RegisteredRP, params: dict[str, str]
) -> None:
    """authlib cannot echo such input in error_description (RFC 6749 §5.2) and failed with a
    500; the person now sees invalid_request, and nothing is redirected."""
    query = {"client_id": rp.client_id, "redirect_uri": rp.redirect_uri, "scope": "openid"}
    response = client.get("/authorize", query_string={**query, **params})
    assert response.status_code == 400, response.status_code
    assert "invalid_request" in response.get_data(as_text=True)
    assert "Location" not in response.headers


def test_an_unsupported_grant_type_is_echoed_only_in_printable_characters(
    client: FlaskClient, rp: RegisteredRP
) -> None:
    assert rp.client_secret is not None
    response = client.post(
        "/token",
        data={"grant_type": 'x"\\\u00e9'},
        auth=(rp.client_id, rp.client_secret),
    )
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "unsupported_grant_type"
    assert ERROR_CHARS.match(body.get("error_description", "")), body


@pytest.mark.parametrize("path", ["/token", "/introspect", "/revoke", "/jwks", "/healthz"])
def test_a_wrong_method_on_a_json_endpoint_is_a_json_405_with_allow(
    client: FlaskClient, path: str
) -> None:
    method = "PUT" if path in JSON_ERRORS else "DELETE"
    response = client.open(path, method=method)
    assert response.status_code == 405
    assert response.mimetype == "application/json"
    assert response.get_json()["error"] == "invalid_request"
    assert response.headers["Allow"]


def test_a_failure_inside_a_json_endpoint_is_a_json_error_without_internals(app: Flask) -> None:
    @csrf.exempt
    def broken() -> str:
        raise RuntimeError("secret internals")

    @csrf.exempt
    def store_down() -> str:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    app.view_functions["oidc.token"] = broken
    app.view_functions["oidc.introspect"] = store_down
    client = app.test_client()
    crashed = client.post("/token", data={"grant_type": "client_credentials"})
    assert crashed.status_code == 500
    assert crashed.get_json()["error"] == "server_error"
    assert b"secret internals" not in crashed.get_data()
    down = client.post("/introspect", data={"token": "t"})
    assert down.status_code == 503
    assert down.get_json()["error"] == "temporarily_unavailable"
    too_large = client.post("/revoke", data={"token": "x" * (2 * 1024 * 1024)})
    assert too_large.status_code == 413
    assert too_large.get_json()["error"] == "invalid_request"
    # Pages stay pages.
    assert client.get("/login", method="DELETE").mimetype == "text/html"


def test_an_access_token_sent_two_ways_is_an_invalid_request(client: FlaskClient) -> None:
    """RFC 6750 §2: one method per request; §3.1: invalid_request, 400."""
    response = client.post(
        "/userinfo", data={"access_token": "a"}, headers={"Authorization": "Bearer b"}
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="idp", error=')
