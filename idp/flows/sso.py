"""Enterprise SSO pages: "Log in with SSO" (work email, then the organization's Entra ID
tenant) and the ``form_post`` callback.

The callback is exempt from the CSRF check: it is a cross-site POST from Entra that carries
no cookie; the single-use ``state`` it must present protects it instead.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask_babel import gettext, lazy_gettext
from werkzeug.exceptions import TooManyRequests
from werkzeug.wrappers import Response

from idp.flows.login import _signed_in
from idp.flows.sign_out import LOGGED_OUT_PATH, back_from_entra
from idp.models import Organization, SsoConnection, User
from idp.runtime import request_db, runtime

if TYPE_CHECKING:
    from idp.federation.signin import SsoFailure, SsoSignInService, SsoSuccess
from idp.security import csrf
from idp.security.ratelimit import RateLimited
from idp.security.redirects import safe_next
from idp.services import (
    authentication_service,
    branding_service,
    client_actor,
    client_info,
    current_session,
    rate_limiter,
    signing_in_to,
    sso_service,
)

bp = Blueprint("sso", __name__)
log = logging.getLogger("idp.federation")

LINK_COOKIE = "idp_sso_link"
FLOW_COOKIE = "__Host-idp_sso_flow"
NO_CONNECTION = lazy_gettext(
    "Your organization does not sign in with SSO here. Use your email and password."
)
CODE_EXHAUSTED = lazy_gettext(
    "This confirmation has expired or had too many wrong codes. Start the sign-in with your "
    "organization again."
)

# Pages by failure kind: (title, message). Details are in the log only.
PAGES = {
    "generic": (
        lazy_gettext("Sign-in with your organization failed"),
        lazy_gettext(
            "Signing in with your organization did not work. Start again; if it keeps failing, "
            "contact your administrator."
        ),
    ),
    "not_provisioned": (
        lazy_gettext("No account here"),
        lazy_gettext(
            "Your organization signed you in, but there is no account for you here and none can "
            "be created automatically. Ask your administrator for access."
        ),
    ),
    "guest": (
        lazy_gettext("Guest accounts cannot sign in"),
        lazy_gettext(
            "You are a guest in this organization's directory. Sign in with your own "
            "organization's account, or ask the administrator for access."
        ),
    ),
    "removed": (
        lazy_gettext("Account not linked"),
        lazy_gettext(
            "An administrator of this organization removed your account from it, so it cannot "
            "be linked to your organization's sign-in again. Ask an administrator to invite "
            "you back."
        ),
    ),
    "offer_changed": (
        lazy_gettext("Start the sign-in again"),
        lazy_gettext(
            "Your organization changed its sign-in settings after you started. Start the "
            "sign-in with your organization again."
        ),
    ),
}
ENTRA_ERRORS = {
    "access_denied": lazy_gettext("Sign-in was cancelled, or your organization did not allow it."),
    "interaction_required": lazy_gettext("Your organization needs you to complete sign-in again."),
    "login_required": lazy_gettext("Your organization needs you to sign in again."),
    "consent_required": lazy_gettext("Your administrator has not yet approved this application."),
}


def _form(error: str | None = None, email: str = "", status: int = 200) -> tuple[str, int]:
    organization = branding_service().for_sso_page(request.values.get("org", ""), email)
    return render_template(
        "login/sso.html",
        error=error,
        email=email,
        next=safe_next(request.values.get("next"), default=""),
        fresh=request.values.get("prompt") == "login",
        organization=organization,
    ), status


@bp.get("/login/sso")
def sso_form() -> tuple[str, int]:
    return _form(email=request.args.get("login_hint", "")[:320])


@bp.post("/login/sso")
def sso_start() -> Response | tuple[str, int]:
    from idp.federation.signin import NoConnection, SsoFailure
    from idp.provider.authorize import asks_new_sign_in

    email = request.form.get("email", "").strip()[:320]
    if not email:
        return _form(gettext("Enter your work email address."), email, 400)
    try:
        target = safe_next(request.form.get("next"), default="")
        return redirect_to_entra(
            email,
            target,
            fresh=request.form.get("prompt") == "login",
            prompt_login=asks_new_sign_in(target),
        )
    except NoConnection:
        return _form(NO_CONNECTION, email, 400)
    except SsoFailure as exc:
        log.warning("sso start failed: %s", exc.reason)
        return _failure_page("generic")


def redirect_to_entra(
    email: str,
    next_url: str,
    domain_hint: str = "",
    fresh: bool = False,
    prompt_login: bool = False,
) -> Response:
    """Redirect to the tenant serving ``email`` (or ``domain_hint``). On https, the request
    is also bound to this browser by a cookie the cross-site form_post carries
    (SameSite=None needs Secure). ``fresh``: a re-authentication for a sensitive change here;
    ``prompt_login``: Entra must authenticate anew (for a relying service that asked)."""
    _count_sso_start()
    secure = runtime().settings.secure_cookies
    binding = secrets.token_urlsafe(32) if secure else None
    url = sso_service().start(
        email, next_url, binding, domain_hint, fresh, prompt_login=prompt_login
    )
    response = redirect(url, 303)
    if binding is not None:
        response.set_cookie(
            FLOW_COOKIE,
            binding,
            max_age=600,
            httponly=True,
            secure=True,
            samesite="None",
            path="/",
        )
    return response


def _count_sso_start() -> None:
    """Each start of a sign-in at Entra counts against the sign-in limits (per IP address and
    overall, ``IDP_LOGIN_ATTEMPTS_*``; counters of their own, so SSO starts and password
    attempts do not use up each other): every start keeps its state in the store for ten
    minutes, and a plain GET (``/login?login_hint=`` an SSO address) starts one. Past a limit,
    a 429 page with ``Retry-After``; nothing is stored."""
    rt = runtime()
    try:
        rate_limiter().check_all(
            [
                (
                    rt.store.key("rl", "sso", "ip", client_info().ip),
                    rt.settings.login_attempts_per_ip_per_minute,
                    60,
                ),
                (
                    rt.store.key("rl", "sso", "all"),
                    rt.settings.login_attempts_global_per_minute,
                    60,
                ),
            ]
        )
    except RateLimited as limited:
        raise TooManyRequests(retry_after=limited.retry_after) from None


def _failure_page(kind: str, message: str | None = None) -> tuple[str, int]:
    title, default = PAGES.get(kind, PAGES["generic"])
    return render_template("login/sso_error.html", title=title, message=message or default), 400


@bp.post("/login/sso/callback")
@csrf.exempt
def sso_callback() -> Response | tuple[str, int]:
    from idp.federation.signin import EntraRefused, LinkRequired, SsoFailure

    service = sso_service()
    try:
        outcome = service.callback(
            {k: v for k, v in request.form.items()}, request.cookies.get(FLOW_COOKIE)
        )
    except EntraRefused as refused:
        log.info("sso callback: %s", refused.reason)
        return _failure_page("generic", ENTRA_ERRORS.get(refused.error))
    except LinkRequired as required:
        log.warning("sso callback: %s", required.reason)
        if required.link_token is None:  # no proof can be offered here (see _offer_link)
            return _failure_page("generic")
        if required.purpose == "create":
            page = render_template("login/sso_confirm_email.html", address=required.address)
            offer = make_response(page, 200)
        else:
            page = render_template(
                "login/sso_link_offer.html", password_proof=required.password_proof
            )
            offer = make_response(page, 400)
        offer.set_cookie(
            LINK_COOKIE,
            required.link_token,
            max_age=600,
            httponly=True,
            secure=runtime().settings.secure_cookies,
            samesite="Lax",
            path="/login/sso/link",
        )
        return offer
    except SsoFailure as failure:
        log.warning("sso callback rejected (%s): %s", failure.kind, failure.reason)
        return _failure_page(failure.kind)
    return _complete_sign_in(service, outcome)


def _complete_sign_in(service: SsoSignInService, outcome: SsoSuccess) -> Response:
    """Our own session for an SSO sign-in, remembered for logout; flow cookies cleared."""
    result = authentication_service().complete_federated(
        outcome.user,
        client_info(),
        outcome.details,
        signing_in_to(outcome.next_url),
        auth_time=outcome.auth_time,
    )
    service.remember_session(result.started.session.id, result.user_id, outcome)
    signed_in = _signed_in(result, outcome.next_url)
    if FLOW_COOKIE in request.cookies:
        signed_in.delete_cookie(FLOW_COOKIE, path="/", secure=True, httponly=True, samesite="None")
    if LINK_COOKIE in request.cookies:
        _forget_link_offer(signed_in)
    return signed_in


def _forget_link_offer(response: Response) -> None:
    response.delete_cookie(
        LINK_COOKIE,
        path="/login/sso/link",
        secure=runtime().settings.secure_cookies,
        httponly=True,
        samesite="Lax",
    )


@bp.get(LOGGED_OUT_PATH)
def logged_out() -> Response:
    return back_from_entra()


@bp.get("/login/sso/front-logout")
def front_channel_logout() -> Response:
    """Entra's front-channel logout (loaded in an iframe on its sign-out page): end the
    local sessions of that Entra session. No cookie arrives cross-site; ``sid`` is the key."""
    service = authentication_service()
    for session_id, user_id in sso_service().sessions_for_sid(request.args.get("sid", "")):
        service.sign_out(session_id, user_id, client_info())
    response = make_response("", 200)
    origin = runtime().settings.entra_authority.rstrip("/")
    response.headers["Content-Security-Policy"] = f"default-src 'none'; frame-ancestors {origin}"
    return response


def _refused_link(failure: SsoFailure) -> Response:
    """The page of a link offer that cannot be taken any more; the offer's cookie cleared."""
    log.warning("sso link refused: %s", failure.reason)
    response = make_response(*_failure_page(failure.kind))
    _forget_link_offer(response)
    return response


