"""SSO connections: linking an organization to its Entra ID tenant, and finding the
connection that serves an email address.

Linking checks everything it can before saving (issue 6, "Linking a tenant"): the tenant is one
tenant (never a multi-tenant alias), the credentials work (msal app-only token for Graph), every
claimed domain is verified by that tenant and is not served by another organization. The client
secret (or a certificate's private key) is stored sealed with :class:`SecretBox` bound to the
connection id, and never shown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, literal, select
from sqlalchemy.orm import Session

from idp.db import HotSelect
from idp.federation.credentials import (
    ClientCertificate,
    ClientSecret,
    Credential,
)
from idp.federation.entra import EntraDirectory, EntraError, as_guid, normalize_domain
from idp.i18n import N_, LocalizedError
from idp.models import Organization, SsoConnection, SsoDomain
from idp.models.base import new_id
from idp.names import name_key
from idp.security.secretbox import SecretBox, SecretBoxError

SECRET_PURPOSE = b"idp sso secrets"
MAX_DOMAINS = 200  # email domains of one connection


class SsoConnectionError(LocalizedError):
    """A connection cannot be saved; the message (one line) is for the administrator
    (English in the ``idp`` command, :meth:`translated` on a page)."""


# Whether a domain's connection enforces SSO: one row always (NULL for a domain without a
# connection), so the password form's check before every sign-in runs as a HotSelect.
_ENFORCES_SSO = HotSelect(
    select(SsoConnection.enforce_sso)
    .select_from(select(literal(1)).subquery())
    .outerjoin(SsoDomain, SsoDomain.domain == bindparam("domain"))
    .outerjoin(SsoConnection, SsoConnection.id == SsoDomain.connection_id)
)


def saved_event_details(connection: SsoConnection) -> dict[str, Any]:
    """The details of the ``organization:sso:save`` event of a connection just saved."""
    return {
        "tenant_id": connection.tenant_id,
        "client_id": connection.client_id,
        "domains": connection.domain_names,
        "credential": "certificate" if connection.certificate else "secret",
    }


def secret_box(secret_key: str) -> SecretBox:
    return SecretBox(secret_key, SECRET_PURPOSE)


def email_domain(email: str) -> str | None:
    local, sep, domain = email.strip().rpartition("@")
    if not sep or not local:
        return None
    return normalize_domain(domain)


@dataclass(frozen=True)
class LinkOptions:
    jit: bool = True
    enforce_sso: bool = False
    allow_guests: bool = False


class ConnectionService:
    def __init__(self, db: Session, directory: EntraDirectory, box: SecretBox) -> None:
        self.db = db
        self.directory = directory
        self.box = box

    # Lookups -----------------------------------------------------------------------------
    def for_organization(self, organization_id: str) -> SsoConnection | None:
        return self.db.scalar(
            select(SsoConnection).where(SsoConnection.organization_id == organization_id)
        )

    def for_domain(self, domain: str) -> SsoConnection | None:
        name = normalize_domain(domain)
        if name is None:
            return None
        row = self.db.get(SsoDomain, name)
        return row.connection if row is not None else None

    def enforces_sso(self, email: str) -> bool:
        """Whether this email's domain must sign in with SSO (identifier-first login). Asked
        before every password sign-in, so it reads one column without loading the rows."""
        domain = email_domain(email)
        if domain is None:
            return False
        return bool(_ENFORCES_SSO.one(self.db.connection(), {"domain": domain})[0])

    def for_email(self, email: str) -> SsoConnection | None:
        domain = email_domain(email)
        return self.for_domain(domain) if domain else None

    def credential(self, connection: SsoConnection) -> Credential:
        """The connection's credential, unsealed (raises SecretBoxError when the secret key
        changed since it was sealed)."""
        sealed = self.box.open(connection.id, connection.client_secret).decode()
        if connection.certificate:
            return ClientCertificate(sealed, connection.certificate)
        return ClientSecret(sealed)

    def test(self, connection: SsoConnection) -> set[str]:
        """ "Test connection" for a saved connection: an app-only Graph token with the stored
        credential, then the tenant's verified domains. Raises :class:`SsoConnectionError`."""
        try:
            credential = self.credential(connection)
            verified = self.directory.verified_domains(
                connection.tenant_id, connection.client_id, credential
            )
        except SecretBoxError:
            raise SsoConnectionError(
                N_("the stored credential cannot be read (the secret key changed); save it again")
            ) from None
        except EntraError as exc:
            raise SsoConnectionError.wrapping(exc) from None
        missing = [d for d in connection.domain_names if d not in verified]
        if missing:
            raise SsoConnectionError(
                N_("domain %(domain)s is no longer verified in the tenant"), domain=missing[0]
            )
        return verified

    def unlink(self, connection: SsoConnection) -> None:
        """Remove the connection and its domains (linked identities stay, so re-linking the
        same tenant restores them); the caller commits."""
        self.db.delete(connection)

    # Linking -----------------------------------------------------------------------------
    def link(
        self,
        organization: Organization | str,
        tenant: str,
        client_id: str,
        credential: Credential | str | None,
        domains: Iterable[str],
        options: LinkOptions = LinkOptions(),
    ) -> SsoConnection:
        """Create (or replace) the organization's connection after testing it, in the
        caller's transaction (flushed; the caller records its event and commits once).
        ``credential``: a client secret (str) or certificate; None keeps the stored one."""
        org = self._organization(organization)
        # Entra reads a client id as a GUID whatever its case, and names it in lower case in
        # its ID tokens' aud: kept as they will name it.
        client_id = as_guid(client_id) or client_id.strip()
        if not client_id or len(client_id) > 100:
            raise SsoConnectionError(
                N_("the client ID is required (the application (client) ID of the app)")
            )
        connection = self.for_organization(org.id)
        if isinstance(credential, str):
            credential = ClientSecret(credential) if credential else None
        if credential is None:
            if connection is None:
                raise SsoConnectionError(N_("a client secret or a certificate is required"))
            try:
                credential = self.credential(connection)
            except SecretBoxError:
                raise SsoConnectionError(
                    N_("the stored credential cannot be read; give it again")
                ) from None
        names = self._domains(domains, org.id)
        try:
            tenant_id = self.directory.resolve_tenant_id(tenant)
            verified = self.directory.verified_domains(tenant_id, client_id, credential)
        except EntraError as exc:
            raise SsoConnectionError.wrapping(exc) from None
        unverified = [n for n in names if n not in verified]
        if unverified:
            raise SsoConnectionError(
                N_("domain %(domain)s is not verified in tenant %(tenant)s"),
                domain=unverified[0],
                tenant=tenant_id,
            )
        if connection is None:
            connection = SsoConnection(id=new_id(), organization_id=org.id)
            self.db.add(connection)
        connection.tenant_id = tenant_id
        connection.client_id = client_id
        sealed, certificate = credential.sealed_parts()
        connection.client_secret = self.box.seal(connection.id, sealed.encode())
        connection.certificate = certificate
        connection.jit = options.jit
        connection.enforce_sso = options.enforce_sso
        connection.allow_guests = options.allow_guests
        kept = {d.domain: d for d in connection.domains}
        connection.domains = [kept.get(n) or SsoDomain(domain=n) for n in names]
        self.db.flush()
        return connection

    def _organization(self, organization: Organization | str) -> Organization:
        """An organization given as a row (the admin pages) or by name or id (the CLI)."""
        if isinstance(organization, Organization):
            return organization
        org = self.db.scalar(
            select(Organization).where(func.lower(Organization.name) == name_key(organization))
        ) or self.db.get(Organization, organization)
        if org is None:
            raise SsoConnectionError(N_("no organization named '%(name)s'"), name=organization)
        return org

    def _domains(self, domains: Iterable[str], organization_id: str) -> list[str]:
        names: list[str] = []
        for raw in domains:
            name = normalize_domain(raw)
            if name is None:
                raise SsoConnectionError(N_("'%(name)s' is not a domain name"), name=raw)
            if name not in names:
                names.append(name)
        if not names:
            raise SsoConnectionError(N_("give at least one domain"))
        if len(names) > MAX_DOMAINS:
            raise SsoConnectionError(N_("give at most %(n)s domains"), n=MAX_DOMAINS)
        for name in names:
            owner = self.db.get(SsoDomain, name)
            if owner is not None and owner.connection.organization_id != organization_id:
                raise SsoConnectionError(
                    N_("domain %(domain)s is already served by another organization's connection"),
                    domain=name,
                )
        return names
