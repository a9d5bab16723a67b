"""Signing in with an organization's Entra ID tenant: the authorization request (OpenID
Connect Core 1.0 §3.1.2 with PKCE, RFC 7636, and ``response_mode=form_post``), the callback,
the code exchange, and mapping the Entra identity to a local user.

The pending request (connection, nonce, PKCE verifier, where to go next) is kept in the store
for ten minutes under a digest of ``state`` and taken once: the callback arrives as a
cross-site POST, which carries no SameSite=Lax cookie, so ``state`` itself is the key.
On https the request is also bound to the browser that started it by a SameSite=None cookie
whose digest is kept with the state (against login CSRF: an attacker's own code and state
posted from a victim's browser).

Identity linking (issue 6, rule 7): the key is (organization, tenant, ``oid``); ``sub`` may
change and is only remembered. An account is never linked or created from an email claim
alone: just-in-time creation needs the email's domain to be one of the connection's
(tenant-verified) domains and the address verified — ``xms_edov`` true, or a one-time code
mailed to it (:mod:`idp.federation.confirmation`); an existing local account with that email is
not taken over (nOAuth) — it is linked only by proof: its password, or that code. Such an
offer holds for ten minutes and only under the connection it was made under (same tenant,
application, domains and options); it is never taken by someone the organization's owner or
admin removed (:class:`~idp.models.RemovedMember`), whom only an invitation takes back.

A session started here has Entra's ``auth_time`` (OIDC Core §2) when the ID token carries it,
and counts as a re-authentication only when that ``auth_time`` is not older than the request
that asked Entra for one (``prompt=login``, which the browser could drop on its way).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

import requests
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp.accounts import AccountService, normalize_email
from idp.events import Actor, EventTag, record_event
from idp.federation.confirmation import CodeCheck, EmailCodeConfirmation
from idp.federation.connections import ConnectionService, email_domain
from idp.federation.entra import EntraError
from idp.federation.metadata import TenantMetadata
from idp.federation.tokens import CLOCK_SKEW, IdTokenValidator, TokenRejected
from idp.models import (
    FederatedIdentity,
    Membership,
    Organization,
    RemovedMember,
    Role,
    SsoConnection,
    User,
)
from idp.names import PERSON_NAME_MAX, showable_name
from idp.organizations.service import lock_organizations
from idp.security.secretbox import SecretBoxError, b64encode
from idp.store import Store

log = logging.getLogger("idp.federation")

STATE_SECONDS = 600
SCOPE = "openid profile email"


class SsoFailure(Exception):
    """The SSO sign-in cannot complete. ``kind`` chooses the page; ``reason`` is logged only."""

    kind = "generic"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NoConnection(SsoFailure):
    kind = "no_connection"


class EntraRefused(SsoFailure):
    """Entra answered with ``error``; the page depends on that code alone."""

    kind = "entra_error"

    def __init__(self, error: str, details: str = "") -> None:
        super().__init__(f"entra error {error[:64]}{details}")
        self.error = error


class LinkRequired(SsoFailure):
    """The identity needs proof before it becomes an account. ``purpose`` "link": a local
    account has the email (prove its password, or a mailed code); "create": the directory did
    not vouch for the email (prove it with a mailed code). ``link_token`` is set when the
    browser may give that proof (the email's domain is one of the connection's)."""

    kind = "link_required"
    link_token: str | None = None
    # Whether the account's password can be the proof: not where the connection enforces SSO
    # (the sign-in form sends such an address to Entra, which would offer the link again).
    password_proof: bool = True

    def __init__(self, reason: str, purpose: str = "link", address: str = "") -> None:
        super().__init__(reason)
        self.purpose = purpose
        self.address = address


class NotProvisioned(SsoFailure):
    kind = "not_provisioned"


class GuestRefused(SsoFailure):
    kind = "guest"


class RemovedByOrganization(SsoFailure):
    """The local account with the identity's email was removed from the organization by its
    owner or admin: only the organization takes it back (an invitation), not a link by
    proof."""

    kind = "removed"


class OfferChanged(SsoFailure):
    """A pending link or confirmation was made under a connection that has since been
    removed or changed (tenant, application, domains, options): it is dropped, and the
    sign-in must start again under the connection as it is now."""

    kind = "offer_changed"


@dataclass(frozen=True)
class SsoSuccess:
    user: User
    next_url: str
    details: dict[str, str]
    connection_id: str = ""
    sid: str = ""
    # Asked for with prompt=login by idp itself (a re-authentication), not by the browser,
    # and shown done by the ID token's auth_time.
    fresh: bool = False
    # When Entra last authenticated the user (its ID token's auth_time), if it says: the
    # session's own auth_time, which relying services' prompt=login and max_age rely on.
    auth_time: float | None = None


_AADSTS = re.compile(r"\bAADSTS(\d{1,10})\b")
_GUID = r"([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
_TRACE = re.compile(r"Trace ID: " + _GUID)
_CORRELATION = re.compile(r"Correlation ID: " + _GUID)


def entra_error_details(fields: Mapping[str, Any]) -> str:
    """What an administrator needs to look an Entra error up, for the log: the AADSTS number
    (``error_codes`` of a token response, else the start of ``error_description``) and the
    trace and correlation ids that Entra's sign-in logs and Microsoft support ask for, e.g.
    ``" (AADSTS50105, trace 0e1f…, correlation 6a2b…)"``. Never the description's text: it
    may name the user, and its wording changes (Entra's error code reference)."""
    description = fields.get("error_description")
    text = description if isinstance(description, str) else ""
    codes = fields.get("error_codes")
    number = (
        str(codes[0])
        if isinstance(codes, list) and codes and isinstance(codes[0], int)
        else (m.group(1) if (m := _AADSTS.search(text)) else "")
    )
    parts = [f"AADSTS{number}"] if number else []
    for label, key, pattern in (
        ("trace", "trace_id", _TRACE),
        ("correlation", "correlation_id", _CORRELATION),
    ):
        value = fields.get(key)
        found = re.fullmatch(_GUID, value) if isinstance(value, str) else pattern.search(text)
        if found:
            parts.append(f"{label} {found.group(1)}")
    return f" ({', '.join(parts)})" if parts else ""


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _terms(connection: SsoConnection) -> str:
    """What a pending link offer was made under: the connection's tenant, application,
    domains and options (not its credential, whose rotation changes nothing for the person
    signing in). Any difference means the organization changed its sign-in meanwhile."""
    options = (connection.jit, connection.enforce_sso, connection.allow_guests)
    parts = [connection.id, connection.tenant_id, connection.client_id, repr(options)]
    return _digest("\n".join([*parts, *connection.domain_names]))


class SsoSignInService:
    def __init__(
        self,
        db: Session,
        store: Store,
        connections: ConnectionService,
        metadata: TenantMetadata,
        validator: IdTokenValidator,
        accounts: AccountService,
        redirect_uri: str,
        session_seconds: int = 24 * 3600,
        confirmation: EmailCodeConfirmation | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.connections = connections
        self.metadata = metadata
        self.validator = validator
        self.accounts = accounts
        self.redirect_uri = redirect_uri
        self.session_seconds = session_seconds
        self.confirmation = confirmation or EmailCodeConfirmation(db, store)

    # The request -------------------------------------------------------------------------
    def start(
        self,
        email: str,
        next_url: str = "",
        binding: str | None = None,
        domain_hint: str = "",
        fresh: bool = False,
        *,
        prompt_login: bool = False,
    ) -> str:
        """The Entra authorization URL for this work email, or for the organization serving
        ``domain_hint`` (home-realm discovery by a relying service's hint, passed on to
        Entra); raises :class:`NoConnection`. ``binding``: a random value also set in a
        browser cookie that a cross-site POST carries (SameSite=None, https only), so the
        callback must come from this browser (login CSRF). ``fresh``: Entra must
        authenticate the user again (``prompt=login``, OIDC Core §3.1.2.1), for a
        re-authentication before a sensitive change. ``prompt_login``: the same request to
        Entra for a relying service that asked for a new sign-in (the session's ``auth_time``
        is Entra's, so a sign-in Entra completed from its own session does not pass for
        one)."""
        connection = self.connections.for_email(email) if email else None
        if connection is None and domain_hint:
            connection = self.connections.for_domain(domain_hint)
        if connection is None:
            raise NoConnection("no connection serves this email domain")
        state = secrets.token_urlsafe(32)
        nonce = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)
        challenge = b64encode(hashlib.sha256(verifier.encode()).digest())
        try:
            endpoint = self.metadata.endpoint(connection.tenant_id, "authorization_endpoint")
        except EntraError as exc:
            raise SsoFailure(str(exc)) from None
        pending = {
            "connection_id": connection.id,
            "nonce": nonce,
            "verifier": verifier,
            "next": next_url,
            "binding": _digest(binding) if binding else "",
            "fresh": fresh,
            "prompt_login": fresh or prompt_login,
            "started_at": time.time(),
        }
        self.store.client.set(
            self.store.sso_state_key(_digest(state)), json.dumps(pending), ex=STATE_SECONDS
        )
        params = {
            "client_id": connection.client_id,
            "response_type": "code",
            "redirect_uri": self.redirect_uri,
            "response_mode": "form_post",
            "scope": SCOPE,
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if email.strip():
            params["login_hint"] = email.strip()
        if domain_hint and connection is self.connections.for_domain(domain_hint):
            params["domain_hint"] = domain_hint.strip().lower()
        if fresh or prompt_login:
            params["prompt"] = "login"
        return f"{endpoint}?{urlencode(params)}"

    # The callback ------------------------------------------------------------------------
    def _take_state(self, state: str) -> dict[str, Any]:
        if not state or len(state) > 200:
            raise SsoFailure("callback without state")
        raw = self.store.client.getdel(self.store.sso_state_key(_digest(state)))
        if raw is None:
            raise SsoFailure("unknown, expired or replayed state")
        pending: dict[str, Any] = json.loads(raw)
        return pending

    def callback(self, form: dict[str, str], binding: str | None = None) -> SsoSuccess:
        pending = self._take_state(form.get("state", ""))
        bound = str(pending.get("binding") or "")
        if bound and not hmac.compare_digest(_digest(binding or ""), bound):
            raise SsoFailure("state was issued to another browser")
        connection = self.db.get(SsoConnection, pending["connection_id"])
        if connection is None:
            raise SsoFailure("the connection was removed during sign-in")
        if form.get("error"):
            raise EntraRefused(form["error"], entra_error_details(form))
        code = form.get("code", "")
        if not code:
            raise SsoFailure("callback without code")
        id_token = self._redeem(connection, code, pending["verifier"])
        try:
            claims = self.validator.validate(
                id_token,
                tenant_id=connection.tenant_id,
                client_id=connection.client_id,
                nonce=pending["nonce"],
            )
        except TokenRejected as exc:
            raise SsoFailure(f"id token rejected: {exc}") from None
        except EntraError as exc:
            raise SsoFailure(str(exc)) from None
        if _is_guest(claims) and not connection.allow_guests:
            raise GuestRefused("guest user and the connection does not allow guests")
        try:
            user = self._user_for(connection, claims)
        except LinkRequired as required:
            required.link_token = self._offer_link(connection, claims, pending, required.purpose)
            required.password_proof = not connection.enforce_sso
            raise
        success = _success(
            user, connection, str(claims["oid"]), str(pending.get("next") or ""), claims.get("sid")
        )
        authenticated = _authenticated_since(claims, pending)
        auth_time = _auth_time(claims)
        if auth_time is not None and authenticated and pending.get("prompt_login"):
            # Entra authenticated the user after this request, as asked: within the clock
            # skew its auth_time may read a little earlier than idp's clock did at the request.
            auth_time = max(auth_time, min(float(pending["started_at"]), time.time()))
        return replace(
            success,
            fresh=bool(pending.get("fresh")) and authenticated,
            auth_time=auth_time,
        )

    # Logout (OpenID Connect RP-Initiated Logout 1.0, Front-Channel Logout 1.0) ---------
    def remember_session(self, session_id: str, user_id: str, success: SsoSuccess) -> None:
        """Note which tenant a new local session came from, and its Entra ``sid``."""
        client = self.store.client
        info: dict[str, Any] = {"connection_id": success.connection_id, "sid": success.sid}
        if success.fresh:
            info["fresh_at"] = time.time()
        client.set(
            self.store.sso_session_key(session_id), json.dumps(info), ex=self.session_seconds
        )
        if success.sid:
            key = self.store.entra_sid_key(success.sid)
            client.sadd(key, f"{session_id} {user_id}")
            client.expire(key, self.session_seconds)

    def fresh_sign_in_at(self, session_id: str) -> float | None:
        """When the session was started by a sign-in at Entra that idp asked to be fresh
        (``prompt=login``, bound to the flow's state, so neither a relying service's hint
        nor the browser's form can make a silent sign-in count), or None."""
        raw = self.store.client.get(self.store.sso_session_key(session_id))
        if raw is None:
            return None
        fresh_at = json.loads(raw).get("fresh_at")
        return float(fresh_at) if isinstance(fresh_at, (int, float)) else None

    def logout_url(self, session_id: str, post_logout_redirect_uri: str) -> str | None:
        """Entra's end-session URL for a session that signed in through SSO, else None."""
        raw = self.store.client.getdel(self.store.sso_session_key(session_id))
        if raw is None:
            return None
        connection = self.db.get(SsoConnection, json.loads(raw).get("connection_id"))
        if connection is None:
            return None
        try:
            endpoint = self.metadata.endpoint(connection.tenant_id, "end_session_endpoint")
        except EntraError as exc:
            log.warning("sso logout: %s", exc)
            return None
        params = {
            "client_id": connection.client_id,
            "post_logout_redirect_uri": post_logout_redirect_uri,
        }
        return f"{endpoint}?{urlencode(params)}"

    def sessions_for_sid(self, sid: str) -> list[tuple[str, str]]:
        """(session id, user id) of the local sessions started by Entra session ``sid``;
        forgets them."""
        if not sid or len(sid) > 100:
            return []
        key = self.store.entra_sid_key(sid)
        members = self.store.client.smembers(key)
        self.store.client.delete(key)
        found = []
        for member in members:
            text = member.decode() if isinstance(member, bytes) else str(member)
            session_id, _, user_id = text.partition(" ")
            found.append((session_id, user_id))
        return found

    # Linking an existing account by proof ----------------------------------------------
    def _offer_link(
        self,
        connection: SsoConnection,
        claims: dict[str, Any],
        pending: dict[str, Any],
        purpose: str = "link",
    ) -> str | None:
        email = str(claims.get("email", ""))
        if email_domain(email) not in connection.domain_names:
            # Not reached from the callback (a foreign domain is refused before any lookup);
            # kept so that no caller can offer to link a foreign-domain identity.
            return None
        token = secrets.token_urlsafe(32)
        first, last = _names(claims)
        offer = {
            "purpose": purpose,
            "connection_id": connection.id,
            "terms": _terms(connection),
            "oid": str(claims["oid"]),
            "sub": str(claims.get("sub", ""))[:255],
            "sid": str(claims.get("sid") or "")[:100],
            "email": normalize_email(email),
            "address": email.strip()[:320],
            "given_name": first,
            "family_name": last,
            "username": str(claims.get("preferred_username", ""))[:320],
            "next": str(pending.get("next") or ""),
        }
        self.store.client.set(
            self.store.sso_link_key(_digest(token)), json.dumps(offer), ex=STATE_SECONDS
        )
        return token

    def link_offer(self, token: str | None) -> dict[str, Any] | None:
        """The identity offered to this browser for linking (or for a mailed code), None when
        there is none; :class:`OfferChanged` (and the offer dropped) when the organization
        removed or changed its connection since the offer was made."""
        if not token or len(token) > 100:
            return None
        raw = self.store.client.get(self.store.sso_link_key(_digest(token)))
        if raw is None:
            return None
        offer: dict[str, Any] = json.loads(raw)
        self._offer_connection(token, offer)
        return offer

    def _offer_connection(self, token: str, offer: dict[str, Any]) -> SsoConnection:
        """The connection the offer was made under, unchanged; else the offer is dropped and
        :class:`OfferChanged` raised."""
        connection = self.db.get(SsoConnection, str(offer.get("connection_id")))
        if connection is None:
            self._drop_offer(token)
            raise OfferChanged("the connection was removed since the link offer")
        terms = str(offer.get("terms") or "")
        if not hmac.compare_digest(terms, _terms(connection)):
            self._drop_offer(token)
            raise OfferChanged("the connection changed since the link offer")
        return connection

    def accept_link(self, token: str | None, user: User, actor: Actor) -> bool:
        """Link the offered identity to ``user`` (who has just proven the account's password
        in this browser); False when the offer is gone or is for another account."""
        offer = self.link_offer(token)
        if offer is None or token is None or offer["email"] != user.email_normalized:
            return False
        if offer.get("purpose", "link") != "link":
            return False
        connection = self._offer_connection(token, offer)
        if not self.store.client.delete(self.store.sso_link_key(_digest(token))):
            return False
        self._link(connection, user, offer, actor, proof="password")
        try:
            self.db.commit()
        except IntegrityError:
            self.db.rollback()
            return False
        return True

    def _check_not_removed(self, connection: SsoConnection, user: User) -> None:
        """Raise :class:`RemovedByOrganization` when the organization's owner or admin removed
        ``user``: removal unlinked the account from the tenant, and proving the account's
        password or address must not link it again."""
        removed = self.db.get(RemovedMember, (connection.organization_id, user.id))
        if removed is not None:
            raise RemovedByOrganization("the organization removed this account; not relinked")

    def _link(
        self,
        connection: SsoConnection,
        user: User,
        offer: dict[str, Any],
        actor: Actor | None,
        proof: str,
    ) -> None:
        """Link the offered identity to ``user`` (in the caller's transaction); refused for
        someone the organization removed. Checked again here, under the organization's lock
        that a removal takes too: the removal may have come after the offer, or be under way."""
        lock_organizations(self.db, Organization.id == connection.organization_id)
        self._check_not_removed(connection, user)
        self.db.add(
            FederatedIdentity(
                organization_id=connection.organization_id,
                tenant_id=connection.tenant_id,
                object_id=offer["oid"],
                user_id=user.id,
                last_sub=offer["sub"],
            )
        )
        record_event(
            self.db,
            EventTag.SSO_LINKED,
            user_id=user.id,
            organization_id=connection.organization_id,
            actor=actor,
            details={"tenant_id": connection.tenant_id, "oid": offer["oid"], "proof": proof},
        )

    # Proof by a code mailed to the address ----------------------------------------------
    def send_code(self, token: str | None) -> bool:
        """Mail a one-time code to the address of the identity offered to this browser."""
        offer = self.link_offer(token)
        if offer is None or token is None:
            return False
        connection = self._offer_connection(token, offer)
        organization = self.db.get(Organization, connection.organization_id)
        return self.confirmation.send(
            _digest(token),
            str(offer.get("address") or offer["email"]),
            organization.name if organization else "your organization",
        )

    def confirm_code(self, token: str | None, code: str, actor: Actor) -> SsoSuccess | CodeCheck:
        """Check the mailed code; when right, create or link the account (single use) and
        return the sign-in to complete. Too many wrong codes drop the offer."""
        offer = self.link_offer(token)
        if offer is None or token is None:
            return CodeCheck.EXHAUSTED
        checked = self.confirmation.check(_digest(token), code)
        if checked is not CodeCheck.OK:
            if checked is CodeCheck.EXHAUSTED:
                self._drop_offer(token)
            return checked
        connection = self._offer_connection(token, offer)
        if not self.store.client.delete(self.store.sso_link_key(_digest(token))):
            return CodeCheck.EXHAUSTED
        self.confirmation.forget(_digest(token))
        existing = self.accounts.find_user_by_email(offer["email"])
        try:
            if offer.get("purpose") == "create":
                if existing is not None:
                    raise SsoFailure("a local account with this email appeared meanwhile")
                user = self._create(
                    connection, offer, str(offer["address"]), offer["oid"], offer["sub"]
                )
            else:
                if existing is None:
                    raise SsoFailure("the account to link is gone")
                self._check_not_removed(connection, existing)
                user = existing
                if not user.email_verified:
                    # Never proven: whoever chose its password did not show the address was
                    # theirs (it may have been registered ahead of its owner); the code just
                    # did. The owner keeps the account, not that password.
                    user.password_hash = None
                    user.email_verified = True
                self._link(connection, user, offer, actor, proof="email_code")
            self.db.commit()
        except IntegrityError:
            self.db.rollback()
            raise SsoFailure("the identity was linked concurrently") from None
        return _success(user, connection, offer["oid"], str(offer.get("next") or ""), offer["sid"])

    def _drop_offer(self, token: str) -> None:
        self.store.client.delete(self.store.sso_link_key(_digest(token)))
        self.confirmation.forget(_digest(token))

    def _redeem(self, connection: SsoConnection, code: str, verifier: str) -> str:
        try:
            endpoint = self.metadata.endpoint(connection.tenant_id, "token_endpoint")
            credential = self.connections.credential(connection)
            authentication = credential.token_fields(connection.client_id, endpoint)
        except (EntraError, SecretBoxError) as exc:
            raise SsoFailure(f"token request not possible: {exc}") from None
        try:
            response = requests.post(
                endpoint,
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": self.redirect_uri,
                    "client_id": connection.client_id,
                    "code_verifier": verifier,
                    "scope": SCOPE,
                    **authentication,
                },
                timeout=self.metadata.directory.timeout,
            )
            body = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise SsoFailure(f"token endpoint: {exc.__class__.__name__}") from None
        if response.status_code != 200 or not isinstance(body, dict):
            error = body.get("error", "?") if isinstance(body, dict) else "?"
            details = entra_error_details(body) if isinstance(body, dict) else ""
            raise SsoFailure(f"token endpoint refused: {str(error)[:64]}{details}")
        id_token = body.get("id_token")
        if not isinstance(id_token, str):
            raise SsoFailure("token response without id_token")
        return id_token

    # Identity linking --------------------------------------------------------------------
    def _user_for(self, connection: SsoConnection, claims: dict[str, Any]) -> User:
        oid = str(claims["oid"])
        sub = str(claims.get("sub", ""))[:255]
        identity = self._identity(connection, oid)
        if identity is not None:
            if identity.last_sub != sub:
                log.info("sso: sub changed for oid %s in tenant %s", oid, connection.tenant_id)
                identity.last_sub = sub
            user = self.db.get(User, identity.user_id)
            if user is None:
                raise SsoFailure("linked user is gone")
            return user
        email = claims.get("email")
        if not isinstance(email, str) or email_domain(email) is None:
            raise NotProvisioned("no usable email claim and no linked identity")
        # The domain first: for an address outside the connection's domains the answer must
        # not depend on whether a local account has it (no account enumeration by a tenant
        # admin who sets a user's mail attribute to any address).
        if email_domain(email) not in connection.domain_names:
            raise NotProvisioned("email domain is not one of the connection's domains")
        existing = self.accounts.find_user_by_email(email)
        if existing is not None:
            self._check_not_removed(connection, existing)
            raise LinkRequired("a local account has this email; not linked without proof")
        if not connection.jit:
            raise NotProvisioned("just-in-time accounts are off for this connection")
        if claims.get("xms_edov") is not True:
            raise LinkRequired(
                "email not verified by the domain owner (xms_edov)", "create", email.strip()
            )
        return self._create(connection, claims, email, oid, sub)

    def _identity(self, connection: SsoConnection, oid: str) -> FederatedIdentity | None:
        return self.db.scalar(
            select(FederatedIdentity).where(
                FederatedIdentity.organization_id == connection.organization_id,
                FederatedIdentity.tenant_id == connection.tenant_id,
                FederatedIdentity.object_id == oid,
            )
        )

    def _create(
        self, connection: SsoConnection, claims: dict[str, Any], email: str, oid: str, sub: str
    ) -> User:
        """The just-in-time account of this identity, with its membership and link. When a
        concurrent sign-in of the same identity (another tab, a form_post sent twice) created
        it first, that account: the person is not asked to link what is already theirs."""
        first, last = _names(claims)
        user = User(
            email=email.strip(),
            email_normalized=normalize_email(email),
            email_verified=True,
            first_name=first,
            last_name=last,
            password_hash=None,
        )
        self.db.add(user)
        try:
            self.db.flush()
        except IntegrityError:
            self.db.rollback()
            won = self._identity(connection, oid)
            linked = self.db.get(User, won.user_id) if won is not None else None
            if linked is not None:
                return linked
            raise LinkRequired("a local account with this email appeared concurrently") from None
        self.db.add(
            Membership(
                user_id=user.id, organization_id=connection.organization_id, role=Role.MEMBER
            )
        )
        self.db.add(
            FederatedIdentity(
                organization_id=connection.organization_id,
                tenant_id=connection.tenant_id,
                object_id=oid,
                user_id=user.id,
                last_sub=sub,
            )
        )
        record_event(
            self.db,
            EventTag.USER_CREATED,
            user_id=user.id,
            organization_id=connection.organization_id,
            details={"role": Role.MEMBER.value, "via": "sso"},
        )
        self.db.flush()
        return user


def _success(
    user: User, connection: SsoConnection, oid: str, next_url: str, sid: object
) -> SsoSuccess:
    return SsoSuccess(
        user=user,
        next_url=next_url,
        details={
            "organization_id": connection.organization_id,
            "tenant_id": connection.tenant_id,
            "oid": oid,
        },
        connection_id=connection.id,
        sid=str(sid or "")[:100],
    )


def _auth_time(claims: dict[str, Any]) -> float | None:
    """Entra's ``auth_time`` (OIDC Core §2: when the user authenticated), never later than
    now; None when the token does not carry it (the optional claim is not configured)."""
    value = claims.get("auth_time")
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(min(value, time.time()))


def _authenticated_since(claims: dict[str, Any], pending: dict[str, Any]) -> bool:
    """Whether Entra authenticated the user after this sign-in started: ``auth_time`` (OIDC
    Core §2; an optional claim of Entra ID tokens) no older than the request, within the clock
    skew. ``prompt=login`` alone proves nothing: the browser carries the request to Entra and
    can drop it, and Entra then completes the sign-in silently from its own session."""
    auth_time, started = claims.get("auth_time"), pending.get("started_at")
    if isinstance(auth_time, bool) or not isinstance(auth_time, int | float):
        return False
    if not isinstance(started, int | float):
        return False
    return auth_time >= started - CLOCK_SKEW


def _is_guest(claims: dict[str, Any]) -> bool:
    if claims.get("acct") == 1:
        return True
    idp = claims.get("idp")
    return idp is not None and idp != claims.get("iss")


def _names(claims: dict[str, Any]) -> tuple[str, str]:
    given, family = claims.get("given_name"), claims.get("family_name")
    if isinstance(given, str) and isinstance(family, str):
        return showable_name(given, PERSON_NAME_MAX), showable_name(family, PERSON_NAME_MAX)
    name = claims.get("name")
    if not isinstance(name, str):
        return "", ""
    first, _, last = showable_name(name, 2 * PERSON_NAME_MAX + 1).partition(" ")
    return first[:PERSON_NAME_MAX], last[:PERSON_NAME_MAX].strip()
