"""Two owners demoting each other at the same moment cannot leave the organization without an
owner: membership changes of one organization are serialized (a row lock on PostgreSQL, the
writer's lock on SQLite), and roles are read after the lock."""

from __future__ import annotations

import threading
import time

import pytest
from flask import Flask
from sqlalchemy import select, update

from idp.models import Membership, Organization, Role, User
from idp.organizations.service import NotAllowed, OrganizationError, OrganizationService
from idp.runtime import Runtime
from idp.security.account_deletion import AccountDeletionService, Blocker, DeletionBlocked
from tests.helpers import PASSWORD, account_deletion_service, organization_service
from tests.organizations import role_in, seed_org


# PostgreSQL: the second change waits for the first's row lock.
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
            service = organization_service(runtime, db)
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


# SQLite: its driver starts a transaction only at the first write, so both changes can read
# the roles before either writes; the single writer then lets both writes through in turn.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_two_owners_demoting_each_other_at_once_on_sqlite_leave_one_owner(
    runtime: Runtime, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = seed_org(
        runtime,
        "Acme",
        {"a": ("a@example.com", Role.OWNER), "b": ("b@example.com", Role.OWNER)},
    )
    counted: list[int] = []
    both_counted = threading.Condition()
    owners = OrganizationService._owners

    def counted_together(self: OrganizationService, org_id: str) -> int:
        count = owners(self, org_id)
        with both_counted:  # wait (a while) until the other change has counted the owners too
            counted.append(count)
            both_counted.notify_all()
            both_counted.wait_for(lambda: len(counted) == 2, timeout=2)
        return count

    monkeypatch.setattr(OrganizationService, "_owners", counted_together)
    outcome: list[BaseException | None] = []

    def demote(actor: str, target: str) -> None:
        with runtime.session_factory() as db:
            service = organization_service(runtime, db)
            user = db.get(User, org.users[actor])
            assert user is not None
            try:
                service.change_role(user, org.id, org.users[target], Role.MEMBER)
                outcome.append(None)
            except OrganizationError as exc:
                outcome.append(exc)

    threads = [threading.Thread(target=demote, args=pair) for pair in (("a", "b"), ("b", "a"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    roles = {role_in(runtime, org.id, org.users[who]) for who in ("a", "b")}
    assert Role.OWNER in roles, outcome
    assert len(outcome) == 2 and outcome.count(None) == 1, outcome


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_two_owners_deleting_their_accounts_at_once_on_sqlite_leave_one_owner(
    app: Flask, runtime: Runtime, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = seed_org(
        runtime,
        "Acme",
        {"a": ("a@example.com", Role.OWNER), "b": ("b@example.com", Role.OWNER),
         "c": ("c@example.com", Role.MEMBER)},
    )
    checked: list[int] = []
    both_checked = threading.Condition()
    blockers = AccountDeletionService.blockers

    def checked_together(self: AccountDeletionService, user: User) -> list[Blocker]:
        found = blockers(self, user)
        with both_checked:  # wait (a while) until the other deletion has checked too
            checked.append(len(found))
            both_checked.notify_all()
            both_checked.wait_for(lambda: len(checked) == 2, timeout=2)
        return found

    monkeypatch.setattr(AccountDeletionService, "blockers", checked_together)
    outcome: list[BaseException | None] = []

    def delete_account(who: str) -> None:
        with app.test_request_context(), runtime.session_factory() as db:
            user = db.get(User, org.users[who])
            assert user is not None
            service = account_deletion_service(runtime, db)
            try:
                service.delete(user, PASSWORD)
                outcome.append(None)
            except DeletionBlocked as exc:
                outcome.append(exc)

    threads = [threading.Thread(target=delete_account, args=(who,)) for who in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert role_in(runtime, org.id, org.users["c"]) is Role.MEMBER
    owners = [who for who in "ab" if role_in(runtime, org.id, org.users[who]) is Role.OWNER]
    assert len(owners) == 1, outcome
    assert len(outcome) == 2 and outcome.count(None) == 1, outcome
