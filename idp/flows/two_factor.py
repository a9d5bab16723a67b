"""Account pages for two-factor authentication (TOTP, RFC 6238) and its recovery codes.

The seed shown during enrollment stays on the server (:class:`PendingEnrollments`, under the
browser session, ten minutes) and never travels in a form. Recovery codes are rendered in the
response to the POST that made them and nowhere else, so they are shown exactly once.
"""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from flask_babel import gettext, lazy_gettext
from werkzeug.wrappers import Response

from idp.models import User
from idp.runtime import runtime
from idp.security.ratelimit import RateLimited
from idp.security.two_factor import (
    AlreadyEnabled,
    PendingEnrollments,
    TwoFactorError,
    TwoFactorService,
    totp_box,
)
from idp.services import signed_in_user, two_factor_service

bp = Blueprint("two_factor", __name__, url_prefix="/account/two-factor")

Page = tuple[str, int]


def _service() -> TwoFactorService:
    return two_factor_service()


TOO_MANY = lazy_gettext("Too many attempts. Wait a few minutes and try again.")


def _pending() -> PendingEnrollments:
    rt = runtime()
    return PendingEnrollments(rt.store, totp_box(rt.settings))


def _to_login(path: str | None = None) -> Response:
    return redirect(url_for("login.login_form", next=path or url_for("two_factor.status")), 303)


def _status_page(
    user: User,
    *,
    notice: str | None = None,
    error: str | None = None,
    error_form: str | None = None,
    status: int = 200,
) -> Page:
    service = _service()
    enabled = service.is_enabled(user)
    return render_template(
        "account/two_factor.html",
        user=user,
        enabled=enabled,
        codes_left=service.recovery_codes_left(user) if enabled else 0,
        notice=notice,
        error=error,
        error_form=error_form,
    ), status


def _enroll_page(user: User, secret: str, *, error: str | None = None, status: int = 200) -> Page:
    enrollment = _service().enrollment(user, secret)
    return render_template(
        "account/two_factor_enroll.html", enrollment=enrollment, error=error
    ), status


def _codes_page(codes: list[str], *, regenerated: bool) -> Page:
    return render_template(
        "account/two_factor_recovery_codes.html", codes=codes, regenerated=regenerated
    ), 200


@bp.get("")
def status() -> Response | Page:
    signed_in = signed_in_user()
    if signed_in is None:
        return _to_login(request.full_path.rstrip("?"))
    notice = (
        gettext("Two-factor authentication is now off.") if "disabled" in request.args else None
    )
    return _status_page(signed_in[1], notice=notice)


@bp.post("/enroll")
def start_enrollment() -> Response | Page:
    """Make a fresh seed for this browser session, then show it (POST, redirect, GET)."""
    signed_in = signed_in_user()
    if signed_in is None:
        return _to_login()
    active, user = signed_in
    try:
        enrollment = _service().start_enrollment(user, request.form.get("password", ""))
    except RateLimited:
        return _status_page(user, error=TOO_MANY, error_form="enroll", status=429)
    except AlreadyEnabled as exc:  # in another tab: the page now shows it on
        return _status_page(user, error=exc.message, status=400)
    except TwoFactorError as exc:
        return _status_page(user, error=exc.message, error_form="enroll", status=400)
    _pending().put(active.session_id, user.id, enrollment.secret)
    return redirect(url_for("two_factor.enroll"), 303)


@bp.get("/enroll")
def enroll() -> Response | Page:
    signed_in = signed_in_user()
    if signed_in is None:
        return _to_login(request.full_path.rstrip("?"))
    active, user = signed_in
    secret = _pending().get(active.session_id, user.id)
    if secret is None or _service().is_enabled(user):
        return redirect(url_for("two_factor.status"), 303)
    return _enroll_page(user, secret)


@bp.post("/confirm")
def confirm() -> Response | Page:
    signed_in = signed_in_user()
    if signed_in is None:
        return _to_login()
    active, user = signed_in
    pending = _pending()
    secret = pending.get(active.session_id, user.id)
    if secret is None:
        return _status_page(
            user, error=gettext("The setup expired. Start again."), error_form="enroll", status=400
        )
    code = request.form.get("code", "")
    try:
        codes = _service().confirm_enrollment(user, secret, code)
    except TwoFactorError as exc:
        return _enroll_page(user, secret, error=exc.message, status=400)
    pending.discard(active.session_id)
    return _codes_page(codes, regenerated=False)


@bp.post("/disable")
def disable() -> Response | Page:
    signed_in = signed_in_user()
    if signed_in is None:
        return _to_login()
    user = signed_in[1]
    try:
        _service().disable(user, request.form.get("password", ""))
    except RateLimited:
        return _status_page(user, error=TOO_MANY, error_form="disable", status=429)
    except TwoFactorError as exc:
        return _status_page(user, error=exc.message, error_form="disable", status=400)
    return redirect(url_for("two_factor.status", disabled=1), 303)


@bp.post("/recovery-codes")
def regenerate_recovery_codes() -> Response | Page:
    signed_in = signed_in_user()
    if signed_in is None:
        return _to_login()
    user = signed_in[1]
    try:
        codes = _service().regenerate_recovery_codes(user, request.form.get("password", ""))
    except RateLimited:
        return _status_page(user, error=TOO_MANY, error_form="regenerate", status=429)
    except TwoFactorError as exc:
        return _status_page(user, error=exc.message, error_form="regenerate", status=400)
    return _codes_page(codes, regenerated=True)
