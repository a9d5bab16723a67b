"""The outbox worker (idp.outbox): any number of workers deliver each item once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select

from idp.models import OutboxItem, utcnow
from idp.outbox import OutboxWorker, enqueue
from idp.runtime import Runtime

KIND = "test_slow_delivery"


def test_a_batch_outlasting_its_lease_is_never_sent_twice(runtime: Runtime) -> None:
    """Worker A leases three items and delivers slowly (70 s each, a slow SMTP server, say);
    its 120 s lease runs out while it is busy and worker B leases what is left. Every item
    must still go out exactly once."""
    now = [utcnow()]
    sent: list[tuple[str, str]] = []
    worker_b: list[OutboxWorker] = []

    def clock() -> Any:
        return now[0]

    def handler(name: str) -> Any:
        def deliver(payload: dict[str, Any]) -> None:
            sent.append((name, payload["n"]))
            now[0] += timedelta(seconds=70)
            if name == "A" and len(sent) == 2:  # B wakes while A sends its second item
                worker_b[0].run_once()
        return deliver

    with runtime.session_factory() as db:
        db.execute(delete(OutboxItem))
        for n in ("first", "second", "third"):
            enqueue(db, KIND, {"n": n}, not_before=now[0] - timedelta(seconds=1))
        db.commit()
    a = OutboxWorker(runtime.session_factory, {KIND: handler("A")}, lease_seconds=120,
                     clock=clock)
    worker_b.append(OutboxWorker(runtime.session_factory, {KIND: handler("B")},
                                 lease_seconds=120, clock=clock))

    a.run_once()

    assert sorted(n for _, n in sent) == ["first", "second", "third"], sent
    assert ("B", "third") in sent  # B took over the item A's lapsed lease left
    with runtime.session_factory() as db:
        items = db.scalars(select(OutboxItem).where(OutboxItem.kind == KIND)).all()
        assert all(i.done_at is not None and i.attempts == 1 for i in items)
