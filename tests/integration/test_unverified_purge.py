"""Sign-up accounts never verified are deleted after IDP_UNVERIFIED_ACCOUNT_DAYS: exactly those
(not verified ones, recent ones, operator-made ones, organization owners, SSO identities, nor
one whose link was sent again and still works), by `idp accounts purge-unverified` and by the
worker's hourly chore."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import func, select

from idp.events import Actor, EventTag, record_event
from idp.models import (
    Event,
    FederatedIdentity,
    Membership,
    OneTimeToken,
    Organization,
    Role,
    User,
    utcnow,
)
from idp.runtime import Runtime
from idp.signup import purge_unverified_accounts
from idp.worker import build_worker
from tests.helpers import count, events
from tests.services import idp_env, run_idp

DAY = timedelta(days=1)


def _account(rt: Runtime, name: str, *, age: timedelta, signup: bool = True,
             verified: bool = False, role: Role | None = None, sso: bool = False,
             link_works: bool = False) -> str:
    """An account made ``age`` ago, with a verification link (expired unless ``link_works``)."""
    with rt.session_factory() as db:
        user = User(email=f"{name}@example.com", email_normalized=f"{name}@example.com",
                    email_verified=verified, created_by_signup=signup,
                    created_at=utcnow() - age, first_name=name)
        db.add(user)
        db.flush()
        db.add(OneTimeToken(purpose="verify_email", user_id=user.id, token_hash=name * 8,
                            address=user.email,
                            expires_at=utcnow() + (DAY if link_works else -DAY)))
        if role is not None or sso:
            org = Organization(name=f"{name} Ltd")
            db.add(org)
            db.flush()
            if role is not None:
                db.add(Membership(user_id=user.id, organization_id=org.id, role=role))
            if sso:
                db.add(FederatedIdentity(organization_id=org.id, tenant_id="t", object_id=name,
                                         user_id=user.id))
        db.commit()
        return user.id


def _remaining(rt: Runtime) -> set[str]:
    with rt.session_factory() as db:
        return set(db.scalars(select(User.first_name)))


def _seed(rt: Runtime) -> dict[str, str]:
    week = 7 * DAY
    return {
        "stale": _account(rt, "stale", age=week + timedelta(minutes=1)),
        "member": _account(rt, "member", age=30 * DAY, role=Role.MEMBER),
        "fresh": _account(rt, "fresh", age=week - timedelta(minutes=1)),
        "verified": _account(rt, "verified", age=30 * DAY, verified=True),
        "operator": _account(rt, "operator", age=30 * DAY, signup=False),
        "owner": _account(rt, "owner", age=30 * DAY, role=Role.OWNER),
        "sso": _account(rt, "sso", age=30 * DAY, sso=True),
        "relinked": _account(rt, "relinked", age=30 * DAY, link_works=True),
    }


def test_only_sign_up_accounts_never_verified_in_time_are_deleted(runtime: Runtime) -> None:
    ids = _seed(runtime)
    with runtime.session_factory() as db:  # what the sign-up recorded, and what the fresh one did
        for name in ("stale", "fresh"):
            record_event(db, EventTag.USER_CREATED, user_id=ids[name],
                         actor=Actor(ip="203.0.113.9"), details={"via": "signup"})
        db.commit()
    with runtime.session_factory() as db:
        result = purge_unverified_accounts(db, 7, batch=1)  # one per batch: the loop runs
    assert result.deleted == 2 and result.days == 7
    assert _remaining(runtime) == {"fresh", "verified", "operator", "owner", "sso", "relinked"}
    # What they held went with them; the others keep theirs.
    assert count(runtime, OneTimeToken) == 6
    assert count(runtime, Membership) == 1  # the owner's
    # Like a deleted account's: one event each, without whose; their events de-identified.
    deleted = events(runtime, EventTag.USER_DELETED)
    assert [(e.user_id, e.ip, e.details) for e in deleted] == [
        (None, "", {"reason": "unverified", "days": 7})] * 2
    created = events(runtime, EventTag.USER_CREATED)
    assert sorted((e.user_id or "", e.ip) for e in created) == sorted(
        [("", ""), (ids["fresh"], "203.0.113.9")])
    with runtime.session_factory() as db:
        assert db.scalar(select(func.count()).select_from(Event).where(
            Event.user_id.in_([ids["stale"], ids["member"]]))) == 0
    with runtime.session_factory() as db:
        assert purge_unverified_accounts(db, 7).deleted == 0


def test_the_worker_deletes_them_every_hour(runtime: Runtime) -> None:
    _account(runtime, "stale", age=8 * DAY)
    worker = build_worker(runtime)
    worker.run_chores()
    assert _remaining(runtime) == set()
    _account(runtime, "later", age=8 * DAY)
    worker.run_chores()  # within the hour: not yet
    assert _remaining(runtime) == {"later"}
    worker.clock = lambda: utcnow() + timedelta(hours=1, seconds=1)
    worker.run_chores()
    assert _remaining(runtime) == set()


def test_the_command_says_how_many_it_deleted(runtime: Runtime, database_url: str) -> None:
    _seed(runtime)
    env = idp_env(database_url=database_url, data_dir=str(runtime.settings.data_dir),
                  secret_key=runtime.settings.secret_key,
                  unverified_account_days="10")
    result = run_idp("accounts", "purge-unverified", "--json", env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["deleted"] == 1 and data["unverified_account_days"] == 10  # "member" (30 days)
    assert _remaining(runtime) == {"stale", "fresh", "verified", "operator", "owner", "sso",
                                   "relinked"}
    again = run_idp("accounts", "purge-unverified", env=env)
    assert again.returncode == 0
    assert again.stdout.startswith("deleted 0 sign-up accounts not verified within 10 days")
    refused = run_idp("accounts", "purge-unverified",
                      env={**env, "IDP_UNVERIFIED_ACCOUNT_DAYS": "0"})
    assert refused.returncode != 0
    assert refused.stderr.strip() == "idp: IDP_UNVERIFIED_ACCOUNT_DAYS: must be at least 1"
