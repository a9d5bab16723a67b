"""Invitations grant their role with their author's current rights (a demoted, removed or
departed author's pending invitations are withdrawn, and refused at acceptance in any case),
creating an account through an invitation is one transaction, and sending is rate limited per
organization and per invited address."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from werkzeug.test import TestResponse

from idp.events import EventTag
from idp.models import Invitation, Membership, OutboxItem, Role, User
from idp.organizations import invitations as invitations_module
from idp.runtime import Runtime
from tests.helpers import PASSWORD, count, create_user, csrf_token, events
from tests.locks import waits_for
from tests.organizations import post, role_in, seed_org, signed_in

ISSUER = "http://127.0.0.1:8000"
LOST_RIGHTS = "the person who sent it is no longer allowed to grant the role it offers"


def _acme(runtime: Runtime) -> tuple[str, dict[str, str]]:
    org = seed_org(
        runtime,
        "Acme",
        {
            "a": ("a@example.com", Role.OWNER),
            "b": ("b@example.com", Role.OWNER),
            "admin": ("admin@example.com", Role.ADMIN),
        },
    )
    return org.id, org.users


def _invite(client: FlaskClient, org_id: str, email: str, role: str) -> TestResponse:
    return post(client, f"/organizations/{org_id}/invitations", email=email, role=role)


def _mailed(runtime: Runtime, email: str) -> list[str]:
    """The invitation links mailed to ``email``, oldest first."""
    with runtime.session_factory() as db:
        items = db.scalars(select(OutboxItem).order_by(OutboxItem.id)).all()
    return [
        str(i.payload["context"]["link"]).removeprefix(ISSUER)
        for i in items
        if i.payload.get("template") == "invitation" and i.payload["to"] == email
    ]


def _link(runtime: Runtime, email: str) -> str:
    links = _mailed(runtime, email)
    assert links, f"no invitation mailed to {email}"
    return links[-1]


def _accept(client: FlaskClient, path: str) -> TestResponse:
    return client.post(f"{path}/accept", data={"csrf_token": csrf_token(
        client.get("/organizations").get_data(as_text=True))})


def _register(
    client: FlaskClient, path: str, first_name: str = "New", last_name: str = "Comer"
) -> TestResponse:
    page = client.get("/login").get_data(as_text=True)
    return client.post(f"{path}/register", data={
        "csrf_token": csrf_token(page), "first_name": first_name, "last_name": last_name,
        "password": PASSWORD, "password_again": PASSWORD})


def _pending(runtime: Runtime, email: str) -> Invitation | None:
    with runtime.session_factory() as db:
        return db.scalar(select(Invitation).where(
            Invitation.email == email, Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None)))


# The author's rights, at acceptance -----------------------------------------------------------


def test_demoting_an_owner_withdraws_the_owner_invitations_they_sent(
    app: Flask, runtime: Runtime
) -> None:
    """Owner A invites their own second address as an owner; owner B demotes A; A's second
    account must not make A an owner again."""
    org_id, users = _acme(runtime)
    second = create_user(runtime, "a.second@example.com")
    a = signed_in(app, "a@example.com")
    assert _invite(a, org_id, "a.second@example.com", "owner").status_code == 303
    assert _invite(a, org_id, "colleague@example.com", "member").status_code == 303
    owner_link = _link(runtime, "a.second@example.com")

    b = signed_in(app, "b@example.com")
    demote = post(b, f"/organizations/{org_id}/members/{users['a']}/role", role="admin")
    assert demote.status_code == 303
    [withdrawn] = events(runtime, EventTag.INVITATION_REVOKED)
    assert withdrawn.user_id == users["b"] and withdrawn.organization_id == org_id
    assert withdrawn.details["email"] == "a.second@example.com"
    assert withdrawn.details["invited_by"] == users["a"]
    members_page = b.get(f"/organizations/{org_id}/members").get_data(as_text=True)
    assert "a.second@example.com" not in members_page
    assert "colleague@example.com" in members_page  # an admin may still invite members

    a_again = signed_in(app, "a.second@example.com")
    assert a_again.get(owner_link).status_code == 404
    assert _accept(a_again, owner_link).status_code == 404
    assert role_in(runtime, org_id, second.id) is None
    assert count(runtime, Membership, Membership.role == Role.OWNER) == 1


@pytest.mark.parametrize("how", ["removed", "left"])
def test_an_admin_who_is_removed_or_leaves_loses_their_pending_invitations(
    app: Flask, runtime: Runtime, how: str
) -> None:
    org_id, users = _acme(runtime)
    admin = signed_in(app, "admin@example.com")
    assert _invite(admin, org_id, "friend@example.com", "admin").status_code == 303
    path = _link(runtime, "friend@example.com")
    if how == "removed":
        owner = signed_in(app, "a@example.com")
        done = post(owner, f"/organizations/{org_id}/members/{users['admin']}/remove")
        by = users["a"]
    else:
        done = post(admin, f"/organizations/{org_id}/leave")
        by = users["admin"]
    assert done.status_code == 303
    [withdrawn] = events(runtime, EventTag.INVITATION_REVOKED)
    assert withdrawn.user_id == by and withdrawn.details["email"] == "friend@example.com"
    visitor = app.test_client()
    assert visitor.get(path).status_code == 404
    assert _register(visitor, path).status_code == 404
    assert count(runtime, User, User.email_normalized == "friend@example.com") == 0


def test_deleting_the_account_withdraws_the_invitations_it_sent(
    app: Flask, runtime: Runtime
) -> None:
    org_id, users = _acme(runtime)
    admin = signed_in(app, "admin@example.com")
    assert _invite(admin, org_id, "friend@example.com", "member").status_code == 303
    path = _link(runtime, "friend@example.com")
    assert post(admin, "/account/delete", password=PASSWORD).status_code == 303
    [withdrawn] = events(runtime, EventTag.INVITATION_REVOKED)
    assert withdrawn.organization_id == org_id and withdrawn.user_id is None
    assert users["admin"] not in str(withdrawn.details)  # the deleted account is not named
    assert _pending(runtime, "friend@example.com") is None
    assert app.test_client().get(path).status_code == 404


@pytest.mark.parametrize(("role", "now"), [("owner", Role.ADMIN), ("admin", Role.MEMBER)])
def test_an_invitation_whose_author_lost_the_right_is_refused_at_acceptance(
    app: Flask, runtime: Runtime, role: str, now: Role
) -> None:
    """Whatever withdrew it or not (here: a demotion written before invitations were
    withdrawn), accepting checks the author's rights of the moment."""
    org_id, users = _acme(runtime)
    inviter = "a" if role == "owner" else "admin"
    client = signed_in(app, f"{inviter}@example.com")
    assert _invite(client, org_id, "x@example.com", role).status_code == 303
    assert _invite(client, org_id, "y@example.com", role).status_code == 303
    with runtime.session_factory() as db:
        db.execute(update(Membership).where(Membership.user_id == users[inviter])
                   .values(role=now))
        db.commit()

    x = create_user(runtime, "x@example.com")
    signed = signed_in(app, "x@example.com")
    path = _link(runtime, "x@example.com")
    page = signed.get(path)
    assert page.status_code == 403 and LOST_RIGHTS in page.get_data(as_text=True)
    refused = _accept(signed, path)
    assert refused.status_code == 403 and LOST_RIGHTS in refused.get_data(as_text=True)
    assert role_in(runtime, org_id, x.id) is None
    assert _pending(runtime, "x@example.com") is not None  # nothing changed

    visitor = app.test_client()
    refused = _register(visitor, _link(runtime, "y@example.com"))
    assert refused.status_code == 403 and LOST_RIGHTS in refused.get_data(as_text=True)
    assert count(runtime, User, User.email_normalized == "y@example.com") == 0
    assert events(runtime, EventTag.MEMBER_JOINED) == []


