"""Ending a browser session for relying services: revoke its tokens and send OpenID Connect
Back-Channel Logout 1.0 logout tokens (§2.4) to each client that registered a URI (§2.2).

Revocation happens in the transaction that ends the session; the logout requests go through
the outbox, so a slow or failing client never blocks the user and is retried.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import requests
from joserfc import jwt
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from idp.models import UserSession, utcnow
from idp.models.clients import Client
from idp.models.tokens import TokenFamily
from idp.outbox import DeliveryError, enqueue
from idp.provider.keys import KeyService
from idp.security.sessions import SIGN_OUT_AFTER_TIMEOUT, TIMEOUT_REASONS

BACKCHANNEL_LOGOUT = "backchannel_logout"
LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
# Ends that are not a sign-out: the user is still signed in (again) or merely timed out.
SESSION_TIMEOUTS = TIMEOUT_REASONS | {"reauthenticated"}


def end_session_tokens(
    db: Session, session_id: str, reason: str, clock: Callable[[], datetime] = utcnow
) -> None:
    """Revoke every token family of the session, and of the sessions it replaced by
    re-authentication, and queue back-channel logouts (the caller commits). A session that
    merely timed out (or was replaced) leaves its tokens alone: refresh tokens granted for
    offline access outlive the browser session (OIDC Core §11)."""
    if reason in SESSION_TIMEOUTS:
        return
    sessions = _with_replaced(db, session_id)
    query = select(TokenFamily).where(TokenFamily.session_id.in_(sessions))
    if reason == SIGN_OUT_AFTER_TIMEOUT:  # the rest was ended, and told, when it was revoked
        query = query.where(TokenFamily.revoked_at.is_(None))
    _revoke_and_notify(db, list(db.scalars(query)), reason, session_id, clock)


def end_user_tokens(
    db: Session,
    user_id: str,
    reason: str,
    keep_session: str | None,
    clock: Callable[[], datetime] = utcnow,
) -> None:
    """Revoke every live token family the user's browser sessions started, but those of
    ``keep_session`` (and of the sessions it replaced), and queue back-channel logouts (the
    caller commits). For "sign out everywhere else", a password change or reset and account
    deletion: after the live sessions have ended (:func:`end_session_tokens`), the families of
    sessions that timed out are left, which these ends mean as well (a stolen password's
    sign-in to an application with offline access must not outlive the reset)."""
    kept = _with_replaced(db, keep_session) if keep_session else []
    query = select(TokenFamily).where(
        TokenFamily.user_id == user_id, TokenFamily.revoked_at.is_(None)
    )
    if kept:
        query = query.where(
            or_(TokenFamily.session_id.is_(None), TokenFamily.session_id.not_in(kept))
        )
    _revoke_and_notify(db, list(db.scalars(query)), reason, None, clock)


def _revoke_and_notify(
    db: Session,
    families: list[TokenFamily],
    reason: str,
    session_id: str | None,
    clock: Callable[[], datetime],
) -> None:
    """Revoke ``families`` (those not revoked yet) and queue one logout token per client and
    session, with the sid the client knows (§2.4): the family's, else ``session_id``."""
    notified: set[tuple[str, str]] = set()
    clients: dict[str, Client | None] = {}
    for family in families:
        if family.revoked_at is None:
            family.revoked_at = clock()
            family.revoked_reason = reason
        sid = family.session_id or session_id
        if sid is None or (family.client_id, sid) in notified or family.user_id is None:
            continue
        if family.client_id not in clients:
            clients[family.client_id] = db.scalar(
                select(Client).where(Client.client_id == family.client_id)
            )
        client = clients[family.client_id]
        if client is not None and client.backchannel_logout_uri:
            enqueue(
                db,
                BACKCHANNEL_LOGOUT,
                {"client_id": client.client_id, "sub": family.user_id, "sid": sid},
            )
            notified.add((family.client_id, sid))


def _with_replaced(db: Session, session_id: str, limit: int = 100) -> list[str]:
    """``session_id`` and the sessions it replaced by re-authentication, transitively (each
    re-authentication in a browser ends its session with ``replaced_by`` set to the next)."""
    found = [session_id]
    frontier = [session_id]
    while frontier and len(found) < limit:
        frontier = list(
            db.scalars(select(UserSession.id).where(UserSession.replaced_by.in_(frontier)))
        )
        found.extend(frontier)
    return found


def logout_token(
    keys: KeyService, issuer: str, client_id: str, sub: str, sid: str, alg: str = "RS256"
) -> str:
    """The logout token of §2.4, signed like the client's ID tokens (``alg``, its registered
    ``id_token_signed_response_alg``): §2.6 has the client validate it as it validates them."""
    key = keys.signing_key(alg)
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": client_id,
        "iat": now,
        "exp": now + 120,
        "jti": uuid.uuid4().hex,
        "sub": sub,
        "sid": sid,
        "events": {LOGOUT_EVENT: {}},
    }
    return jwt.encode({"alg": alg, "typ": "logout+jwt", "kid": key.kid}, claims, key)


class BackchannelLogoutSender:
    """Outbox handler: POST ``logout_token`` to the client (§2.5); 200 or 204 is success."""

    def __init__(
        self,
        db_factory: Callable[[], Session],
        keys_factory: Callable[[Session], KeyService],
        issuer: str,
        timeout: float = 5.0,
    ) -> None:
        self.db_factory = db_factory
        self.keys_factory = keys_factory
        self.issuer = issuer
        self.timeout = timeout

    def __call__(self, payload: dict[str, Any]) -> None:
        with self.db_factory() as db:
            client = db.scalar(select(Client).where(Client.client_id == payload["client_id"]))
            if client is None or not client.backchannel_logout_uri:
                return  # the client was deleted or dropped its URI: nothing to tell
            token = logout_token(
                self.keys_factory(db),
                self.issuer,
                client.client_id,
                payload["sub"],
                payload["sid"],
                client.id_token_alg,
            )
            uri = client.backchannel_logout_uri
        try:
            response = requests.post(
                uri, data={"logout_token": token}, timeout=self.timeout, allow_redirects=False
            )
        except requests.RequestException as exc:
            raise DeliveryError(f"back-channel logout to {uri}: {type(exc).__name__}") from None
        if response.status_code not in (200, 204):
            raise DeliveryError(f"back-channel logout to {uri}: HTTP {response.status_code}")
