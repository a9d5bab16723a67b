"""The user's own security settings: the lockout threshold."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from flask_babel import gettext
from werkzeug.wrappers import Response

from idp.models import User
from idp.numbers import parse_whole
from idp.runtime import request_db, runtime
from idp.services import client_actor, current_session, lockout_service

bp = Blueprint("security", __name__)


def _page(
    user: User, *, error: str | None = None, saved: bool = False, status: int = 200
) -> tuple[str, int]:
    lockout = lockout_service()
    return render_template(
        "account/lockout.html",
        low=lockout.floor(user),
        high=runtime().settings.lockout_max_threshold,
        value=lockout.threshold(user),
        error=error,
        saved=saved,
    ), status


def _user() -> User | None:
    active = current_session()
    return request_db().get(User, active.user_id) if active else None


@bp.get("/account/lockout")
def lockout_page() -> Response | tuple[str, int]:
    user = _user()
    if user is None:
        return redirect(url_for("login.login_form", next="/account/lockout"), 303)
    return _page(user, saved="saved" in request.args)


@bp.post("/account/lockout")
def lockout_save() -> Response | tuple[str, int]:
    user = _user()
    if user is None:
        return redirect(url_for("login.login_form", next="/account/lockout"), 303)
    threshold = parse_whole(request.form.get("threshold", "").strip(), 3)
    if threshold is None:
        return _page(user, error=gettext("Enter a whole number."), status=400)
    try:
        lockout_service().choose_threshold(user, threshold, client_actor())
    except ValueError as exc:
        request_db().rollback()
        return _page(user, error=str(exc), status=400)
    return redirect(url_for("security.lockout_page", saved=1), 303)
