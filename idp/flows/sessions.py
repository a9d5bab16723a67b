"""Account access (``/account/sessions``): the user's devices and live sessions, and signing
them out, one or all but this one, each after a confirmation page (OWASP ASVS 4.0 V3.3.4).

Ending one's own current session here is signing out: the cookie is cleared and the browser
goes to the sign-in page.
"""

from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from idp.flows.sign_out import signed_out
from idp.numbers import parse_whole
from idp.security.session_list import SessionNotFound
from idp.services import session_list_service, signed_in_user

bp = Blueprint("sessions", __name__, url_prefix="/account/sessions")

Page = tuple[str, int]


def _to_login(path: str | None = None) -> Response:
    return redirect(url_for("login.login_form", next=path or url_for("sessions.overview")), 303)


def _count(name: str) -> int | None:
    value = request.args.get(name, "")
    return parse_whole(value, 5)


@bp.get("")
def overview() -> Response | Page:
    signed_in = signed_in_user()
    if signed_in is None:
        return _to_login(request.full_path.rstrip("?"))
    active, user = signed_in
    devices = session_list_service().devices(user.id, active.session_id)
    return render_template(
        "account/sessions.html",
        user=user,
        devices=devices,
        others=sum(not s.current for d in devices for s in d.sessions),
        ended=_count("ended"),
    ), 200


@bp.get("/<session_id>/end")
def confirm_end(session_id: str) -> Response | Page:
    """ "Sign out this device?": what is about to be signed out, and the button that does it."""
    signed_in = signed_in_user()
    if signed_in is None:
        return _to_login(request.full_path.rstrip("?"))
    active, user = signed_in
    try:
        device = session_list_service().find(user.id, session_id, active.session_id)
    except SessionNotFound:
        abort(404)
    return render_template(
        "account/session_end.html", device=device, entry=device.session(session_id)
    ), 200


@bp.post("/<session_id>/end")
def end(session_id: str) -> Response:
    signed_in = signed_in_user()
    if signed_in is None:
        return _to_login()
    active, user = signed_in
    try:
        ended = session_list_service().end(
            user.id, session_id, current_session_id=active.session_id
        )
    except SessionNotFound:
        abort(404)
    if session_id == active.session_id:
        return signed_out(session_id)
    return redirect(url_for("sessions.overview", ended=int(ended)), 303)


@bp.get("/end-others")
def confirm_end_others() -> Response | Page:
    """ "Sign out all other devices?": the sessions about to end, and the button."""
    signed_in = signed_in_user()
    if signed_in is None:
        return _to_login(request.full_path.rstrip("?"))
    active, user = signed_in
    devices = session_list_service().devices(user.id, active.session_id)
    others = [d for d in devices if any(not s.current for s in d.sessions)]
    return render_template("account/session_end.html", device=None, others=others), 200


@bp.post("/end-others")
def end_others() -> Response:
    signed_in = signed_in_user()
    if signed_in is None:
        return _to_login()
    active, user = signed_in
    ended = session_list_service().end_others(user.id, active.session_id)
    return redirect(url_for("sessions.overview", ended=ended), 303)
