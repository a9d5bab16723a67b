"""Relying services registered with the OpenID Connect provider, and users' consents to them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from idp.models.base import Base, UTCDateTime, new_id, utcnow

DEFAULT_SCOPES = "openid profile email offline_access"


class Client(Base):
    """An OAuth 2.0 client (RFC 6749 §2). Confidential clients keep a secret, stored as its
    SHA-256 (the secret is 256 random bits, so a fast hash is right); public clients have none
    and must use PKCE."""

    __tablename__ = "clients"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    first_party: Mapped[bool] = mapped_column(Boolean, default=False)
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    allowed_scopes: Mapped[str] = mapped_column(String(500), default=DEFAULT_SCOPES)
    # OIDC Dynamic Client Registration §2 id_token_signed_response_alg: RS256 or ES256.
    id_token_alg: Mapped[str] = mapped_column(String(10), default="RS256", server_default="RS256")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    secret_rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    def describe(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "name": self.name,
            "public": self.public,
            "first_party": self.first_party,
            "redirect_uris": list(self.redirect_uris),
            "post_logout_redirect_uris": list(self.post_logout_redirect_uris),
            "backchannel_logout_uri": self.backchannel_logout_uri,
            "allowed_scopes": self.allowed_scopes,
            "token_endpoint_auth_method": "none" if self.public else "client_secret_basic",
            "id_token_signed_response_alg": self.id_token_alg,
            "created_at": self.created_at.isoformat(),
        }


class Consent(Base):
    """A user's remembered consent to a client for a set of scopes (revocable)."""

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("user_id", "client_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), index=True
    )
    scopes: Mapped[str] = mapped_column(String(500))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
