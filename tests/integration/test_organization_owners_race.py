"""Two owners demoting each other at the same moment cannot leave the organization without an
owner: membership changes of one organization are serialized (a row lock on PostgreSQL), and
roles are read after the lock."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select, update

from idp.accounts import AccountService
from idp.models import Membership, Organization, Role, User
from idp.organizations.service import NotAllowed, OrganizationError, OrganizationService
from idp.runtime import Runtime
from idp.security.ratelimit import RateLimiter
from idp.security.reauth import PasswordConfirmation
from tests.organizations import role_in, seed_org


# PostgreSQL only: SQLite has a single writer, so there is no interleaving to test there.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_owners_demoting_each_other_leave_one_owner(
    runtime: Runtime, database_url: str
) -> None:
    org = seed_org(
        runtime,
        "Acme",
        {"a": ("a@example.com", Role.OWNER), "b": ("b@example.com", Role.OWNER)},
    )
    outcome: list[BaseException | None] = []

    def b_demotes_a() -> None:
        with runtime.session_factory() as db:
            service = OrganizationService(
                db,
                AccountService(db, runtime.passwords),
                PasswordConfirmation(runtime.passwords, RateLimiter(runtime.store),
                                     runtime.store),
            )
            b = db.get(User, org.users["b"])
            assert b is not None
            try:
                service.change_role(b, org.id, org.users["a"], Role.MEMBER)
                outcome.append(None)
            except OrganizationError as exc:
                outcome.append(exc)

    with runtime.session_factory() as first:
        # A is demoting B: the organization is locked, B's demotion not yet committed.
        first.execute(
            select(Organization.id).where(Organization.id == org.id).with_for_update()
        )
        first.execute(
            update(Membership)
            .where(Membership.user_id == org.users["b"], Membership.organization_id == org.id)
            .values(role=Role.MEMBER)
        )
        other = threading.Thread(target=b_demotes_a)
        other.start()
        time.sleep(0.5)
        assert other.is_alive(), "the second change did not wait for the first"
        first.commit()
    other.join(10)

    # B's role is read after the lock: B is no longer an owner, so may not touch ownership.
    assert len(outcome) == 1 and isinstance(outcome[0], NotAllowed)
    assert role_in(runtime, org.id, org.users["a"]) is Role.OWNER
    assert role_in(runtime, org.id, org.users["b"]) is Role.MEMBER
