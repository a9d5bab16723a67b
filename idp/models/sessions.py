"""Browser sessions and the devices they were started from."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.models.accounts import User
from idp.models.base import Base, UTCDateTime, new_id, utcnow


class Device(Base):
    """One browser of one user, recognised by the long-lived device cookie it carries."""

    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("user_id", "browser_key_hash"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    browser_key_hash: Mapped[str] = mapped_column(String(64))
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    browser: Mapped[str] = mapped_column(String(100), default="")
    os: Mapped[str] = mapped_column(String(100), default="")
    first_ip: Mapped[str] = mapped_column(String(45), default="")
    last_ip: Mapped[str] = mapped_column(String(45), default="")
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    @property
    def record_label(self) -> str:
        """The device as the event log records it: English, whatever the page's language."""
        return " on ".join(p for p in (self.browser, self.os) if p) or "Unknown device"


class UserSession(Base):
    """A signed-in browser. ``id`` is the public session id (OIDC ``sid``); the cookie holds a
    separate random token of which only the SHA-256 is stored."""

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_user_active", "user_id", "ended_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    ip: Mapped[str] = mapped_column(String(45), default="")
    amr: Mapped[str] = mapped_column(String(100), default="pwd")
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # The session that took over when this one ended by re-authentication in the same browser
    # (prompt=login, max_age): signing out of that one also signs out what this one started.
    replaced_by: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)

    user: Mapped[User] = relationship()
    device: Mapped[Device] = relationship()
