"""Request-scoped factories: the one place that turns the current request into services."""

from __future__ import annotations

from flask import g, request

from idp.accounts import AccountService
from idp.runtime import request_db, runtime
from idp.security.authentication import AuthenticationService
from idp.security.devices import DEVICE_COOKIE, ClientInfo
from idp.security.sessions import ActiveSession, SessionService


def session_cookie_name() -> str:
    return "__Host-idp_session" if runtime().settings.secure_cookies else "idp_session"


def client_info() -> ClientInfo:
    return ClientInfo(
        ip=request.remote_addr or "",
        user_agent=request.headers.get("User-Agent", "")[:512],
        browser_key=request.cookies.get(DEVICE_COOKIE) or None,
    )


def account_service() -> AccountService:
    return AccountService(request_db(), runtime().passwords)


def session_service() -> SessionService:
    rt = runtime()
    return SessionService(request_db(), rt.store, rt.settings)


def authentication_service() -> AuthenticationService:
    return AuthenticationService(
        request_db(), account_service(), runtime().passwords, session_service()
    )


def current_session() -> ActiveSession | None:
    """The browser's live session, resolved once per request."""
    if "idp_session" not in g:
        g.idp_session = session_service().resolve(request.cookies.get(session_cookie_name()))
    active: ActiveSession | None = g.idp_session
    return active
