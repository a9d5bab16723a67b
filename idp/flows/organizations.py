"""Organization pages: the user's organizations (create, switch), settings (rename, delete),
member management (role, remove, leave) and invitations (send, withdraw, accept).

Views parse the form, call one service method and render; every check of who may do what is
in :mod:`idp.organizations` (a refusal renders ``organizations/refused.html`` with the reason
and the refusal's status: 400, 403, 404, 409, or 429 with ``Retry-After``). Destructive
actions have a confirmation page (GET) before the action (POST).
"""

from __future__ import annotations

from flask import Blueprint, g, make_response, redirect, render_template, request, url_for
from flask_babel import gettext, lazy_gettext
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.wrappers import Response

from idp.flows.login import _enforced_sso, _signed_in
from idp.flows.uploads import allow_uploads, uploaded_bytes
from idp.media.images import ImageRefused
from idp.models import Organization, Role, User
from idp.organizations.invitations import (
    WITHDRAW_OWNER_INVITATION,
    AccountExists,
    InvitationError,
    WrongAccount,
)
from idp.organizations.policy import Action, may_invite
from idp.organizations.service import NotAllowed, OrganizationError
from idp.runtime import request_db
from idp.security.ratelimit import RateLimited
from idp.security.reauth import WrongPassword
from idp.services import (
    authentication_service,
    branding_service,
    client_info,
    connection_service,
    current_session,
    invitation_service,
    organization_service,
    signed_in_user,
)

bp = Blueprint("organizations", __name__)

TOO_MANY = lazy_gettext("Too many attempts. Wait a few minutes and try again.")
ROLE_LABELS = {
    Role.OWNER: lazy_gettext("Owner"),
    Role.ADMIN: lazy_gettext("Admin"),
    Role.MEMBER: lazy_gettext("Member"),
}


def _to_login(path: str | None = None) -> Response:
    return redirect(url_for("login.login_form", next=path or request.path), 303)


def _user() -> User | None:
    signed_in = signed_in_user()
    return signed_in[1] if signed_in else None


def _allowed(org_id: str, action: Action) -> tuple[User, Organization, Role] | Response:
    """The signed-in user, the organization and their role when they may do ``action`` there;
    otherwise the response to send (sign in first, or refused)."""
    user = _user()
    if user is None:
        return _to_login()
    try:
        org, role = organization_service().authorize(user, org_id, action)
    except OrganizationError as exc:
        return _refused(exc, url_for("organizations.index"))
    return user, org, role


def _refused(exc: OrganizationError, back: str | None = None) -> Response:
    response = make_response(
        render_template("organizations/refused.html", message=exc.message, back=back),
        exc.status,
    )
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _too_many(limited: RateLimited, back: str | None = None) -> Response:
    response = make_response(
        render_template("organizations/refused.html", message=TOO_MANY, back=back), 429
    )
    response.headers["Retry-After"] = str(limited.retry_after)
    return response


def _role(raw: str) -> Role | None:
    try:
        return Role(raw)
    except ValueError:
        return None


# The user's organizations -------------------------------------------------------------------


@bp.get("/organizations")
def index() -> Response | str:
    user = _user()
    if user is None:
        return _to_login()
    service = organization_service()
    current = service.current(user)
    return render_template(
        "organizations/index.html",
        user=user,
        memberships=service.memberships(user),
        current=current[0] if current else None,
        role_labels=ROLE_LABELS,
        error=None,
        name="",
        left=request.args.get("left"),
        deleted=request.args.get("deleted"),
    )


@bp.post("/organizations")
def create() -> Response | tuple[str, int]:
    user = _user()
    if user is None:
        return _to_login(url_for("organizations.index"))
    service = organization_service()
    name = request.form.get("name", "")
    try:
        org = service.create(user, name)
    except OrganizationError as exc:
        current = service.current(user)
        return render_template(
            "organizations/index.html",
            user=user,
            memberships=service.memberships(user),
            current=current[0] if current else None,
            role_labels=ROLE_LABELS,
            error=exc.message,
            name=name,
            left=None,
            deleted=None,
        ), 400
    return redirect(url_for("organizations.settings", org_id=org.id), 303)


