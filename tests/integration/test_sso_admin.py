"""Linking a tenant from the organization's admin pages (issue 6, "Linking a tenant"): saving
tests the connection first, secrets are write-only, "Test connection", removal with a
confirmation, events, and every forbidden request refused on the server."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from sqlalchemy import select

from idp.federation.connections import secret_box
from idp.flows import sso_admin
from idp.models import Organization, SsoConnection
from idp.models.accounts import Role
from tests.fake_entra import jose as fake_jose
from tests.fake_entra.client import ClientCertificate as FakeCertificate
from tests.helpers import PASSWORD, count, create_user, csrf_token, events, sign_in
from tests.sso import LOGGED_OUT, REDIRECT, World, make_world, unsupported_curve_pair

TENANT = "7e0a0b0d-2222-4333-8444-999988887777"
CLIENT = "3c1d6c4e-5555-4666-8777-888899990000"
SECRET = "northwind-app-secret"
ERIN = "00000000-0000-4000-8000-0000000e1e10"


@pytest.fixture
def world(tmp_path: Path, database_url: str, redis_url: str,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with make_world(tmp_path, database_url, redis_url, monkeypatch) as w:
        w.fake.add_tenant(TENANT, ["northwind.com", "northwind.org"])
        w.fake.register_app(TENANT, CLIENT, client_secret=SECRET,
                            redirect_uris=[REDIRECT, LOGGED_OUT])
        w.fake.add_user(TENANT, ERIN, "erin@northwind.com", "erin@northwind.com", "Erin Shaw",
                        email_verified_domain_owner=True)
        create_user(w.runtime, "owner@northwind.com", organization="Northwind", role=Role.OWNER)
        create_user(w.runtime, "member@northwind.com", organization="Northwind")
        create_user(w.runtime, "admin@contoso.com", organization="Contoso", role=Role.ADMIN)
        yield w


def org_id(w: World, name: str = "Northwind") -> str:
    with w.runtime.session_factory() as db:
        org = db.scalar(select(Organization).where(Organization.name == name))
        assert org is not None
        return org.id


def as_user(w: World, email: str = "owner@northwind.com") -> None:
    w.new_browser()
    assert sign_in(w.client, email, PASSWORD).status_code == 303


def page_token(w: World, path: str) -> str:
    response = w.client.get(path)
    assert response.status_code == 200, response.status_code
    return csrf_token(response.get_data(as_text=True))


def save(w: World, org: str, **fields: object) -> object:
    data: dict[str, object] = {
        "csrf_token": page_token(w, f"/organizations/{org}/sso"),
        "tenant_id": TENANT, "client_id": CLIENT, "credential": "secret",
        "client_secret": SECRET, "domains": "northwind.com, northwind.org", "jit": "on",
    }
    data.update(fields)
    return w.client.post(f"/organizations/{org}/sso", data={k: v for k, v in data.items()
                                                              if v is not None},
                         content_type="multipart/form-data")


def connection(w: World, org: str) -> SsoConnection | None:
    with w.runtime.session_factory() as db:
        row = db.scalar(select(SsoConnection).where(SsoConnection.organization_id == org))
        if row is not None:
            row.domain_names
        return row


def test_an_owner_links_the_tenant_and_a_member_signs_in_with_sso(world: World) -> None:
    org = org_id(world)
    as_user(world)
    page = world.client.get(f"/organizations/{org}/sso").get_data(as_text=True)
    assert "Not linked" in page and REDIRECT in page  # the values to enter in Entra
    response = save(world, org)
    assert response.status_code == 303, response.get_data(as_text=True)  # type: ignore[attr-defined]
    page = world.client.get(response.headers["Location"]).get_data(as_text=True)  # type: ignore[attr-defined]
    assert "Connection tested and saved." in page and TENANT in page
    assert "northwind.com, northwind.org" in page
    assert SECRET not in page  # write-only
    saved = events(world.runtime, "organization:sso:save")
    assert len(saved) == 1 and saved[0].organization_id == org
    assert saved[0].details["domains"] == ["northwind.com", "northwind.org"]
    # a member of the domain signs in through the tenant, just in time
    world.new_browser()
    signed = world.sign_in(oid=ERIN, tenant=TENANT, email="erin@northwind.com")
    assert signed.status_code == 303, signed.get_data(as_text=True)
    assert world.client.get("/account").status_code == 200


@pytest.mark.parametrize(("fields", "message"), [
    ({"domains": "northwind.com example.org"}, "example.org is not verified in tenant"),
    ({"client_secret": "wrong"}, "invalid_client"),
    ({"tenant_id": "common"}, "multi-tenant alias"),
    ({"domains": ""}, "give at least one"),
    ({"client_secret": ""}, "a client secret or a certificate is required"),
    ({"domains": "contoso.com"}, "already served by another organization"),
    ({"credential": "certificate", "client_secret": None}, "a client secret or a certificate"),
])
def test_a_connection_that_fails_its_test_is_not_saved(world: World, fields: dict[str, object],
                                                       message: str) -> None:
    org = org_id(world)
    as_user(world)
    response = save(world, org, **fields)
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert message in response.get_data(as_text=True)  # type: ignore[attr-defined]
    assert connection(world, org) is None
    assert events(world.runtime, "organization:sso:save") == []


def test_changing_options_keeps_the_stored_secret(world: World) -> None:
    org = org_id(world)
    as_user(world)
    assert save(world, org).status_code == 303  # type: ignore[attr-defined]
    response = save(world, org, client_secret="", enforce_sso="on", domains="northwind.com")
    assert response.status_code == 303, response.get_data(as_text=True)  # type: ignore[attr-defined]
    row = connection(world, org)
    assert row is not None and row.enforce_sso and row.domain_names == ["northwind.com"]
    box = secret_box(world.runtime.settings.secret_key)
    assert box.open(row.id, row.client_secret).decode() == SECRET  # still the stored one


def test_a_certificate_can_be_uploaded_instead_of_a_secret(world: World) -> None:
    cert = FakeCertificate.generate()
    world.fake.add_certificate(CLIENT, cert.certificate_pem)
    world.fake.remove_client_secret(CLIENT, SECRET)
    org = org_id(world)
    as_user(world)
    response = save(world, org, credential="certificate", client_secret=None,
                    certificate_file=(BytesIO(cert.certificate_pem.encode()), "app.crt"),
                    private_key_file=(BytesIO(cert.private_key_pem.encode()), "app.key"))
    assert response.status_code == 303, response.get_data(as_text=True)  # type: ignore[attr-defined]
    row = connection(world, org)
    assert row is not None and row.certificate.strip() == cert.certificate_pem.strip()
    page = world.client.get(f"/organizations/{org}/sso").get_data(as_text=True)
    assert "PRIVATE KEY" not in page
    world.new_browser()
    assert world.sign_in(oid=ERIN, tenant=TENANT, email="erin@northwind.com").status_code == 303
    # the key alone is refused with the reason
    as_user(world)
    response = save(world, org, credential="certificate", client_secret=None,
                    private_key_file=(BytesIO(cert.private_key_pem.encode()), "app.key"))
    assert response.status_code == 400  # type: ignore[attr-defined]
    text = response.get_data(as_text=True)  # type: ignore[attr-defined]
    assert "give both the certificate and its private key" in text


def _certificate_valid_for(days: int) -> FakeCertificate:
    key = fake_jose.new_rsa_key()
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "idp")])
    now = dt.datetime.now(dt.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(days=400))
                   .not_valid_after(now + dt.timedelta(days=days))
                   .sign(key, hashes.SHA256()))
    return FakeCertificate(key, certificate)


@pytest.mark.parametrize(("days", "warning"), [
    (200, None),
    (10, "The certificate expires on"),
    (-3, "The certificate expired on"),
])
def test_the_page_tells_until_when_the_certificate_is_valid(world: World, days: int,
                                                            warning: str | None) -> None:
    """An expired certificate stops every member's SSO sign-in; its administrator sees the
    date on the page, and a warning in the last 30 days and after."""
    cert = _certificate_valid_for(max(days, 1))
    world.fake.add_certificate(CLIENT, cert.certificate_pem)
    org = org_id(world)
    as_user(world)
    response = save(world, org, credential="certificate", client_secret=None,
                    certificate_file=(BytesIO(cert.certificate_pem.encode()), "app.crt"),
                    private_key_file=(BytesIO(cert.private_key_pem.encode()), "app.key"))
    assert response.status_code == 303  # type: ignore[attr-defined]
    if days < 0:  # saved while valid, days ago
        with world.runtime.session_factory() as db:
            row = db.scalar(select(SsoConnection).where(SsoConnection.organization_id == org))
            assert row is not None
            row.certificate = _certificate_valid_for(days).certificate_pem
            db.commit()
    page = world.client.get(f"/organizations/{org}/sso").get_data(as_text=True)
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).strftime("%b %-d, %Y")
    validity = re.search(r'id="certificate-validity">([^<]*)<', page)
    assert validity is not None and until in validity.group(1), page
    shown = re.search(r'id="certificate-warning">([^<]*)<', page)
    if warning is None:
        assert shown is None
    else:
        assert shown is not None and warning in shown.group(1) and until in shown.group(1)


def test_a_client_secret_shows_no_validity(world: World) -> None:
    org = org_id(world)
    as_user(world)
    assert save(world, org).status_code == 303  # type: ignore[attr-defined]
    page = world.client.get(f"/organizations/{org}/sso").get_data(as_text=True)
    assert "certificate-validity" not in page and "certificate-warning" not in page


def test_a_certificate_with_an_unsupported_algorithm_is_refused_with_the_reason(
        world: World) -> None:
    rsa_key = FakeCertificate.generate().private_key_pem
    _, odd_certificate = unsupported_curve_pair()
    org = org_id(world)
    as_user(world)
    response = save(world, org, credential="certificate", client_secret=None,
                    certificate_file=(BytesIO(odd_certificate.encode()), "app.crt"),
                    private_key_file=(BytesIO(rsa_key.encode()), "app.key"))
    assert response.status_code == 400  # type: ignore[attr-defined]
    text = response.get_data(as_text=True)  # type: ignore[attr-defined]
    assert "public key uses an unsupported algorithm" in text
    assert connection(world, org) is None
    assert events(world.runtime, "organization:sso:save") == []


def test_test_connection_reports_what_the_tenant_says(world: World) -> None:
    org = org_id(world)
    as_user(world)
    assert save(world, org).status_code == 303  # type: ignore[attr-defined]
    path = f"/organizations/{org}/sso/test"
    settings = f"/organizations/{org}/sso"
    passed = world.client.post(path, data={"csrf_token": page_token(world, settings)})
    assert passed.status_code == 200
    assert "Test passed" in passed.get_data(as_text=True)
    assert "northwind.com, northwind.org" in passed.get_data(as_text=True)
    world.fake.remove_domain(TENANT, "northwind.org")
    failed = world.client.post(path, data={"csrf_token": page_token(world, settings)})
    assert failed.status_code == 400
    assert "northwind.org is no longer verified" in failed.get_data(as_text=True)
    world.fake.remove_client_secret(CLIENT, SECRET)
    failed = world.client.post(path, data={"csrf_token": page_token(world, settings)})
    assert "Test failed: test connection failed: invalid_client" in failed.get_data(as_text=True)


def test_removing_asks_first_and_ends_sso_for_the_domains(world: World) -> None:
    org = org_id(world)
    as_user(world)
    assert save(world, org).status_code == 303  # type: ignore[attr-defined]
    confirm = world.client.get(f"/organizations/{org}/sso/remove")
    assert confirm.status_code == 200
    assert "Remove the SSO connection?" in confirm.get_data(as_text=True)
    assert connection(world, org) is not None  # asking changed nothing
    done = world.client.post(f"/organizations/{org}/sso/remove",
                             data={"csrf_token": csrf_token(confirm.get_data(as_text=True))})
    assert done.status_code == 303
    assert connection(world, org) is None
    assert len(events(world.runtime, "organization:sso:remove")) == 1
    world.new_browser()
    page = world.client.get("/login/sso")
    refused = world.client.post("/login/sso", data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "email": "erin@northwind.com"})
    assert refused.status_code == 400
    assert "does not sign in with SSO" in refused.get_data(as_text=True)


@pytest.mark.parametrize("who", ["member@northwind.com", "admin@contoso.com"])
@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/sso"), ("POST", "/sso"), ("POST", "/sso/test"), ("GET", "/sso/remove"),
    ("POST", "/sso/remove"),
])
def test_only_owners_and_admins_of_the_organization_may_act(world: World, who: str,
                                                            method: str, path: str) -> None:
    org = org_id(world)
    as_user(world)
    assert save(world, org).status_code == 303  # type: ignore[attr-defined]
    as_user(world, who)
    token = page_token(world, "/account")
    url = f"/organizations/{org}{path}"
    data = {"csrf_token": token, "tenant_id": TENANT, "client_id": CLIENT,
            "client_secret": SECRET, "domains": "northwind.com"}
    response = world.client.get(url) if method == "GET" else world.client.post(url, data=data)
    assert response.status_code == 403
    row = connection(world, org)
    assert row is not None and row.domain_names == ["northwind.com", "northwind.org"]
    assert count(world.runtime, SsoConnection) == 2  # Contoso's and Northwind's


def test_forged_and_anonymous_requests_change_nothing(world: World) -> None:
    org = org_id(world)
    world.new_browser()
    assert world.client.get(f"/organizations/{org}/sso").status_code == 303  # to /login
    as_user(world)
    no_csrf = world.client.post(f"/organizations/{org}/sso", data={
        "tenant_id": TENANT, "client_id": CLIENT, "client_secret": SECRET,
        "domains": "northwind.com"})
    assert no_csrf.status_code == 400
    assert connection(world, org) is None


def test_a_failed_test_and_a_refused_save_are_told_in_french(world: World) -> None:
    from sqlalchemy import update

    from idp.models import User

    with world.runtime.session_factory() as db:
        db.execute(update(User).where(User.email == "owner@northwind.com").values(locale="fr"))
        db.commit()
    org = org_id(world)
    as_user(world)
    assert save(world, org).status_code == 303  # type: ignore[attr-defined]
    path = f"/organizations/{org}/sso/test"
    settings = f"/organizations/{org}/sso"
    world.fake.remove_domain(TENANT, "northwind.org")
    failed = world.client.post(path, data={"csrf_token": page_token(world, settings)})
    assert failed.status_code == 400
    text = failed.get_data(as_text=True)
    assert "le domaine northwind.org n\u2019est plus vérifié dans le tenant" in text
    world.fake.remove_client_secret(CLIENT, SECRET)
    failed = world.client.post(path, data={"csrf_token": page_token(world, settings)})
    text = failed.get_data(as_text=True)
    assert "Échec du test : échec du test de connexion : invalid_client" in text
    assert "test connection failed" not in text
    refused = save(world, org, tenant_id="common")
    text = refused.get_data(as_text=True)  # type: ignore[attr-defined]
    assert "l\u2019ID de tenant « common » est un alias multi-tenant" in text
    refused = save(world, org, credential="certificate", client_secret=None,
                   certificate_file=(BytesIO(b"\xff\xfe"), "cert.pem"),
                   private_key_file=(BytesIO(b"key"), "key.pem"))
    text = refused.get_data(as_text=True)  # type: ignore[attr-defined]
    assert "le certificat doit être un fichier texte PEM" in text


def test_a_failure_after_the_connection_test_saves_nothing(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection and its event are one transaction: when recording the event fails,
    no connection is left behind."""
    def failing(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the activity log is unavailable")

    monkeypatch.setattr(sso_admin, "record_event", failing)
    org = org_id(world)
    as_user(world)
    assert save(world, org).status_code == 500  # type: ignore[attr-defined]
    assert connection(world, org) is None
    assert events(world.runtime, "organization:sso:save") == []


def _long_domains(n: int) -> list[str]:
    """``n`` distinct domain names of 240 characters (labels of 63)."""
    return [f"{'a' * 63}.{'b' * 63}.{'c' * 63}.{'e' * 39}.d{i:03d}.com" for i in range(n)]


def test_two_hundred_long_domains_are_saved_whole_and_the_page_saves_them_again(
        world: World) -> None:
    names = _long_domains(200)
    for name in names:
        world.fake.add_domain(TENANT, name)
    org = org_id(world)
    as_user(world)
    response = save(world, org, domains=", ".join(names))
    assert response.status_code == 303, response.get_data(as_text=True)  # type: ignore[attr-defined]
    row = connection(world, org)
    assert row is not None and row.domain_names == sorted(names)
    # The page shows every saved domain, and saving it unchanged keeps them all.
    page = world.client.get(f"/organizations/{org}/sso").get_data(as_text=True)
    shown = re.search(r'name="domains"[^>]*value="([^"]*)"', page, re.S)
    assert shown is not None and len(shown.group(1)) > 2000
    again = save(world, org, domains=shown.group(1), client_secret="")
    assert again.status_code == 303, again.get_data(as_text=True)  # type: ignore[attr-defined]
    row = connection(world, org)
    assert row is not None and row.domain_names == sorted(names)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("domains", "northwind.com, " * 3400 + "x",
     "The field “Email domains” is too long: at most 51000 characters."),
    ("tenant_id", "a" * 254,
     "The field “Directory (tenant) ID” is too long: at most 253 characters."),
    ("client_id", "c" * 101,
     "The field “Application (client) ID” is too long: at most 100 characters."),
    ("client_secret", "s" * 1001,
     "The field “Client secret value” is too long: at most 1000 characters."),
])
def test_a_value_too_long_is_refused_naming_its_field(world: World, field: str, value: str,
                                                      message: str) -> None:
    org = org_id(world)
    as_user(world)
    graph_calls = world.fake.count_requests("/v1.0/organization", service="graph")
    response = save(world, org, **{field: value})
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert message in response.get_data(as_text=True)  # type: ignore[attr-defined]
    assert connection(world, org) is None
    assert world.fake.count_requests("/v1.0/organization", service="graph") == graph_calls


