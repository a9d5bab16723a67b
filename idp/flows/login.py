"""Sign-in and sign-out pages (password flow)."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from idp.flows.cookies import clear_session_cookie, set_session_cookies
from idp.security import csrf
from idp.security.authentication import GENERIC_FAILURE, InvalidCredentials
from idp.security.redirects import safe_next
from idp.services import authentication_service, client_info, current_session, session_service

bp = Blueprint("login", __name__)


def _form(error: str | None = None, email: str = "", status: int = 200) -> tuple[str, int]:
    return (
        render_template(
            "login/login.html",
            error=error,
            email=email,
            next=safe_next(request.values.get("next"), default=""),
            signed_out="signed_out" in request.args,
        ),
        status,
    )


@bp.get("/login")
def login_form() -> Response | tuple[str, int]:
    # prompt=login (from the authorization endpoint): sign in again although signed in.
    if current_session() is not None and request.args.get("prompt") != "login":
        return redirect(safe_next(request.args.get("next")), 303)
    return _form(email=request.args.get("login_hint", "")[:320])


@bp.post("/login")
def login_submit() -> Response | tuple[str, int]:
    email = request.form.get("email", "").strip()
    password = request.form.get("password", "")
    if not email or not password:
        return _form("Enter your email address and your password.", email, 400)
    previous = current_session()
    try:
        result = authentication_service().sign_in(email, password, client_info())
    except InvalidCredentials:
        return _form(GENERIC_FAILURE, email)
    if previous is not None:  # signing in again in this browser replaces its session
        session_service().end(previous.session_id, "reauthenticated")
    csrf.rotate()
    response = redirect(safe_next(request.form.get("next")), 303)
    set_session_cookies(response, result.started.token, result.started.browser_key)
    return response


@bp.post("/logout")
def logout() -> Response:
    active = current_session()
    if active is not None:
        authentication_service().sign_out(active.session_id, active.user_id, client_info())
    csrf.rotate()
    response = redirect(url_for("login.login_form", signed_out=1), 303)
    clear_session_cookie(response)
    return response