@bp.post("/organizations/switch")
def switch() -> Response:
    user = _user()
    if user is None:
        return _to_login(url_for("organizations.index"))
    try:
        organization_service().switch(user, request.form.get("org_id", ""))
    except OrganizationError as exc:
        return _refused(exc, url_for("organizations.index"))
    return redirect(url_for("organizations.index"), 303)


# Settings: rename, delete --------------------------------------------------------------------


@bp.get("/organizations/<org_id>/settings")
def settings(org_id: str) -> Response | str:
    allowed = _allowed(org_id, Action.RENAME)
    if isinstance(allowed, Response):
        return allowed
    _, org, role = allowed
    return _settings_page(org, role, renamed="renamed" in request.args)


def _settings_page(
    org: Organization, role: Role, *, error: str | None = None, renamed: bool = False
) -> str:
    from idp.organizations.policy import allows

    return render_template(
        "organizations/settings.html",
        org=org,
        role=role,
        may_delete=allows(role, Action.DELETE),
        error=error,
        renamed=renamed,
    )


@bp.post("/organizations/<org_id>/rename")
def rename(org_id: str) -> Response | tuple[str, int]:
    user = _user()
    if user is None:
        return _to_login()
    service = organization_service()
    try:
        service.rename(user, org_id, request.form.get("name", ""))
    except OrganizationError as exc:
        if exc.status != 400:
            return _refused(exc, url_for("organizations.index"))
        org, role = service.authorize(user, org_id, Action.RENAME)
        request_db().refresh(org)
        return _settings_page(org, role, error=exc.message), 400
    return redirect(url_for("organizations.settings", org_id=org_id, renamed=1), 303)


@bp.get("/organizations/<org_id>/delete")
def confirm_delete(org_id: str) -> Response | str:
    allowed = _allowed(org_id, Action.DELETE)
    if isinstance(allowed, Response):
        return allowed
    _, org, _ = allowed
    members = organization_service().members(org.id)
    return render_template("organizations/delete.html", org=org, members=len(members), error=None)


@bp.post("/organizations/<org_id>/delete")
def delete(org_id: str) -> Response | tuple[str, int]:
    user = _user()
    if user is None:
        return _to_login()
    service = organization_service()
    back = url_for("organizations.confirm_delete", org_id=org_id)
    try:
        name = service.delete(user, org_id, request.form.get("password", ""))
    except RateLimited as limited:
        return _too_many(limited, back)
    except WrongPassword as exc:
        org, _ = service.authorize(user, org_id, Action.DELETE)
        return render_template(
            "organizations/delete.html",
            org=org,
            members=len(service.members(org.id)),
            error=exc.message,
        ), 400
    except OrganizationError as exc:
        return _refused(exc, url_for("organizations.index"))
    return redirect(url_for("organizations.index", deleted=name), 303)


# Branding -----------------------------------------------------------------------------------


@bp.post("/organizations/<org_id>/branding")
def upload_logo(org_id: str) -> Response | tuple[str, int]:
    user = _user()
    if user is None:
        return _to_login()
    service = branding_service()
    try:
        service.set_logo(user, org_id, request.form.get("which", ""), uploaded_bytes("logo"))
    except KeyError:
        return _refused(OrganizationError(gettext("Choose the square or the wide logo.")))
    except ImageRefused as exc:
        org, role = service.organizations.authorize(user, org_id, Action.RENAME)
        request_db().refresh(org)
        return _settings_page(org, role, error=str(exc)), 400
    except OrganizationError as exc:
        return _refused(exc, url_for("organizations.index"))
    return redirect(url_for("organizations.settings", org_id=org_id, renamed=1), 303)


@bp.get("/organizations/<org_id>/branding/remove")
def confirm_remove_logo(org_id: str) -> Response | str:
    user = _user()
    if user is None:
        return _to_login()
    which = request.args.get("which", "")
    try:
        org, _ = organization_service().authorize(user, org_id, Action.BRANDING)
    except OrganizationError as exc:
        return _refused(exc, url_for("organizations.index"))
    label = "square" if which == "square" else "wide"
    return render_template(
        "confirm.html",
        title=(
            gettext("Remove the square logo of %(name)s?", name=org.name)
            if label == "square"
            else gettext("Remove the wide logo of %(name)s?", name=org.name)
        ),
        text=gettext(
            "Its initials are shown instead of a square logo; applications get no wide logo."
        ),
        action=url_for("organizations.remove_logo", org_id=org.id),
        fields={"which": label},
        button=gettext("Remove logo"),
        cancel=url_for("organizations.settings", org_id=org.id),
    )