def _link_context() -> tuple[User, dict[str, object]] | Response:
    """The signed-in user and the identity offered to this browser for linking."""
    from idp.federation.signin import SsoFailure

    active = current_session()
    if active is None:
        return redirect(url_for("login.login_form", next=url_for("sso.link_form")), 303)
    db = request_db()
    user = db.get(User, active.user_id)
    try:
        offer = sso_service().link_offer(request.cookies.get(LINK_COOKIE))
    except SsoFailure as failure:
        return _refused_link(failure)
    if user is None or offer is None or offer["email"] != user.email_normalized:
        return redirect(url_for("account.overview"), 303)
    return user, offer


@bp.get("/login/sso/link")
def link_form() -> Response | tuple[str, int]:
    found = _link_context()
    if isinstance(found, Response):
        return found
    user, offer = found
    db = request_db()
    connection = db.get(SsoConnection, offer["connection_id"])
    organization = db.get(Organization, connection.organization_id) if connection else None
    return render_template(
        "login/sso_link.html",
        user=user,
        username=offer.get("username") or user.email,
        organization=organization.name if organization else "",
    ), 200


@bp.post("/login/sso/link")
def link_submit() -> Response:
    from idp.federation.signin import SsoFailure

    found = _link_context()
    if isinstance(found, Response):
        return found
    user, offer = found
    try:
        linked = sso_service().accept_link(request.cookies.get(LINK_COOKIE), user, client_actor())
    except SsoFailure as failure:
        return _refused_link(failure)
    target = safe_next(str(offer.get("next") or ""), default="/account") if linked else "/account"
    response = redirect(target, 303)
    _forget_link_offer(response)
    return response


