"""OpenID Connect provider endpoints: thin views over authlib and our services.

Discovery (OIDC Discovery 1.0 §3), JWKS (RFC 7517), authorization (RFC 6749 §4.1, OIDC Core
§3.1.2), token (RFC 6749 §5), userinfo (OIDC Core §5.3, RFC 6750), introspection (RFC 7662),
revocation (RFC 7009) and RP-initiated logout (OIDC RP-Initiated Logout 1.0).
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlencode

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749.errors import OAuth2Error
from flask import Blueprint, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from idp.events import EventTag, record_event
from idp.flows.sign_out import signed_out
from idp.models import User
from idp.provider import cors
from idp.provider.authorize import (
    CONSENT,
    LOGIN,
    AuthorizationPolicy,
    current_principal,
    id_token_subject,
    request_object_error,
    request_params,
)
from idp.provider.claims import claims_of, user_claims
from idp.provider.clients import ID_TOKEN_ALGS, presented_client_id
from idp.provider.consent import ConsentService
from idp.provider.openapi import OPERATIONS, openapi_document
from idp.provider.server import SCOPES_SUPPORTED, plain_client_credentials_request
from idp.provider.tokens import NotIssuedToClient
from idp.runtime import request_db, runtime
from idp.security import csrf
from idp.services import (
    authentication_service,
    authorization_server,
    client_info,
    current_session,
    key_service_for,
    provider_services,
    timed_out_session,
)

bp = Blueprint("oidc", __name__)
cors.init_blueprint(bp)

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _url(endpoint: str) -> str:
    return runtime().settings.issuer + url_for(endpoint)


@bp.get("/.well-known/openid-configuration")
def discovery() -> Response:
    """OIDC Discovery 1.0 §3 (plus RFC 8414 fields for introspection and revocation)."""
    issuer = runtime().settings.issuer
    response = jsonify(
        issuer=issuer,
        authorization_endpoint=_url("oidc.authorize"),
        token_endpoint=_url("oidc.token"),
        userinfo_endpoint=_url("oidc.userinfo"),
        jwks_uri=_url("oidc.jwks"),
        introspection_endpoint=_url("oidc.introspect"),
        revocation_endpoint=_url("oidc.revoke"),
        end_session_endpoint=_url("oidc.end_session"),
        scopes_supported=SCOPES_SUPPORTED,
        response_types_supported=["code"],
        response_modes_supported=["query"],
        grant_types_supported=["authorization_code", "refresh_token", "client_credentials"],
        subject_types_supported=["public"],
        id_token_signing_alg_values_supported=list(ID_TOKEN_ALGS),
        token_endpoint_auth_methods_supported=["client_secret_basic", "client_secret_post", "none"],
        introspection_endpoint_auth_methods_supported=["client_secret_basic", "client_secret_post"],
        revocation_endpoint_auth_methods_supported=[
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        code_challenge_methods_supported=["S256"],
        claims_supported=[
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "amr",
            "sid",
            "at_hash",
            "name",
            "given_name",
            "family_name",
            "picture",
            "org_logo",
            "email",
            "email_verified",
        ],
        prompt_values_supported=["none", "login", "consent", "select_account"],
        authorization_response_iss_parameter_supported=True,
        backchannel_logout_supported=True,
        backchannel_logout_session_supported=True,
        frontchannel_logout_supported=False,
        request_parameter_supported=False,
        request_uri_parameter_supported=False,
        claims_parameter_supported=False,
    )
    response.cache_control.public = True
    response.cache_control.max_age = 3600
    return response


@bp.get("/jwks")
def jwks() -> Response:
    """The public signing keys (RFC 7517 §5); cached briefly so rotations spread quickly."""
    response = jsonify(provider_services().keys.public_jwks())
    response.cache_control.public = True
    response.cache_control.max_age = 300
    return response


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 description of these endpoints (idp/provider/openapi.py)."""
    paths = {name: url_for(name) for name in OPERATIONS}
    response = jsonify(openapi_document(runtime().settings.issuer, paths))
    response.cache_control.public = True
    response.cache_control.max_age = 3600
    return response


# Authorization endpoint ------------------------------------------------------------------


def _authorization_error(error: OAuth2Error) -> ResponseReturnValue:
    """Redirect the error to the client only when its redirect URI was verified; otherwise
    show it here (RFC 6749 §4.1.2.1)."""
    if error.redirect_uri:
        params = [("error", error.error)]
        if error.description:
            params.append(("error_description", error.description))
        if error.state:
            params.append(("state", error.state))
        params.append(("iss", runtime().settings.issuer))
        return redirect(add_params_to_uri(error.redirect_uri, params), 302)
    return render_template(
        "oidc/error.html", error=error.error, description=error.description or ""
    ), 400