@bp.post("/organizations/<org_id>/branding/remove")
def remove_logo(org_id: str) -> Response:
    user = _user()
    if user is None:
        return _to_login()
    try:
        branding_service().remove_logo(user, org_id, request.form.get("which", ""))
    except KeyError:
        return _refused(OrganizationError(gettext("Choose the square or the wide logo.")))
    except OrganizationError as exc:
        return _refused(exc, url_for("organizations.index"))
    return redirect(url_for("organizations.settings", org_id=org_id, renamed=1), 303)


allow_uploads(bp, "organizations.upload_logo")


# Members ------------------------------------------------------------------------------------


@bp.post("/organizations/<org_id>/members/<member_id>/role")
def change_role(org_id: str, member_id: str) -> Response:
    user = _user()
    if user is None:
        return _to_login()
    back = url_for("admin.members", org_id=org_id)
    role = _role(request.form.get("role", ""))
    if role is None:
        return _refused(OrganizationError(gettext("Choose owner, admin or member.")), back)
    try:
        organization_service().change_role(user, org_id, member_id, role)
    except OrganizationError as exc:
        return _refused(exc, back)
    return redirect(url_for("admin.members", org_id=org_id, changed=1), 303)


@bp.get("/organizations/<org_id>/members/<member_id>/remove")
def confirm_remove(org_id: str, member_id: str) -> Response | str:
    user = _user()
    if user is None:
        return _to_login()
    service = organization_service()
    try:
        org, _ = service.authorize(user, org_id, Action.REMOVE_MEMBER)
    except OrganizationError as exc:
        return _refused(exc, url_for("organizations.index"))
    member = next((m for m in service.members(org.id) if m.user.id == member_id), None)
    if member is None:
        return _refused(OrganizationError(gettext("There is no such member.")), None)
    return render_template("organizations/remove.html", org=org, member=member)


@bp.post("/organizations/<org_id>/members/<member_id>/remove")
def remove(org_id: str, member_id: str) -> Response:
    user = _user()
    if user is None:
        return _to_login()
    try:
        organization_service().remove_member(user, org_id, member_id)
    except OrganizationError as exc:
        return _refused(exc, url_for("admin.members", org_id=org_id))
    if member_id == user.id:
        return redirect(url_for("organizations.index", left=1), 303)
    return redirect(url_for("admin.members", org_id=org_id, removed=1), 303)


@bp.get("/organizations/<org_id>/leave")
def confirm_leave(org_id: str) -> Response | str:
    allowed = _allowed(org_id, Action.LEAVE)
    if isinstance(allowed, Response):
        return allowed
    _, org, role = allowed
    return render_template("organizations/leave.html", org=org, role=role)


@bp.post("/organizations/<org_id>/leave")
def leave(org_id: str) -> Response:
    user = _user()
    if user is None:
        return _to_login()
    try:
        organization_service().leave(user, org_id)
    except OrganizationError as exc:
        return _refused(exc, url_for("organizations.index"))
    return redirect(url_for("organizations.index", left=1), 303)


# Invitations --------------------------------------------------------------------------------


@bp.post("/organizations/<org_id>/invitations")
def invite(org_id: str) -> Response:
    user = _user()
    if user is None:
        return _to_login()
    back = url_for("admin.members", org_id=org_id)
    role = _role(request.form.get("role", "member"))
    if role is None:
        return _refused(OrganizationError(gettext("Choose owner, admin or member.")), back)
    try:
        invitation_service().invite(user, org_id, request.form.get("email", ""), role)
    except OrganizationError as exc:
        return _refused(exc, back)
    return redirect(url_for("admin.members", org_id=org_id, invited=1), 303)


