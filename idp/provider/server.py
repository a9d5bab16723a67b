"""The authlib authorization server and its grants (RFC 6749 §4.1, §4.4, §6; RFC 7636;
OIDC Core §3.1), wired to our storage through the request's :class:`ProviderServices`.

Behaviour is added through authlib's hooks (``save_authorization_code``,
``query_authorization_code``, ``authenticate_user``, the OpenID extension) rather than by
overriding its flow.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from authlib.common.security import is_secure_transport
from authlib.consts import default_json_headers
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Request
from authlib.oauth2.rfc6749 import grants, scope_to_list
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    UnsupportedResponseTypeError,
)
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc9207 import IssuerParameter
from authlib.oidc.core.grants import OpenIDCode
from authlib.oidc.rpinitiated import EndSessionEndpoint
from flask import g
from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet
from joserfc.jws import extract_compact
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from idp.events import Actor, EventTag, event_values, insert_event, record_event
from idp.models import User, UserSession
from idp.models.tokens import RefreshToken, TokenFamily
from idp.observability.metrics import count_event
from idp.provider.claims import user_claims
from idp.provider.clients import (
    ClientService,
    RegisteredClient,
    basic_secret,
    malformed_basic_credentials,
)
from idp.provider.codes import AuthorizationCode, AuthorizationCodeStore
from idp.provider.consent import ConsentService
from idp.provider.keys import KeyService
from idp.provider.tokens import Principal, TokenService
from idp.store import Store

SCOPES_SUPPORTED = ["openid", "profile", "email", "offline_access"]


@dataclass
class ProviderServices:
    """The collaborators the grants need, built once per request."""

    db: Session
    store: Store
    clients: ClientService
    tokens: TokenService
    codes: AuthorizationCodeStore
    keys: KeyService
    issuer: str
    id_token_seconds: int
    actor: Actor


Resolver = Callable[[], ProviderServices]


class S256CodeChallenge(CodeChallenge):  # type: ignore[misc]
    """PKCE with S256 only: "plain" is refused (RFC 9700 §2.1.1)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if data.get("code_challenge") and data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256.")
        if grant.request.client.row.public and not data.get("code_challenge"):
            raise InvalidRequestError("PKCE (code_challenge) is required for public clients.")
        super().validate_code_challenge(grant, redirect_uri)


class _Grant:
    resolve: Resolver

    @property
    def services(self) -> ProviderServices:
        return type(self).resolve()


