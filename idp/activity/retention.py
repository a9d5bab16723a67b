"""Retention of the activity log: events older than ``event_retention_days`` are deleted.

This is the only way an event ever leaves the log (no page or command edits or deletes one).
Deletion runs in batches, each its own transaction, so a first purge of a large log neither
holds one huge transaction nor blocks new events for long.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from idp.models import Event, utcnow

PURGE_BATCH = 10_000


@dataclass(frozen=True)
class PurgeResult:
    deleted: int
    before: datetime
    retention_days: int


def purge_events(
    db: Session, retention_days: int, *, now: datetime | None = None, batch: int = PURGE_BATCH
) -> PurgeResult:
    """Delete every event that occurred more than ``retention_days`` days before ``now``."""
    before = (now or utcnow()) - timedelta(days=retention_days)
    deleted = 0
    while True:
        ids = select(Event.id).where(Event.occurred_at < before).limit(batch)
        result = db.execute(delete(Event).where(Event.id.in_(ids.scalar_subquery())))
        count: int = result.rowcount  # type: ignore[attr-defined]
        db.commit()
        deleted += count
        if count < batch:
            return PurgeResult(deleted, before, retention_days)
