"""`idp outbox failed` and `idp outbox retry`: after an outage longer than the retries (SMTP
down for days), the operator sees what was given up on and has it delivered again."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from idp.db import make_engine, make_session_factory
from idp.models.outbox import OutboxItem
from tests.services import run_idp

LONG_AGO = datetime(2026, 11, 1, tzinfo=UTC)


def _seed(database_url: str) -> dict[str, int]:
    """A mail and a logout given up on, one still retrying, one delivered."""
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as db:
            rows = {
                "failed_mail": OutboxItem(kind="mail", payload={"to": "a@example.com"},
                                          attempts=12, failed_at=LONG_AGO,
                                          last_error="SMTPConnectError: refused"),
                "failed_multiline": OutboxItem(  # SMTP servers answer in several lines
                    kind="mail", payload={}, attempts=12, failed_at=LONG_AGO,
                    last_error="SMTPDataError: (554, b'5.7.1 rejected\n5.7.1 see policy')"),
                "failed_logout": OutboxItem(kind="backchannel_logout", payload={},
                                            attempts=12, failed_at=LONG_AGO,
                                            last_error="back-channel logout: HTTP 503"),
                "retrying": OutboxItem(kind="mail", payload={}, attempts=3),
                "done": OutboxItem(kind="mail", payload={}, attempts=1, done_at=LONG_AGO),
            }
            for row in rows.values():
                row.created_at = LONG_AGO
                db.add(row)
            db.commit()
            return {name: row.id for name, row in rows.items()}
    finally:
        engine.dispose()


def _state(database_url: str) -> dict[int, tuple[int, bool]]:
    """id -> (attempts, failed)"""
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as db:
            return {i.id: (i.attempts, i.failed_at is not None)
                    for i in db.scalars(select(OutboxItem))}
    finally:
        engine.dispose()


def _created(database_url: str, item_id: int) -> datetime:
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as db:
            item = db.get(OutboxItem, item_id)
            assert item is not None
            return item.created_at
    finally:
        engine.dispose()


def test_the_operator_lists_and_requeues_what_failed_for_good(
    env: dict[str, str], database_url: str
) -> None:
    ids = _seed(database_url)

    listed = run_idp("outbox", "failed", "--json", env=env)

    assert listed.returncode == 0, listed.stderr
    failed = json.loads(listed.stdout)["failed"]
    assert [f["id"] for f in failed] == [
        ids["failed_mail"], ids["failed_multiline"], ids["failed_logout"]]
    assert failed[0]["kind"] == "mail" and failed[0]["attempts"] == 12
    assert failed[0]["last_error"] == "SMTPConnectError: refused"
    assert "a@example.com" not in listed.stdout  # what was sent stays out of the listing
    plain = run_idp("outbox", "failed", env=env).stdout
    assert f"{ids['failed_logout']} backchannel_logout: 12 attempts" in plain
    # one line per item: an error of several lines was printed over several lines
    assert len(plain.splitlines()) == 3
    assert "rejected 5.7.1 see policy" in plain.splitlines()[1]

    one = run_idp("outbox", "retry", str(ids["failed_mail"]), env=env)

    assert one.returncode == 0, one.stderr
    assert one.stdout.strip() == "requeued 1 failed items"
    state = _state(database_url)
    assert state[ids["failed_mail"]] == (0, False)  # due again, attempts from zero
    assert _created(database_url, ids["failed_mail"]) > LONG_AGO  # and its days too
    assert state[ids["failed_logout"]] == (12, True)
    everything = run_idp("outbox", "retry", "--all", "--json", env=env)
    assert json.loads(everything.stdout) == {"requeued": 2}
    assert run_idp("outbox", "failed", env=env).stdout.strip() == "no failed items"


@pytest.mark.parametrize("which", ["retrying", "done", "unknown"])
def test_retrying_an_item_that_did_not_fail_changes_nothing(
    env: dict[str, str], database_url: str, which: str
) -> None:
    ids = _seed(database_url)
    before = _state(database_url)
    item = ids.get(which, 10**9)

    result = run_idp("outbox", "retry", str(ids["failed_mail"]), str(item), env=env)

    assert result.returncode == 1
    assert result.stderr.strip() == f"idp: not a failed item: {item}; nothing requeued"
    assert _state(database_url) == before


@pytest.mark.parametrize("args", [[], ["--all", "1"], ["0"], ["x"], [str(2**63)]])
def test_retry_needs_ids_or_all(env: dict[str, str], args: list[str]) -> None:
    result = run_idp("outbox", "retry", *args, env=env)
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("idp: ")
    # an id beyond BIGINT said "Python int too large to convert to SQLite INTEGER" or
    # "(psycopg.errors.NumericValueOutOfRange) bigint out of range"
    assert "too large" not in line and "out of range" not in line
