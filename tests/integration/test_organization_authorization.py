"""The authorization matrix: every organization action, tried directly on its endpoint (with a
valid CSRF token, so only authorization can refuse it) by an owner, an admin, a member and a
non-member, on their own organization and on another one. The allowed set is exactly the one
of :mod:`idp.organizations.policy`; every refusal is 403 and changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from idp.models import Event, Invitation, Membership, Organization, Role, User, utcnow
from idp.runtime import Runtime
from tests.helpers import PASSWORD
from tests.images import picture
from tests.organizations import SeededOrg, post, seed_org, signed_in


@dataclass
class World:
    own: SeededOrg
    other: SeededOrg
    invitations: dict[str, str]  # org id -> a pending invitation's id


def _org(runtime: Runtime, name: str, prefix: str) -> SeededOrg:
    return seed_org(
        runtime,
        name,
        {
            "owner": (f"{prefix}.owner@example.com", Role.OWNER),
            "owner2": (f"{prefix}.owner2@example.com", Role.OWNER),
            "admin": (f"{prefix}.admin@example.com", Role.ADMIN),
            "member": (f"{prefix}.member@example.com", Role.MEMBER),
            "target": (f"{prefix}.target@example.com", Role.MEMBER),
        },
    )


def _world(runtime: Runtime) -> World:
    own, other = _org(runtime, "Acme", "acme"), _org(runtime, "Globex", "globex")
    invitations = {}
    with runtime.session_factory() as db:
        for org in (own, other):
            invitation = Invitation(
                organization_id=org.id,
                email=f"pending@{org.name.lower()}.example",
                email_normalized=f"pending@{org.name.lower()}.example",
                role=Role.MEMBER,
                token_hash=org.id.replace("-", "").ljust(64, "0"),
                expires_at=utcnow().replace(year=utcnow().year + 1),
            )
            db.add(invitation)
            db.flush()
            invitations[org.id] = invitation.id
        db.commit()
    return World(own, other, invitations)


Act = Callable[[FlaskClient, SeededOrg, World], TestResponse]


def _members(o: SeededOrg) -> str:
    return f"/organizations/{o.id}/members"


ACTIONS: dict[str, Act] = {
    "view_members": lambda c, o, w: c.get(_members(o)),
    "view_activity": lambda c, o, w: c.get(f"/organizations/{o.id}/activity"),
    "view_settings": lambda c, o, w: c.get(f"/organizations/{o.id}/settings"),
    "rename": lambda c, o, w: post(c, f"/organizations/{o.id}/rename", name="Renamed Inc"),
    "upload_logo": lambda c, o, w: c.post(
        f"/organizations/{o.id}/branding",
        data={"csrf_token": _token(c), "which": "square",
              "logo": (__import__("io").BytesIO(picture(256, 256)), "logo.png")},
        content_type="multipart/form-data",
    ),
    "remove_logo": lambda c, o, w: post(c, f"/organizations/{o.id}/branding/remove",
                                        which="wide"),
    "invite": lambda c, o, w: post(c, f"/organizations/{o.id}/invitations",
                                   email="new@example.com", role="member"),
    "invite_owner": lambda c, o, w: post(c, f"/organizations/{o.id}/invitations",
                                         email="new@example.com", role="owner"),
    "confirm_withdraw_page": lambda c, o, w: c.get(
        f"/organizations/{o.id}/invitations/{w.invitations[o.id]}/revoke"
    ),
    "confirm_remove_logo_page": lambda c, o, w: c.get(
        f"/organizations/{o.id}/branding/remove?which=square"
    ),
    "confirm_remove_member_page": lambda c, o, w: c.get(
        f"{_members(o)}/{o.users['target']}/remove"
    ),
    "confirm_delete_page": lambda c, o, w: c.get(f"/organizations/{o.id}/delete"),
    "withdraw_invitation": lambda c, o, w: post(
        c, f"/organizations/{o.id}/invitations/{w.invitations[o.id]}/revoke"
    ),
    "change_role": lambda c, o, w: post(c, f"{_members(o)}/{o.users['target']}/role",
                                        role="admin"),
    "grant_owner": lambda c, o, w: post(c, f"{_members(o)}/{o.users['target']}/role",
                                        role="owner"),
    "demote_owner": lambda c, o, w: post(c, f"{_members(o)}/{o.users['owner2']}/role",
                                         role="member"),
    "remove_member": lambda c, o, w: post(c, f"{_members(o)}/{o.users['target']}/remove"),
    "remove_owner": lambda c, o, w: post(c, f"{_members(o)}/{o.users['owner2']}/remove"),
    "unlock_member": lambda c, o, w: post(c, f"{_members(o)}/{o.users['target']}/unlock"),
    "lockout_policy": lambda c, o, w: post(c, f"/organizations/{o.id}/lockout-floor", floor="5"),
    "switch": lambda c, o, w: post(c, "/organizations/switch", org_id=o.id),
    "leave": lambda c, o, w: post(c, f"/organizations/{o.id}/leave"),
    "delete": lambda c, o, w: post(c, f"/organizations/{o.id}/delete", password=PASSWORD),
}

MEMBER_ACTIONS = {"switch", "leave"}
OWNER_ONLY = {
    "invite_owner", "grant_owner", "demote_owner", "remove_owner", "delete", "confirm_delete_page"
}
ALLOWED: dict[str, set[str]] = {
    "owner": set(ACTIONS),
    "admin": set(ACTIONS) - OWNER_ONLY,
    "member": MEMBER_ACTIONS,
    "non-member": set(),
}


def _token(client: FlaskClient) -> str:
    from tests.organizations import token_of

    return token_of(client)


def _snapshot(runtime: Runtime) -> tuple[object, ...]:
    """Everything an organization action could change."""
    with runtime.session_factory() as db:
        return (
            tuple(db.execute(select(Organization.id, Organization.name,
                                    Organization.square_logo_id, Organization.lockout_floor)
                             .order_by(Organization.id)).all()),
            tuple(db.execute(select(Membership.user_id, Membership.organization_id,
                                    Membership.role).order_by(Membership.id)).all()),
            tuple(db.execute(select(Invitation.id, Invitation.revoked_at)
                             .order_by(Invitation.id)).all()),
            db.scalar(select(func.count()).select_from(Event)
                      .where(Event.action.not_like("account:login%"))),
            tuple(db.execute(select(User.id, User.current_organization_id)
                             .order_by(User.id)).all()),
        )


@pytest.mark.parametrize("which", ["own", "other"])
@pytest.mark.parametrize("action", list(ACTIONS))
@pytest.mark.parametrize("role", list(ALLOWED))
def test_authorization_matrix(
    app: Flask, runtime: Runtime, role: str, action: str, which: str
) -> None:
    world = _world(runtime)
    if role == "non-member":
        from tests.helpers import create_user

        create_user(runtime, "outsider@example.com")
        email = "outsider@example.com"
    else:
        email = f"acme.{role}@example.com"
    client = signed_in(app, email)
    target = world.own if which == "own" else world.other
    allowed = which == "own" and action in ALLOWED[role]

    before = _snapshot(runtime)
    response = ACTIONS[action](client, target, world)

    if allowed:
        assert response.status_code in (200, 303), response.get_data(as_text=True)[:500]
    else:
        assert response.status_code == 403, (role, action, which, response.status_code)
        assert _snapshot(runtime) == before, "a refused action changed something"


def test_the_matrix_covers_every_policy_action() -> None:
    """A new action in the policy needs a row in the matrix (and an endpoint)."""
    from idp.organizations.policy import Action

    covered = {
        Action.VIEW: "switch",
        Action.VIEW_MEMBERS: "view_members",
        Action.VIEW_ACTIVITY: "view_activity",
        Action.RENAME: "rename",
        Action.BRANDING: "upload_logo",
        Action.INVITE: "invite",
        Action.CHANGE_ROLE: "change_role",
        Action.REMOVE_MEMBER: "remove_member",
        Action.MANAGE_OWNERS: "grant_owner",
        Action.UNLOCK_MEMBER: "unlock_member",
        Action.LOCKOUT_POLICY: "lockout_policy",
        Action.LEAVE: "leave",
        Action.DELETE: "delete",
    }
    assert set(covered) == set(Action)
    assert set(covered.values()) <= set(ACTIONS)
