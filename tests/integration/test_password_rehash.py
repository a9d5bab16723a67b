"""A stored hash with older argon2 parameters is upgraded at the next successful sign-in."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from idp import create_app
from idp.models import User
from idp.runtime import Runtime
from tests.conftest import empty_tables, make_settings
from tests.helpers import create_user, sign_in


def test_old_parameters_are_rehashed_on_sign_in(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    old = create_app(
        make_settings(
            tmp_path,
            database_url=database_url,
            redis_url=redis_url,
            argon2_memory_kib=1024,
            argon2_time_cost=1,
        )
    )
    new = create_app(
        make_settings(
            tmp_path,
            database_url=database_url,
            redis_url=redis_url,
            argon2_memory_kib=2048,
            argon2_time_cost=2,
        )
    )
    old_rt: Runtime = old.extensions["idp"]
    new_rt: Runtime = new.extensions["idp"]
    try:
        create_user(old_rt)
        with new_rt.session_factory() as db:
            before = db.scalar(select(User.password_hash))
        assert before is not None and "m=1024,t=1" in before
        client = new.test_client()
        assert sign_in(client, password="a wrong password here").status_code == 200
        with new_rt.session_factory() as db:
            assert db.scalar(select(User.password_hash)) == before  # no re-hash on failure
        assert sign_in(client).status_code == 303
        with new_rt.session_factory() as db:
            after = db.scalar(select(User.password_hash))
        assert after is not None and "m=2048,t=2,p=1" in after
        assert sign_in(new.test_client()).status_code == 303  # the new hash verifies
    finally:
        empty_tables(new_rt)
        for rt in (old_rt, new_rt):
            rt.store.delete_prefix()
            rt.close()
