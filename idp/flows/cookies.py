"""Setting and clearing the browser cookies of the sign-in flows."""

from __future__ import annotations

from werkzeug.wrappers import Response

from idp.runtime import runtime
from idp.security.device_trust import TRUST_COOKIE, TRUST_MAX_AGE
from idp.security.devices import DEVICE_COOKIE, DEVICE_COOKIE_MAX_AGE
from idp.services import session_cookie_name

PENDING_COOKIE = "idp_pending"


def _set(response: Response, name: str, value: str, max_age: int | None) -> None:
    # __Host- (when https) on the session cookie: Secure, Path=/, no Domain, so no sibling
    # host can plant or read it. Every cookie of ours is HttpOnly and SameSite=Lax.
    response.set_cookie(
        name,
        value,
        httponly=True,
        secure=runtime().settings.secure_cookies,
        samesite="Lax",
        path="/",
        max_age=max_age,
    )


def set_session_cookies(response: Response, token: str, browser_key: str, trust_token: str) -> None:
    set_session_cookie(response, token)
    _set(response, DEVICE_COOKIE, browser_key, DEVICE_COOKIE_MAX_AGE)
    _set(response, TRUST_COOKIE, trust_token, TRUST_MAX_AGE)


def set_session_cookie(response: Response, token: str) -> None:
    """The session cookie alone, for a session whose token was renewed."""
    _set(response, session_cookie_name(), token, runtime().settings.session_absolute_minutes * 60)


def set_pending_cookie(response: Response, token: str) -> None:
    _set(response, PENDING_COOKIE, token, 300)


def clear_pending_cookie(response: Response) -> None:
    response.delete_cookie(
        PENDING_COOKIE,
        path="/",
        secure=runtime().settings.secure_cookies,
        httponly=True,
        samesite="Lax",
    )


def clear_session_cookie(response: Response) -> None:
    secure = runtime().settings.secure_cookies
    response.delete_cookie(
        session_cookie_name(), path="/", secure=secure, httponly=True, samesite="Lax"
    )
