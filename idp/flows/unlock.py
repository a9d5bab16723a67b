"""Self-service unlock: ask for a link by email address, then use it (single-use, expiring,
bound to the current lock, with the TOTP code when the account has one)."""

from __future__ import annotations

import hashlib

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask_babel import gettext, lazy_gettext
from werkzeug.wrappers import Response

from idp.events import EventTag, record_event
from idp.mail.messages import UNLOCKED_BY_SELF
from idp.runtime import request_db, runtime
from idp.security.lockout import UnlockError
from idp.security.ratelimit import RateLimited
from idp.security.unlock_requests import queue_unlock_request
from idp.services import (
    account_service,
    client_actor,
    lockout_service,
    notifier,
    rate_limiter,
    runtime_store,
    two_factor_service,
)

bp = Blueprint("unlock", __name__)
INVALID_LINK = lazy_gettext("This unlock link is invalid, has already been used, or has expired.")


def _request_page(*, sent: bool, error: str | None = None) -> str:
    return render_template(
        "unlock/request.html",
        sent=sent,
        error=error,
        minutes=runtime().settings.unlock_link_minutes,
    )


@bp.get("/unlock")
def request_form() -> str:
    return _request_page(sent=False)


@bp.post("/unlock")
def request_submit() -> Response | tuple[str, int]:
    email = request.form.get("email", "").strip().lower()[:320]
    if not email:
        return _request_page(sent=False, error=gettext("Enter your email address.")), 400
    store = runtime_store()
    limiter = rate_limiter()
    digest = hashlib.sha256(email.encode()).hexdigest()
    try:
        limiter.check(store.key("rl", "unlock", "ip", request.remote_addr or ""), 10, 900)
        limiter.check(store.key("rl", "unlock", "address", digest), 3, 900)
    except RateLimited as limited:
        response = make_response(_request_page(sent=True), 429)
        response.headers["Retry-After"] = str(limited.retry_after)
        return response
    # The worker sends the link if an account has the address and is locked; here the same
    # work and the same answer whatever the address (idp.security.unlock_requests).
    db = request_db()
    queue_unlock_request(db, email)
    db.commit()
    return _request_page(sent=True), 200


@bp.get("/unlock/<token>")
def link(token: str) -> tuple[str, int]:
    try:
        _, user = lockout_service().find_unlock(token)
    except UnlockError:
        return render_template("unlock/link.html", error=INVALID_LINK, token=None), 400
    return render_template(
        "unlock/link.html",
        error=None,
        token=token,
        needs_code=two_factor_service().is_enabled(user),
    ), 200


@bp.post("/unlock/<token>")
def link_submit(token: str) -> Response | tuple[str, int]:
    lockout = lockout_service()
    try:
        _, user = lockout.find_unlock(token)
    except UnlockError:
        return render_template("unlock/link.html", error=INVALID_LINK, token=None), 400
    two_factor = two_factor_service()
    if two_factor.is_enabled(user):
        try:  # the sign-in's code bucket: pages do not add up to more guesses
            rate_limiter().check(
                runtime_store().key("rl", "2fa", user.id),
                runtime().settings.second_factor_attempts_per_minute,
                60,
            )
        except RateLimited:
            return render_template(
                "unlock/link.html",
                token=token,
                needs_code=True,
                error=gettext("Too many attempts. Wait a minute."),
            ), 429
        if two_factor.verify_second_factor(user, request.form.get("code", "").strip()) is None:
            record_event(
                lockout.db,
                EventTag.SECOND_FACTOR_FAILURE,
                user_id=user.id,
                organization_id=account_service().primary_organization_id(user.id),
                actor=client_actor(),
                details={"during": "unlock"},
            )
            lockout.db.commit()
            return render_template(
                "unlock/link.html",
                token=token,
                needs_code=True,
                error=gettext("That code is not valid."),
            ), 400
    try:
        unlocked = lockout.redeem_unlock(token, client_actor())
    except UnlockError:
        return render_template("unlock/link.html", error=INVALID_LINK, token=None), 400
    notifier().account_unlocked(lockout.db, unlocked, UNLOCKED_BY_SELF)
    lockout.db.commit()
    return redirect(url_for("login.login_form", unlocked=1), 303)
