"""The transactional outbox and its worker: work that must happen, never on the request path.

:func:`enqueue` adds a row to the caller's transaction. :class:`OutboxWorker` leases due rows
(a conditional UPDATE, so two workers never deliver the same row at once), hands each to the
handler for its kind, and marks it done; a failure is retried with exponential backoff (at
most an hour apart), and the row is marked failed and logged only after both the last attempt
and :data:`GIVE_UP_AFTER` (three days, as mail servers keep retrying, RFC 5321 §4.5.4.1): an
SMTP server down for an afternoon loses no mail. A worker killed mid-delivery leaves
a lease that expires, and the row is delivered again by another worker.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from idp.models import utcnow
from idp.models.outbox import OutboxItem
from idp.observability.metrics import OUTBOX

log = logging.getLogger("idp.outbox")

Handler = Callable[[dict[str, Any]], None]

# The worker adds the row's id under this key to the payload a handler receives (the stored
# payload is unchanged), so a handler can derive stable identifiers such as a mail's Message-ID.
ITEM_ID = "outbox_id"


@dataclass(frozen=True)
class Chore:
    """Periodic housekeeping a worker does besides the outbox, ``every`` so often (first when
    it starts). It must be safe when several workers do it at once."""

    name: str
    every: timedelta
    run: Callable[[], None]


class DeliveryError(Exception):
    """A delivery failed and should be retried later."""


def enqueue(
    db: Session, kind: str, payload: dict[str, Any], *, not_before: datetime | None = None
) -> OutboxItem:
    """Add work to ``db``'s transaction; it is delivered once the caller commits, and not
    before ``not_before`` when given (delayed work, e.g. the end of a coalescing window)."""
    item = OutboxItem(kind=kind, payload=payload, next_attempt_at=not_before or utcnow())
    db.add(item)
    return item


def handled_once(db: Session, payload: Mapping[str, Any]) -> bool:
    """For a handler whose work is one database transaction (issuing a link and queueing its
    mail): mark the handler's outbox item done in ``db``'s transaction, so the work and the
    mark commit together. False when the item is done already: its worker died after the
    handler committed and before it marked the item, the lease ran out and the item came
    round again; doing the work twice would mail a second link (and void the first). True
    without an item id (a direct call)."""
    item_id = payload.get(ITEM_ID)
    if not isinstance(item_id, int):
        return True
    marked = db.execute(
        update(OutboxItem)
        .where(OutboxItem.id == item_id, OutboxItem.done_at.is_(None))
        .values(done_at=utcnow())
    )
    return marked.rowcount == 1  # type: ignore[attr-defined,no-any-return]


GIVE_UP_AFTER = timedelta(days=3)


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(3600, 5 * 2 ** max(0, attempts - 1)))


class OutboxWorker:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        handlers: Mapping[str, Handler],
        *,
        lease_seconds: int = 120,
        max_attempts: int = 12,
        give_up_after: timedelta = GIVE_UP_AFTER,
        clock: Callable[[], datetime] = utcnow,
        chores: Sequence[Chore] = (),
    ) -> None:
        self.session_factory = session_factory
        self.handlers = handlers
        self.chores = list(chores)
        self._chores_due: dict[str, datetime] = {}
        self.lease = timedelta(seconds=lease_seconds)
        self.max_attempts = max_attempts
        self.give_up_after = give_up_after
        self.clock = clock

    def _lease(self, db: Session, limit: int) -> list[tuple[int, datetime]]:
        """Lease up to ``limit`` due items; each with the lease's end, which fences it: see
        :meth:`_renew`."""
        now = self.clock()
        due = db.scalars(
            select(OutboxItem.id)
            .where(
                OutboxItem.done_at.is_(None),
                OutboxItem.failed_at.is_(None),
                OutboxItem.kind.in_(list(self.handlers)),
                OutboxItem.next_attempt_at <= now,
                or_(OutboxItem.leased_until.is_(None), OutboxItem.leased_until < now),
            )
            .order_by(OutboxItem.id)
            .limit(limit)
        ).all()
        leased: list[tuple[int, datetime]] = []
        until = now + self.lease
        for item_id in due:
            result = db.execute(
                update(OutboxItem)
                .where(
                    OutboxItem.id == item_id,
                    or_(OutboxItem.leased_until.is_(None), OutboxItem.leased_until < now),
                    OutboxItem.done_at.is_(None),
                )
                .values(leased_until=until)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                leased.append((item_id, until))
        db.commit()
        return leased

    def _renew(self, db: Session, item_id: int, until: datetime) -> bool:
        """Right before delivering an item of a batch: still ours? Then the lease starts
        again. A batch can outlast its lease (a slow or unreachable SMTP server, 50 items);
        another worker may then have leased the rest, and the lease's end it wrote differs
        from ours, so the item is skipped here instead of being sent twice."""
        renewed = db.execute(
            update(OutboxItem)
            .where(
                OutboxItem.id == item_id,
                OutboxItem.leased_until == until,
                OutboxItem.done_at.is_(None),
                OutboxItem.failed_at.is_(None),
            )
            .values(leased_until=self.clock() + self.lease)
        )
        db.commit()
        return renewed.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    def _release(self, db: Session, leases: Sequence[tuple[int, datetime]]) -> None:
        """Give back leases not used (the worker is stopping), so that another worker takes
        those items now instead of after the lease."""
        for item_id, until in leases:
            db.execute(
                update(OutboxItem)
                .where(OutboxItem.id == item_id, OutboxItem.leased_until == until)
                .values(leased_until=None)
            )
        db.commit()

    def run_once(self, limit: int = 50, stop: threading.Event | None = None) -> int:
        """Deliver what is due now; returns how many items were delivered. Once ``stop`` is
        set (SIGTERM), the delivery under way ends and the rest of the batch is given back:
        a batch can take minutes when the SMTP server is slow or down, longer than a service
        manager waits before killing the process."""
        delivered = 0
        with self.session_factory() as db:
            leases = self._lease(db, limit)
            for index, (item_id, until) in enumerate(leases):
                if stop is not None and stop.is_set():
                    self._release(db, leases[index:])
                    break
                if not self._renew(db, item_id, until):
                    continue
                item = db.get(OutboxItem, item_id)
                if item is None:
                    continue
                delivered += self._deliver(db, item)
        return delivered

    def _deliver(self, db: Session, item: OutboxItem) -> int:
        item.attempts += 1
        try:
            self.handlers[item.kind]({**item.payload, ITEM_ID: item.id})
        except Exception as exc:  # any failure is retried; the reason is logged
            item.leased_until = None
            item.last_error = f"{type(exc).__name__}: {exc}"[:1000]
            too_old = self.clock() - item.created_at >= self.give_up_after
            if item.attempts >= self.max_attempts and too_old:
                item.failed_at = self.clock()
                OUTBOX.labels(item.kind, "failed").inc()
                log.error(
                    "outbox item %s (%s) failed for good: %s", item.id, item.kind, item.last_error
                )
            else:
                OUTBOX.labels(item.kind, "retry").inc()
                item.next_attempt_at = self.clock() + backoff(item.attempts)
                log.warning(
                    "outbox item %s (%s) attempt %s failed: %s",
                    item.id,
                    item.kind,
                    item.attempts,
                    item.last_error,
                )
            db.commit()
            return 0
        item.done_at = self.clock()
        item.leased_until = None
        db.commit()
        OUTBOX.labels(item.kind, "delivered").inc()
        return 1

    def run_chores(self) -> None:
        """Run the chores that are due; one that fails is logged and tried at its next turn."""
        now = self.clock()
        for chore in self.chores:
            if self._chores_due.get(chore.name, now) > now:
                continue
            self._chores_due[chore.name] = now + chore.every
            try:
                chore.run()
            except Exception:  # a chore must not stop the delivery of the outbox
                log.exception("worker chore %r failed", chore.name)

    def run_forever(self, stop: threading.Event, interval: float = 1.0) -> None:
        while not stop.is_set():
            try:
                self.run_once(stop=stop)
            except Exception:  # the worker keeps going through database hiccups
                log.exception("outbox worker pass failed")
            self.run_chores()
            stop.wait(interval)


# Items that failed for good, for the operator ------------------------------------------------


def failed_items(db: Session, limit: int = 1000) -> list[OutboxItem]:
    """The items given up on (``failed_at`` set), oldest first."""
    return list(
        db.scalars(
            select(OutboxItem)
            .where(OutboxItem.failed_at.is_not(None), OutboxItem.done_at.is_(None))
            .order_by(OutboxItem.id)
            .limit(limit)
        )
    )


class NotFailed(LookupError):
    """Some of the ids given are not items that failed for good."""

    def __init__(self, ids: list[int]) -> None:
        super().__init__(", ".join(map(str, ids)))
        self.ids = ids


def requeue_failed(
    db: Session, ids: list[int] | None, clock: Callable[[], datetime] = utcnow
) -> int:
    """Give items that failed for good a new start (``ids``, or every one with None): due now,
    with their attempts and their days counted from zero, so the worker delivers them again
    (after an outage longer than the retries, once the cause is fixed). Raises
    :class:`NotFailed`, changing nothing, when an id is not a failed item. Commits; returns
    how many were requeued."""
    query = update(OutboxItem).where(
        OutboxItem.failed_at.is_not(None), OutboxItem.done_at.is_(None)
    )
    if ids is not None:
        failed = set(
            db.scalars(
                select(OutboxItem.id).where(
                    OutboxItem.id.in_(ids),
                    OutboxItem.failed_at.is_not(None),
                    OutboxItem.done_at.is_(None),
                )
            )
        )
        missing = sorted(set(ids) - failed)
        if missing:
            raise NotFailed(missing)
        query = query.where(OutboxItem.id.in_(ids))
    now = clock()
    result = db.execute(  # created_at: the give-up clock (12 attempts and 3 days) starts again
        query.values(
            failed_at=None, attempts=0, next_attempt_at=now, leased_until=None, created_at=now
        )
    )
    db.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]