def _request_object_first(error: OAuth2Error) -> OAuth2Error:
    """A request carrying ``request``/``request_uri`` may lack what they would have held:
    once its redirect URI is verified, say these are not supported (OIDC Core §3.1.2.6)."""
    if not error.redirect_uri:
        return error
    return request_object_error(request.values, error.redirect_uri, error.state) or error


def _policy() -> AuthorizationPolicy:
    settings = runtime().settings
    hint_subject = id_token_subject(key_service_for(request_db(), settings), settings.issuer)
    return AuthorizationPolicy(ConsentService(request_db()), settings.secret_key, hint_subject)


@bp.route("/authorize", methods=["GET", "POST"])
@csrf.exempt  # an authorization request, not a form of ours: RPs may POST it
def authorize() -> ResponseReturnValue:
    server = authorization_server()
    principal = current_principal(request_db(), current_session())
    try:
        grant = server.get_consent_grant(end_user=principal)
    except OAuth2Error as error:
        return _authorization_error(_request_object_first(error))
    policy = _policy()
    decision = policy.decide(grant, principal, request.values)
    if isinstance(decision, OAuth2Error):
        return _authorization_error(decision)
    if decision == LOGIN:
        args = policy.login_redirect(
            request.values, grant.client.get_client_id(), signed_in=principal is not None
        )
        return redirect(url_for("login.login_form") + "?" + urlencode(args), 303)
    if decision == CONSENT:
        return render_template(
            "oidc/consent.html",
            client=grant.client.row,
            scopes=(grant.request.scope or "").split(),
            params=request_params(request.values),
        )
    return cast(Response, server.create_authorization_response(grant=grant, grant_user=principal))


@bp.post("/authorize/consent")
def consent() -> ResponseReturnValue:
    """The user's answer on the consent page (CSRF-protected like every form of ours)."""
    server = authorization_server()
    principal = current_principal(request_db(), current_session())
    if principal is None:
        return redirect(url_for("login.login_form"), 303)
    try:
        grant = server.get_consent_grant(end_user=principal)
    except OAuth2Error as error:
        return _authorization_error(error)
    if request.form.get("decision") != "allow":
        return cast(Response, server.create_authorization_response(grant=grant, grant_user=None))
    ConsentService(request_db()).grant(
        principal.user.id,
        grant.client.get_client_id(),
        grant.request.scope,
        provider_services().actor,
    )
    return cast(Response, server.create_authorization_response(grant=grant, grant_user=principal))


# Token, introspection, revocation -------------------------------------------------------


@bp.post("/token")
@csrf.exempt
def token() -> ResponseReturnValue:
    """RFC 6749 §5 through authlib; a plain client-credentials grant by client_secret_basic
    (the hot machine-to-machine case) is answered directly, exactly as authlib would answer
    it (see ``grant_client_credentials``)."""
    if request.form.get("grant_type") == "client_credentials":
        authorization = request.headers.get("Authorization")
        client_id = presented_client_id(authorization, request.form.get("client_id"))
        if client_id:
            scope = plain_client_credentials_request(request.args, request.form, request.url)
            if scope is not None:
                granted = authorization_server().grant_client_credentials(
                    client_id, authorization, scope
                )
                if granted is not None:
                    return granted
            else:  # one round trip for the client's row and the current signing kid
                services = provider_services()
                services.tokens.prefetch_grant(client_id, services.clients)
    return cast(Response, authorization_server().create_token_response())


def _authenticated_client(methods: list[str], endpoint: str) -> Any:
    server = authorization_server()
    oauth_request = server.create_oauth2_request(request)
    return server.authenticate_client(oauth_request, methods, endpoint)


def _oauth_error(error: OAuth2Error) -> Response:
    return authorization_server().handle_error_response(None, error)  # type: ignore[no-any-return]


@bp.post("/introspect")
@csrf.exempt
def introspect() -> ResponseReturnValue:
    """RFC 7662: live status of a token, for the client it was issued to."""
    value = request.form.get("token", "")
    authorization = request.headers.get("Authorization")
    client_id = presented_client_id(authorization, request.form.get("client_id"))
    if value and client_id:  # one round trip for the client's row and the token's status
        services = provider_services()
        services.tokens.prefetch_introspection(value, client_id, services.clients)
        if services.clients.authenticates_by_basic(client_id, authorization):
            return jsonify(services.tokens.introspect(value, client_id))
    try:
        client = _authenticated_client(
            ["client_secret_basic", "client_secret_post"], "introspection"
        )
    except OAuth2Error as error:
        return _oauth_error(error)
    if not value:
        return jsonify(error="invalid_request", error_description="Missing 'token'."), 400
    return jsonify(provider_services().tokens.introspect(value, client.get_client_id()))