def test_an_invitation_from_an_author_who_keeps_the_right_still_works(
    app: Flask, runtime: Runtime
) -> None:
    org_id, users = _acme(runtime)
    admin = signed_in(app, "admin@example.com")
    assert _invite(admin, org_id, "x@example.com", "member").status_code == 303
    owner = signed_in(app, "a@example.com")
    assert post(owner, f"/organizations/{org_id}/members/{users['admin']}/role",
                role="owner").status_code == 303
    assert events(runtime, EventTag.INVITATION_REVOKED) == []
    visitor = app.test_client()
    assert _register(visitor, _link(runtime, "x@example.com")).status_code == 303


# Creating the account through an invitation: one transaction ------------------------------


def test_a_failure_while_joining_leaves_no_account_and_the_invitation_usable(
    app: Flask, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    org_id, _ = _acme(runtime)
    admin = signed_in(app, "admin@example.com")
    assert _invite(admin, org_id, "carol@example.com", "member").status_code == 303
    path = _link(runtime, "carol@example.com")
    real_record = invitations_module.record_event

    def failing(*args: Any, **kwargs: Any) -> Any:
        if args[1] is EventTag.MEMBER_JOINED:
            raise RuntimeError("the activity log is unavailable")
        return real_record(*args, **kwargs)

    monkeypatch.setattr(invitations_module, "record_event", failing)
    visitor = app.test_client()
    assert _register(visitor, path).status_code == 500
    assert count(runtime, User, User.email_normalized == "carol@example.com") == 0
    assert _pending(runtime, "carol@example.com") is not None

    monkeypatch.setattr(invitations_module, "record_event", real_record)
    assert _register(app.test_client(), path).status_code == 303
    with runtime.session_factory() as db:
        carol = db.scalar(select(User).where(User.email_normalized == "carol@example.com"))
        assert carol is not None
    assert role_in(runtime, org_id, carol.id) is Role.MEMBER


def test_registering_with_a_name_that_cannot_be_shown_is_refused_with_that_reason(
    app: Flask, runtime: Runtime
) -> None:
    """It was refused as "at most 100 characters" (a control character) or accepted (a
    zero-width space, a direction override)."""
    org_id, _ = _acme(runtime)
    admin = signed_in(app, "admin@example.com")
    assert _invite(admin, org_id, "carol@example.com", "member").status_code == 303
    path = _link(runtime, "carol@example.com")
    visitor = app.test_client()
    for first, last, reason in [
        ("Ca\x01rol", "", "The first name contains characters that cannot be shown."),
        ("\u200b", "", "The first name contains characters that cannot be shown."),
        ("Carol", "\u202eKing", "The last name contains characters that cannot be shown."),
    ]:
        refused = _register(visitor, path, first, last)
        assert refused.status_code == 400, (first, last)
        assert reason in refused.get_data(as_text=True), (first, last)
    assert count(runtime, User, User.email_normalized == "carol@example.com") == 0
    assert _register(visitor, path, "  Carol ", " King ").status_code == 303
    with runtime.session_factory() as db:
        carol = db.scalar(select(User).where(User.email_normalized == "carol@example.com"))
        assert carol is not None and (carol.first_name, carol.last_name) == ("Carol", "King")


# Rate limits ---------------------------------------------------------------------------------


def test_re_sending_to_one_address_is_limited_whatever_the_organization(
    app: Flask, runtime: Runtime
) -> None:
    org_id, _ = _acme(runtime)
    other = seed_org(runtime, "Other", {"boss": ("boss@other.example", Role.OWNER)})
    admin = signed_in(app, "admin@example.com")
    for _ in range(invitations_module.INVITATIONS_PER_ADDRESS):
        assert _invite(admin, org_id, "victim@example.com", "member").status_code == 303
    limited = _invite(admin, org_id, "Victim@Example.com", "member")
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    text = limited.get_data(as_text=True)
    assert "Victim@Example.com has been invited too many times recently" in text
    boss = signed_in(app, "boss@other.example")
    assert _invite(boss, other.id, "victim@example.com", "member").status_code == 429
    assert len(_mailed(runtime, "victim@example.com")) == invitations_module.INVITATIONS_PER_ADDRESS
    assert len(_mailed(runtime, "Victim@Example.com")) == 0
    assert count(runtime, Invitation) == invitations_module.INVITATIONS_PER_ADDRESS
    # Other addresses are still invited.
    assert _invite(admin, org_id, "someone@example.com", "member").status_code == 303


def test_an_organization_sending_too_many_invitations_is_limited(
    app: Flask, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(invitations_module, "INVITATIONS_PER_ORGANIZATION", 3)
    org_id, _ = _acme(runtime)
    other = seed_org(runtime, "Other", {"boss": ("boss@other.example", Role.OWNER)})
    admin = signed_in(app, "admin@example.com")
    for i in range(3):
        assert _invite(admin, org_id, f"p{i}@example.com", "member").status_code == 303
    limited = _invite(admin, org_id, "p3@example.com", "member")
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert "Acme has sent too many invitations recently (at most 3 an hour)" in (
        limited.get_data(as_text=True))
    assert _mailed(runtime, "p3@example.com") == []
    assert count(runtime, Invitation) == 3
    assert len(events(runtime, EventTag.MEMBER_INVITED)) == 3
    # Another organization has its own limit.
    boss = signed_in(app, "boss@other.example")
    assert _invite(boss, other.id, "p3@example.com", "member").status_code == 303


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_registering_while_the_address_is_being_registered_elsewhere_says_sign_in(
    app: Flask, runtime: Runtime
) -> None:
    """Two registrations of one address at the same instant (the invitation and a sign-up):
    the second waits for the first and then answers "there is already an account", not 500."""
    org_id, _ = _acme(runtime)
    admin = signed_in(app, "admin@example.com")
    assert _invite(admin, org_id, "carol@example.com", "member").status_code == 303
    path = _link(runtime, "carol@example.com")
    first = runtime.session_factory()  # the other registration, flushed, not committed yet
    first.add(User(email="carol@example.com", email_normalized="carol@example.com",
                   email_verified=True, first_name="Carol", last_name="First",
                   password_hash=runtime.passwords.hash(PASSWORD)))
    first.flush()

    answer = waits_for(first, lambda: _register(app.test_client(), path))

    assert answer.status_code == 409
    assert "There is already an account with this email address" in answer.get_data(as_text=True)
    assert count(runtime, User, User.email_normalized == "carol@example.com") == 1
    assert _pending(runtime, "carol@example.com") is not None
