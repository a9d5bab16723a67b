"""Sign-in (password, then the second factor when enabled) and sign-out pages."""

from __future__ import annotations

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask_babel import gettext, lazy_gettext
from werkzeug.wrappers import Response

from idp.flows.cookies import (
    PENDING_COOKIE,
    clear_pending_cookie,
    set_pending_cookie,
    set_session_cookies,
)
from idp.flows.sign_out import signed_out
from idp.runtime import runtime
from idp.security import csrf
from idp.security.authentication import (
    GENERIC_FAILURE,
    InvalidCredentials,
    InvalidSecondFactor,
    SecondFactorRequired,
    SignInResult,
)
from idp.security.device_trust import TRUST_COOKIE
from idp.security.ratelimit import RateLimited
from idp.security.redirects import safe_next
from idp.services import (
    authentication_service,
    client_info,
    connection_service,
    current_session,
    signing_in_to,
    timed_out_session,
)

bp = Blueprint("login", __name__)
WRONG_CODE = lazy_gettext("That code is not valid. Try again with a new code.")


def _form(
    error: str | None = None, email: str = "", status: int = 200, *, failed: bool = False
) -> tuple[str, int]:
    """The sign-in form; ``failed``: after a refused sign-in (the generic message, and the
    reminder that a new account's address must be verified first)."""
    return (
        render_template(
            "login/login.html",
            error=error,
            failed=failed,
            email=email,
            next=safe_next(request.values.get("next"), default=""),
            prompt_login=request.values.get("prompt") == "login",
            signed_out="signed_out" in request.args,
            reset="reset" in request.args,
            verified="verified" in request.args,
            signup_enabled=runtime().settings.signup_enabled,
        ),
        status,
    )


def _too_many(template: str, retry_after: int, **context: object) -> Response:
    response = make_response(render_template(template, **context), 429)
    response.headers["Retry-After"] = str(retry_after)
    return response


@bp.get("/login")
def login_form() -> Response | tuple[str, int]:
    # prompt=login (from the authorization endpoint): sign in again although signed in.
    if current_session() is not None and request.args.get("prompt") != "login":
        return redirect(safe_next(request.args.get("next")), 303)
    hint = request.args.get("login_hint", "")[:320]
    if hint:  # a relying service's login_hint for an SSO-enforced domain: straight to Entra
        enforced = _enforced_sso(hint, request.args.get("next", ""))
        if enforced is not None:
            return enforced
    domain = request.args.get("domain_hint", "")[:253]
    if domain:  # a relying service knows the user's organization: its tenant, if linked
        hinted = _hinted_sso(hint, domain, request.args.get("next", ""))
        if hinted is not None:
            return hinted
    return _form(email=hint)


def _signed_in(result: SignInResult, target: str) -> Response:
    previous = current_session()
    if previous is not None:  # a sign-in in a browser that had a session replaces it
        authentication_service().replace_session(
            previous.session_id, previous.user_id, result, client_info()
        )
    csrf.rotate()
    response = redirect(safe_next(target), 303)
    set_session_cookies(
        response, result.started.token, result.started.browser_key, result.device_trust_token
    )
    clear_pending_cookie(response)
    return response


def _new_sign_in_wanted(target: str) -> bool:
    """Whether this sign-in must authenticate anew, at Entra too: the page was asked for it
    (``prompt=login``: a relying service's prompt=login or select_account, or max_age past,
    while signed in), or the authorization request it continues asks for it."""
    from idp.provider.authorize import asks_new_sign_in

    return request.values.get("prompt") == "login" or asks_new_sign_in(target)


def _hinted_sso(email: str, domain: str, target: str) -> Response | None:
    """``domain_hint``: straight to the Entra tenant linked for that domain (with the hint
    passed on); an unknown domain is ignored and the normal form is shown."""
    from idp.federation.signin import SsoFailure
    from idp.flows.sso import redirect_to_entra

    try:
        return redirect_to_entra(
            email,
            safe_next(target, default=""),
            domain_hint=domain,
            prompt_login=_new_sign_in_wanted(target),
        )
    except SsoFailure:
        return None


def _enforced_sso(email: str, target: str) -> Response | None:
    """Identifier-first: an email whose domain enforces SSO goes straight to its organization's
    Entra ID tenant; no password is checked (nor locked out) for it."""
    from idp.federation.signin import SsoFailure

    if not connection_service().enforces_sso(email):
        return None
    from idp.flows.sso import redirect_to_entra

    try:
        return redirect_to_entra(
            email, safe_next(target, default=""), prompt_login=_new_sign_in_wanted(target)
        )
    except SsoFailure:
        return redirect(url_for("sso.sso_form", login_hint=email), 303)


@bp.post("/login")
def login_submit() -> Response | tuple[str, int]:
    email = request.form.get("email", "").strip()
    password = request.form.get("password", "")
    target = request.form.get("next", "")
    if email and len(email) <= 320:
        enforced = _enforced_sso(email, target)
        if enforced is not None:
            return enforced
    if not email or not password:
        return _form(gettext("Enter your email address and your password."), email, 400)
    try:
        outcome = authentication_service().sign_in(
            email,
            password,
            client_info(),
            request.cookies.get(TRUST_COOKIE),
            return_to=safe_next(target, default=""),
            application=signing_in_to(target),
        )
    except RateLimited as limited:
        return _too_many(
            "login/login.html",
            limited.retry_after,
            error=GENERIC_FAILURE,
            email=email,
            next=safe_next(target, default=""),
            signed_out=False,
            signup_enabled=runtime().settings.signup_enabled,
        )
    except InvalidCredentials:
        return _form(GENERIC_FAILURE, email, failed=True)
    if isinstance(outcome, SecondFactorRequired):
        response = redirect(
            url_for("login.code_form", next=safe_next(target, default="") or None), 303
        )
        set_pending_cookie(response, outcome.pending_token)
        return response
    return _signed_in(outcome, target)


@bp.get("/login/code")
def code_form() -> Response | tuple[str, int]:
    if authentication_service().pending_user(request.cookies.get(PENDING_COOKIE)) is None:
        return redirect(url_for("login.login_form"), 303)
    return render_template(
        "login/code.html", error=None, next=safe_next(request.args.get("next"), default="")
    ), 200


@bp.post("/login/code")
def code_submit() -> Response | tuple[str, int]:
    target = request.form.get("next", "")
    code = request.form.get("code", "")
    service = authentication_service()
    token = request.cookies.get(PENDING_COOKIE)
    if service.pending_user(token) is None:
        return redirect(url_for("login.login_form"), 303)
    try:
        result = service.complete_second_factor(
            token, code, client_info(), signing_in_to(target)
        )
    except RateLimited as limited:
        return _too_many(
            "login/code.html",
            limited.retry_after,
            error=WRONG_CODE,
            next=safe_next(target, default=""),
        )
    except InvalidSecondFactor as refused:
        if refused.ended:  # start again with the password: the generic sign-in failure
            response = make_response(_form(GENERIC_FAILURE, failed=True))
            clear_pending_cookie(response)
            return response
        return render_template(
            "login/code.html", error=WRONG_CODE, next=safe_next(target, default="")
        ), 400
    return _signed_in(result, target)


@bp.post("/logout")
def logout() -> Response:
    active = current_session()
    ended = None
    if active is not None:
        authentication_service().sign_out(active.session_id, active.user_id, client_info())
        ended = active.session_id
    elif (stale := timed_out_session()) is not None:
        # Idle on a page past the idle limit, then "Sign out": still the end of its tokens.
        authentication_service().sign_out_timed_out(stale, client_info())
        ended = stale.id
    return signed_out(ended)
