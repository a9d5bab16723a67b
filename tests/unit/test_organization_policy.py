"""The roles table of organizations, and initials shown when there is no picture or logo."""

from __future__ import annotations

import pytest

from idp.models import Role
from idp.models.accounts import initials_of
from idp.organizations.policy import ALLOWED, Action, allows, may_invite, needs_owner


def test_owners_may_do_everything_and_admins_all_but_ownership_and_deletion() -> None:
    assert set(ALLOWED[Role.OWNER]) == set(Action)
    assert set(Action) - ALLOWED[Role.ADMIN] == {Action.MANAGE_OWNERS, Action.DELETE}


def test_members_may_only_see_switch_and_leave_and_outsiders_nothing() -> None:
    assert ALLOWED[Role.MEMBER] == {Action.VIEW, Action.LEAVE}
    assert not any(allows(None, action) for action in Action)


@pytest.mark.parametrize(
    ("current", "new", "touches"),
    [
        (Role.MEMBER, Role.ADMIN, False),
        (Role.ADMIN, Role.MEMBER, False),
        (Role.MEMBER, Role.OWNER, True),
        (Role.OWNER, Role.ADMIN, True),
        (Role.OWNER, None, True),
        (Role.ADMIN, None, False),
    ],
)
def test_what_touches_ownership(current: Role, new: Role | None, touches: bool) -> None:
    assert needs_owner(current, new) is touches


@pytest.mark.parametrize(
    ("inviter", "may"),
    [
        (Role.OWNER, {Role.OWNER, Role.ADMIN, Role.MEMBER}),
        (Role.ADMIN, {Role.ADMIN, Role.MEMBER}),
        (Role.MEMBER, set()),
        (None, set()),
    ],
)
def test_who_may_invite_with_which_role(inviter: Role | None, may: set[Role]) -> None:
    assert {role for role in Role if may_invite(inviter, role)} == may


@pytest.mark.parametrize(
    ("name", "initials"),
    [("Alice Liddell", "AL"), ("acme", "A"), ("Acme Widgets & Co", "AC"), ("", ""),
     ("  ", ""), ("Émile Zola", "ÉZ")],
)
def test_initials(name: str, initials: str) -> None:
    assert initials_of(name) == initials
