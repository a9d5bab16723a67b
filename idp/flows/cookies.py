"""Setting and clearing the browser cookies of the sign-in flows."""

from __future__ import annotations

from werkzeug.wrappers import Response

from idp.runtime import runtime
from idp.security.devices import DEVICE_COOKIE, DEVICE_COOKIE_MAX_AGE
from idp.services import session_cookie_name


def set_session_cookies(response: Response, token: str, browser_key: str) -> None:
    settings = runtime().settings
    secure = settings.secure_cookies
    # __Host- (when https): Secure, Path=/, no Domain, so no sibling host can plant or read it.
    response.set_cookie(
        session_cookie_name(),
        token,
        httponly=True,
        secure=secure,
        samesite="Lax",
        path="/",
        max_age=settings.session_absolute_minutes * 60,
    )
    response.set_cookie(
        DEVICE_COOKIE,
        browser_key,
        httponly=True,
        secure=secure,
        samesite="Lax",
        path="/",
        max_age=DEVICE_COOKIE_MAX_AGE,
    )


def clear_session_cookie(response: Response) -> None:
    secure = runtime().settings.secure_cookies
    response.delete_cookie(
        session_cookie_name(), path="/", secure=secure, httponly=True, samesite="Lax"
    )
