"""CSRF protection for every browser form (OWASP CSRF Prevention Cheat Sheet).

A random value lives in an HttpOnly cookie; each form carries HMAC-SHA256(secret key, value)
in the hidden ``csrf_token`` field, checked in constant time on every unsafe request to a view
that is not exempt (protocol endpoints authenticate clients instead). Crossing an authentication
boundary (sign-in, sign-out) calls :func:`rotate`, so a token seen before no longer works.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, abort, current_app, g, request

FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_F = TypeVar("_F", bound=Callable[..., Any])
_EXEMPT_ATTR = "_idp_csrf_exempt"


def exempt(view: _F) -> _F:
    """Mark a view that authenticates its caller by other means (e.g. an OAuth client)."""
    setattr(view, _EXEMPT_ATTR, True)
    return view


def cookie_name() -> str:
    name: str = current_app.config["IDP_CSRF_COOKIE"]
    return name


def _sign(value: str) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, b"csrf|" + value.encode(), hashlib.sha256).hexdigest()


def _cookie_value() -> str:
    if "csrf_value" not in g:
        existing = request.cookies.get(cookie_name(), "")
        g.csrf_value = existing if len(existing) == 43 else None
        if g.csrf_value is None:
            rotate()
    value: str = g.csrf_value
    return value


def rotate() -> None:
    """Issue a new CSRF value for this browser (call when its authentication changes)."""
    g.csrf_value = secrets.token_urlsafe(32)
    g.csrf_set_cookie = True


def token() -> str:
    """The token for this browser's forms (templates call ``csrf_token()``)."""
    return _sign(_cookie_value())


def is_valid(submitted: str | None) -> bool:
    existing = request.cookies.get(cookie_name(), "")
    if not submitted or not existing:
        return False
    return hmac.compare_digest(submitted, _sign(existing))


def init_app(app: Flask, *, secure: bool) -> None:
    app.config["IDP_CSRF_COOKIE"] = "__Host-idp_csrf" if secure else "idp_csrf"
    app.jinja_env.globals["csrf_token"] = token

    @app.before_request
    def _check_csrf() -> None:
        if request.method in SAFE_METHODS or request.endpoint is None:
            return
        view = app.view_functions.get(request.endpoint)
        if view is not None and getattr(view, _EXEMPT_ATTR, False):
            return
        if not is_valid(request.form.get(FIELD)):
            abort(400, description="csrf")

    @app.after_request
    def _set_cookie(response: Response) -> Response:
        if g.get("csrf_set_cookie"):
            response.set_cookie(
                cookie_name(),
                g.csrf_value,
                httponly=True,
                secure=secure,
                samesite="Lax",
                path="/",
                max_age=None,
            )
        return response
