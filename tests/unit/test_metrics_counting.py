"""Events are counted when their transaction commits, by every session factory the process
makes (each app made in one process has its own), however many came and went before it."""

from __future__ import annotations

import gc

from prometheus_client import REGISTRY
from sqlalchemy import create_engine, text
from sqlalchemy.orm import sessionmaker

from idp.observability.metrics import count_on_commit, note_event


def successes() -> float:
    return REGISTRY.get_sample_value("idp_sign_ins_total", {"outcome": "success"}) or 0.0


def test_every_new_factory_counts_even_where_a_dead_one_lived() -> None:
    # A new factory's Session class often reuses the address of a collected one; counting
    # must not mistake it for the old, already registered factory.
    engine = create_engine("sqlite://")
    try:
        for _ in range(20):
            factory = sessionmaker(bind=engine)
            count_on_commit(factory)
            count_on_commit(factory)  # twice: still counted once
            before = successes()
            with factory() as db:
                db.execute(text("SELECT 1"))
                note_event(db, "account:login:success", {})
                db.commit()
            assert successes() == before + 1
            del factory, db
            gc.collect()
    finally:
        engine.dispose()


def test_a_rolled_back_event_is_not_counted() -> None:
    engine = create_engine("sqlite://")
    factory = sessionmaker(bind=engine)
    count_on_commit(factory)
    before = successes()
    with factory() as db:
        db.execute(text("SELECT 1"))
        note_event(db, "account:login:success", {})
        db.rollback()
        db.commit()
    assert successes() == before
    engine.dispose()
