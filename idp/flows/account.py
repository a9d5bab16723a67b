"""The signed-in user's account page."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from idp.models import Device, User
from idp.provider.consent import ConsentService
from idp.runtime import request_db
from idp.services import client_actor, current_session

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
    # The user and the session's device in one round trip (the device may be gone: None).
    found = db.execute(
        select(User, Device)
        .outerjoin(Device, Device.id == active.device_id)
        .where(User.id == active.user_id)
    ).first()
    if found is None:  # deleted while signed in
        return redirect(url_for("login.login_form"), 303)
    user, device = found
    consents = ConsentService(db).list_for_user(user.id)
    return render_template(
        "account/overview.html", user=user, device=device, active=active, consents=consents
    )


@bp.post("/account/applications/<client_id>/revoke")
def revoke_application(client_id: str) -> Response:
    """Withdraw consent from an application; its tokens for this user stop working."""
    active = current_session()
    if active is None:
        return redirect(url_for("login.login_form"), 303)
    ConsentService(request_db()).revoke(active.user_id, client_id, client_actor())
    return redirect(url_for("account.overview"), 303)
