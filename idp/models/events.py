"""The activity log: one append-only row per security event."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.models.base import Base, BigIntId, UTCDateTime, utcnow


class Event(Base):
    __tablename__ = "events"
    # The activity log pages newest first by (occurred_at, id) within one user (idp.activity):
    # with the id in the index, a keyset page is one index range scan, also far down the log.
    # ix_events_time serves the retention purge (and the organization view across members).
    __table_args__ = (
        Index("ix_events_user_time_id", "user_id", "occurred_at", "id"),
        Index("ix_events_org_time", "organization_id", "occurred_at"),
        Index("ix_events_time", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # No foreign keys: the log outlives deleted users and organizations (de-identified).
    user_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    organization_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    product: Mapped[str] = mapped_column(String(200), default="account")
    action: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str] = mapped_column(String(45), default="")
    device_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    session_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The id of the request that recorded it (X-Request-ID; also in the logs), "" outside one.
    request_id: Mapped[str] = mapped_column(String(64), default="", server_default="")
