"""The profile page (``/account/profile``): the name (a pencil opens the form), the profile
picture (upload, remove) and the email address (a link to change it). Thin views over
:class:`~idp.profile.ProfileService`."""

from __future__ import annotations

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from werkzeug.wrappers import Response

from idp.flows.uploads import allow_uploads, uploaded_bytes
from idp.media.images import MIN_SQUARE_SIDE, ImageRefused
from idp.models import User
from idp.profile import ProfileError
from idp.services import profile_service, signed_in_user

bp = Blueprint("profile", __name__, url_prefix="/account/profile")

_DONE = {
    "saved": lazy_gettext("Your name was saved."),
    "picture": lazy_gettext("Your picture was saved."),
    "removed": lazy_gettext("Your picture was removed."),
    "language": lazy_gettext("Your language was saved."),
}


def _user() -> User | None:
    signed_in = signed_in_user()
    return signed_in[1] if signed_in else None


def _to_login() -> Response:
    return redirect(url_for("login.login_form", next=url_for("profile.page")), 303)


def _page(
    user: User,
    *,
    editing: bool = False,
    error: str | None = None,
    picture_error: str | None = None,
    status: int = 200,
    form: dict[str, str] | None = None,
) -> Response:
    notice = next((str(text) for key, text in _DONE.items() if key in request.args), None)
    return make_response(
        render_template(
            "account/profile.html",
            user=user,
            editing=editing,
            error=error,
            picture_error=picture_error,
            notice=None if error or picture_error else notice,
            min_side=MIN_SQUARE_SIDE,
            form=form or {"first_name": user.first_name, "last_name": user.last_name},
        ),
        status,
    )


@bp.get("")
def page() -> Response:
    user = _user()
    if user is None:
        return _to_login()
    return _page(user, editing="edit" in request.args)


@bp.post("/name")
def rename() -> Response:
    user = _user()
    if user is None:
        return _to_login()
    form = {
        "first_name": request.form.get("first_name", ""),
        "last_name": request.form.get("last_name", ""),
    }
    try:
        profile_service().rename(user, form["first_name"], form["last_name"])
    except ProfileError as exc:
        return _page(user, editing=True, error=str(exc), status=400, form=form)
    return redirect(url_for("profile.page", saved=1), 303)


@bp.post("/picture")
def upload_picture() -> Response:
    user = _user()
    if user is None:
        return _to_login()
    try:
        profile_service().set_picture(user, uploaded_bytes("picture"))
    except ImageRefused as exc:
        return _page(user, picture_error=str(exc), status=400)
    return redirect(url_for("profile.page", picture=1), 303)


@bp.get("/picture/remove")
def confirm_remove_picture() -> Response | str:
    user = _user()
    if user is None:
        return _to_login()
    return render_template(
        "confirm.html",
        title=_("Remove your picture?"),
        text=_("Your initials are shown instead, here and in the applications you use."),
        action=url_for("profile.remove_picture"),
        button=_("Remove picture"),
        cancel=url_for("profile.page"),
    )


@bp.post("/picture/remove")
def remove_picture() -> Response:
    user = _user()
    if user is None:
        return _to_login()
    profile_service().remove_picture(user)
    return redirect(url_for("profile.page", removed=1), 303)


allow_uploads(bp, "profile.upload_picture")
