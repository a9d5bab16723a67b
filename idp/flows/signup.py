"""Sign-up (``/signup``, when ``IDP_SIGNUP_ENABLED``) and the email verification link
(``/verify-email/<token>``). A sign-in with the right password for an address not verified
yet mails a new link (see :mod:`idp.security.authentication`).

Verifying an account's address also asks for the account's password: whoever signs up picks
the password, so a link that verified by a click alone would let someone sign up another
person's address, wait for its owner to click "Verify" in the mail, and hold a verified
account at that address with a password of their own ("pre-account hijacking").

Thin views over :class:`idp.signup.SignupService` and
:class:`idp.security.email_verification.EmailVerificationService`. The sign-up page answers the
same for a new and an existing address; an SSO-enforced domain goes to its organization's
Entra ID instead, as at ``/login``. Opening a verification link only shows a button: the POST
verifies, so mail scanners that fetch links verify nothing.

A ``next`` (a same-origin path, :func:`~idp.security.redirects.safe_next`, e.g. the
authorization request of the relying service the person came from) travels from the sign-in
page through the sign-up form to the verification link (kept with it, server-side), and from
there to the sign-in page, which returns to it after signing in.
"""

from __future__ import annotations

from flask import Blueprint, abort, make_response, redirect, render_template, request, url_for
from flask_babel import lazy_gettext
from werkzeug.wrappers import Response

from idp.flows.login import _enforced_sso
from idp.models import User
from idp.runtime import runtime
from idp.security.email_verification import VerificationLinkError
from idp.security.ratelimit import RateLimited
from idp.security.reauth import WrongPassword
from idp.security.redirects import safe_next
from idp.services import (
    email_verification_service,
    mail_request_limits,
    password_confirmation,
    signup_service,
)
from idp.signup import SignupError, SignupForm

bp = Blueprint("signup", __name__)
INVALID_LINK = lazy_gettext(
    "This verification link is invalid, has already been used, or has expired."
)
NOT_THE_PASSWORD = lazy_gettext(
    "That is not the password of this account. If you did not create it, do not verify it."
)
TOO_MANY = lazy_gettext("Too many attempts. Wait a few minutes and try again.")


def _next() -> str:
    return safe_next(request.values.get("next"), default="")


def _signup_page(
    *,
    sent: bool,
    form: SignupForm | None = None,
    error: str | None = None,
    error_field: str = "",
    status: int = 200,
) -> Response:
    return make_response(
        render_template(
            "signup/signup.html",
            sent=sent,
            form=form,
            error=error,
            error_field=error_field,
            next=_next(),
            min_length=runtime().passwords.min_length,
            hours=runtime().settings.email_verification_link_hours,
        ),
        status,
    )


def _require_enabled() -> None:
    if not runtime().settings.signup_enabled:
        abort(404)


@bp.get("/signup")
def signup_form() -> Response:
    _require_enabled()
    return _signup_page(sent=False)


@bp.post("/signup")
def signup_submit() -> Response:
    _require_enabled()
    form = SignupForm(
        email=request.form.get("email", "").strip()[:320],
        first_name=request.form.get("first_name", "")[:200],
        last_name=request.form.get("last_name", "")[:200],
        password=request.form.get("password", ""),
        confirmation=request.form.get("password_again", ""),
    )
    if form.email and "@" in form.email:
        enforced = _enforced_sso(form.email, _next())
        if enforced is not None:
            return enforced
    service = signup_service()
    try:
        service.check(form)
        mail_request_limits().check(request.remote_addr or "", form.email)
        service.sign_up(form, return_to=_next())
    except SignupError as exc:
        return _signup_page(
            sent=False, form=form, error=exc.message, error_field=exc.field, status=400
        )
    except RateLimited as limited:
        response = _signup_page(sent=True, form=form, status=429)
        response.headers["Retry-After"] = str(limited.retry_after)
        return response
    return _signup_page(sent=True, form=form)


def _verify_page(
    token: str | None, user: User | None = None, error: str | None = None
) -> str:
    return render_template(
        "signup/verify.html",
        token=token,
        email=user.email if user else "",
        error=error,
        asks_password=user is not None and user.password_hash is not None,
    )


@bp.get("/verify-email/<token>")
def verify_form(token: str) -> Response:
    try:
        _, user = email_verification_service().find(token)
    except VerificationLinkError:
        return make_response(_verify_page(None, error=INVALID_LINK), 400)
    return make_response(_verify_page(token, user))


@bp.post("/verify-email/<token>")
def verify_submit(token: str) -> Response:
    service = email_verification_service()
    try:
        _, user = service.find(token)
    except VerificationLinkError:
        return make_response(_verify_page(None, error=INVALID_LINK), 400)
    if user.password_hash is not None:  # proves that the one who signed up is verifying
        try:
            password_confirmation().check(user, request.form.get("password", ""))
        except RateLimited as limited:
            response = make_response(_verify_page(token, user, TOO_MANY), 429)
            response.headers["Retry-After"] = str(limited.retry_after)
            return response
        except WrongPassword:
            return make_response(_verify_page(token, user, NOT_THE_PASSWORD), 400)
    try:
        verified = service.confirm(token)
    except VerificationLinkError:
        return make_response(_verify_page(None, error=INVALID_LINK), 400)
    service.db.commit()
    # Checked again on the way out: the stored value was checked when it was stored.
    target = safe_next(verified.return_to, default="") or None
    return redirect(url_for("login.login_form", verified=1, next=target), 303)
