"""A world for enterprise SSO tests: idp (Flask test client) and the fake Entra, with one
organization ("Contoso") linked to its tenant, and helpers to run the sign-in."""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from idp import create_app
from idp.federation.connections import ConnectionService, LinkOptions, secret_box
from idp.federation.credentials import Credential
from idp.federation.entra import EntraDirectory
from idp.models import Organization
from idp.runtime import Runtime
from tests.conftest import empty_tables, make_settings
from tests.fake_entra import FakeEntra, parse_form_post, run_fake_entra
from tests.helpers import csrf_token

ISSUER = "http://127.0.0.1:8000"
REDIRECT = f"{ISSUER}/login/sso/callback"
LOGGED_OUT = f"{ISSUER}/login/sso/logged-out"
FRONT_LOGOUT = f"{ISSUER}/login/sso/front-logout"
SECRET = "contoso-app-secret"
TID = "0c0a0b0d-1111-4222-8333-444455556666"
CLIENT_ID = "6f1d6c4e-7777-4888-9999-aaaabbbbcccc"
ADA = "00000000-0000-4000-8000-00000000ada0"
GRACE = "00000000-0000-4000-8000-0000000041ac"
GUEST = "00000000-0000-4000-8000-00000000b0b0"
ATTACKER_TID = "fabf0000-2222-4333-8444-555566667777"
ATTACKER_CLIENT = "fab00000-3333-4444-8555-666677778888"
MALLORY = "00000000-0000-4000-8000-0000000a11e0"


@dataclass
class World:
    fake: FakeEntra
    app: Flask
    client: FlaskClient
    runtime: Runtime
    issuer: str = ISSUER

    def link(self, organization: str, tenant: str, client_id: str, domains: list[str],
             secret: str | Credential = SECRET, **options: bool) -> None:
        with self.runtime.session_factory() as db:
            if db.query(Organization).filter_by(name=organization).one_or_none() is None:
                db.add(Organization(name=organization))
                db.commit()
            ConnectionService(db, EntraDirectory(self.fake.authority, self.fake.graph_url),
                              secret_box(self.runtime.settings.secret_key)).link(
                organization, tenant, client_id, secret, domains, LinkOptions(**options))
            db.commit()

    def new_browser(self) -> None:
        """Forget cookies: the next request comes from another browser."""
        self.client = self.app.test_client()
        if self.issuer.startswith("https://"):
            self.client.environ_base["wsgi.url_scheme"] = "https"

    def start(self, email: str = "ada@contoso.com", next_url: str | None = None) -> str:
        """Submit the "Log in with SSO" form; the Entra authorization URL it redirects to."""
        page = self.client.get("/login/sso")
        assert page.status_code == 200
        data = {"csrf_token": csrf_token(page.get_data(as_text=True)), "email": email}
        if next_url:
            data["next"] = next_url
        response = self.client.post("/login/sso", data=data)
        assert response.status_code == 303, response.get_data(as_text=True)
        return response.headers["Location"]

    def entra(self, url: str) -> dict[str, str]:
        """Follow the authorization URL at the fake; the fields of its form_post."""
        response = requests.get(url, allow_redirects=False, timeout=10)
        assert response.status_code == 200, response.text
        form = parse_form_post(response.text)
        assert form.action == f"{self.issuer}/login/sso/callback" and form.method == "POST"
        return form.fields

    def callback(self, fields: dict[str, str]) -> TestResponse:
        return self.client.post("/login/sso/callback", data=fields)

    def sign_in(self, oid: str = ADA, tenant: str = TID, email: str = "ada@contoso.com",
                next_url: str | None = None) -> TestResponse:
        self.fake.next_login(tenant, oid)
        return self.callback(self.entra(self.start(email, next_url)))


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@contextmanager
def make_world(tmp_path: Path, database_url: str, redis_url: str,
               monkeypatch: pytest.MonkeyPatch, issuer: str = ISSUER,
               idp_settings: dict[str, Any] | None = None,
               **fake_options: Any) -> Iterator[World]:
    """The world for a test's ``world`` fixture (on the test's database backend);
    ``idp_settings`` adds settings of idp (e.g. ``smtp_url``)."""
    with run_fake_entra(**fake_options) as fake:
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
        app = create_app(make_settings(
            tmp_path, database_url=database_url, redis_url=redis_url, issuer=issuer,
            entra_authority=fake.authority, graph_url=fake.graph_url,
            secret_key=secrets.token_urlsafe(48), **(idp_settings or {})))
        app.config["TESTING"] = True
        rt: Runtime = app.extensions["idp"]
        fake.add_tenant(TID, ["contoso.com"])
        fake.register_app(TID, CLIENT_ID, client_secret=SECRET,
                          redirect_uris=[f"{issuer}/login/sso/callback",
                                         f"{issuer}/login/sso/logged-out"],
                          front_channel_logout_url=f"{issuer}/login/sso/front-logout")
        fake.add_user(TID, ADA, "ada@contoso.com", "ada@contoso.com", "Ada Lovelace",
                      email_verified_domain_owner=True)
        fake.add_user(TID, GRACE, "grace@contoso.com", "grace@contoso.com", "Grace Hopper")
        fake.add_user(TID, GUEST, "bob@fabrikam.com", "bob_fabrikam.com#EXT#@contoso.com",
                      "Bob Guest", guest=True, home_tenant_id=ATTACKER_TID)
        w = World(fake, app, app.test_client(), rt, issuer)
        w.new_browser()
        try:
            w.link("Contoso", TID, CLIENT_ID, ["contoso.com"])
            yield w
        finally:
            empty_tables(rt)
            rt.store.delete_prefix()
            rt.close()


def fresh_guid() -> str:
    return str(uuid.uuid4())


def claims_of_last_token(fake: FakeEntra) -> dict[str, Any]:
    return fake.id_tokens[-1]


def unsupported_curve_pair() -> tuple[str, str]:
    """(private key PEM, certificate PEM) on secp112r1, an elliptic curve the cryptography
    library cannot load. It cannot make such keys either, so a P-384 pair is made and its curve
    OID (1.3.132.0.34) replaced by secp112r1's (1.3.132.0.6): same DER length."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    p384_oid, secp112r1_oid = bytes.fromhex("06052b81040022"), bytes.fromhex("06052b81040006")
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "old curve")])
    now = dt.datetime.now(dt.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(days=1))
                   .not_valid_after(now + dt.timedelta(days=30))
                   .sign(key, hashes.SHA384()))
    key_der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    cert_der = certificate.public_bytes(serialization.Encoding.DER)
    assert key_der.count(p384_oid) == cert_der.count(p384_oid) == 1

    def pem(label: str, der: bytes) -> str:
        body = base64.encodebytes(der.replace(p384_oid, secp112r1_oid)).decode()
        return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n"

    return pem("PRIVATE KEY", key_der), pem("CERTIFICATE", cert_der)
