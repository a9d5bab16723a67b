"""What the provider issued: token families, refresh tokens, access tokens.

A family is one grant: everything issued from one authorization code (and the refresh tokens
that descend from it), or one client-credentials grant. Revoking the family revokes all of it;
ending the browser session a family belongs to revokes the family.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.models.base import Base, UTCDateTime, new_id, utcnow


class TokenFamily(Base):
    __tablename__ = "token_families"
    __table_args__ = (Index("ix_token_families_session", "session_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True
    )
    session_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    scope: Mapped[str] = mapped_column(String(500), default="")
    # How the user authenticated, carried into tokens refreshed later (OIDC Core §2).
    auth_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    amr: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)


class RefreshToken(Base):
    """Only the SHA-256 of the token is stored. A used (rotated) token presented again means
    it leaked: the family is revoked (RFC 9700 §4.14.2)."""

    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[str] = mapped_column(
        ForeignKey("token_families.id", ondelete="CASCADE"), index=True
    )
    scope: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AccessToken(Base):
    """An issued RFC 9068 access token, by its ``jti``: what introspection and userinfo check
    for live status (revoked, family revoked, session ended)."""

    __tablename__ = "access_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[str] = mapped_column(
        ForeignKey("token_families.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
