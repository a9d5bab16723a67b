"""Self-tests of the fake Entra ID: it must behave like Entra before the app is tested
against it. Driven with ``requests`` (the raw protocol), ``msal`` (Microsoft's own client) and
``joserfc`` (an independent JWT verifier)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msal
import pytest
import requests
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from tests.fake_entra import (
    REMOVE,
    ClientCertificate,
    FakeEntra,
    parse_form_post,
    pkce_pair,
    run_fake_entra,
)
from tests.fake_entra.jose import parse

TID = "3f2a1c9e-5b7d-4e21-9a8c-1d2e3f4a5b6c"
OTHER_TID = "8c7b6a59-4d3e-4f2a-8b1c-0e9d8c7b6a59"
CLIENT_ID = "6731de76-14a6-49ae-97bc-6eba6914391e"
OTHER_CLIENT_ID = "0d9e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
SECRET = "cl13nt~s3cret.value"
REDIRECT = "https://idp.test/sso/entra/callback"
LOGOUT_DONE = "https://idp.test/signed-out"
ADA = "a1b2c3d4-0000-4000-8000-00000000ada0"
GRACE = "a1b2c3d4-0000-4000-8000-000000009ace"
GUEST = "a1b2c3d4-0000-4000-8000-000000000999"
MALLORY = "b1b2c3d4-0000-4000-8000-00000000ba11"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$")
GRAPH_DEFAULT = ["https://graph.microsoft.com/.default"]


@dataclass
class World:
    fake: FakeEntra
    cert: ClientCertificate

    @property
    def verify(self) -> str:
        return self.fake.ca_bundle_path


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    cert = ClientCertificate.generate()
    with run_fake_entra() as fake:
        # requests lets REQUESTS_CA_BUNDLE override a Session's verify=, so the environment
        # is how clients (msal, the app) are pointed at the fake's CA.
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
        fake.add_tenant(TID, ["contoso.com", "contoso.example"], "contoso.com",
                        display_name="Contoso")
        fake.add_tenant(OTHER_TID, ["fabrikam.com"])
        fake.register_app(TID, CLIENT_ID, client_secret=SECRET,
                          certificate=cert.certificate_pem,
                          redirect_uris=[REDIRECT, LOGOUT_DONE],
                          front_channel_logout_url="https://idp.test/sso/entra/front-logout")
        fake.register_app(TID, OTHER_CLIENT_ID, client_secret="other",
                          redirect_uris=["https://other.test/cb"], graph_roles=())
        fake.add_user(TID, ADA, "ada@contoso.com", "ada@contoso.com", "Ada Lovelace",
                      email_verified_domain_owner=True)
        fake.add_user(TID, GRACE, "grace@contoso.com", "grace@contoso.com", "Grace Hopper")
        fake.add_user(TID, GUEST, "bob@fabrikam.com", "bob_fabrikam.com#EXT#@contoso.com",
                      "Bob Guest", guest=True, home_tenant_id=OTHER_TID)
        fake.add_user(OTHER_TID, MALLORY, "ada@contoso.com", "mallory@fabrikam.com",
                      "Mallory", email_verified_domain_owner=False)
        yield World(fake, cert)


def authorize(w: World, tenant: str = TID, **overrides: Any) -> requests.Response:
    params: dict[str, Any] = {
        "client_id": CLIENT_ID, "response_type": "code", "redirect_uri": REDIRECT,
        "response_mode": "form_post", "scope": "openid profile email",
        "state": "state-123", "nonce": "nonce-456",
    }
    params.update(overrides)
    params = {k: v for k, v in params.items() if v is not None}
    return requests.get(w.fake.authorization_endpoint(tenant), params=params,
                        verify=w.verify, allow_redirects=False, timeout=10)


def sign_in(w: World, oid: str = ADA, tenant: str = TID, **overrides: Any) -> tuple[str, str]:
    """Run the front channel for ``oid``; return (code, code_verifier)."""
    verifier, challenge = pkce_pair()
    w.fake.next_login(tenant, oid)
    response = authorize(w, tenant, code_challenge=challenge, code_challenge_method="S256",
                         **overrides)
    assert response.status_code == 200, response.text
    form = parse_form_post(response.text)
    return form.fields["code"], verifier


def redeem(w: World, code: str, verifier: str | None, tenant: str = TID,
           auth: tuple[str, str] | None = None, **overrides: Any) -> requests.Response:
    data: dict[str, Any] = {
        "grant_type": "authorization_code", "client_id": CLIENT_ID, "code": code,
        "redirect_uri": REDIRECT, "code_verifier": verifier, "client_secret": SECRET,
    }
    data.update(overrides)
    data = {k: v for k, v in data.items() if v is not None}
    return requests.post(w.fake.token_endpoint(tenant), data=data, auth=auth,
                         verify=w.verify, timeout=10)


def id_token_for(w: World, oid: str = ADA, tenant: str = TID) -> str:
    code, verifier = sign_in(w, oid, tenant)
    response = redeem(w, code, verifier, tenant)
    assert response.status_code == 200, response.text
    token: str = response.json()["id_token"]
    return token


def keyset(w: World, tenant: str = TID) -> KeySet:
    jwks = requests.get(w.fake.jwks_uri(tenant), verify=w.verify, timeout=10).json()
    return KeySet.import_key_set(jwks)


def claims_of(token: str) -> dict[str, Any]:
    return parse(token).claims


def assert_entra_error(response: requests.Response, status: int, error: str,
                       code: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert f"\r\nTrace ID: {body['trace_id']}\r\n" in body["error_description"]
    assert f"Correlation ID: {body['correlation_id']}" in body["error_description"]
    uuid.UUID(body["trace_id"])
    uuid.UUID(body["correlation_id"])
    assert TIMESTAMP.match(body["timestamp"])
    assert body["error_uri"].endswith(f"/error?code={code}")
    return body


def msal_app(w: World, credential: Any, tenant: str = TID,
             client_id: str = CLIENT_ID) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        client_id, client_credential=credential, authority=f"{w.fake.authority}/{tenant}",
        instance_discovery=False)


# --- discovery and keys -----------------------------------------------------------------------

def test_discovery_document_per_tenant(world: World) -> None:
    fake = world.fake
    doc = requests.get(fake.discovery_url(TID), verify=world.verify, timeout=10).json()
    base = f"{fake.authority}/{TID}"
    assert doc["issuer"] == f"{base}/v2.0"
    assert doc["authorization_endpoint"] == f"{base}/oauth2/v2.0/authorize"
    assert doc["token_endpoint"] == f"{base}/oauth2/v2.0/token"
    assert doc["jwks_uri"] == f"{base}/discovery/v2.0/keys"
    assert doc["end_session_endpoint"] == f"{base}/oauth2/v2.0/logout"
    assert "form_post" in doc["response_modes_supported"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert doc["subject_types_supported"] == ["pairwise"]
    assert {"client_secret_post", "private_key_jwt"} <= set(
        doc["token_endpoint_auth_methods_supported"])
    assert {"sub", "iss", "aud", "nonce", "tid", "preferred_username", "email"} <= set(
        doc["claims_supported"])
    other = requests.get(fake.discovery_url(OTHER_TID), verify=world.verify, timeout=10).json()
    assert other["issuer"] == f"{fake.authority}/{OTHER_TID}/v2.0"


def test_domain_resolves_to_the_guid_issuer(world: World) -> None:
    for name in ("contoso.com", "CONTOSO.example", "contoso.onmicrosoft.com"):
        doc = requests.get(world.fake.discovery_url(name), verify=world.verify,
                           timeout=10).json()
        assert doc["issuer"] == world.fake.issuer(TID)
        assert doc["token_endpoint"] == world.fake.token_endpoint(TID)


def test_unknown_tenant_and_multi_tenant_aliases(world: World) -> None:
    missing = requests.get(world.fake.discovery_url("nowhere.example"), verify=world.verify,
                           timeout=10)
    assert_entra_error(missing, 400, "invalid_tenant", 90002)
    common = requests.get(world.fake.discovery_url("common"), verify=world.verify,
                          timeout=10).json()
    assert common["issuer"] == f"{world.fake.authority}/{{tenantid}}/v2.0"
    page = authorize(world, "organizations")
    assert page.status_code == 400
    assert "AADSTS50194" in page.text


def test_jwks_is_entra_shaped_and_verifies_id_tokens(world: World) -> None:
    jwks = requests.get(world.fake.jwks_uri("contoso.com"), verify=world.verify,
                        timeout=10).json()
    [key] = jwks["keys"]
    assert key["kty"] == "RSA" and key["use"] == "sig" and key["e"] == "AQAB"
    assert key["kid"] == key["x5t"] == world.fake.signing_kid
    assert key["x5c"] and key["issuer"] == world.fake.issuer(TID)
    token = id_token_for(world)
    assert parse(token).header == {"typ": "JWT", "alg": "RS256", "kid": key["kid"]}
    decoded = jwt.decode(token, keyset(world), algorithms=["RS256"])
    assert decoded.claims["oid"] == ADA


# --- authorize: the front channel -------------------------------------------------------------

def test_code_flow_form_post_pkce_and_claims(world: World) -> None:
    fake = world.fake
    verifier, challenge = pkce_pair()
    fake.next_login(TID, ADA)
    page = authorize(world, code_challenge=challenge, code_challenge_method="S256")
    assert page.status_code == 200
    assert "document.forms[0].submit()" in page.text
    form = parse_form_post(page.text)
    assert (form.action, form.method) == (REDIRECT, "POST")
    assert form.fields["state"] == "state-123"
    assert set(form.fields) == {"code", "state", "session_state"}

    response = redeem(world, form.fields["code"], verifier)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3599
    assert body["access_token"]
    assert body["scope"].split() == sorted(
        ["email", "openid", "profile", "https://graph.microsoft.com/User.Read"])
    claims = jwt.decode(body["id_token"], keyset(world), algorithms=["RS256"]).claims
    assert claims["aud"] == CLIENT_ID
    assert claims["iss"] == f"{fake.authority}/{TID}/v2.0"
    assert claims["tid"] == TID
    assert claims["oid"] == ADA
    assert claims["sub"] == fake.sub_for(TID, ADA, CLIENT_ID) != ADA
    assert claims["nonce"] == "nonce-456"
    assert claims["preferred_username"] == "ada@contoso.com"
    assert claims["email"] == "ada@contoso.com"
    assert claims["xms_edov"] is True
    assert claims["name"] == "Ada Lovelace"
    assert claims["ver"] == "2.0"
    assert claims["sid"] == form.fields["session_state"]
    assert claims["nbf"] == claims["iat"] and claims["exp"] == claims["iat"] + 3600
    assert "acct" not in claims and "idp" not in claims


def test_sub_is_pairwise_per_application(world: World) -> None:
    fake = world.fake
    first = claims_of(id_token_for(world))
    again = claims_of(id_token_for(world))
    assert first["sub"] == again["sub"]
    other = fake.mint_id_token(TID, ADA, OTHER_CLIENT_ID)
    assert claims_of(other)["sub"] != first["sub"]
    assert claims_of(other)["oid"] == first["oid"]


def test_email_verification_claim_only_when_configured(world: World) -> None:
    assert "xms_edov" not in claims_of(id_token_for(world, GRACE))
    mallory = claims_of(world.fake.mint_id_token(OTHER_TID, MALLORY, CLIENT_ID))
    assert mallory["xms_edov"] is False
    assert mallory["email"] == "ada@contoso.com"  # the nOAuth setup: same address, other tenant
    assert mallory["tid"] == OTHER_TID


def test_scopes_gate_profile_and_email_claims(world: World) -> None:
    code, verifier = sign_in(world, ADA, scope="openid")
    claims = claims_of(redeem(world, code, verifier).json()["id_token"])
    assert not {"email", "oid", "preferred_username", "name"} & set(claims)
    assert claims["sub"] and claims["tid"] == TID


def test_guest_carries_acct_and_home_idp(world: World) -> None:
    claims = claims_of(id_token_for(world, GUEST))
    assert claims["acct"] == 1
    assert claims["idp"] == f"https://sts.windows.net/{OTHER_TID}/"
    assert claims["iss"] == world.fake.issuer(TID) != claims["idp"]
    assert claims["tid"] == TID


def test_login_hint_picks_the_user(world: World) -> None:
    verifier, challenge = pkce_pair()
    page = authorize(world, login_hint="GRACE@contoso.com", code_challenge=challenge,
                     code_challenge_method="S256")
    form = parse_form_post(page.text)
    claims = claims_of(redeem(world, form.fields["code"], verifier).json()["id_token"])
    assert claims["oid"] == GRACE


def test_sign_in_page_when_nobody_is_chosen(world: World) -> None:
    page = authorize(world, domain_hint="contoso.com")
    assert page.status_code == 200
    login_form = parse_form_post(page.text)
    assert login_form.action == f"{world.fake.authority}/{TID}/login"
    wrong = requests.post(login_form.action, verify=world.verify, timeout=10,
                          data={**login_form.fields, "loginfmt": "nobody@contoso.com"})
    assert wrong.status_code == 400 and "AADSTS50034" in wrong.text
    done = requests.post(login_form.action, verify=world.verify, timeout=10,
                         data={**login_form.fields, "loginfmt": "ada@contoso.com"})
    form = parse_form_post(done.text)
    assert form.action == REDIRECT and form.fields["state"] == "state-123"
    assert world.fake.code(form.fields["code"]) is not None


def test_prompt_none_without_a_session_is_login_required(world: World) -> None:
    form = parse_form_post(authorize(world, prompt="none").text)
    assert form.fields["error"] == "login_required"
    assert form.fields["error_description"].startswith("AADSTS50058: ")


@pytest.mark.parametrize(("error", "code"), [("access_denied", 65004),
                                             ("interaction_required", 50076)])
def test_next_error_is_posted_back_entra_style(world: World, error: str, code: int) -> None:
    world.fake.next_login(TID, ADA)
    world.fake.next_error(error)
    form = parse_form_post(authorize(world).text)
    assert form.action == REDIRECT
    assert form.fields["error"] == error
    assert form.fields["error_description"].startswith(f"AADSTS{code}: ")
    assert form.fields["state"] == "state-123"
    assert "code" not in form.fields
    # One-shot: the queued login is still there for the next request.
    assert "code" in parse_form_post(authorize(world).text).fields


def test_query_response_mode_redirects(world: World) -> None:
    world.fake.next_login(TID, ADA)
    response = authorize(world, response_mode="query")
    assert response.status_code == 302
    assert response.headers["Location"].startswith(f"{REDIRECT}?code=")


def test_redirect_uri_mismatch_is_an_error_page(world: World) -> None:
    world.fake.next_login(TID, ADA)
    page = authorize(world, redirect_uri=REDIRECT + "/evil")
    assert page.status_code == 400
    assert page.headers["Content-Type"].startswith("text/html")
    assert "AADSTS50011: The redirect URI &#x27;" in page.text
    assert "Location" not in page.headers


def test_unknown_or_foreign_client_is_refused(world: World) -> None:
    assert "AADSTS700016" in authorize(world, client_id=str(uuid.uuid4())).text
    # Single-tenant: Contoso's app does not exist in Fabrikam.
    assert "AADSTS700016" in authorize(world, OTHER_TID).text


def test_bad_protocol_parameters_go_back_to_the_client(world: World) -> None:
    form = parse_form_post(authorize(world, response_type="id_token").text)
    assert form.fields["error"] == "unsupported_response_type"
    form = parse_form_post(authorize(world, code_challenge="short",
                                     code_challenge_method="S256").text)
    assert form.fields["error_description"].startswith("AADSTS501491: ")
    form = parse_form_post(authorize(world, scope=None).text)
    assert form.fields["error_description"].startswith("AADSTS900144: ")


# --- token: the back channel ------------------------------------------------------------------

def test_code_is_single_use(world: World) -> None:
    code, verifier = sign_in(world)
    assert redeem(world, code, verifier).status_code == 200
    assert_entra_error(redeem(world, code, verifier), 400, "invalid_grant", 54005)


def test_wrong_or_missing_code_verifier(world: World) -> None:
    code, verifier = sign_in(world)
    wrong = verifier[:-1] + ("x" if verifier[-1] != "x" else "y")
    assert_entra_error(redeem(world, code, wrong), 400, "invalid_grant", 501481)
    assert_entra_error(redeem(world, code, None), 400, "invalid_grant", 50148)
    assert redeem(world, code, verifier).status_code == 200


def test_expired_unknown_and_misdirected_codes(world: World) -> None:
    code, verifier = sign_in(world)
    assert_entra_error(redeem(world, code, verifier, redirect_uri=LOGOUT_DONE), 400,
                       "invalid_grant", 500112)
    assert_entra_error(redeem(world, "1.Anot-a-code", verifier), 400, "invalid_grant", 9002313)
    assert_entra_error(redeem(world, code, verifier, client_id=OTHER_CLIENT_ID,
                              client_secret="other"), 400, "invalid_grant", 70000)
    world.fake.advance_clock(601)
    assert_entra_error(redeem(world, code, verifier), 400, "invalid_grant", 70008)


def test_client_secret_checks(world: World) -> None:
    code, verifier = sign_in(world)
    body = assert_entra_error(redeem(world, code, verifier, client_secret="wrong"), 401,
                              "invalid_client", 7000215)
    assert CLIENT_ID in body["error_description"]
    assert_entra_error(redeem(world, code, verifier, client_secret=None), 401,
                       "invalid_client", 7000218)
    assert_entra_error(redeem(world, code, verifier, client_id=str(uuid.uuid4())), 400,
                       "unauthorized_client", 700016)
    basic = redeem(world, code, verifier, client_secret=None, client_id=None,
                   auth=(CLIENT_ID, SECRET))
    assert basic.status_code == 200, basic.text


def test_token_endpoint_refuses_get_and_echoes_client_request_id(world: World) -> None:
    response = requests.get(world.fake.token_endpoint(TID), verify=world.verify, timeout=10)
    assert_entra_error(response, 400, "invalid_request", 900561)
    correlation = str(uuid.uuid4())
    response = requests.post(world.fake.token_endpoint(TID), verify=world.verify, timeout=10,
                             data={"client_id": CLIENT_ID, "grant_type": "client_credentials",
                                   "client_secret": "nope", "scope": GRAPH_DEFAULT[0]},
                             headers={"client-request-id": correlation})
    assert assert_entra_error(response, 401, "invalid_client",
                              7000215)["correlation_id"] == correlation


def test_client_assertion_accepted(world: World) -> None:
    audience = world.fake.token_endpoint(TID)
    for assertion in (
        world.cert.assertion(CLIENT_ID, audience),  # PS256 + x5t#S256, as Entra documents
        world.cert.assertion(CLIENT_ID, audience, alg="RS256", legacy_sha1=True),
        world.cert.assertion(CLIENT_ID, world.fake.token_endpoint("contoso.com")),
    ):
        code, verifier = sign_in(world)
        response = redeem(world, code, verifier, client_secret=None, client_assertion=assertion,
                          client_assertion_type="urn:ietf:params:oauth:client-assertion-type:"
                                                "jwt-bearer")
        assert response.status_code == 200, response.text


@pytest.mark.parametrize(("make", "code"), [
    (lambda c, aud: ClientCertificate.generate().assertion(CLIENT_ID, aud), 700027),
    (lambda c, aud: c.assertion(CLIENT_ID, aud, header={
        "x5t#S256": ClientCertificate.generate().x5t_s256}), 700027),
    (lambda c, aud: ClientCertificate(ClientCertificate.generate().private_key,
                                      c.certificate).assertion(CLIENT_ID, aud), 700027),
    (lambda c, aud: c.assertion(CLIENT_ID, aud.replace("/oauth2/", "/oauth3/")), 700212),
    (lambda c, aud: c.assertion(CLIENT_ID, aud, iss=OTHER_CLIENT_ID, sub=OTHER_CLIENT_ID),
     700021),
    (lambda c, aud: c.assertion(CLIENT_ID, aud, sub="someone-else"), 50048),
    (lambda c, aud: c.assertion(CLIENT_ID, aud, lifetime=-3600), 700024),
    (lambda c, aud: c.assertion(CLIENT_ID, aud, jti=None), 50027),
    (lambda c, aud: "not-a-jwt", 50027),
])
def test_client_assertion_refused(world: World, make: Any, code: int) -> None:
    assertion = make(world.cert, world.fake.token_endpoint(TID))
    response = requests.post(world.fake.token_endpoint(TID), verify=world.verify, timeout=10,
                             data={"client_id": CLIENT_ID, "grant_type": "client_credentials",
                                   "scope": GRAPH_DEFAULT[0], "client_assertion": assertion,
                                   "client_assertion_type": "urn:ietf:params:oauth:"
                                                            "client-assertion-type:jwt-bearer"})
    assert_entra_error(response, 401, "invalid_client", code)


def test_client_credentials_scope_rules(world: World) -> None:
    def token(scope: str) -> requests.Response:
        return requests.post(world.fake.token_endpoint(TID), verify=world.verify, timeout=10,
                             data={"client_id": CLIENT_ID, "client_secret": SECRET,
                                   "grant_type": "client_credentials", "scope": scope})

    assert_entra_error(token("https://graph.microsoft.com/Organization.Read.All"), 400,
                       "invalid_scope", 1002012)
    assert_entra_error(token("https://vault.azure.net/.default"), 400, "invalid_resource",
                       500011)
    assert token("00000003-0000-0000-c000-000000000000/.default").status_code == 200


# --- msal and Graph ---------------------------------------------------------------------------

def organization(w: World, access_token: str | None, **params: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {access_token}"} if access_token is not None else {}
    return requests.get(f"{w.fake.graph_url}/v1.0/organization", headers=headers,
                        params=params, verify=w.verify, timeout=10)


def test_msal_client_credentials_then_graph_organization(world: World) -> None:
    result = msal_app(world, SECRET).acquire_token_for_client(scopes=GRAPH_DEFAULT)
    assert "access_token" in result, result
    response = organization(world, result["access_token"])
    assert response.status_code == 200, response.text
    [org] = response.json()["value"]
    assert org["id"] == TID
    assert org["verifiedDomains"] == [
        {"capabilities": "Email, OfficeCommunicationsOnline", "isDefault": True,
         "isInitial": False, "name": "contoso.com", "type": "Managed"},
        {"capabilities": "Email, OfficeCommunicationsOnline", "isDefault": False,
         "isInitial": False, "name": "contoso.example", "type": "Managed"},
        {"capabilities": "Email, OfficeCommunicationsOnline", "isDefault": False,
         "isInitial": True, "name": "contoso.onmicrosoft.com", "type": "Managed"},
    ]
    selected = organization(world, result["access_token"], **{"$select": "id,verifiedDomains"})
    assert set(selected.json()["value"][0]) == {"id", "verifiedDomains"}
    token_claims = claims_of(result["access_token"])
    assert token_claims["roles"] == ["Organization.Read.All"]
    assert token_claims["appidacr"] == "1"


def test_msal_with_a_domain_authority(world: World) -> None:
    result = msal_app(world, SECRET, tenant="contoso.com").acquire_token_for_client(
        scopes=GRAPH_DEFAULT)
    assert organization(world, result["access_token"]).json()["value"][0]["id"] == TID


def test_msal_certificate_credential(world: World) -> None:
    credential = {"private_key": world.cert.private_key_pem,
                  "public_certificate": world.cert.certificate_pem}
    result = msal_app(world, credential).acquire_token_for_client(scopes=GRAPH_DEFAULT)
    assert "access_token" in result, result
    assert claims_of(result["access_token"])["appidacr"] == "2"
    # The legacy SHA-1 thumbprint form (RS256 + x5t) works too.
    legacy = {"private_key": world.cert.private_key_pem,
              "thumbprint": world.cert.sha1_thumbprint_hex}
    assert "access_token" in msal_app(world, legacy).acquire_token_for_client(
        scopes=GRAPH_DEFAULT)
    stranger = ClientCertificate.generate()
    refused = msal_app(world, {"private_key": stranger.private_key_pem,
                               "public_certificate": stranger.certificate_pem}
                       ).acquire_token_for_client(scopes=GRAPH_DEFAULT)
    assert refused["error"] == "invalid_client"
    assert refused["error_codes"] == [700027]


def test_msal_bad_secret(world: World) -> None:
    result = msal_app(world, "wrong").acquire_token_for_client(scopes=GRAPH_DEFAULT)
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert result["error_description"].startswith("AADSTS7000215: ")


def test_graph_refuses_bad_tokens(world: World) -> None:
    def refused(response: requests.Response, status: int, code: str) -> str:
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["code"] == code
        assert {"date", "request-id", "client-request-id"} <= set(error["innerError"])
        if status == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer ")
        message: str = error["message"]
        return message

    assert refused(organization(world, None), 401,
                   "InvalidAuthenticationToken") == "Access token is empty."
    refused(organization(world, "garbage"), 401, "InvalidAuthenticationToken")
    # An ID token is not a Graph token.
    assert "Invalid audience" in refused(organization(world, id_token_for(world)), 401,
                                         "InvalidAuthenticationToken")
    good = msal_app(world, SECRET).acquire_token_for_client(scopes=GRAPH_DEFAULT)["access_token"]
    assert organization(world, good).status_code == 200
    world.fake.rotate_keys(drop_old=True)  # its signing key is gone from Entra's JWKS
    refused(organization(world, good), 401, "InvalidAuthenticationToken")
    fresh = msal_app(world, SECRET).acquire_token_for_client(scopes=GRAPH_DEFAULT)["access_token"]
    assert organization(world, fresh).status_code == 200
    world.fake.advance_clock(3600)
    assert "expired" in refused(organization(world, fresh), 401, "InvalidAuthenticationToken")
    # An app without consented Graph permissions gets 403.
    no_roles = msal_app(world, "other", client_id=OTHER_CLIENT_ID).acquire_token_for_client(
        scopes=GRAPH_DEFAULT)["access_token"]
    refused(organization(world, no_roles), 403, "Authorization_RequestDenied")


def test_graph_userinfo_with_the_delegated_token(world: World) -> None:
    code, verifier = sign_in(world)
    body = redeem(world, code, verifier).json()
    info = requests.get(f"{world.fake.graph_url}/oidc/userinfo", verify=world.verify,
                        timeout=10,
                        headers={"Authorization": f"Bearer {body['access_token']}"}).json()
    assert info["sub"] == claims_of(body["id_token"])["sub"]
    assert info["email"] == "ada@contoso.com"


# --- keys and forgeries -----------------------------------------------------------------------

def test_key_rotation(world: World) -> None:
    fake = world.fake
    first_kid = fake.signing_kid
    before = id_token_for(world)
    new_kid = fake.rotate_keys()
    assert new_kid != first_kid and fake.published_kids == [first_kid, new_kid]
    after = id_token_for(world)
    assert parse(after).header["kid"] == new_kid
    keys = keyset(world)
    for token in (before, after):  # both still verify while both are published
        jwt.decode(token, keys, algorithms=["RS256"])
    latest = fake.rotate_keys(drop_old=True)
    assert fake.published_kids == [latest]
    with pytest.raises(JoseError):
        jwt.decode(after, keyset(world), algorithms=["RS256"])
    assert fake.count_requests("/discovery/v2.0/keys") == 2


@pytest.mark.parametrize(("changes", "check"), [
    ({"aud": "someone-else"}, lambda c: c["aud"] == "someone-else"),
    ({"iss": "https://evil.example/v2.0"}, lambda c: c["iss"] == "https://evil.example/v2.0"),
    ({"tid": OTHER_TID}, lambda c: c["tid"] == OTHER_TID),
    ({"nonce": "replayed"}, lambda c: c["nonce"] == "replayed"),
    ({"exp": 1_000_000_000}, lambda c: c["exp"] == 1_000_000_000),
    ({"oid": REMOVE}, lambda c: "oid" not in c),
    ({"nonce": REMOVE}, lambda c: "nonce" not in c),
])
def test_tampered_claims_are_validly_signed(world: World, changes: dict[str, Any],
                                            check: Any) -> None:
    world.fake.tamper_next_id_token(**changes)
    token = id_token_for(world)
    claims = jwt.decode(token, keyset(world), algorithms=["RS256"]).claims
    assert check(claims)
    # Only the next token is forged.
    assert claims_of(id_token_for(world))["aud"] == CLIENT_ID


def test_tampered_signatures(world: World) -> None:
    fake = world.fake
    fake.tamper_next_id_token(signing="unknown_key")
    unknown = id_token_for(world)
    assert parse(unknown).header["kid"] not in fake.published_kids
    fake.tamper_next_id_token(signing="hs256")
    hs = parse(id_token_for(world))
    assert (hs.header["alg"], hs.header["kid"]) == ("HS256", fake.signing_kid)
    fake.tamper_next_id_token(signing="none")
    none = parse(id_token_for(world))
    assert none.header["alg"] == "none" and none.signature == b""
    fake.tamper_next_id_token(signing="bad_signature")
    bad = id_token_for(world)
    fake.tamper_next_id_token(header={"alg": "RS512"})
    lying = id_token_for(world)
    keys = keyset(world)
    for token in (unknown, bad, lying):
        with pytest.raises(JoseError):
            jwt.decode(token, keys, algorithms=["RS256"])
    fake.tamper_next_id_token(header={"kid": REMOVE})
    assert "kid" not in parse(id_token_for(world)).header
    fake.rotate_keys(drop_old=True)
    fake.tamper_next_id_token(signing="retired_key")
    retired = parse(id_token_for(world))
    assert retired.header["kid"] not in fake.published_kids


def test_mint_id_token_for_validator_unit_tests(world: World) -> None:
    token = world.fake.mint_id_token(TID, ADA, CLIENT_ID, nonce="n1", exp=REMOVE)
    claims = jwt.decode(token, keyset(world), algorithms=["RS256"]).claims
    assert claims["nonce"] == "n1" and "exp" not in claims


# --- logout and directory invariants ----------------------------------------------------------

def test_logout_redirects_only_to_registered_uris(world: World) -> None:
    fake = world.fake
    response = requests.get(fake.end_session_endpoint(TID), verify=world.verify, timeout=10,
                            allow_redirects=False,
                            params={"post_logout_redirect_uri": LOGOUT_DONE,
                                    "client_id": CLIENT_ID, "state": "s1"})
    assert response.status_code == 302
    assert response.headers["Location"] == f"{LOGOUT_DONE}?state=s1"
    hint = id_token_for(world)
    response = requests.get(fake.end_session_endpoint("contoso.com"), verify=world.verify,
                            timeout=10, allow_redirects=False,
                            params={"post_logout_redirect_uri": LOGOUT_DONE,
                                    "id_token_hint": hint})
    assert response.status_code == 302
    response = requests.get(fake.end_session_endpoint(TID), verify=world.verify, timeout=10,
                            allow_redirects=False,
                            params={"post_logout_redirect_uri": "https://evil.example/"})
    assert response.status_code == 200 and "Location" not in response.headers
    assert [entry.redirected for entry in fake.logouts] == [True, True, False]
    sid = claims_of(hint)["sid"]
    assert fake.front_channel_logout_url(CLIENT_ID, sid) == (
        f"https://idp.test/sso/entra/front-logout?sid={sid}")


def test_a_domain_is_verified_in_one_tenant_only(world: World) -> None:
    with pytest.raises(ValueError, match="already verified"):
        world.fake.add_tenant(str(uuid.uuid4()), ["contoso.com"])
    tenant = world.fake.add_tenant(str(uuid.uuid4()), ["contoso.net"])
    assert [d.name for d in tenant.domains] == ["contoso.net", "contoso2.onmicrosoft.com"]


def test_env_points_clients_at_the_fake(world: World) -> None:
    env = world.fake.env()
    assert env["IDP_ENTRA_AUTHORITY"] == world.fake.authority
    assert env["IDP_GRAPH_URL"] == world.fake.graph_url != world.fake.authority
    assert env["REQUESTS_CA_BUNDLE"] == env["SSL_CERT_FILE"] == world.fake.ca_bundle_path
    with open(world.fake.ca_bundle_path, "rb") as handle:
        assert handle.read().startswith(b"-----BEGIN CERTIFICATE-----")
    # requests picks the CA up from the environment.
    assert requests.get(world.fake.discovery_url(TID), timeout=10).status_code == 200


def test_urls_can_name_localhost() -> None:
    with run_fake_entra(url_host="localhost") as fake:
        fake.add_tenant(TID, ["contoso.com"])
        assert fake.authority.startswith("https://localhost:")
        doc = requests.get(fake.discovery_url("contoso.com"), verify=fake.ca_bundle_path,
                           timeout=10).json()
        assert doc["issuer"] == f"{fake.authority}/{TID}/v2.0"
