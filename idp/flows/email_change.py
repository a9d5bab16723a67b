"""Changing the email address (``/account/email``): the new address and the password, then the
link mailed to the new address (``/account/email/confirm/<token>``: a page with a button, the
change happens on the button). See :mod:`idp.security.email_change`.

The form answers the same for a free address and for one another account has. An account whose
organization enforces SSO for its address gets a page that says so instead of the form, and
403 for a request or a confirmation."""

from __future__ import annotations

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask_babel import lazy_gettext
from werkzeug.wrappers import Response

from idp.models import User
from idp.security.email_change import EmailChangeError, ManagedByOrganization
from idp.security.ratelimit import RateLimited
from idp.security.reauth import WrongPassword
from idp.services import email_change_service, signed_in_user

bp = Blueprint("email_change", __name__, url_prefix="/account/email")

TOO_MANY = lazy_gettext("Too many attempts. Wait a few minutes and try again.")


def _form(
    user: User,
    *,
    error: str | None = None,
    error_field: str = "",
    email: str = "",
    sent: str = "",
    managed: str | None = None,
    status: int = 200,
) -> Response:
    return make_response(
        render_template(
            "account/email.html",
            user=user,
            error=error,
            error_field=error_field,
            email=email,
            sent=sent,
            managed=managed,
        ),
        status,
    )


@bp.get("")
def form() -> Response:
    signed_in = signed_in_user()
    if signed_in is None:
        return redirect(url_for("login.login_form", next=url_for("email_change.form")), 303)
    user = signed_in[1]
    if email_change_service().managed(user):
        return _form(user, managed=ManagedByOrganization.message)
    return _form(user)


@bp.post("")
def submit() -> Response:
    signed_in = signed_in_user()
    if signed_in is None:
        return redirect(url_for("login.login_form", next=url_for("email_change.form")), 303)
    user = signed_in[1]
    email = request.form.get("email", "").strip()[:320]
    try:
        sent = email_change_service().request(user, email, request.form.get("password", ""))
    except ManagedByOrganization as exc:
        return _form(user, managed=exc.message, status=403)
    except RateLimited as limited:
        response = _form(user, error=TOO_MANY, error_field="password", email=email, status=429)
        response.headers["Retry-After"] = str(limited.retry_after)
        return response
    except WrongPassword as exc:
        return _form(user, error=exc.message, error_field="password", email=email, status=400)
    except EmailChangeError as exc:
        return _form(user, error=exc.message, error_field="email", email=email, status=400)
    return _form(user, sent=sent)


@bp.get("/confirm/<token>")
def confirm_page(token: str) -> Response:
    try:
        change = email_change_service().confirmable(token)
    except ManagedByOrganization as exc:
        return make_response(render_template("account/email_confirm.html", error=exc.message), 403)
    except EmailChangeError as exc:
        return make_response(render_template("account/email_confirm.html", error=exc.message), 404)
    return make_response(
        render_template("account/email_confirm.html", token=token, new_email=change.new_email)
    )


@bp.post("/confirm/<token>")
def confirm(token: str) -> Response:
    try:
        user = email_change_service().confirm(token)
    except ManagedByOrganization as exc:
        return make_response(render_template("account/email_confirm.html", error=exc.message), 403)
    except EmailChangeError as exc:
        return make_response(render_template("account/email_confirm.html", error=exc.message), 400)
    return make_response(render_template("account/email_confirm.html", done=user.email))