@bp.post("/revoke")
@csrf.exempt
def revoke() -> ResponseReturnValue:
    """RFC 7009: 200 for an authenticated client, whether or not the token was valid (§2.2),
    but 400 invalid_grant for a token issued to another client (§2.1, as authlib answers)."""
    try:
        client = _authenticated_client(
            ["client_secret_basic", "client_secret_post", "none"], "revocation"
        )
    except OAuth2Error as error:
        return _oauth_error(error)
    value = request.form.get("token", "")
    if not value:
        return jsonify(error="invalid_request", error_description="Missing 'token'."), 400
    services = provider_services()
    try:
        services.tokens.revoke(value, client.get_client_id())
    except NotIssuedToClient:
        services.db.rollback()
        return jsonify(
            error="invalid_grant", error_description="The token was not issued to this client."
        ), 400, NO_STORE
    record_event(
        services.db,
        EventTag.TOKEN_REVOKED,
        product=client.get_client_id(),
        actor=services.actor,
        details={"by": "client"},
    )
    services.db.commit()
    return Response(status=200, headers=NO_STORE)


# Userinfo -------------------------------------------------------------------------------


def _bearer_error(status: int, error: str | None, description: str = "") -> Response:
    challenge = 'Bearer realm="idp"'
    if error:
        challenge += f', error="{error}"'
        if description:
            challenge += f', error_description="{description}"'
    body = {"error": error, "error_description": description} if error else {}
    response = jsonify(body)
    response.status_code = status
    response.headers["WWW-Authenticate"] = challenge
    return response


@bp.route("/userinfo", methods=["GET", "POST"])
@csrf.exempt
def userinfo() -> ResponseReturnValue:
    """OIDC Core §5.3 with RFC 6750 §2.1/§2.2 bearer tokens and §3.1 errors."""
    header = request.headers.get("Authorization", "")
    value = header[7:].strip() if header[:7].lower() == "bearer " else ""
    in_body = request.form.get("access_token", "") if request.method == "POST" else ""
    if value and in_body:
        return _bearer_error(400, "invalid_request", "Send the access token one way only.")
    value = value or in_body
    if not value:
        return _bearer_error(401, None)
    services = provider_services()
    # The token's status and the user's claim values come in one query on the request's
    # autocommit reader (no ORM session, no transaction): userinfo is called in bulk.
    live = services.tokens.live_access_token(value, with_claims=True)
    if live is None or live.user_id is None:
        return _bearer_error(401, "invalid_token", "The access token is invalid or inactive.")
    scope = str(live.claims.get("scope", ""))
    if "openid" not in scope.split():
        return _bearer_error(403, "insufficient_scope", "The openid scope is required.")
    if live.claim_values is not None:
        return jsonify(claims_of(live.claim_values, scope, services.issuer))
    # A token without kid/jti to look up went the general way: read the user on its own.
    user = services.db.get(User, live.user_id)
    if user is None:
        return _bearer_error(401, "invalid_token", "The access token is invalid or inactive.")
    return jsonify(user_claims(user, scope, services.issuer))


# RP-initiated logout --------------------------------------------------------------------


@bp.route("/end-session", methods=["GET", "POST"])
@csrf.exempt
def end_session() -> ResponseReturnValue:
    """OIDC RP-Initiated Logout 1.0 §2-§3. Without a valid id_token_hint the user confirms
    first (§6). A post_logout_redirect_uri is followed only when registered exactly."""
    server = authorization_server()
    try:
        req = server.validate_endpoint_request("end_session")
    except OAuth2Error as error:
        return render_template(
            "oidc/error.html", error=error.error, description=error.description or ""
        ), 400
    active = current_session()
    # A session that timed out still has tokens to end (its sign-out was never asked for).
    stale = timed_out_session() if active is None else None
    browser_sid = active.session_id if active else stale.id if stale else None
    hinted_sid = (req.id_token_claims or {}).get("sid")
    confirmed = request.method == "POST" and csrf.is_valid(request.form.get(csrf.FIELD))
    if (
        browser_sid is not None
        and (req.needs_confirmation or hinted_sid != browser_sid)
        and not confirmed
    ):
        return render_template(
            "oidc/confirm_logout.html", client=req.client, params=request_params(request.values)
        )
    if active is not None:
        authentication_service().sign_out(active.session_id, active.user_id, client_info())
    elif stale is not None:
        authentication_service().sign_out_timed_out(stale, client_info())
    # authlib has already added the request's state to the redirect (RP-Initiated Logout §3).
    return signed_out(browser_sid, req.redirect_uri or None)
