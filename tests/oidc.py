"""A live idp on a free port and a relying party driving it with authlib's OAuth 2.0 client.

The "browser" is a requests.Session that fills in the sign-in and consent forms like a person
would; the relying party uses only discovery, the JWKS and standard libraries (authlib,
joserfc) to get and validate tokens.
"""

from __future__ import annotations

import base64
import html
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from flask import Flask
from joserfc import jwt
from joserfc.jwk import KeySet
from werkzeug.serving import make_server

from idp.provider.clients import ClientService
from idp.runtime import Runtime
from tests.helpers import PASSWORD

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_HIDDEN_FIELD = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def hidden_fields(page: str) -> dict[str, str]:
    """The form's hidden fields, unescaped as a browser would."""
    return {html.unescape(k): html.unescape(v) for k, v in _HIDDEN_FIELD.findall(page)}
SCOPE = "openid profile email offline_access"


@contextmanager
def serve(app: Flask, port: int) -> Iterator[str]:
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(5)


@dataclass
class RegisteredRP:
    client_id: str
    client_secret: str | None
    redirect_uri: str


def token_header(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS, unverified (RFC 7515 §7.1)."""
    segment = token.split(".")[0]
    padded = segment + "=" * (-len(segment) % 4)
    header: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return header


def register_client(
    runtime: Runtime,
    name: str = "Shop",
    *,
    public: bool = False,
    first_party: bool = True,
    redirect_uri: str = "https://rp.example/cb",
    **kwargs: Any,
) -> RegisteredRP:
    with runtime.session_factory() as db:
        created = ClientService(db).create(
            name, [redirect_uri], public=public, first_party=first_party, **kwargs
        )
        return RegisteredRP(created.client.client_id, created.secret, redirect_uri)


@dataclass
class Browser:
    """A person's browser: signs in and answers consent pages."""

    base: str
    http: requests.Session = field(default_factory=requests.Session)

    def sign_in_form(
        self,
        page: requests.Response,
        email: str,
        password: str,
    ) -> requests.Response:
        token = _CSRF.search(page.text)
        assert token, page.text
        hidden = hidden_fields(page.text)
        data = {**hidden, "email": email, "password": password}
        return self.http.post(self.base + "/login", data=data, allow_redirects=False, timeout=10)

    def follow(
        self,
        url: str,
        *,
        email: str = "alice@example.com",
        password: str = PASSWORD,
        consent: str = "allow",
        max_steps: int = 10,
    ) -> requests.Response:
        """Follow redirects within idp, signing in and consenting when asked, until a
        response leaves idp (a redirect elsewhere) or stops (a page)."""
        response = self.http.get(url, allow_redirects=False, timeout=10)
        for _ in range(max_steps):
            if response.status_code in (301, 302, 303):
                target = urljoin(response.url, response.headers["Location"])
                if not target.startswith(self.base):
                    return response
                response = self.http.get(target, allow_redirects=False, timeout=10)
            elif response.status_code == 200 and 'name="password"' in response.text:
                response = self.sign_in_form(response, email, password)
            elif response.status_code == 200 and 'name="decision"' in response.text:
                data = hidden_fields(response.text)
                data["decision"] = consent
                response = self.http.post(
                    self.base + "/authorize/consent", data=data, allow_redirects=False, timeout=10
                )
            else:
                return response
        raise AssertionError("too many steps")


def redirect_params(response: requests.Response) -> dict[str, str]:
    location = response.headers["Location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@dataclass
class RelyingParty:
    """A relying service using authlib's client and joserfc, as the README tells it to."""

    base: str
    rp: RegisteredRP
    scope: str = SCOPE

    @property
    def metadata(self) -> dict[str, Any]:
        data: dict[str, Any] = requests.get(
            self.base + "/.well-known/openid-configuration", timeout=10
        ).json()
        return data

    def oauth(self) -> OAuth2Session:
        return OAuth2Session(
            self.rp.client_id,
            self.rp.client_secret,
            scope=self.scope,
            redirect_uri=self.rp.redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic" if self.rp.client_secret else "none",
        )

    def authorization_url(self, **params: str) -> tuple[str, str, str, str]:
        """(url, state, nonce, code_verifier)"""
        verifier = generate_token(48)
        nonce = generate_token(20)
        url, state = self.oauth().create_authorization_url(
            self.metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce, **params
        )
        return url, state, nonce, verifier

    def exchange(self, code: str, verifier: str | None) -> dict[str, Any]:
        token: dict[str, Any] = self.oauth().fetch_token(
            self.metadata["token_endpoint"],
            grant_type="authorization_code",
            code=code,
            code_verifier=verifier,
        )
        return token

    def sign_in(self, browser: Browser, **params: str) -> tuple[dict[str, Any], str]:
        """The whole code + PKCE flow; returns (token response, nonce)."""
        url, state, nonce, verifier = self.authorization_url(**params)
        response = browser.follow(url)
        assert response.status_code in (302, 303), response.text[:500]
        got = redirect_params(response)
        assert got.get("state") == state and got.get("iss") == self.base, got
        return self.exchange(got["code"], verifier), nonce

    def keyset(self) -> KeySet:
        return KeySet.import_key_set(requests.get(self.metadata["jwks_uri"], timeout=10).json())

    def validate_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        decoded = jwt.decode(id_token, self.keyset(), algorithms=["RS256"])
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": self.base},
            aud={"essential": True, "value": self.rp.client_id},
            nonce={"essential": True, "value": nonce},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
        ).validate(decoded.claims)
        return dict(decoded.claims)

    def validate_access_token(
        self, access_token: str, algorithms: tuple[str, ...] = ("RS256",)
    ) -> dict[str, Any]:
        """RFC 9068 §4 validation, as a resource server would do it (accepting ``algorithms``)."""
        decoded = jwt.decode(access_token, self.keyset(), algorithms=list(algorithms))
        assert decoded.header["typ"] == "at+jwt"
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": self.base},
            aud={"essential": True, "value": self.rp.client_id},
            exp={"essential": True},
            iat={"essential": True},
            jti={"essential": True},
            sub={"essential": True},
            client_id={"essential": True},
        ).validate(decoded.claims)
        return dict(decoded.claims)

    def _auth(self) -> tuple[str, str] | None:
        return (self.rp.client_id, self.rp.client_secret) if self.rp.client_secret else None

    def introspect(self, token: str) -> requests.Response:
        return requests.post(
            self.metadata["introspection_endpoint"],
            data={"token": token},
            auth=self._auth(),
            timeout=10,
        )

    def revoke(self, token: str) -> requests.Response:
        data = {"token": token}
        if not self.rp.client_secret:
            data["client_id"] = self.rp.client_id
        return requests.post(
            self.metadata["revocation_endpoint"], data=data, auth=self._auth(), timeout=10
        )

    def userinfo(self, access_token: str) -> requests.Response:
        return requests.get(
            self.metadata["userinfo_endpoint"],
            timeout=10,
            headers={"Authorization": f"Bearer {access_token}"},
        )

    def refresh(self, refresh_token: str) -> requests.Response:
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        if not self.rp.client_secret:
            data["client_id"] = self.rp.client_id
        return requests.post(
            self.metadata["token_endpoint"], data=data, auth=self._auth(), timeout=10
        )
