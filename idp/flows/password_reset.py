"""Forgotten password: ask for a link by email address (``/password/forgot``), then use it
(``/password/reset/<token>``): the second factor when the account has one, and a new password.

Thin views over :class:`idp.security.password_reset.PasswordResetService`. The request page
answers the same for every address; past the per-address or per-IP limit it answers the same
page with 429 and ``Retry-After``. An SSO-enforced domain goes to its organization's Entra ID,
as at ``/login``: its members have no password here; a link mailed before the enforcement says
so (403) instead of offering its form.

A ``next`` from the sign-in page (a same-origin path, :func:`~idp.security.redirects.safe_next`)
is kept with the reset link, server-side, and after the reset the sign-in page returns to it.
"""

from __future__ import annotations

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask_babel import gettext, lazy_gettext
from werkzeug.wrappers import Response

from idp.flows.login import _enforced_sso
from idp.runtime import runtime
from idp.security.password_reset import (
    ManagedBySso,
    PasswordsDiffer,
    ResetLinkError,
    ResetRefused,
    WrongCode,
)
from idp.security.ratelimit import RateLimited
from idp.security.redirects import safe_next
from idp.services import mail_request_limits, password_reset_service

bp = Blueprint("password_reset", __name__)
INVALID_LINK = lazy_gettext(
    "This password reset link is invalid, has already been used, or has expired."
)
TOO_MANY = lazy_gettext("Too many attempts. Wait a minute and try again.")


def _field_of(error: ResetRefused) -> str:
    """The id of the field a refusal is about, so the page ties the message to it."""
    if isinstance(error, WrongCode):
        return "code"
    if isinstance(error, PasswordsDiffer):
        return "new-password-again"
    return "new-password"


def _next() -> str:
    return safe_next(request.values.get("next"), default="")


def _request_page(*, sent: bool, error: str | None = None, status: int = 200) -> Response:
    return make_response(
        render_template(
            "password/forgot.html",
            sent=sent,
            error=error,
            next=_next(),
            minutes=runtime().settings.password_reset_link_minutes,
        ),
        status,
    )


@bp.get("/password/forgot")
def request_form() -> Response:
    return _request_page(sent=False)


@bp.post("/password/forgot")
def request_submit() -> Response:
    email = request.form.get("email", "").strip()[:320]
    if not email or "@" not in email:
        return _request_page(sent=False, error=gettext("Enter your email address."), status=400)
    enforced = _enforced_sso(email, _next())
    if enforced is not None:
        return enforced
    try:
        mail_request_limits().check(request.remote_addr or "", email)
    except RateLimited as limited:
        response = _request_page(sent=True, status=429)
        response.headers["Retry-After"] = str(limited.retry_after)
        return response
    password_reset_service().request(email, return_to=_next())
    # The same answer whether or not an account has this address.
    return _request_page(sent=True)


def _link_page(
    token: str | None,
    *,
    email: str = "",
    needs_code: bool = False,
    error: str | None = None,
    error_field: str = "",
    status: int = 200,
) -> Response:
    return make_response(
        render_template(
            "password/reset.html",
            token=token,
            email=email,
            needs_code=needs_code,
            error=error,
            error_field=error_field,
            min_length=runtime().passwords.min_length,
        ),
        status,
    )


@bp.get("/password/reset/<token>")
def link(token: str) -> Response:
    try:
        found = password_reset_service().find(token)
    except ManagedBySso as managed:
        return _link_page(None, error=str(managed.message), status=403)
    except ResetLinkError:
        return _link_page(None, error=INVALID_LINK, status=400)
    return _link_page(token, email=found.user.email, needs_code=found.needs_code)


@bp.post("/password/reset/<token>")
def link_submit(token: str) -> Response:
    service = password_reset_service()
    try:
        found = service.find(token)
        service.reset(
            token,
            request.form.get("new_password", ""),
            request.form.get("new_password_again", ""),
            request.form.get("code", ""),
        )
    except ManagedBySso as managed:
        return _link_page(None, error=str(managed.message), status=403)
    except ResetLinkError:
        return _link_page(None, error=INVALID_LINK, status=400)
    except RateLimited as limited:
        response = _link_page(
            token,
            email=found.user.email,
            needs_code=True,
            error=TOO_MANY,
            error_field="code",
            status=429,
        )
        response.headers["Retry-After"] = str(limited.retry_after)
        return response
    except ResetRefused as exc:
        return _link_page(
            token,
            email=found.user.email,
            needs_code=found.needs_code,
            error=exc.message,
            error_field=_field_of(exc),
            status=400,
        )
    target = safe_next(found.row.return_to, default="") or None
    return redirect(url_for("login.login_form", reset=1, next=target), 303)