def test_more_than_two_hundred_domains_are_refused(world: World) -> None:
    org = org_id(world)
    as_user(world)
    response = save(world, org, domains=" ".join(f"d{i}.northwind.com" for i in range(201)))
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert "give at most 200 domains" in response.get_data(as_text=True)  # type: ignore[attr-defined]
    assert connection(world, org) is None


def test_testing_and_saving_are_rate_limited_per_organization(world: World) -> None:
    org = org_id(world)
    as_user(world)
    assert save(world, org).status_code == 303  # type: ignore[attr-defined]
    settings = f"/organizations/{org}/sso"
    path = f"{settings}/test"
    for _ in range(sso_admin.REMOTE_CHECKS - 1):
        passed = world.client.post(path, data={"csrf_token": page_token(world, settings)})
        assert passed.status_code == 200
    calls = world.fake.count_requests("/v1.0/organization", service="graph")
    limited = world.client.post(path, data={"csrf_token": page_token(world, settings)})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert "Too many connection tests and saves for this organization" in (
        limited.get_data(as_text=True))
    refused = save(world, org, enforce_sso="on")
    assert refused.status_code == 429  # type: ignore[attr-defined]
    assert world.fake.count_requests("/v1.0/organization", service="graph") == calls
    row = connection(world, org)
    assert row is not None and not row.enforce_sso  # nothing saved
    # Another organization has its own limit.
    create_user(world.runtime, "owner@fabrikam.com", organization="Fabrikam", role=Role.OWNER)
    world.fake.add_domain(TENANT, "fabrikam.com")
    as_user(world, "owner@fabrikam.com")
    other = save(world, org_id(world, "Fabrikam"), domains="fabrikam.com")
    assert other.status_code == 303  # type: ignore[attr-defined]
