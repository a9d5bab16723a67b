"""The fake's directory: tenants with verified domains, app registrations, users, and the
in-flight protocol state (authorization codes, sign-in pages waiting for a username)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography import x509

from tests.fake_entra.jose import x5t, x5t_s256

# Entra's well-known tenant aliases; none of them is a tenant of its own.
SPECIAL_TENANTS = ("common", "organizations", "consumers")
CONSUMERS_TENANT_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"

GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
# Scopes naming Microsoft Graph as the resource, and the audiences Graph accepts.
GRAPH_RESOURCES = (GRAPH_RESOURCE, f"{GRAPH_RESOURCE}/", GRAPH_APP_ID)

Signing = Literal["unknown_key", "retired_key", "hs256", "none", "bad_signature"]


class _Remove:
    """Marker: ``tamper_next_id_token(oid=REMOVE)`` leaves the claim out."""

    def __repr__(self) -> str:
        return "REMOVE"


REMOVE: Any = _Remove()


@dataclass
class Domain:
    name: str
    is_default: bool = False
    is_initial: bool = False

    def graph(self) -> dict[str, Any]:
        return {
            "capabilities": "Email, OfficeCommunicationsOnline",
            "isDefault": self.is_default,
            "isInitial": self.is_initial,
            "name": self.name,
            "type": "Managed",
        }


@dataclass
class Tenant:
    tenant_id: str
    display_name: str
    domains: list[Domain] = field(default_factory=list)
    created: str = "2021-08-02T10:30:06Z"

    def has_domain(self, name: str) -> bool:
        return any(d.name.lower() == name.lower() for d in self.domains)

    def organization(self) -> dict[str, Any]:
        """The Graph ``organization`` resource (properties a test may look at)."""
        return {
            "id": self.tenant_id,
            "deletedDateTime": None,
            "businessPhones": [],
            "city": None,
            "country": None,
            "countryLetterCode": "US",
            "createdDateTime": self.created,
            "displayName": self.display_name,
            "onPremisesSyncEnabled": None,
            "preferredLanguage": "en",
            "tenantType": "AAD",
            "verifiedDomains": [d.graph() for d in self.domains],
        }


@dataclass
class App:
    """An app registration (single-tenant unless ``multi_tenant``)."""

    tenant_id: str
    client_id: str
    display_name: str
    service_principal_id: str
    redirect_uris: list[str] = field(default_factory=list)
    client_secrets: list[str] = field(default_factory=list)
    certificates: list[x509.Certificate] = field(default_factory=list)
    multi_tenant: bool = False
    graph_roles: tuple[str, ...] = ("Organization.Read.All",)
    front_channel_logout_url: str | None = None

    def certificate_for(self, header: Mapping[str, Any]) -> tuple[x509.Certificate | None, str]:
        """The registered certificate named by ``x5t#S256`` (or legacy ``x5t``), and the
        thumbprint the client sent."""
        # msal pads the base64url thumbprint with '='; Entra accepts both spellings.
        for name, thumbprint in (("x5t#S256", x5t_s256), ("x5t", x5t)):
            sent = header.get(name)
            if isinstance(sent, str):
                wanted = sent.rstrip("=")
                match = next((c for c in self.certificates if thumbprint(c) == wanted), None)
                return match, sent
        return None, ""


@dataclass
class User:
    tenant_id: str
    oid: str
    email: str | None
    preferred_username: str
    name: str
    xms_edov: bool | None = None
    guest: bool = False
    idp: str | None = None

    def matches_login(self, login: str) -> bool:
        login = login.strip().lower()
        return login in (self.preferred_username.lower(), (self.email or "").lower())


@dataclass
class AuthCode:
    code: str
    tenant_id: str
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    oid: str
    sid: str
    expires_at: float
    redeemed: bool = False


@dataclass
class Tamper:
    claims: dict[str, Any] = field(default_factory=dict)
    header: dict[str, Any] = field(default_factory=dict)
    signing: Signing | None = None


@dataclass
class QueuedError:
    error: str
    code: int
    message: str


@dataclass
class RecordedRequest:
    service: Literal["login", "graph"]
    method: str
    path: str
    args: dict[str, str]
    status: int = 0


@dataclass
class Logout:
    tenant_id: str
    post_logout_redirect_uri: str | None
    client_id: str | None
    redirected: bool
    params: dict[str, str]
