"""Invitations to join an organization, and stored images (avatars, organization logos)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.models.accounts import Role
from idp.models.base import Base, UTCDateTime, new_id, utcnow


class Invitation(Base):
    """An invitation mailed to ``email`` to join an organization with ``role``.

    The link carries a random 256-bit token of which only the SHA-256 is stored; the row binds
    it to one organization, one address and one role. It is used once (``accepted_at``),
    expires, and can be withdrawn (``revoked_at``)."""

    __tablename__ = "invitations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(320))
    email_normalized: Mapped[str] = mapped_column(String(320))
    role: Mapped[Role] = mapped_column(
        Enum(Role, native_enum=False, length=16, values_callable=lambda e: [r.value for r in e])
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # No foreign key: the invitation outlives its author's account.
    invited_by: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    accepted_by: Mapped[str | None] = mapped_column(String(36), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    @property
    def pending(self) -> bool:
        return self.accepted_at is None and self.revoked_at is None and self.expires_at > utcnow()


class RemovedMember(Base):
    """Someone an owner or admin removed from the organization (not someone who left).

    Removing a member unlinks their account from the organization's Entra ID tenant; this row
    keeps them from linking it again by themselves (their password or a mailed code) while
    the organization has not taken them back: accepting a new invitation deletes it."""

    __tablename__ = "removed_members"

    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    # No foreign key: the row outlives the remover's account.
    removed_by: Mapped[str | None] = mapped_column(String(36), nullable=True)
    removed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ImageKind(enum.StrEnum):
    """What an image is for: it decides how an upload is checked and shaped."""

    AVATAR = "avatar"
    SQUARE_LOGO = "square_logo"
    WIDE_LOGO = "wide_logo"


class StoredImage(Base):
    """A re-encoded image (metadata stripped), kept in the database so every node serves it.

    The id is random and a new upload gets a new row, so ``/media/<id>.<ext>`` never changes
    content and may be cached forever (the URL itself is the cache buster)."""

    __tablename__ = "images"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(16))
    content_type: Mapped[str] = mapped_column(String(32))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class EmailChange(Base):
    """A pending change of a user's email address, confirmed from the new mailbox.

    Only the SHA-256 of the link's token is stored; the link is single-use and expires."""

    __tablename__ = "email_changes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    new_email: Mapped[str] = mapped_column(String(320))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