# Proof by a one-time code mailed to the address (issue 6, rule 7) ------------------------
def _offer_address() -> str | None:
    """The address of the identity offered to this browser (raises
    :class:`~idp.federation.signin.OfferChanged` when its connection changed)."""
    offer = sso_service().link_offer(request.cookies.get(LINK_COOKIE))
    return str(offer.get("address") or offer["email"]) if offer else None


@bp.post("/login/sso/link/code/send")
def send_code() -> Response | tuple[str, int]:
    from idp.federation.signin import SsoFailure

    try:
        sent = sso_service().send_code(request.cookies.get(LINK_COOKIE))
    except SsoFailure as failure:
        log.warning("sso code not sent: %s", failure.reason)
        return _failure_page(failure.kind)
    if sent:
        return redirect(url_for("sso.code_form"), 303)
    return _failure_page("generic", CODE_EXHAUSTED)


@bp.get("/login/sso/link/code")
def code_form() -> tuple[str, int]:
    from idp.federation.signin import SsoFailure

    try:
        address = _offer_address()
    except SsoFailure as failure:
        log.warning("sso code form: %s", failure.reason)
        return _failure_page(failure.kind)
    if address is None:
        return _failure_page("generic", CODE_EXHAUSTED)
    return render_template("login/sso_code.html", address=address, error=None), 200


@bp.post("/login/sso/link/code")
def code_submit() -> Response | tuple[str, int]:
    from idp.federation.confirmation import CodeCheck
    from idp.federation.signin import SsoFailure

    service = sso_service()
    token = request.cookies.get(LINK_COOKIE)
    try:
        address = _offer_address()
        outcome = service.confirm_code(token, request.form.get("code", ""), client_actor())
    except SsoFailure as failure:
        log.warning("sso code confirmation failed: %s", failure.reason)
        return _failure_page(failure.kind)
    if outcome is CodeCheck.WRONG:
        page = render_template(
            "login/sso_code.html",
            address=address,
            error=gettext("That code is not right. Try again."),
        )
        return page, 400
    if isinstance(outcome, CodeCheck):
        return _failure_page("generic", CODE_EXHAUSTED)
    return _complete_sign_in(service, outcome)
