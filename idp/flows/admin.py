"""Organization administration by its owners and admins: the members page (members and their
roles, invitations, locked members) and the lockout policy. Changing roles, removing members
and inviting are in :mod:`idp.flows.organizations`.

Every action checks on the server that the signed-in user is an owner or admin of *that*
organization and that the target is a member of it; anything else is 403 / 404.
"""

from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_babel import gettext, lazy_gettext
from sqlalchemy import select
from werkzeug.wrappers import Response

from idp.events import EventTag, record_event
from idp.mail.messages import UNLOCKED_BY_ADMIN
from idp.models import Membership, Organization, Role, User
from idp.numbers import parse_whole
from idp.runtime import request_db, runtime
from idp.services import (
    client_actor,
    current_session,
    invitation_service,
    lockout_service,
    notifier,
    organization_service,
)

bp = Blueprint("admin", __name__)
MANAGERS = (Role.OWNER, Role.ADMIN)


def managed_org(org_id: str) -> tuple[Organization, User]:
    active = current_session()
    if active is None:
        abort(401)
    db = request_db()
    role = db.scalar(
        select(Membership.role).where(
            Membership.user_id == active.user_id, Membership.organization_id == org_id
        )
    )
    if role not in MANAGERS:
        abort(403)
    org = db.get(Organization, org_id)
    actor = db.get(User, active.user_id)
    if org is None or actor is None:
        abort(404)
    return org, actor


def _members_page(
    org: Organization, *, message: str | None = None, error: str | None = None, status: int = 200
) -> tuple[str, int]:
    db = request_db()
    organizations = organization_service()
    locked = db.scalars(
        select(User)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.organization_id == org.id, User.locked_at.is_not(None))
        .order_by(User.locked_at.desc())
    ).all()
    settings = runtime().settings
    active = current_session()
    my_role = organizations.role_of(active.user_id, org.id) if active else None
    return render_template(
        "admin/members.html",
        org=org,
        me=active.user_id if active else None,
        my_role=my_role,
        members=organizations.members(org.id),
        invitations=invitation_service().pending(org.id),
        roles=list(Role),
        locked=locked,
        message=message,
        error=error,
        low=settings.lockout_min_threshold,
        high=settings.lockout_max_threshold,
        floor=org.lockout_floor or settings.lockout_min_threshold,
    ), status


@bp.get("/organizations/<org_id>/members")
def members(org_id: str) -> tuple[str, int] | Response:
    if current_session() is None:
        return redirect(url_for("login.login_form", next=request.path), 303)
    org, _ = managed_org(org_id)
    return _members_page(org, message=_done_message())


_DONE = {
    "unlocked": lazy_gettext("Unlocked."),
    "not_locked": lazy_gettext("That account was not locked: nothing was changed."),
    "invited": lazy_gettext("Invitation sent."),
    "withdrawn": lazy_gettext("Invitation withdrawn."),
    "changed": lazy_gettext("Role changed."),
    "removed": lazy_gettext("Member removed."),
}


def _done_message() -> str | None:
    return next((text for key, text in _DONE.items() if key in request.args), None)


@bp.post("/organizations/<org_id>/members/<user_id>/unlock")
def unlock_member(org_id: str, user_id: str) -> Response:
    org, admin = managed_org(org_id)
    db = request_db()
    member = db.scalar(
        select(User)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.organization_id == org.id, User.id == user_id)
    )
    if member is None:
        abort(404)
    lockout = lockout_service()
    if not lockout.unlock(member, client_actor(), by="organization admin", admin_id=admin.id):
        return redirect(url_for("admin.members", org_id=org.id, not_locked=1), 303)
    notifier().account_unlocked(db, member, UNLOCKED_BY_ADMIN, org.name)
    db.commit()
    return redirect(url_for("admin.members", org_id=org.id, unlocked=1), 303)


@bp.post("/organizations/<org_id>/lockout-floor")
def lockout_floor(org_id: str) -> Response | tuple[str, int]:
    org, admin = managed_org(org_id)
    settings = runtime().settings
    floor = parse_whole(request.form.get("floor", "").strip(), 3)
    if floor is None or not (
        settings.lockout_min_threshold <= floor <= settings.lockout_max_threshold
    ):
        return _members_page(
            org,
            status=400,
            error=(
                gettext(
                    "Choose a number from %(lockout_min_threshold)s to %(lockout_max_threshold)s.",
                    lockout_min_threshold=settings.lockout_min_threshold,
                    lockout_max_threshold=settings.lockout_max_threshold,
                )
            ),
        )
    db = request_db()
    previous = org.lockout_floor
    org.lockout_floor = floor
    record_event(
        db,
        EventTag.LOCKOUT_THRESHOLD_CHANGED,
        user_id=admin.id,
        organization_id=org.id,
        actor=client_actor(),
        details={"organization_floor": {"from": previous, "to": org.lockout_floor}},
    )
    db.commit()
    return redirect(url_for("admin.members", org_id=org.id), 303)
