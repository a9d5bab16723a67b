"""The answer to a sign-out, wherever it was asked for: "Sign out", a relying service's
RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0 §3) or "sign out this device" on
the devices page.

A session that came from enterprise SSO also signs out at the organization's Entra ID tenant:
the browser goes through Entra's end-session endpoint, which returns it to
``/login/sso/logged-out`` (the post-logout URI registered in Entra); from there it goes on to
where the sign-out was to end (a relying service's registered post-logout URI, with its
``state``), remembered in the store under a random key that only this browser's cookie holds.
"""

from __future__ import annotations

import secrets

from flask import redirect, request, url_for
from werkzeug.wrappers import Response

from idp.flows.cookies import clear_session_cookie
from idp.runtime import runtime
from idp.security import csrf
from idp.services import sso_service

RETURN_COOKIE = "idp_signed_out_return"
RETURN_SECONDS = 600  # long enough for Entra's sign-out page
LOGGED_OUT_PATH = "/login/sso/logged-out"


def post_logout_redirect_uri() -> str:
    """The URI to register in Entra as the app's post-logout redirect (and redirect) URI."""
    return f"{runtime().settings.issuer.rstrip('/')}{LOGGED_OUT_PATH}"


def signed_out(session_id: str | None, then: str | None = None) -> Response:
    """Redirect a browser whose session ``session_id`` has just been signed out (None: it had
    none) to ``then`` (default: the sign-in page saying so), through Entra's sign-out first
    when the session came from SSO. Clears the session cookie and renews the CSRF token."""
    target = then or url_for("login.login_form", signed_out=1)
    entra = (
        sso_service().logout_url(session_id, post_logout_redirect_uri()) if session_id else None
    )
    response = redirect(entra or target, 303)
    if entra is not None:
        if then is None:
            _forget_return(response)  # an abandoned earlier sign-out's return is not this one's
        else:
            token = secrets.token_urlsafe(24)
            store = runtime().store
            store.client.set(store.key("signed-out-return", token), then, ex=RETURN_SECONDS)
            response.set_cookie(
                RETURN_COOKIE,
                token,
                max_age=RETURN_SECONDS,
                path=LOGGED_OUT_PATH,
                secure=runtime().settings.secure_cookies,
                httponly=True,
                samesite="Lax",
            )
    csrf.rotate()
    clear_session_cookie(response)
    return response


def back_from_entra() -> Response:
    """``/login/sso/logged-out``: on to where the sign-out was to end (once), else the sign-in
    page saying the browser is signed out."""
    token = request.cookies.get(RETURN_COOKIE, "")
    target = None
    if 0 < len(token) <= 64:
        store = runtime().store
        raw = store.client.getdel(store.key("signed-out-return", token))
        target = raw.decode() if isinstance(raw, bytes) else raw
    response = redirect(target or url_for("login.login_form", signed_out=1), 303)
    _forget_return(response)
    return response


def _forget_return(response: Response) -> None:
    response.delete_cookie(
        RETURN_COOKIE,
        path=LOGGED_OUT_PATH,
        secure=runtime().settings.secure_cookies,
        httponly=True,
        samesite="Lax",
    )
