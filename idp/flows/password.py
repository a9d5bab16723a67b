"""Changing the password (``/account/password``): current password, new password twice, and
the choice (on by default) to sign out every other device (OWASP ASVS 4.0 V2.1.6, V3.3.3).

A refusal answers 400 with its reason (429 past the rate limit) and changes nothing. Success
rotates the CSRF token, as at every change of what the browser is authenticated with, and
keeps this browser signed in.
"""

from __future__ import annotations

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask_babel import lazy_gettext
from werkzeug.wrappers import Response

from idp.flows.cookies import set_session_cookie
from idp.models import User
from idp.numbers import parse_whole
from idp.runtime import request_db, runtime
from idp.security import csrf
from idp.security.password_change import (
    NewPasswordsDiffer,
    PasswordChangeError,
    PolicyRefused,
    SameAsCurrent,
)
from idp.security.ratelimit import RateLimited
from idp.security.sessions import ActiveSession
from idp.services import current_session, password_change_service

bp = Blueprint("password", __name__, url_prefix="/account/password")

TOO_MANY = lazy_gettext("Too many attempts. Wait a few minutes and try again.")


def _signed_in() -> tuple[ActiveSession, User] | None:
    active = current_session()
    if active is None:
        return None
    user = request_db().get(User, active.user_id)
    return (active, user) if user is not None else None


def _field_of(error: PasswordChangeError) -> str:
    """The id of the field a refusal is about, so the page ties the message to it."""
    if isinstance(error, NewPasswordsDiffer):
        return "new-password-again"
    if isinstance(error, (PolicyRefused, SameAsCurrent)):
        return "new-password"
    return "current-password"


def _form(
    user: User,
    *,
    error: str | None = None,
    error_field: str = "current-password",
    sign_out_others: bool = True,
    status: int = 200,
) -> Response:
    changed = "changed" in request.args and error is None
    ended = request.args.get("ended", "")
    return make_response(
        render_template(
            "account/password.html",
            user=user,
            error=error,
            error_field=error_field,
            sign_out_others=sign_out_others,
            changed=changed,
            ended=parse_whole(ended, 5) or 0,
            min_length=runtime().passwords.min_length,
        ),
        status,
    )


@bp.get("")
def form() -> Response:
    signed_in = _signed_in()
    if signed_in is None:
        return redirect(url_for("login.login_form", next=url_for("password.form")), 303)
    return _form(signed_in[1])


@bp.post("")
def change() -> Response:
    signed_in = _signed_in()
    if signed_in is None:
        return redirect(url_for("login.login_form", next=url_for("password.form")), 303)
    active, user = signed_in
    # An unchecked checkbox is not sent: its absence is the user's "keep them signed in".
    sign_out_others = request.form.get("sign_out_others") == "on"
    try:
        result = password_change_service().change(
            user,
            active.session_id,
            request.form.get("current_password", ""),
            request.form.get("new_password", ""),
            request.form.get("new_password_again", ""),
            sign_out_others=sign_out_others,
        )
    except RateLimited as limited:
        response = _form(user, error=TOO_MANY, sign_out_others=sign_out_others, status=429)
        response.headers["Retry-After"] = str(limited.retry_after)
        return response
    except PasswordChangeError as exc:
        return _form(
            user,
            error=exc.message,
            error_field=_field_of(exc),
            sign_out_others=sign_out_others,
            status=400,
        )
    csrf.rotate()
    response = redirect(
        url_for("password.form", changed=1, ended=result.other_sessions_ended), 303
    )
    if result.session_token is not None:
        set_session_cookie(response, result.session_token)
    return response
