"""HTTP to Microsoft Entra ID and Microsoft Graph: tenant discovery (OpenID Connect Discovery
1.0 on Entra's v2.0 endpoints) and the "test connection" of a new SSO connection (an app-only
token from msal, then Graph ``GET /v1.0/organization`` for the tenant's verified domains).

Base URLs come from ``IDP_ENTRA_AUTHORITY`` and ``IDP_GRAPH_URL`` (sovereign clouds, tests).
TLS trust follows ``REQUESTS_CA_BUNDLE`` like every ``requests`` call.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from typing import Any

import requests

from idp.federation.credentials import Credential
from idp.i18n import N_, LocalizedError
from idp.settings import Settings

# Multi-tenant aliases: an organization's connection must name exactly one tenant.
MULTI_TENANT_ALIASES = frozenset({"common", "organizations", "consumers"})
GRAPH_RESOURCE = "https://graph.microsoft.com"
TIMEOUT = 10
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


class EntraError(LocalizedError):
    """Entra or Graph refused or could not be reached; the message (English for the operator,
    :meth:`translated` for the administrator's page) never contains a secret."""


def normalize_domain(domain: str) -> str | None:
    """The lower-case domain, or None when it is not a plausible DNS name."""
    name = domain.strip().lower().rstrip(".")
    return name if _DOMAIN.match(name) else None


def as_guid(value: str) -> str | None:
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        return None


class EntraDirectory:
    """Reads tenant metadata and verified domains; one instance per use (no state)."""

    def __init__(self, authority: str, graph_url: str, timeout: float = TIMEOUT) -> None:
        self.authority = authority.rstrip("/")
        self.graph_url = graph_url.rstrip("/")
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> EntraDirectory:
        return cls(settings.entra_authority, settings.graph_url)

    def tenant_authority(self, tenant_id: str) -> str:
        return f"{self.authority}/{tenant_id}"

    def issuer(self, tenant_id: str) -> str:
        """The exact ``iss`` of v2.0 ID tokens from this tenant."""
        return f"{self.authority}/{tenant_id}/v2.0"

    def discovery(self, tenant: str) -> dict[str, Any]:
        """The tenant's OpenID Provider metadata (``/{tenant}/v2.0/.well-known/...``)."""
        url = f"{self.authority}/{tenant}/v2.0/.well-known/openid-configuration"
        try:
            response = requests.get(url, timeout=self.timeout)
        except requests.RequestException as exc:
            raise EntraError(
                N_("cannot reach Entra ID at %(url)s: %(error)s"),
                url=self.authority,
                error=exc.__class__.__name__,
            ) from None
        if response.status_code != 200:
            raise EntraError(N_("Entra ID does not know the tenant '%(tenant)s'"), tenant=tenant)
        try:
            data: dict[str, Any] = response.json()
        except ValueError:
            raise EntraError(
                N_("Entra ID answered discovery with something other than JSON")
            ) from None
        return data

    def resolve_tenant_id(self, tenant: str) -> str:
        """The tenant GUID for a GUID or a verified domain (read from the discovery
        document's issuer once, at setup). Multi-tenant aliases are refused."""
        tenant = tenant.strip()
        if tenant.lower() in MULTI_TENANT_ALIASES:
            raise EntraError(
                N_("the tenant ID '%(tenant)s' is a multi-tenant alias; give the tenant's GUID"),
                tenant=tenant,
            )
        guid = as_guid(tenant)
        if guid is not None:
            return guid
        domain = normalize_domain(tenant)
        if domain is None:
            raise EntraError(
                N_("the tenant ID '%(tenant)s' is neither a GUID nor a domain"), tenant=tenant
            )
        issuer = str(self.discovery(domain).get("issuer", ""))
        prefix, suffix = f"{self.authority}/", "/v2.0"
        found = (
            as_guid(issuer[len(prefix) : -len(suffix)])
            if issuer.startswith(prefix) and issuer.endswith(suffix)
            else None
        )
        if found is None:
            raise EntraError(
                N_("cannot resolve the tenant of %(domain)s from Entra ID's metadata"),
                domain=domain,
            )
        return found

    def app_token(self, tenant_id: str, client_id: str, credential: Credential) -> str:
        """An app-only access token for Graph (client credentials, via msal; a certificate
        becomes a PS256 ``client_assertion`` with ``x5t#S256``)."""
        import msal

        try:
            app = msal.ConfidentialClientApplication(
                client_id,
                client_credential=credential.for_msal(),
                authority=self.tenant_authority(tenant_id),
                instance_discovery=False,
                timeout=self.timeout,
            )
            result = app.acquire_token_for_client(scopes=[f"{GRAPH_RESOURCE}/.default"])
        except (ValueError, requests.RequestException) as exc:
            raise EntraError(
                N_("test connection failed: %(error)s"), error=_first_line(str(exc))
            ) from None
        token = result.get("access_token") if isinstance(result, dict) else None
        if not isinstance(token, str):
            error = result.get("error", "no token") if isinstance(result, dict) else "no token"
            description = _first_line(
                str(result.get("error_description", "")) if isinstance(result, dict) else ""
            )
            raise EntraError(
                N_("test connection failed: %(error)s"),
                error=f"{error}: {description}".rstrip(": "),
            )
        return token

    def verified_domains(self, tenant_id: str, client_id: str, credential: Credential) -> set[str]:
        """The tenant's verified domains, read from Graph with an app-only token (the app
        needs the ``Organization.Read.All`` application permission)."""
        token = self.app_token(tenant_id, client_id, credential)
        try:
            response = requests.get(
                f"{self.graph_url}/v1.0/organization",
                params={"$select": "id,verifiedDomains"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise EntraError(
                N_("cannot reach Microsoft Graph: %(error)s"), error=exc.__class__.__name__
            ) from None
        if response.status_code != 200:
            code = ""
            with contextlib.suppress(ValueError, AttributeError):
                code = str(response.json().get("error", {}).get("code", ""))
            raise EntraError(
                N_(
                    "Microsoft Graph refused to read the organization (HTTP %(status)s); grant "
                    "the app the Organization.Read.All application permission"
                ),
                status=f"{response.status_code} {code}".rstrip(),
            )
        try:
            orgs = response.json().get("value") or []
            names = {
                str(d["name"]).lower()
                for org in orgs
                if as_guid(str(org.get("id", ""))) == tenant_id
                for d in org.get("verifiedDomains") or []
            }
        except (ValueError, AttributeError, KeyError, TypeError):
            raise EntraError(N_("Microsoft Graph answered with an unexpected document")) from None
        return names


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""
