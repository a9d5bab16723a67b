"""Organizations, users and their memberships."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Enum,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.models.base import Base, UTCDateTime, new_id, utcnow


class Role(enum.StrEnum):
    """Roles within an organization; the owner is its legal representative."""

    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


def initials_of(name: str) -> str:
    """Up to two capital letters from the first and last word of ``name`` ("" for none)."""
    words = [w for w in name.split() if w[:1].isalnum()]
    if not words:
        return ""
    picked = words[0][:1] + (words[-1][:1] if len(words) > 1 else "")
    return picked.upper()


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # Members may not choose a lockout threshold below this (None: the instance minimum).
    lockout_floor: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Branding (ids of rows in ``images``): a square logo (else initials in the square) and an
    # optional rectangular logo, also offered to relying services.
    square_logo_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    wide_logo_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    memberships: Mapped[list[Membership]] = relationship(back_populates="organization")

    @property
    def initials(self) -> str:
        return initials_of(self.name) or "?"


class User(Base):
    __tablename__ = "users"

    # The id is the OIDC `sub`: random, stable, never reused.
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320))
    # Lower-cased email: unique case-insensitively on every backend.
    email_normalized: Mapped[str] = mapped_column(String(320), unique=True)
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    first_name: Mapped[str] = mapped_column(String(100), default="")
    last_name: Mapped[str] = mapped_column(String(100), default="")
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Made by sign-up at /signup (not by an operator or SSO): such an account is deleted when
    # its address is never verified (``idp accounts purge-unverified``).
    created_by_signup: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    # Lockout: failed attempts before the account locks (None: the instance default). A lock
    # is durable here; ``lock_id`` changes with every lock so unlock links bind to one lock.
    lockout_threshold: Mapped[int | None] = mapped_column(Integer, nullable=True)
    locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    lock_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # Part of the name of the failed-attempt counters in the store; every unlock increments
    # it, so an unlock recorded here starts a fresh count in every process, whatever store
    # each one uses (an in-process store cannot be cleared from another process).
    lockout_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    # The language the account chose (en, fr, de, it; None: from the browser), see idp.i18n.
    locale: Mapped[str | None] = mapped_column(String(16), nullable=True)

    # Login alerts: on successful sign-ins "always", "new_device" or "never"; on failures.
    alert_on_success: Mapped[str] = mapped_column(
        String(16), default="new_device", server_default="new_device"
    )
    alert_on_failure: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())

    # TOTP second factor (RFC 6238): the seed sealed with SecretBox; the last accepted time
    # step, so a code is accepted once.
    totp_secret: Mapped[str | None] = mapped_column(String(255), nullable=True)
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    # The profile picture (an ``images`` row id; None: initials are shown).
    avatar_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # The organization the user is working in (checked against the memberships on use).
    current_organization_id: Mapped[str | None] = mapped_column(String(36), nullable=True)

    memberships: Mapped[list[Membership]] = relationship(back_populates="user")

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip() or self.email

    @property
    def initials(self) -> str:
        return initials_of(f"{self.first_name} {self.last_name}") or self.email[:1].upper()


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "organization_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[Role] = mapped_column(
        Enum(Role, native_enum=False, length=16, values_callable=lambda e: [r.value for r in e])
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    user: Mapped[User] = relationship(back_populates="memberships")
    organization: Mapped[Organization] = relationship(back_populates="memberships")
