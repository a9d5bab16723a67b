"""What the authorization endpoint does with a valid request (OIDC Core §3.1.2.3, §3.1.2.4):
sign the user in, ask for consent, or issue a code.

- ``prompt=none``: never show a page; login_required / consent_required instead.
- ``prompt=login`` and ``max_age``: a fresh sign-in is required. The user is sent to the login
  form with a signed marker of when that was asked; coming back signed in after that moment
  satisfies the requirement, so neither loops.
- ``prompt=select_account``: idp keeps one account per browser session, so choosing an account
  means signing in on the form again: treated like ``prompt=login``.
- ``prompt=consent``: ask again even if consent was given before. First-party clients are
  never asked.
- ``id_token_hint``: names the user the client expects; anyone else signed in is sent to the
  sign-in form, and still someone else after it gets ``login_required`` (§3.1.2.1).
- ``request`` and ``request_uri`` (OIDC Core §6) are not supported: ``request_not_supported``
  and ``request_uri_not_supported`` (§3.1.2.6).

A parameter sent without a value is treated as omitted (RFC 6749 §3.1).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from authlib.oidc.core.errors import (
    ConsentRequiredError,
    LoginRequiredError,
    RequestNotSupportedError,
    RequestURINotSupportedError,
)
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jws import extract_compact
from sqlalchemy.orm import Session

from idp.models import User
from idp.numbers import parse_whole
from idp.provider.consent import ConsentService
from idp.provider.keys import KeyService
from idp.provider.tokens import Principal
from idp.security.sessions import ActiveSession

LOGIN = "login"
CONSENT = "consent"
ISSUE = "issue"
REAUTH_PARAM = "idp_reauth"
_OWN_FIELDS = frozenset({"csrf_token", "decision", REAUTH_PARAM})
# prompt values that ask for the sign-in form although the browser is signed in (§3.1.2.1).
_FRESH_PROMPTS = frozenset({"login", "select_account"})


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


def request_object_error(
    values: Mapping[str, str], redirect_uri: str | None, state: str | None
) -> OAuth2Error | None:
    """OIDC Core §6.1/§6.2 and §3.1.2.6: an OP that does not support ``request`` or
    ``request_uri`` (discovery says so) answers ``request_not_supported`` or
    ``request_uri_not_supported`` instead of ignoring them. Empty values are omitted ones."""
    if values.get("request"):
        return RequestNotSupportedError(
            "Request objects ('request') are not supported.",
            redirect_uri=redirect_uri,
            state=state,
        )
    if values.get("request_uri"):
        return RequestURINotSupportedError(
            "'request_uri' is not supported.", redirect_uri=redirect_uri, state=state
        )
    return None


def _asks_fresh_login(params: Mapping[str, str]) -> bool:
    """Whether the request asks for the sign-in form (``prompt=login``/``select_account``,
    OIDC Core §3.1.2.1), a recent one (``max_age``; empty means omitted, RFC 6749 §3.1), or
    names the user to sign in (``id_token_hint``: the sign-in on the way answers it)."""
    return (
        bool(_FRESH_PROMPTS & set(params.get("prompt", "").split()))
        or bool(params.get("max_age"))
        or bool(params.get("id_token_hint"))
    )


def asks_new_sign_in(target: str) -> bool:
    """Whether ``target``, where a sign-in continues, is an authorization request asking for
    the user to authenticate anew (``prompt=login``/``select_account``, OIDC Core §3.1.2.1):
    a sign-in through an upstream identity provider must then ask it to authenticate anew."""
    parts = urlsplit(target)
    if parts.path != "/authorize":
        return False
    prompts = " ".join(parse_qs(parts.query).get("prompt", []))
    return bool(_FRESH_PROMPTS & set(prompts.split()))


# The ``sub`` of an ``id_token_hint`` that is one of our ID tokens, None when it is not,
# or :data:`RETIRED_KEY` when it names a key no longer published (it can be neither trusted
# nor called forged: ignored, as RP-Initiated Logout 1.0 §2 has end-session do).
HintSubject = Callable[[str], str | None]
RETIRED_KEY = ""


def id_token_subject(keys: KeyService, issuer: str) -> HintSubject:
    """:data:`HintSubject` checking our signature (expired ID tokens count: the hint only
    names the user, OIDC Core §3.1.2.1), the issuer, and the explicit type: access and logout
    tokens carry the same keys but are not ID tokens (RFC 8725 §3.11)."""

    def subject(hint: str) -> str | None:
        if len(hint) > 16384:
            return None
        keyset = keys.verification_keyset()
        try:
            kid = extract_compact(hint.encode()).headers().get("kid")
            if isinstance(kid, str) and all(key.kid != kid for key in keyset.keys):
                return RETIRED_KEY
            token = jwt.decode(hint, keyset, algorithms=["RS256", "ES256"])
        except (JoseError, ValueError, TypeError):
            return None
        typ = token.header.get("typ", "JWT")
        if not isinstance(typ, str) or typ.lower().removeprefix("application/") != "jwt":
            return None
        sub = token.claims.get("sub")
        if token.claims.get("iss") != issuer or not isinstance(sub, str):
            return None
        return sub

    return subject


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
    def __init__(
        self, consents: ConsentService, secret_key: str, hint_subject: HintSubject
    ) -> None:
        self.consents = consents
        self.secret = secret_key
        self.hint_subject = hint_subject

    def decide(
        self, grant: Any, principal: Principal | None, values: Mapping[str, str]
    ) -> str | OAuth2Error:
        params = request_params(values)
        redirect_uri = grant.redirect_uri
        state = params.get("state")
        unsupported = request_object_error(params, redirect_uri, state)
        if unsupported is not None:
            return unsupported
        prompts = set(params.get("prompt", "").split())
        client_id = grant.client.get_client_id()
        max_age = params.get("max_age") or None  # empty: omitted (RFC 6749 §3.1)
        age_limit = parse_whole(max_age, 18) if max_age is not None else None
        if max_age is not None and age_limit is None:
            return InvalidRequestError(
                "max_age must be a non-negative integer.", redirect_uri=redirect_uri, state=state
            )
        needs_login = principal is None
        hint = params.get("id_token_hint")
        if principal is not None and (_FRESH_PROMPTS & prompts or age_limit is not None or hint):
            fresh_since = _fresh_login_since(values, self.secret, client_id)
            refreshed = fresh_since is not None and principal.auth_time >= fresh_since
            hinted = self.hint_subject(hint) if hint else RETIRED_KEY
            if hinted != RETIRED_KEY:
                # OIDC Core §3.1.2.1: the hint names the user the client expects. Someone
                # else signed in: the sign-in form (once); still someone else: login_required.
                if hinted != principal.user.id and not refreshed:
                    needs_login = True
                elif hinted is not None and hinted != principal.user.id:
                    return LoginRequiredError(redirect_uri=redirect_uri, state=state)
            if _FRESH_PROMPTS & prompts and not refreshed:
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

        A request that asks for a fresh sign-in (``prompt=login``, ``prompt=select_account``,
        ``max_age``; OIDC Core §3.1.2.1) comes back marked with when it was asked, signed in
        or not: the sign-in made on the way satisfies it, and the user is not sent to the form
        a second time."""
        params = request_params(values)
        args: dict[str, str] = {}
        if signed_in or _asks_fresh_login(params):
            params[REAUTH_PARAM] = _marker(self.secret, int(time.time()), client_id)
        if signed_in:
            args["prompt"] = "login"
        if params.get("login_hint"):
            args["login_hint"] = params["login_hint"][:320]
        if params.get("domain_hint"):  # Entra-style home-realm hint: the user's email domain
            args["domain_hint"] = params["domain_hint"][:253]
        args["next"] = "/authorize?" + urlencode(params)
        return args
