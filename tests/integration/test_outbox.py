"""The outbox worker (idp.outbox): any number of workers deliver each item once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
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


def test_a_failing_item_is_retried_for_three_days_then_given_up(runtime: Runtime) -> None:
    """The twelve retries with backoff are spent within hours; an SMTP outage of a day must
    not cost the mail. An item that keeps failing is given up (and logged) after three
    days."""
    now = [utcnow()]

    def deliver(payload: dict[str, Any]) -> None:
        raise ConnectionRefusedError("smtp.example.com:587")

    worker = OutboxWorker(runtime.session_factory, {KIND: deliver}, clock=lambda: now[0])
    with runtime.session_factory() as db:
        db.execute(delete(OutboxItem))
        queued = enqueue(db, KIND, {"n": "unlock link"})
        db.commit()
        item_id = queued.id

    def passes(hours: int) -> OutboxItem:
        for _ in range(hours * 6):  # a worker pass every ten minutes
            worker.run_once()
            now[0] += timedelta(minutes=10)
        with runtime.session_factory() as db:
            item = db.get(OutboxItem, item_id)
            assert item is not None
            return item

    after_a_day = passes(24)
    assert after_a_day.attempts > 12 and after_a_day.failed_at is None
    after_three_days = passes(50)  # and the next hourly retry
    assert after_three_days.failed_at is not None and after_three_days.done_at is None


def test_mail_queued_during_an_outage_goes_out_when_the_server_is_back(
    runtime: Runtime,
) -> None:
    now = [utcnow()]
    down = [True]
    sent: list[str] = []

    def deliver(payload: dict[str, Any]) -> None:
        if down[0]:
            raise ConnectionRefusedError("smtp.example.com:587")
        sent.append(payload["n"])

    worker = OutboxWorker(runtime.session_factory, {KIND: deliver}, clock=lambda: now[0])
    with runtime.session_factory() as db:
        db.execute(delete(OutboxItem))
        enqueue(db, KIND, {"n": "reset link"})
        db.commit()
    for _ in range(30 * 6):  # thirty hours down
        worker.run_once()
        now[0] += timedelta(minutes=10)
    down[0] = False
    for _ in range(7):  # retries are at most an hour apart
        worker.run_once()
        now[0] += timedelta(minutes=10)
    assert sent == ["reset link"]


def test_a_stopping_worker_ends_its_batch_and_gives_the_rest_back(runtime: Runtime) -> None:
    """SIGTERM (`idp worker` sets the stop event) while a batch is being delivered: the
    delivery under way ends, the rest of the batch is not delivered by this worker but given
    back at once, so another worker sends it now (not after the lease; and a slow or down SMTP
    server cannot keep the stopping worker busy for minutes, past a service manager's patience)."""
    import threading

    stop = threading.Event()
    sent: list[str] = []

    def deliver(payload: dict[str, Any]) -> None:
        sent.append(payload["n"])
        stop.set()  # SIGTERM arrives during the first delivery

    with runtime.session_factory() as db:
        db.execute(delete(OutboxItem))
        for n in ("first", "second", "third"):
            enqueue(db, KIND, {"n": n}, not_before=utcnow() - timedelta(seconds=1))
        db.commit()
    worker = OutboxWorker(runtime.session_factory, {KIND: deliver}, lease_seconds=120)

    worker.run_forever(stop)  # as `idp worker` runs it; returns once stopped
    assert sent == ["first"]
    other: list[str] = []
    OutboxWorker(runtime.session_factory, {KIND: lambda p: other.append(p["n"])}).run_once()
    assert other == ["second", "third"]  # taken over at once, each sent once
    with runtime.session_factory() as db:
        items = db.scalars(select(OutboxItem).where(OutboxItem.kind == KIND)).all()
        assert all(i.done_at is not None and i.attempts == 1 for i in items)


@pytest.mark.parametrize("request_kind", ["password_reset_request", "unlock_request"])
def test_a_link_request_whose_worker_died_after_it_is_not_mailed_twice(
    runtime: Runtime, request_kind: str
) -> None:
    """A password reset or unlock request is handled by issuing a link and queueing its mail
    in one transaction; the worker marks the request done in another. A worker killed between
    the two (kill -9) left the request to come round after the lease: a second link was
    issued, the first voided, and a second mail sent. The handler now marks its request done
    in its own transaction: the next worker has nothing left to do."""
    from idp.mail.queue import MAIL
    from idp.models import User
    from idp.outbox import Handler
    from idp.security.password_reset import RESET_REQUEST, ResetLinkIssuer
    from idp.security.unlock_requests import UNLOCK_REQUEST, UnlockLinkIssuer
    from tests.helpers import create_user

    assert {RESET_REQUEST, UNLOCK_REQUEST} == {"password_reset_request", "unlock_request"}
    create_user(runtime)
    handler: Handler
    if request_kind == RESET_REQUEST:
        handler = ResetLinkIssuer(runtime.session_factory, runtime.settings, runtime.passwords)
    else:
        handler = UnlockLinkIssuer(runtime.session_factory, runtime.settings, runtime.store,
                                   runtime.passwords)
        with runtime.session_factory() as db:
            user = db.scalars(select(User)).one()
            user.locked_at = utcnow()
            db.commit()

    def issue_then_die(payload: dict[str, Any]) -> None:
        handler(payload)
        raise KeyboardInterrupt  # stands for the kill: nothing after the handler runs

    with runtime.session_factory() as db:
        db.execute(delete(OutboxItem))
        enqueue(db, request_kind, {"email": "alice@example.com"})
        db.commit()
    with pytest.raises(KeyboardInterrupt):
        OutboxWorker(runtime.session_factory, {request_kind: issue_then_die}).run_once()

    later = utcnow() + timedelta(minutes=5)  # the dead worker's lease has run out
    OutboxWorker(runtime.session_factory, {request_kind: handler},
                 clock=lambda: later).run_once()

    with runtime.session_factory() as db:
        mails = db.scalars(select(OutboxItem).where(OutboxItem.kind == MAIL)).all()
        assert len(mails) == 1, [m.payload.get("template") for m in mails]
        request = db.scalars(select(OutboxItem).where(OutboxItem.kind == request_kind)).one()
        assert request.done_at is not None
