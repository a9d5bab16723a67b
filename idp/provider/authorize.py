"""What the authorization endpoint does with a valid request (OIDC Core §3.1.2.3, §3.1.2.4):
sign the user in, ask for consent, or issue a code.

- ``prompt=none``: never show a page; login_required / consent_required instead.
- ``prompt=login`` and ``max_age``: a fresh sign-in is required. The user is sent to the login
  form with a signed marker of when that was asked; coming back signed in after that moment
  satisfies the requirement, so neither loops.
- ``prompt=consent``: ask again even if consent was given before. First-party clients are
  never asked.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from authlib.oidc.core.errors import ConsentRequiredError, LoginRequiredError
from sqlalchemy.orm import Session

from idp.models import User
from idp.numbers import parse_whole
from idp.provider.consent import ConsentService
from idp.provider.tokens import Principal
from idp.security.sessions import ActiveSession

LOGIN = "login"
CONSENT = "consent"
ISSUE = "issue"
REAUTH_PARAM = "idp_reauth"
_OWN_FIELDS = frozenset({"csrf_token", "decision", REAUTH_PARAM})


def current_principal(db: Session, active: ActiveSession | None) -> Principal | None:
    if active is None:
        return None
    user = db.get(User, active.user_id)
    if user is None:
        return None
    return Principal(
        user=user,
        session_id=active.session_id,
        auth_time=int(active.auth_time),
        amr=active.amr.split(),
    )


def request_params(values: Mapping[str, str]) -> dict[str, str]:
    """The authorization request's parameters (first value of each), without our own."""
    return {k: values[k] for k in values if k not in _OWN_FIELDS and len(k) <= 100}


def _marker(secret: str, asked_at: int, client_id: str) -> str:
    mac = hmac.new(secret.encode(), f"reauth|{asked_at}|{client_id}".encode(), hashlib.sha256)
    return f"{asked_at}.{mac.hexdigest()[:32]}"


def _fresh_login_since(values: Mapping[str, str], secret: str, client_id: str) -> int | None:
    """When the fresh sign-in was asked for, if the request carries a valid marker."""
    raw = values.get(REAUTH_PARAM, "")
    asked = parse_whole(raw.partition(".")[0], 12)
    if asked is None or not hmac.compare_digest(raw, _marker(secret, asked, client_id)):
        return None
    return asked


class AuthorizationPolicy:
    def __init__(self, consents: ConsentService, secret_key: str) -> None:
        self.consents = consents
        self.secret = secret_key

    def decide(
        self, grant: Any, principal: Principal | None, values: Mapping[str, str]
    ) -> str | OAuth2Error:
        params = request_params(values)
        redirect_uri = grant.redirect_uri
        state = params.get("state")
        prompts = set(params.get("prompt", "").split())
        client_id = grant.client.get_client_id()
        max_age = params.get("max_age")
        age_limit = parse_whole(max_age, 18) if max_age is not None else None
        if max_age is not None and age_limit is None:
            return InvalidRequestError(
                "max_age must be a non-negative integer.", redirect_uri=redirect_uri, state=state
            )
        needs_login = principal is None
        if principal is not None and ("login" in prompts or age_limit is not None):
            fresh_since = _fresh_login_since(values, self.secret, client_id)
            refreshed = fresh_since is not None and principal.auth_time >= fresh_since
            if "login" in prompts and not refreshed:
                needs_login = True
            if (
                age_limit is not None
                and not refreshed
                and time.time() - principal.auth_time > age_limit
            ):
                needs_login = True
        if needs_login:
            if "none" in prompts:
                return LoginRequiredError(redirect_uri=redirect_uri, state=state)
            return LOGIN
        assert principal is not None
        if grant.client.row.first_party:
            return ISSUE
        scope = grant.request.scope or ""
        if "consent" in prompts or not self.consents.covers(principal.user.id, client_id, scope):
            if "none" in prompts:
                return ConsentRequiredError(redirect_uri=redirect_uri, state=state)
            return CONSENT
        return ISSUE

    def login_redirect(
        self, values: Mapping[str, str], client_id: str, signed_in: bool
    ) -> dict[str, str]:
        """Arguments for the login page: where to come back to, and whether to force the
        form although a session exists.

        A request that asks for a fresh sign-in (``prompt=login``, ``max_age``; OIDC Core
        §3.1.2.1) comes back marked with when it was asked, signed in or not: the sign-in made
        on the way satisfies it, and the user is not sent to the form a second time."""
        params = request_params(values)
        args: dict[str, str] = {}
        fresh = "login" in params.get("prompt", "").split() or "max_age" in params
        if signed_in or fresh:
            params[REAUTH_PARAM] = _marker(self.secret, int(time.time()), client_id)
        if signed_in:
            args["prompt"] = "login"
        if params.get("login_hint"):
            args["login_hint"] = params["login_hint"][:320]
        if params.get("domain_hint"):  # Entra-style home-realm hint: the user's email domain
            args["domain_hint"] = params["domain_hint"][:253]
        args["next"] = "/authorize?" + urlencode(params)
        return args
