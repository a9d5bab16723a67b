"""Client-side helpers for tests driving the fake by hand: PKCE, reading the ``form_post``
page, a certificate for ``client_assertion`` and the assertion itself."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fake_entra import jose


def pkce_pair() -> tuple[str, str]:
    """A ``(code_verifier, S256 code_challenge)`` pair."""
    verifier = secrets.token_urlsafe(48)
    return verifier, jose.b64url(hashlib.sha256(verifier.encode()).digest())


@dataclass
class FormPost:
    """The auto-submitting form Entra answers ``response_mode=form_post`` with."""

    action: str = ""
    method: str = ""
    fields: dict[str, str] = field(default_factory=dict)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.form: FormPost | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and self.form is None:
            self.form = FormPost(action=values.get("action", ""),
                                 method=values.get("method", "GET").upper())
        elif tag == "input" and self.form is not None and values.get("type") == "hidden":
            self.form.fields[values.get("name", "")] = values.get("value", "")


def parse_form_post(page: str) -> FormPost:
    """The first form of ``page`` with its hidden fields (raises if there is none)."""
    parser = _FormParser()
    parser.feed(page)
    if parser.form is None:
        raise ValueError("no form in the page")
    return parser.form


@dataclass(frozen=True)
class ClientCertificate:
    """A self-signed certificate an app registration trusts for ``client_assertion``."""

    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @classmethod
    def generate(cls, common_name: str = "idp test client") -> ClientCertificate:
        key = jose.new_rsa_key()
        return cls(key, jose.self_signed_certificate(key, common_name))

    @property
    def private_key_pem(self) -> str:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode()

    @property
    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def x5t_s256(self) -> str:
        return jose.x5t_s256(self.certificate)

    @property
    def sha1_thumbprint_hex(self) -> str:
        """The thumbprint the Entra portal shows (and msal's legacy ``thumbprint``)."""
        return jose.b64url_decode(jose.x5t(self.certificate)).hex().upper()

    def assertion(self, client_id: str, audience: str, *, alg: str = "PS256",
                  legacy_sha1: bool = False, header: dict[str, Any] | None = None,
                  lifetime: int = 600, **claims: Any) -> str:
        """A ``client_assertion`` as Entra documents it (PS256, ``x5t#S256``), or the legacy
        form (``x5t``, SHA-1) with ``legacy_sha1``. ``header`` and ``claims`` override fields
        to build bad ones; a None value leaves the field out."""
        now = int(time.time())
        body: dict[str, Any] = {"aud": audience, "iss": client_id, "sub": client_id,
                                "jti": str(uuid.uuid4()), "iat": now, "nbf": now,
                                "exp": now + lifetime}
        body.update(claims)
        hdr: dict[str, Any] = {"alg": alg, "typ": "JWT"}
        if legacy_sha1:
            hdr["x5t"] = jose.x5t(self.certificate)
        else:
            hdr["x5t#S256"] = self.x5t_s256
        hdr.update(header or {})
        return jose.encode({k: v for k, v in hdr.items() if v is not None},
                           {k: v for k, v in body.items() if v is not None},
                           self.private_key, alg=alg)