@bp.get("/organizations/<org_id>/invitations/<invitation_id>/revoke")
def confirm_revoke_invitation(org_id: str, invitation_id: str) -> Response | str:
    allowed = _allowed(org_id, Action.INVITE)
    if isinstance(allowed, Response):
        return allowed
    _, org, role = allowed
    pending = {i.id: i for i in invitation_service().pending(org.id)}
    if invitation_id not in pending:
        return _refused(OrganizationError(gettext("There is no such pending invitation.")))
    if not may_invite(role, pending[invitation_id].role):
        back = url_for("admin.members", org_id=org.id)
        return _refused(NotAllowed(str(WITHDRAW_OWNER_INVITATION)), back)
    return render_template(
        "confirm.html",
        title=gettext("Withdraw the invitation to %(email)s?", email=pending[invitation_id].email),
        text=gettext("The link in the invitation stops working. You can invite them again later."),
        action=url_for(
            "organizations.revoke_invitation", org_id=org.id, invitation_id=invitation_id
        ),
        button=gettext("Withdraw invitation"),
        cancel=url_for("admin.members", org_id=org.id),
    )


@bp.post("/organizations/<org_id>/invitations/<invitation_id>/revoke")
def revoke_invitation(org_id: str, invitation_id: str) -> Response:
    user = _user()
    if user is None:
        return _to_login()
    try:
        invitation_service().revoke(user, org_id, invitation_id)
    except OrganizationError as exc:
        return _refused(exc, url_for("admin.members", org_id=org_id))
    return redirect(url_for("admin.members", org_id=org_id, withdrawn=1), 303)


@bp.get("/invitations/<token>")
def invitation(token: str) -> Response | tuple[str, int]:
    return _invitation_page(token)


def _invitation_page(
    token: str, *, error: str | None = None, status: int = 200, form: dict[str, str] | None = None
) -> Response | tuple[str, int]:
    service = invitation_service()
    try:
        found, org = service.find(token)
    except OrganizationError as exc:
        return _refused(exc)
    user = _user()
    has_account = service.accounts.find_user_by_email(found.email) is not None
    return render_template(
        "organizations/invitation.html",
        sso_enforced=not has_account and connection_service().enforces_sso(found.email),
        token=token,
        invitation=found,
        org=org,
        user=user,
        wrong_account=user is not None and user.email_normalized != found.email_normalized,
        has_account=has_account,
        role_label=ROLE_LABELS[found.role],
        error=error,
        form=form or {},
    ), status


@bp.post("/invitations/<token>/accept")
def accept(token: str) -> Response | tuple[str, int]:
    user = _user()
    if user is None:
        return _to_login(url_for("organizations.invitation", token=token))
    try:
        org = invitation_service().accept(user, token)
    except WrongAccount as exc:
        return _invitation_page(token, error=exc.message, status=exc.status)
    except OrganizationError as exc:
        return _refused(exc)
    return redirect(url_for("organizations.index", joined=org.id), 303)


@bp.post("/invitations/<token>/register")
def register(token: str) -> Response | tuple[str, int]:
    """Create the invited account, join, and sign in."""
    if current_session() is not None:
        return _invitation_page(
            token, error=gettext("Sign out first to create another account."), status=400
        )
    try:
        found, _org = invitation_service().find(token)
    except OrganizationError as exc:
        return _refused(exc)
    # An SSO-enforced address gets no password here (as at sign-up): its organization's Entra
    # ID signs the person in, and the invitation page is where they come back to accept.
    enforced = _enforced_sso(found.email, url_for("organizations.invitation", token=token))
    if enforced is not None:
        return enforced
    form = {
        "first_name": request.form.get("first_name", ""),
        "last_name": request.form.get("last_name", ""),
    }
    try:
        user, _org = invitation_service().register(
            token,
            form["first_name"],
            form["last_name"],
            request.form.get("password", ""),
            request.form.get("password_again", ""),
        )
    except AccountExists as exc:
        return _invitation_page(token, error=exc.message, status=exc.status)
    except InvitationError as exc:
        if exc.status == 400:
            return _invitation_page(token, error=exc.message, status=400, form=form)
        return _refused(exc)
    result = authentication_service().complete_registration(user, client_info())
    return _signed_in(result, url_for("organizations.index"))


# Shown on every page ------------------------------------------------------------------------


def current_organization() -> tuple[Organization, Role] | None:
    """The signed-in user's current organization (for the page header), or None. Once per
    request; a page about a failure still renders when the database cannot be reached."""
    if "idp_current_org" not in g:
        g.idp_current_org = None
        try:
            active = current_session()
            user = request_db().get(User, active.user_id) if active else None
            if user is not None:
                g.idp_current_org = organization_service().current(user)
        except (SQLAlchemyError, RedisError):
            request_db().rollback()
    found: tuple[Organization, Role] | None = g.idp_current_org
    return found