class CodeGrant(_Grant, grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        principal: Principal = request.user
        data = request.payload.data
        self.services.codes.save(
            code,
            AuthorizationCode(
                client_id=request.client.get_client_id(),
                redirect_uri=request.payload.redirect_uri,
                scope=request.scope,
                user_id=principal.user.id,
                session_id=principal.session_id or "",
                family_id=str(uuid.uuid4()),
                auth_time=principal.auth_time,
                amr=principal.amr,
                nonce=data.get("nonce"),
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
            ),
        )
        if data.get("nonce"):
            nonce_key = self.services.store.key(
                "nonce", request.client.get_client_id(), str(data["nonce"])[:200]
            )
            self.services.store.client.set(nonce_key, "1", ex=self.services.codes.lifetime)

    def query_authorization_code(self, code: str, client: RegisteredClient) -> Any:
        s = self.services
        redemption = s.codes.redeem(code, client.get_client_id())
        if redemption.status == "used" and redemption.family_id:
            # RFC 6749 §4.1.2: a code used twice revokes what was issued from it.
            s.tokens.revoke_family(redemption.family_id, "code_replay")
            record_event(
                s.db,
                EventTag.TOKEN_REVOKED,
                product=client.get_client_id(),
                actor=s.actor,
                details={"reason": "authorization_code_replay"},
            )
            s.db.commit()
            return None
        return redemption.code if redemption.status == "ok" else None

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Nothing to do: redeeming already consumed the code atomically."""

    def authenticate_user(self, authorization_code: AuthorizationCode) -> Principal | None:
        """The user the code was issued to, while the code's session is live and (for a client
        that asks for consent) the consent still covers its scope; else None (invalid_grant).

        The user row (key share), the session row and the consent row are read with share
        locks held until the token is committed: a sign-out (or a withdrawn consent) at the
        same instant either comes first, and the code is refused, or waits and then revokes
        the new tokens as well."""
        db = self.services.db
        # The locks in the order account deletion takes them (user, then its sessions): the
        # user row's key share lock (the new token family's foreign key needs it anyway)
        # first, so an exchange and a deletion at the same time wait, never deadlock.
        user = db.get(
            User,
            authorization_code.user_id,
            with_for_update={"key_share": True},
            populate_existing=True,
        )
        session = db.get(
            UserSession,
            authorization_code.session_id,
            with_for_update={"read": True},
            populate_existing=True,
        )
        if user is None or session is None or session.ended_at is not None:
            return None  # signed out (or deleted) since the code was issued
        client: RegisteredClient = self.request.client
        if not client.row.first_party and not ConsentService(db).covers(
            user.id, client.get_client_id(), authorization_code.scope, lock=True
        ):
            return None  # consent withdrawn since the code was issued
        return Principal(
            user=user,
            session_id=authorization_code.session_id,
            auth_time=authorization_code.auth_time,
            amr=authorization_code.amr,
            family_id=authorization_code.family_id,
        )


class _RefreshCredential:
    def __init__(self, row: RefreshToken, family: TokenFamily) -> None:
        self.row = row
        self.family = family

    def check_client(self, client: RegisteredClient) -> bool:
        return self.family.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.row.scope


class RefreshGrant(_Grant, grants.RefreshTokenGrant):  # type: ignore[misc]
    """Refresh with rotation (RFC 6749 §6, RFC 9700 §4.14.2)."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> _RefreshCredential | None:
        s = self.services
        row = s.tokens.claim_refresh_token(refresh_token, self.request.client.get_client_id())
        if row is None:
            return None
        family = s.db.get(TokenFamily, row.family_id)
        return _RefreshCredential(row, family) if family is not None else None

    def authenticate_user(self, credential: _RefreshCredential) -> Principal | None:
        family = credential.family
        user = self.services.db.get(User, family.user_id) if family.user_id else None
        if user is None:
            return None
        auth_time = family.auth_time or family.created_at
        return Principal(
            user=user,
            session_id=family.session_id,
            auth_time=int(auth_time.timestamp()),
            amr=family.amr.split() or ["pwd"],
            family_id=family.id,
        )

    def issue_token(self, user: Principal, refresh_token: _RefreshCredential) -> dict[str, Any]:
        """RFC 6749 §6: the access token gets the requested scope (at most the refresh
        token's, checked by authlib) or, without one, the refresh token's; the new refresh
        token keeps exactly the old one's scope, so asking for less once (even without
        ``offline_access``) neither narrows nor ends the grant."""
        original = refresh_token.get_scope()
        return self.services.tokens.issue(
            self.request.client.get_client_id(),
            user,
            self.request.payload.scope or original,
            grant_type=self.GRANT_TYPE,
            include_refresh_token=True,
            refresh_scope=original,
        )

    def revoke_old_credential(self, credential: _RefreshCredential) -> None:
        """Nothing to do: the old token was marked used when it was claimed."""


