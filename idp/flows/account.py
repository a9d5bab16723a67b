"""The signed-in user's account page."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from idp.models import Device, User
from idp.runtime import request_db
from idp.services import current_session

bp = Blueprint("account", __name__)


@bp.get("/")
def home() -> Response:
    return redirect(url_for("account.overview"), 303)


@bp.get("/account")
def overview() -> Response | str:
    active = current_session()
    if active is None:
        return redirect(url_for("login.login_form", next=request.full_path.rstrip("?")), 303)
    db = request_db()
    user = db.get(User, active.user_id)
    device = db.get(Device, active.device_id)
    if user is None:  # deleted while signed in
        return redirect(url_for("login.login_form"), 303)
    return render_template("account/overview.html", user=user, device=device, active=active)
