"""Organizations run by their members: creating, renaming, deleting, switching, the members
page (roles, removal, the owner rules) and invitations by email."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select, update

from idp.events import EventTag
from idp.models import (
    Event,
    FederatedIdentity,
    Invitation,
    Membership,
    Organization,
    OutboxItem,
    Role,
    SsoConnection,
    SsoDomain,
    User,
    utcnow,
)
from idp.runtime import Runtime
from tests.helpers import PASSWORD, count, create_user, csrf_token, events, sign_in
from tests.organizations import post, role_in, seed_org, signed_in


def _acme(runtime: Runtime) -> tuple[str, dict[str, str]]:
    org = seed_org(
        runtime,
        "Acme",
        {
            "owner": ("owner@example.com", Role.OWNER),
            "admin": ("admin@example.com", Role.ADMIN),
            "member": ("member@example.com", Role.MEMBER),
        },
    )
    return org.id, org.users


def _invitation_link(runtime: Runtime, email: str) -> str:
    with runtime.session_factory() as db:
        items = db.scalars(select(OutboxItem).order_by(OutboxItem.id)).all()
    links = [
        i.payload["context"]["link"]
        for i in items
        if i.payload.get("template") == "invitation" and i.payload["to"] == email
    ]
    assert links, f"no invitation mailed to {email}"
    return str(links[-1])


# Creating, renaming, switching --------------------------------------------------------------


def test_the_creator_of_an_organization_is_its_owner_and_works_in_it(
    app: Flask, runtime: Runtime
) -> None:
    create_user(runtime)
    client = signed_in(app, "alice@example.com")
    response = post(client, "/organizations", name="  Wonderland   Ltd ")
    assert response.status_code == 303
    with runtime.session_factory() as db:
        org = db.scalar(select(Organization).where(Organization.name == "Wonderland Ltd"))
        assert org is not None
        user = db.scalar(select(User).where(User.email == "alice@example.com"))
        assert user is not None and user.current_organization_id == org.id
    assert role_in(runtime, org.id, user.id) is Role.OWNER
    page = client.get("/account").get_data(as_text=True)
    assert 'data-testid="current-organization-name">Wonderland Ltd<' in page
    [event] = events(runtime, EventTag.ORGANIZATION_CREATED)
    assert event.user_id == user.id and event.organization_id == org.id


def test_a_taken_or_empty_name_is_refused_with_the_reason(app: Flask, runtime: Runtime) -> None:
    _acme(runtime)
    create_user(runtime)
    client = signed_in(app, "alice@example.com")
    taken = post(client, "/organizations", name="acme")
    assert taken.status_code == 400
    assert "already exists" in taken.get_data(as_text=True)
    empty = post(client, "/organizations", name="   ")
    assert empty.status_code == 400
    for name in ("Wonder\u200bland", "\u202eAcme", "Wonder\x01land"):
        unshowable = post(client, "/organizations", name=name)
        assert unshowable.status_code == 400
        assert "The organization name contains characters that cannot be shown." in (
            unshowable.get_data(as_text=True)
        )
    assert count(runtime, Organization) == 1


def test_rename_records_old_and_new_name(app: Flask, runtime: Runtime) -> None:
    org_id, users = _acme(runtime)
    client = signed_in(app, "admin@example.com")
    assert post(client, f"/organizations/{org_id}/rename", name="Acme Corp").status_code == 303
    with runtime.session_factory() as db:
        org = db.get(Organization, org_id)
        assert org is not None and org.name == "Acme Corp"
    [event] = events(runtime, EventTag.ORGANIZATION_RENAMED)
    assert event.user_id == users["admin"]
    assert event.details == {"from": "Acme", "to": "Acme Corp"}


def test_a_user_in_two_organizations_switches_and_sees_the_current_one(
    app: Flask, runtime: Runtime
) -> None:
    acme_id, users = _acme(runtime)
    globex = seed_org(runtime, "Globex", {"boss": ("boss@example.com", Role.OWNER)})
    with runtime.session_factory() as db:
        db.add(Membership(user_id=users["member"], organization_id=globex.id, role=Role.MEMBER))
        db.commit()
    client = signed_in(app, "member@example.com")
    # The oldest membership is current until the user chooses.
    assert 'current-organization-name">Acme<' in client.get("/account").get_data(as_text=True)
    assert post(client, "/organizations/switch", org_id=globex.id).status_code == 303
    page = client.get("/organizations").get_data(as_text=True)
    assert 'current-organization-name">Globex<' in page
    [event] = events(runtime, EventTag.ORGANIZATION_SWITCHED)
    assert event.user_id == users["member"] and event.organization_id == globex.id
    # Not to an organization one is not a member of.
    other = seed_org(runtime, "Initech", {"ceo": ("ceo@example.com", Role.OWNER)})
    assert post(client, "/organizations/switch", org_id=other.id).status_code == 403
    assert acme_id


# Deleting -----------------------------------------------------------------------------------


def test_deleting_an_organization_needs_the_owners_password_and_keeps_accounts(
    app: Flask, runtime: Runtime
) -> None:
    org_id, users = _acme(runtime)
    with runtime.session_factory() as db:
        connection = SsoConnection(
            organization_id=org_id, tenant_id="t", client_id="c", client_secret="x"
        )
        db.add(connection)
        db.flush()
        db.add(SsoDomain(domain="acme.example", connection_id=connection.id))
        db.add(
            FederatedIdentity(
                organization_id=org_id, tenant_id="t", object_id="o", user_id=users["member"]
            )
        )
        db.commit()
    client = signed_in(app, "owner@example.com")
    post(client, f"/organizations/{org_id}/invitations", email="new@example.com", role="member")
    confirm = client.get(f"/organizations/{org_id}/delete")
    assert confirm.status_code == 200 and "Delete Acme?" in confirm.get_data(as_text=True)

    wrong = post(client, f"/organizations/{org_id}/delete", password="not the password")
    assert wrong.status_code == 400
    assert "not your password" in wrong.get_data(as_text=True)
    assert count(runtime, Organization) == 1

    done = post(client, f"/organizations/{org_id}/delete", password=PASSWORD)
    assert done.status_code == 303
    assert count(runtime, Organization) == 0
    assert count(runtime, Membership) == 0
    assert count(runtime, Invitation) == 0
    assert count(runtime, SsoConnection) == 0 and count(runtime, SsoDomain) == 0
    assert count(runtime, FederatedIdentity) == 0
    assert count(runtime, User) == 3  # every member's account survives
    assert count(runtime, Event, Event.organization_id == org_id) == 0
    [event] = events(runtime, EventTag.ORGANIZATION_DELETED)
    assert event.user_id == users["owner"] and event.details == {"name": "Acme"}
    # The members can still sign in.
    assert sign_in(app.test_client(), "member@example.com").status_code == 303


def test_only_an_owner_may_delete(app: Flask, runtime: Runtime) -> None:
    org_id, _ = _acme(runtime)
    client = signed_in(app, "admin@example.com")
    assert client.get(f"/organizations/{org_id}/delete").status_code == 403
    assert post(client, f"/organizations/{org_id}/delete", password=PASSWORD).status_code == 403
    assert count(runtime, Organization) == 1


def test_guessing_the_password_to_delete_is_rate_limited(app: Flask, runtime: Runtime) -> None:
    org_id, _ = _acme(runtime)
    client = signed_in(app, "owner@example.com")
    statuses = [
        post(client, f"/organizations/{org_id}/delete", password=f"guess {i}").status_code
        for i in range(6)
    ]
    assert statuses == [400] * 5 + [429]
    limited = post(client, f"/organizations/{org_id}/delete", password=PASSWORD)
    assert limited.status_code == 429 and limited.headers["Retry-After"]
    assert count(runtime, Organization) == 1


# Members: roles and the owner rules ---------------------------------------------------------


def test_an_admin_changes_roles_but_not_ownership(app: Flask, runtime: Runtime) -> None:
    org_id, users = _acme(runtime)
    client = signed_in(app, "admin@example.com")
    path = f"/organizations/{org_id}/members/{users['member']}/role"
    assert post(client, path, role="admin").status_code == 303
    assert role_in(runtime, org_id, users["member"]) is Role.ADMIN
    [event] = events(runtime, EventTag.MEMBER_ROLE_CHANGED)
    assert event.user_id == users["admin"]
    assert event.details == {"member_id": users["member"], "from": "member", "to": "admin"}

    granting = post(client, path, role="owner")
    assert granting.status_code == 403
    assert "Only an owner" in granting.get_data(as_text=True)
    demoting = post(client, f"/organizations/{org_id}/members/{users['owner']}/role", role="admin")
    assert demoting.status_code == 403
    assert role_in(runtime, org_id, users["owner"]) is Role.OWNER


def test_the_last_owner_cannot_be_demoted_leave_or_be_removed(
    app: Flask, runtime: Runtime
) -> None:
    org_id, users = _acme(runtime)
    owner = signed_in(app, "owner@example.com")
    demote = post(owner, f"/organizations/{org_id}/members/{users['owner']}/role", role="admin")
    assert demote.status_code == 400
    assert "appoint another owner first" in demote.get_data(as_text=True)
    leave = post(owner, f"/organizations/{org_id}/leave")
    assert leave.status_code == 400
    assert "appoint another owner first" in leave.get_data(as_text=True)
    remove_self = post(owner, f"/organizations/{org_id}/members/{users['owner']}/remove")
    assert remove_self.status_code == 400
    assert role_in(runtime, org_id, users["owner"]) is Role.OWNER

    # With a second owner, the first may step down.
    promote = post(owner, f"/organizations/{org_id}/members/{users['admin']}/role", role="owner")
    assert promote.status_code == 303
    assert post(owner, f"/organizations/{org_id}/leave").status_code == 303
    assert role_in(runtime, org_id, users["owner"]) is None
    [left] = events(runtime, EventTag.MEMBER_LEFT)
    assert left.user_id == users["owner"]


def test_removing_a_member_asks_first_and_keeps_their_account(
    app: Flask, runtime: Runtime
) -> None:
    org_id, users = _acme(runtime)
    client = signed_in(app, "admin@example.com")
    path = f"/organizations/{org_id}/members/{users['member']}/remove"
    confirm = client.get(path)
    assert confirm.status_code == 200
    assert "member@example.com" in confirm.get_data(as_text=True)
    assert role_in(runtime, org_id, users["member"]) is Role.MEMBER  # nothing yet
    assert post(client, path).status_code == 303
    assert role_in(runtime, org_id, users["member"]) is None
    assert count(runtime, User, User.id == users["member"]) == 1
    [event] = events(runtime, EventTag.MEMBER_REMOVED)
    assert event.user_id == users["admin"] and event.details["member_id"] == users["member"]
    # An admin cannot remove an owner.
    owner_path = f"/organizations/{org_id}/members/{users['owner']}/remove"
    assert post(client, owner_path).status_code == 403


def test_the_members_page_lists_members_with_their_roles(app: Flask, runtime: Runtime) -> None:
    org_id, _ = _acme(runtime)
    client = signed_in(app, "owner@example.com")
    page = client.get(f"/organizations/{org_id}/members").get_data(as_text=True)
    for email in ("owner@example.com", "admin@example.com", "member@example.com"):
        assert f'data-email="{email}"' in page
    assert page.index("owner@example.com") < page.index("admin@example.com")


# Invitations --------------------------------------------------------------------------------


def test_an_invitee_without_an_account_creates_one_and_joins(
    app: Flask, runtime: Runtime
) -> None:
    org_id, users = _acme(runtime)
    admin = signed_in(app, "admin@example.com")
    response = post(
        admin, f"/organizations/{org_id}/invitations", email="Carol@Example.com", role="admin"
    )
    assert response.status_code == 303
    link = _invitation_link(runtime, "Carol@Example.com")
    [invited] = events(runtime, EventTag.MEMBER_INVITED)
    assert invited.user_id == users["admin"] and invited.details["role"] == "admin"
    with runtime.session_factory() as db:
        stored = db.scalar(select(Invitation))
        assert stored is not None and link.rsplit("/", 1)[1] not in stored.token_hash

    visitor = app.test_client()
    path = link.removeprefix("http://127.0.0.1:8000")
    page = visitor.get(path)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Acme" in text and "Create your account" in text
    token = csrf_token(text)
    weak = visitor.post(
        f"{path}/register",
        data={"csrf_token": token, "first_name": "Carol", "last_name": "C",
              "password": "short", "password_again": "short"},
    )
    assert weak.status_code == 400 and "at least 12" in weak.get_data(as_text=True)
    made = visitor.post(
        f"{path}/register",
        data={"csrf_token": token, "first_name": "Carol", "last_name": "Cheshire",
              "password": PASSWORD, "password_again": PASSWORD},
    )
    assert made.status_code == 303
    assert visitor.get("/account").status_code == 200  # signed in
    with runtime.session_factory() as db:
        carol = db.scalar(select(User).where(User.email_normalized == "carol@example.com"))
        assert carol is not None and carol.email_verified and carol.first_name == "Carol"
    assert role_in(runtime, org_id, carol.id) is Role.ADMIN
    [joined] = events(runtime, EventTag.MEMBER_JOINED)
    assert joined.user_id == carol.id and joined.organization_id == org_id
    # Single use.
    assert app.test_client().get(path).status_code == 404


def test_an_invitee_with_an_account_signs_in_and_accepts(app: Flask, runtime: Runtime) -> None:
    org_id, _ = _acme(runtime)
    bob = create_user(runtime, "bob@example.com", first_name="Bob")
    owner = signed_in(app, "owner@example.com")
    post(owner, f"/organizations/{org_id}/invitations", email="bob@example.com", role="member")
    path = _invitation_link(runtime, "bob@example.com").removeprefix("http://127.0.0.1:8000")

    visitor = app.test_client()
    assert "Sign in to accept" in visitor.get(path).get_data(as_text=True)
    assert sign_in(visitor, "bob@example.com", next_url=path).headers["Location"] == path
    page = visitor.get(path).get_data(as_text=True)
    accepted = visitor.post(f"{path}/accept", data={"csrf_token": csrf_token(page)})
    assert accepted.status_code == 303
    assert role_in(runtime, org_id, bob.id) is Role.MEMBER


def test_the_wrong_account_is_told_which_address_the_invitation_is_for(
    app: Flask, runtime: Runtime
) -> None:
    org_id, users = _acme(runtime)
    create_user(runtime, "bob@example.com", first_name="Bob")
    owner = signed_in(app, "owner@example.com")
    post(owner, f"/organizations/{org_id}/invitations", email="carol@example.com")
    path = _invitation_link(runtime, "carol@example.com").removeprefix("http://127.0.0.1:8000")
    bob = signed_in(app, "bob@example.com")
    page = bob.get(path).get_data(as_text=True)
    assert "This invitation is for carol@example.com, but you are signed in as bob@" in page
    refused = bob.post(f"{path}/accept", data={"csrf_token": csrf_token(page)})
    assert refused.status_code == 403
    assert count(runtime, Membership, Membership.organization_id == org_id) == 3
    assert users


def test_expired_and_withdrawn_invitations_do_not_work(app: Flask, runtime: Runtime) -> None:
    org_id, _ = _acme(runtime)
    owner = signed_in(app, "owner@example.com")
    post(owner, f"/organizations/{org_id}/invitations", email="late@example.com")
    late = _invitation_link(runtime, "late@example.com").removeprefix("http://127.0.0.1:8000")
    with runtime.session_factory() as db:
        db.execute(update(Invitation).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.commit()
    assert app.test_client().get(late).status_code == 404

    post(owner, f"/organizations/{org_id}/invitations", email="gone@example.com")
    gone = _invitation_link(runtime, "gone@example.com").removeprefix("http://127.0.0.1:8000")
    with runtime.session_factory() as db:
        invitation = db.scalar(select(Invitation).where(Invitation.email == "gone@example.com"))
        assert invitation is not None
    path = f"/organizations/{org_id}/invitations/{invitation.id}/revoke"
    assert post(owner, path).status_code == 303
    assert app.test_client().get(gone).status_code == 404
    assert len(events(runtime, EventTag.INVITATION_REVOKED)) == 1


def test_only_owners_invite_owners_and_members_are_not_invited_twice(
    app: Flask, runtime: Runtime
) -> None:
    org_id, _ = _acme(runtime)
    admin = signed_in(app, "admin@example.com")
    as_owner = post(admin, f"/organizations/{org_id}/invitations", email="x@example.com",
                    role="owner")
    assert as_owner.status_code == 403
    again = post(admin, f"/organizations/{org_id}/invitations", email="member@example.com")
    assert again.status_code == 400
    assert "already a member" in again.get_data(as_text=True)
    assert count(runtime, Invitation) == 0


def test_only_owners_withdraw_an_invitation_as_an_owner(app: Flask, runtime: Runtime) -> None:
    """An admin may not invite someone as an owner, so may not undo an owner's invitation as
    an owner either: no Withdraw link, the confirmation page and the form refused (403), the
    invitation still works. Admins still withdraw member invitations; the owner withdraws both."""
    org_id, _ = _acme(runtime)
    owner = signed_in(app, "owner@example.com")
    post(owner, f"/organizations/{org_id}/invitations", email="boss@example.com", role="owner")
    post(owner, f"/organizations/{org_id}/invitations", email="staff@example.com")
    with runtime.session_factory() as db:
        ids = {i.email: i.id for i in db.scalars(select(Invitation))}
    boss = f"/organizations/{org_id}/invitations/{ids['boss@example.com']}/revoke"
    staff = f"/organizations/{org_id}/invitations/{ids['staff@example.com']}/revoke"
    admin = signed_in(app, "admin@example.com")
    page = admin.get(f"/organizations/{org_id}/members").get_data(as_text=True)
    assert "boss@example.com" in page and boss not in page and staff in page
    for refused in (admin.get(boss), post(admin, boss)):
        assert refused.status_code == 403
        assert "Only an owner can withdraw an invitation as an owner." in refused.get_data(
            as_text=True)
    link = _invitation_link(runtime, "boss@example.com").removeprefix("http://127.0.0.1:8000")
    assert app.test_client().get(link).status_code == 200
    assert events(runtime, EventTag.INVITATION_REVOKED) == []
    assert post(admin, staff).status_code == 303
    assert boss in owner.get(f"/organizations/{org_id}/members").get_data(as_text=True)
    assert owner.get(boss).status_code == 200
    assert post(owner, boss).status_code == 303
    assert len(events(runtime, EventTag.INVITATION_REVOKED)) == 2
    assert app.test_client().get(link).status_code == 404


# Bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_nul_character_in_an_id_is_a_bad_request_that_changes_nothing(
    app: Flask, runtime: Runtime
) -> None:
    """PostgreSQL text cannot hold NUL: the database refuses the value, and that is the
    visitor's bad request (400, the usual error page), not a failure of idp (500)."""
    org_id, users = _acme(runtime)
    client = signed_in(app, "owner@example.com")
    before = (count(runtime, Event), count(runtime, Membership), count(runtime, Organization))
    answers = [
        client.get("/organizations/%00/members"),
        client.get("/organizations/%00/activity"),
        client.get(f"/organizations/{org_id}/members/%00/remove"),
        post(client, "/organizations/switch", org_id="\x00"),
        post(client, f"/organizations/{org_id}/members/{users['member']}%00/role", role="admin"),
        post(client, f"/organizations/{org_id}/members/%00/unlock"),
    ]
    assert "The request could not be understood." in answers[0].get_data(as_text=True)
    for response in answers:
        assert response.status_code == 400, (response.request.path, response.status_code)
        assert "An unexpected error occurred" not in response.get_data(as_text=True)
    assert (count(runtime, Event), count(runtime, Membership),
            count(runtime, Organization)) == before
    assert role_in(runtime, org_id, users["member"]) is Role.MEMBER
    assert client.get(f"/organizations/{org_id}/members").status_code == 200  # still signed in