class ClientCredentialsGrant(_Grant, grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def validate_token_request(self) -> None:
        """authlib's checks (client authentication, grant type, scopes the server supports),
        then RFC 6749 §3.3 / §5.2: a scope the client was not registered with is
        ``invalid_scope``, never silently granted."""
        super().validate_token_request()
        if self.request.client.get_allowed_scope(self.request.payload.scope) is None:
            raise InvalidScopeError()


def plain_client_credentials_request(
    args: MultiDict[str, str], form: MultiDict[str, str], url: str
) -> str | None:
    """The scope of a token request that :meth:`IdpAuthorizationServer.grant_client_credentials`
    answers exactly as authlib would, or None for any other request (authlib handles it).

    Plain means: over a transport authlib accepts (``is_secure_transport``), no query string
    (authlib reads parameters from both), a form holding ``grant_type=client_credentials`` and
    at most a ``scope``, each once, every requested scope one the server supports (otherwise
    authlib answers invalid_scope, RFC 6749 §5.2). An empty string is no scope."""
    if args or not is_secure_transport(url):
        return None
    if any(name not in ("grant_type", "scope") or len(form.getlist(name)) != 1 for name in form):
        return None
    if form.get("grant_type") != ClientCredentialsGrant.GRANT_TYPE:
        return None
    scope = form.get("scope", "")
    if scope and not set(scope_to_list(scope)) <= set(SCOPES_SUPPORTED):
        return None
    return scope


class IdTokens(OpenIDCode):  # type: ignore[misc]
    """ID tokens for the code flow (OIDC Core §2, §3.1.3.6): iss, sub, aud, exp, iat,
    auth_time, nonce, amr, sid and at_hash, signed with the current key of the client's
    registered algorithm (RS256 by default, or ES256)."""

    def __init__(self, resolve: Resolver) -> None:
        super().__init__(require_nonce=False)
        self.resolve = resolve

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        key = self.resolve().store.key("nonce", request.payload.client_id or "", nonce[:200])
        return bool(self.resolve().store.client.exists(key))

    def _signing_key(self, client: RegisteredClient) -> Key:
        """The key that signs this request's ID token, read once: authlib asks for the header
        and for the key separately, and a rotation between the two would put one key's kid on
        another key's signature (RFC 7515 §4.1.4)."""
        alg = client.row.id_token_alg
        held: tuple[str, Key] | None = g.get("idp_id_token_key")
        if held is None or held[0] != alg:
            held = (alg, self.resolve().keys.signing_key(alg))
            g.idp_id_token_key = held
        return held[1]

    def resolve_client_private_key(self, client: RegisteredClient) -> Key:
        return self._signing_key(client)

    def get_client_algorithm(self, client: RegisteredClient) -> str:
        return str(client.row.id_token_alg)

    def get_encode_header(self, client: RegisteredClient) -> dict[str, str]:
        key = self._signing_key(client)
        return {"alg": client.row.id_token_alg, "typ": "JWT", "kid": str(key.kid)}

    def get_compatible_claims(self, request: OAuth2Request) -> dict[str, Any]:
        s = self.resolve()
        now = int(time.time())
        return {
            "iss": s.issuer,
            "aud": request.client.get_client_id(),
            "iat": now,
            "exp": now + s.id_token_seconds,
        }

    def generate_user_info(self, user: Principal, scope: str) -> dict[str, Any]:
        claims = user_claims(user.user, scope, self.resolve().issuer)
        if user.session_id:
            claims["sid"] = user.session_id
        return claims


class IssuerInResponses(IssuerParameter):  # type: ignore[misc]
    """RFC 9207: ``iss`` in every authorization response."""

    def __init__(self, resolve: Resolver) -> None:
        self.resolve = resolve

    def get_issuer(self) -> str:
        return self.resolve().issuer


class EndSession(EndSessionEndpoint):  # type: ignore[misc]
    """RP-Initiated Logout request validation; the view ends the browser session."""

    def __init__(self, resolve: Resolver) -> None:
        super().__init__()
        self.resolve = resolve

    def get_server_jwks(self) -> KeySet:
        return self.resolve().keys.verification_keyset()

    def get_algorithms(self) -> list[str]:
        return ["RS256", "ES256"]

    def _validate_id_token_hint(self, id_token_hint: str) -> dict[str, Any] | None:
        """authlib's checks (our signature, not-before), after making sure the hint is one of
        our ID tokens (header ``typ`` JWT or none): our access tokens (``at+jwt``) and logout
        tokens (``logout+jwt``) carry the same key, client and session, and must not stand
        for an ID token (RFC 8725 §3.11, explicit typing).

        A hint signed with a key that has since left the JWKS (its ``kid`` is no longer known)
        can be neither trusted nor refused as forged: RP-Initiated Logout 1.0 §2 asks OPs to
        accept old ID tokens as hints, so it counts as no hint (None) and the user confirms,
        without post-logout redirection. A hint with a known kid is verified as always."""
        try:
            headers = extract_compact(id_token_hint.encode()).headers()
        except (JoseError, ValueError):
            raise InvalidRequestError("'id_token_hint' is not a valid ID token.") from None
        typ = headers.get("typ", "JWT")
        if not isinstance(typ, str) or typ.lower().removeprefix("application/") != "jwt":
            raise InvalidRequestError("'id_token_hint' is not an ID token.")
        if self._kid_unknown(headers.get("kid")):
            return None
        claims: dict[str, Any] = super()._validate_id_token_hint(id_token_hint)
        return claims

    def _kid_unknown(self, kid: Any) -> bool:
        """Whether ``kid`` names a key the JWKS no longer (or never) published."""
        if not isinstance(kid, str) or not kid:
            return False
        return all(key.kid != kid for key in self.get_server_jwks().keys)

    def end_session(self, end_session_request: Any) -> None:
        """Nothing here: the view ends the session with the user's confirmation."""


class IdpAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, resolve: Resolver) -> None:
        super().__init__()
        self.resolve = resolve
        self.scopes_supported = SCOPES_SUPPORTED
        self.register_token_generator("default", self._generate_token)
        for grant_cls in (CodeGrant, RefreshGrant, ClientCredentialsGrant):
            grant_cls.resolve = staticmethod(resolve)
        self.register_grant(CodeGrant, [S256CodeChallenge(required=True), IdTokens(resolve)])
        self.register_grant(RefreshGrant)
        self.register_grant(ClientCredentialsGrant)
        self.register_extension(lambda server: IssuerInResponses(resolve)(server))
        self.register_endpoint(EndSession(resolve))

    def get_consent_grant(self, request: Any = None, end_user: Any = None) -> Any:
        """authlib echoes the request's response_type and redirect_uri in error descriptions
        and raises ValueError (a 500) when they hold characters RFC 6749 §5.2 forbids there:
        such a request is refused as invalid_request, shown to the person, never redirected."""
        try:
            return super().get_consent_grant(request, end_user=end_user)
        except ValueError as exc:
            if "forbidden characters" not in str(exc):
                raise
            raise InvalidRequestError(
                "The request contains characters that are not allowed."
            ) from None

    def get_authorization_grant(self, request: OAuth2Request) -> Any:
        """RFC 6749 §4.1.2.1: a missing ``response_type`` is ``invalid_request`` (authlib says
        unsupported_response_type); redirected only to a verified redirect URI, as authlib
        decided."""
        try:
            return super().get_authorization_grant(request)
        except UnsupportedResponseTypeError as error:
            if request.payload.response_type:
                raise
            raise InvalidRequestError(
                "Missing 'response_type'.", redirect_uri=error.redirect_uri
            ) from None

    def create_token_response(self, request: Any = None) -> Any:
        """RFC 6749 §5.2: a token request without ``grant_type`` is ``invalid_request``
        (authlib says unsupported_grant_type)."""
        oauth_request = self.create_oauth2_request(request)
        if not oauth_request.payload.grant_type:
            error = InvalidRequestError("Missing 'grant_type'.")
            return self.handle_error_response(oauth_request, error)
        return super().create_token_response(request)

    def authenticate_client(
        self, request: OAuth2Request, methods: list[str], endpoint: str = "token"
    ) -> RegisteredClient:
        """RFC 6749 §2.3.1 client authentication; an unreadable Basic header is invalid_client
        (§5.2), as authlib would otherwise fail on it."""
        if malformed_basic_credentials(request.headers.get("Authorization")):
            raise InvalidClientError(description="The Authorization header cannot be read.")
        client: RegisteredClient = super().authenticate_client(request, methods, endpoint)
        return client

    def query_client(self, client_id: str) -> RegisteredClient | None:
        row = self.resolve().clients.for_authentication(client_id)
        return RegisteredClient(row) if row is not None else None

    def _generate_token(
        self,
        grant_type: str,
        client: RegisteredClient | str,
        user: Any = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        return self.resolve().tokens.issue(
            client if isinstance(client, str) else client.get_client_id(),
            user,
            scope or "",
            grant_type=grant_type,
            include_refresh_token=include_refresh_token,
        )

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Everything was added to the session while generating: record the grant, commit."""
        self._record_grant(
            token, request.client.get_client_id(), request.user, request.payload.grant_type
        )

    def _record_grant(
        self, token: dict[str, Any], client_id: str, principal: Principal | None, grant_type: str
    ) -> None:
        """The grant's ``oauth:token:grant`` event, written with the token's rows and committed.
        A client-credentials grant on PostgreSQL left its rows pending instead: they are
        written here with the event in one statement (``TokenService.write_grant``)."""
        s = self.resolve()
        event = self._grant_event(client_id, principal, grant_type, token.get("scope", ""))
        if s.tokens.pending_grant is not None:
            s.tokens.write_grant(event)
            count_event(event["action"], event["details"])  # committed: count it
            return
        insert_event(s.db, event)  # Core, not an ORM object: one grant, one cheap INSERT
        s.db.commit()

    def _grant_event(
        self, client_id: str, principal: Principal | None, grant_type: str, scope: str
    ) -> dict[str, Any]:
        return event_values(
            EventTag.TOKEN_GRANTED,
            user_id=principal.user.id if principal else None,
            product=client_id,
            actor=self.resolve().actor,
            session_id=principal.session_id if principal else None,
            details={"grant_type": grant_type, "scope": scope},
        )

    def grant_client_credentials(
        self, client_id: str, authorization: str | None, scope: str
    ) -> Response | None:
        """RFC 6749 §4.4.2-4.4.3 for a request :func:`plain_client_credentials_request`
        accepted, from a confidential client authenticating with client_secret_basic: the same
        token, event and response (200, JSON, ``Cache-Control: no-store``,
        ``Pragma: no-cache``) as authlib's ClientCredentialsGrant, without building its
        request, grant and ORM client. None when the client did not authenticate so: the
        caller lets authlib answer (every refusal and its error stay authlib's) on the client's
        row, already read with the current kid (``TokenService.prefetch_grant``).

        On PostgreSQL the client's secret is checked and the grant written in one round trip
        (``TokenService.grant_authenticated``); elsewhere, or when that wrote nothing, the
        client's row is read with the current kid and the secret compared here.

        Why: client-credentials grants are the provider's hottest write; authlib's machinery
        around the grant and the separate read of the client were about a third of its CPU."""
        s = self.resolve()
        grant_type = ClientCredentialsGrant.GRANT_TYPE
        secret = basic_secret(client_id, authorization)
        token = None
        if secret is not None:
            event = self._grant_event(client_id, None, grant_type, scope)
            token = s.tokens.grant_authenticated(client_id, secret, scope, event)
            if token is not None:
                count_event(event["action"], event["details"])  # committed: count it
        if token is None:
            # The client's row and the current kid, read together (authlib uses them too).
            s.tokens.prefetch_grant(client_id, s.clients)
            if (
                secret is None
                or not s.clients.authenticates_by_basic(client_id, authorization)
                or not s.clients.allows_scope(client_id, scope)
            ):
                return None
            token = self._generate_token(
                grant_type, client_id, None, scope, include_refresh_token=False
            )
            self._record_grant(token, client_id, None, grant_type)
        response: Response = self.handle_response(200, token, default_json_headers)
        return response

    def handle_error_response(self, request: Any, error: OAuth2Error) -> Any:
        # RFC 6749 §5.2: invalid_client is 401 with a WWW-Authenticate challenge.
        if error.error == "invalid_client":
            error.status_code = 401
        response = super().handle_error_response(request, error)
        if error.error == "invalid_client" and "WWW-Authenticate" not in response.headers:
            response.headers["WWW-Authenticate"] = 'Basic realm="idp", error="invalid_client"'
        self.resolve().db.rollback()
        return response
