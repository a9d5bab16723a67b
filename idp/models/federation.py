"""Enterprise SSO: an organization's Microsoft Entra ID connection, the email domains it
serves, and the Entra identities linked to local users."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, Text, UniqueConstraint, false, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.models.base import Base, UTCDateTime, new_id, utcnow


class SsoConnection(Base):
    """One Entra tenant + app registration per organization."""

    __tablename__ = "sso_connections"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), unique=True
    )
    tenant_id: Mapped[str] = mapped_column(String(36))
    client_id: Mapped[str] = mapped_column(String(100))
    # The client secret, or the private key (PEM) when ``certificate`` is set; sealed with
    # SecretBox (purpose b"idp sso secrets", associated data: this row's id).
    client_secret: Mapped[str] = mapped_column(Text)
    # PEM certificate registered in the app registration (public); "" for a client secret.
    certificate: Mapped[str] = mapped_column(Text, default="", server_default="")
    jit: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    enforce_sso: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    allow_guests: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    domains: Mapped[list[SsoDomain]] = relationship(
        back_populates="connection", cascade="all, delete-orphan"
    )

    @property
    def domain_names(self) -> list[str]:
        return sorted(d.domain for d in self.domains)


class SsoDomain(Base):
    """An email domain served by one connection (lower-case; one organization at most)."""

    __tablename__ = "sso_domains"

    domain: Mapped[str] = mapped_column(String(253), primary_key=True)
    connection_id: Mapped[str] = mapped_column(
        ForeignKey("sso_connections.id", ondelete="CASCADE"), index=True
    )

    connection: Mapped[SsoConnection] = relationship(back_populates="domains")


class FederatedIdentity(Base):
    """A local user's Entra identity, keyed by (organization, tenant, object id): ``oid`` is
    stable and unique in a tenant, unlike ``email``/``preferred_username`` (nOAuth)."""

    __tablename__ = "federated_identities"
    __table_args__ = (UniqueConstraint("organization_id", "tenant_id", "object_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(String(36))
    object_id: Mapped[str] = mapped_column(String(36))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    last_sub: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
