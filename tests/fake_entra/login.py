"""The login service: ``login.microsoftonline.com``'s v2.0 endpoints, tenant-scoped.

Paths are Entra's: ``/{tenant}/v2.0/.well-known/openid-configuration``,
``/{tenant}/oauth2/v2.0/authorize``, ``/{tenant}/oauth2/v2.0/token``,
``/{tenant}/discovery/v2.0/keys``, ``/{tenant}/oauth2/v2.0/logout``; ``{tenant}`` is a tenant
GUID or one of its verified domains.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus, urlencode

from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, request
from werkzeug.wrappers import Response

from tests.fake_entra import errors, jose
from tests.fake_entra.common import install_common
from tests.fake_entra.errors import EntraError
from tests.fake_entra.state import (
    CONSUMERS_TENANT_ID,
    GRAPH_RESOURCES,
    SPECIAL_TENANTS,
    App,
    Logout,
    Tenant,
    User,
)

if TYPE_CHECKING:
    from tests.fake_entra.server import FakeEntra

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLOCK_SKEW = 300  # leeway Entra gives client assertions' exp/nbf
TOKEN_EXPIRES_IN = 3599


def make_login_app(fake: FakeEntra) -> Flask:
    app = Flask("fake_entra_login")
    install_common(app, fake, "login")

    def json_response(body: Mapping[str, Any], status: int = 200) -> Response:
        return Response(json.dumps(body), status=status,
                        content_type="application/json; charset=utf-8", headers=errors.NO_STORE)

    def fail(exc: EntraError) -> Response:
        correlation = request.headers.get("client-request-id")
        if correlation:
            exc.correlation_id = correlation
        return exc.json_response(fake.authority)

    # --- discovery and keys -------------------------------------------------------------------

    @app.get("/<tenant>/v2.0/.well-known/openid-configuration")
    def discovery(tenant: str) -> Response:
        special = tenant.lower() in SPECIAL_TENANTS
        found = None if special else fake.resolve_tenant(tenant)
        if not special and found is None:
            return fail(errors.tenant_not_found(tenant))
        if found is not None:
            segment, issuer_tid = found.tenant_id, found.tenant_id
        else:
            segment = tenant.lower()
            issuer_tid = CONSUMERS_TENANT_ID if segment == "consumers" else "{tenantid}"
        base = f"{fake.authority}/{segment}"
        graph_host = fake.graph_url.split("://", 1)[1]
        return json_response({
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{fake.authority}/{issuer_tid}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{fake.graph_url}/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": [
                "sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
                "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time",
                "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash",
                "c_hash", "email"],
            "kerberos_endpoint": f"{base}/kerberos",
            "tenant_region_scope": "EU" if found is not None else None,
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": graph_host,
            "rbac_url": "https://pas.windows.net",
        })

    @app.get("/<tenant>/discovery/v2.0/keys")
    def keys(tenant: str) -> Response:
        found = fake.resolve_tenant(tenant)
        if found is None and tenant.lower() not in SPECIAL_TENANTS:
            return fail(errors.tenant_not_found(tenant))
        return json_response(fake.jwks(found.tenant_id if found else None))

    # --- authorize ----------------------------------------------------------------------------

    @app.route("/<tenant>/oauth2/v2.0/authorize", methods=["GET", "POST"])
    def authorize(tenant: str) -> Response:
        params = {k: v for k, v in request.values.items()}
        return _authorize(fake, tenant, params)

    @app.post("/<tenant>/login")
    def sign_in_page_submit(tenant: str) -> Response:
        pending = fake.pending_sign_ins.get(request.form.get("ctx", ""))
        if pending is None:
            return EntraError("invalid_request", 90014,
                              "The sign-in session expired. Start again.").error_page()
        tenant_id, params = pending
        login = request.form.get("loginfmt", "")
        user = next((u for u in fake.users_in(tenant_id) if u.matches_login(login)), None)
        if user is None:
            return _sign_in_page(fake, tenant_id, request.form["ctx"], login,
                                 errors.user_not_in_tenant(html.escape(login), tenant_id))
        del fake.pending_sign_ins[request.form["ctx"]]
        app_ = fake.app(params["client_id"])
        return _issue_code(fake, fake.tenant(tenant_id), app_, params, user)

    # --- token --------------------------------------------------------------------------------

    @app.route("/<tenant>/oauth2/v2.0/token", methods=["GET", "POST"])
    def token(tenant: str) -> Response:
        try:
            return json_response(_token(fake, tenant))
        except EntraError as exc:
            return fail(exc)

    # --- logout -------------------------------------------------------------------------------

    @app.route("/<tenant>/oauth2/v2.0/logout", methods=["GET", "POST"])
    def logout(tenant: str) -> Response:
        params = {k: v for k, v in request.values.items()}
        found = fake.resolve_tenant(tenant)
        if found is None:
            return errors.tenant_not_found(tenant).error_page()
        uri = params.get("post_logout_redirect_uri")
        client_id = params.get("client_id") or _aud_of(params.get("id_token_hint"))
        candidates: Iterable[App]
        if client_id:
            one = fake.find_app(found, client_id)
            candidates = [one] if one else []
        else:
            candidates = fake.apps_in(found)
        allowed = uri is not None and any(uri in a.redirect_uris for a in candidates)
        fake.logouts.append(Logout(found.tenant_id, uri, client_id, allowed, params))
        if uri and allowed:
            target = uri
            if params.get("state"):
                target += ("&" if "?" in uri else "?") + urlencode({"state": params["state"]})
            return Response("", status=302, headers={"Location": target})
        return Response(
            "<!DOCTYPE html><html><head><title>Sign out</title></head><body>"
            "<h1>You signed out of your account</h1>"
            "<p>It's a good idea to close all browser windows.</p></body></html>",
            content_type="text/html; charset=utf-8")

    @app.get("/error")
    def error_lookup() -> Response:
        code = html.escape(request.args.get("code", ""))
        return Response(f"<html><body><h1>AADSTS{code}</h1></body></html>",
                        content_type="text/html; charset=utf-8")

    return app


def _aud_of(id_token_hint: str | None) -> str | None:
    if not id_token_hint:
        return None
    try:
        aud = jose.parse(id_token_hint).claims.get("aud")
    except jose.JoseError:
        return None
    return aud if isinstance(aud, str) else None


# --- authorize ------------------------------------------------------------------------------

def _authorize(fake: FakeEntra, segment: str, params: dict[str, str]) -> Response:
    client_id = params.get("client_id", "")
    if segment.lower() in SPECIAL_TENANTS:
        return errors.not_multi_tenant(client_id or "?").error_page()
    tenant = fake.resolve_tenant(segment)
    if tenant is None:
        return errors.tenant_not_found(segment).error_page()
    if not client_id:
        return errors.missing_parameter("client_id").error_page()
    app = fake.find_app(tenant, client_id)
    if app is None:
        return errors.application_not_found(client_id, tenant.tenant_id).error_page()
    redirect_uri = params.get("redirect_uri")
    if redirect_uri is None:
        if not app.redirect_uris:
            return errors.no_reply_address().error_page()
        redirect_uri = params["redirect_uri"] = app.redirect_uris[0]
    if redirect_uri not in app.redirect_uris:
        return errors.redirect_uri_mismatch(redirect_uri, client_id).error_page()
    mode = params.setdefault("response_mode", "query")
    if mode not in ("query", "fragment", "form_post"):
        return errors.unsupported_response_mode(mode).error_page()

    def to_client(exc: EntraError) -> Response:
        return _error_to_client(fake, redirect_uri, mode, params.get("state"), exc)

    response_type = params.get("response_type")
    if not response_type:
        return to_client(errors.missing_parameter("response_type"))
    if response_type.split() != ["code"]:
        return to_client(errors.unsupported_response_type(response_type))
    if not params.get("scope"):
        return to_client(errors.missing_parameter("scope"))
    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method")
    if method is not None and not challenge:
        return to_client(errors.missing_parameter("code_challenge"))
    if challenge is not None:
        if (method or "plain") not in ("S256", "plain"):
            return to_client(errors.invalid_code_challenge_method(method or ""))
        if not 43 <= len(challenge) <= 128:
            return to_client(errors.invalid_code_challenge_size())
    queued = fake.take_next_error()
    if queued is not None:
        return to_client(EntraError(queued.error, queued.code, queued.message))
    user = fake.take_next_login(tenant.tenant_id)
    if user is None and params.get("login_hint"):
        user = next((u for u in fake.users_in(tenant.tenant_id)
                     if u.matches_login(params["login_hint"])), None)
    if user is None:
        if params.get("prompt") == "none":
            code, message = errors.AUTHORIZE_ERROR_DEFAULTS["login_required"]
            return to_client(EntraError("login_required", code, message))
        ctx = secrets.token_urlsafe(24)
        fake.pending_sign_ins[ctx] = (tenant.tenant_id, params)
        return _sign_in_page(fake, tenant.tenant_id, ctx, params.get("login_hint", ""), None)
    return _issue_code(fake, tenant, app, params, user)


def _issue_code(fake: FakeEntra, tenant: Tenant, app: App, params: Mapping[str, str],
                user: User) -> Response:
    sid = str(uuid.uuid4())
    challenge = params.get("code_challenge")
    record = fake.new_code(
        tenant_id=tenant.tenant_id, client_id=app.client_id,
        redirect_uri=params["redirect_uri"], scopes=tuple(params["scope"].split()),
        nonce=params.get("nonce"), code_challenge=challenge,
        code_challenge_method=(params.get("code_challenge_method") or "plain")
        if challenge else None,
        oid=user.oid, sid=sid)
    fields = {"code": record.code}
    if "state" in params:
        fields["state"] = params["state"]
    fields["session_state"] = sid
    return _respond(params["redirect_uri"], params["response_mode"], fields)


def _error_to_client(fake: FakeEntra, redirect_uri: str, mode: str, state: str | None,
                     exc: EntraError) -> Response:
    fields = {"error": exc.error, "error_description": exc.description,
              "error_uri": f"{fake.authority}/error?code={exc.code}"}
    if state is not None:
        fields["state"] = state
    return _respond(redirect_uri, mode, fields)


def _respond(redirect_uri: str, mode: str, fields: Mapping[str, str]) -> Response:
    if mode == "form_post":
        inputs = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}" />'
            for k, v in fields.items())
        page = (
            "<html><head><title>Working...</title></head><body>"
            f'<form method="POST" name="hiddenform" action="{html.escape(redirect_uri)}">'
            f"{inputs}<noscript><p>Script is disabled. Click Submit to continue.</p>"
            '<input type="submit" value="Submit" /></noscript></form>'
            '<script language="javascript">document.forms[0].submit();</script>'
            "</body></html>")
        return Response(page, content_type="text/html; charset=utf-8",
                        headers=errors.NO_STORE)
    separator = "#" if mode == "fragment" else ("&" if "?" in redirect_uri else "?")
    return Response("", status=302,
                    headers={"Location": f"{redirect_uri}{separator}{urlencode(fields)}",
                             **errors.NO_STORE})


def _sign_in_page(fake: FakeEntra, tenant_id: str, ctx: str, login: str,
                  problem: EntraError | None) -> Response:
    error = (f'<div id="usernameError" role="alert">{html.escape(problem.description)}</div>'
             if problem else "")
    page = (
        "<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body>"
        f'<form method="POST" name="f1" action="{fake.authority}/{tenant_id}/login">'
        "<h1>Sign in</h1>"
        f"{error}"
        f'<input type="email" name="loginfmt" id="i0116" value="{html.escape(login)}" '
        'placeholder="Email, phone, or Skype" aria-label="Enter your email, phone, or Skype." />'
        f'<input type="hidden" name="ctx" value="{html.escape(ctx)}" />'
        '<input type="submit" id="idSIButton9" value="Next" /></form></body></html>')
    return Response(page, status=200 if problem is None else 400,
                    content_type="text/html; charset=utf-8", headers=errors.NO_STORE)


# --- token ----------------------------------------------------------------------------------

def _token(fake: FakeEntra, segment: str) -> dict[str, Any]:
    if request.method != "POST":
        raise errors.method_not_allowed(request.method)
    form = request.form
    basic_id = basic_secret = None
    auth = request.headers.get("Authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(auth[6:], validate=True).decode()
            raw_id, raw_secret = decoded.split(":", 1)
        except (ValueError, UnicodeDecodeError) as exc:
            raise errors.code_malformed() from exc
        basic_id, basic_secret = unquote_plus(raw_id), unquote_plus(raw_secret)
    client_id = form.get("client_id") or basic_id
    if segment.lower() in SPECIAL_TENANTS:
        raise errors.not_multi_tenant(client_id or "?")
    tenant = fake.resolve_tenant(segment)
    if tenant is None:
        raise errors.tenant_not_found(segment)
    if not client_id:
        raise errors.missing_parameter("client_id")
    if basic_id is not None and form.get("client_id") and form["client_id"] != basic_id:
        raise EntraError("invalid_request", 9002313,
                         "Invalid request. client_id in the body and in the Authorization "
                         "header differ.")
    app = fake.find_app(tenant, client_id)
    if app is None:
        raise errors.application_not_found(client_id, tenant.tenant_id)
    grant_type = form.get("grant_type")
    if not grant_type:
        raise errors.missing_parameter("grant_type")
    appidacr = _authenticate_client(fake, tenant, segment, app,
                                    form.get("client_secret") or basic_secret)
    if grant_type == "authorization_code":
        return _redeem_code(fake, tenant, app)
    if grant_type == "client_credentials":
        return _client_credentials(fake, tenant, app, appidacr)
    raise errors.unsupported_grant_type(grant_type)


def _authenticate_client(fake: FakeEntra, tenant: Tenant, segment: str, app: App,
                         secret: str | None) -> str:
    """Check the client credential; return ``appidacr`` (1 secret, 2 certificate)."""
    form = request.form
    assertion = form.get("client_assertion")
    if assertion is not None:
        assertion_type = form.get("client_assertion_type")
        if not assertion_type:
            raise errors.missing_parameter("client_assertion_type")
        if assertion_type != ASSERTION_TYPE:
            raise errors.unsupported_assertion_type(assertion_type)
        _verify_assertion(fake, tenant, segment, app, assertion)
        return "2"
    if secret is None:
        raise errors.credentials_missing()
    if not any(hmac.compare_digest(secret.encode(), s.encode()) for s in app.client_secrets):
        raise errors.invalid_client_secret(app.client_id)
    return "1"


def _verify_assertion(fake: FakeEntra, tenant: Tenant, segment: str, app: App,
                      assertion: str) -> None:
    try:
        parsed = jose.parse(assertion)
    except jose.JoseError as exc:
        raise errors.assertion_malformed(str(exc)) from exc
    alg = parsed.header.get("alg")
    if alg not in ("RS256", "PS256"):
        raise errors.assertion_malformed(f"Unsupported signing algorithm '{alg}'.")
    cert, thumbprint = app.certificate_for(parsed.header)
    if not thumbprint:
        raise errors.assertion_malformed("The header has neither 'x5t#S256' nor 'x5t'.")
    if cert is None:
        raise errors.assertion_key_not_registered(app.client_id, thumbprint)
    public_key = cert.public_key()
    try:
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise jose.JoseError("only RSA certificates are simulated")
        jose.verify_rsa(parsed, public_key)
    except jose.JoseError as exc:
        raise errors.assertion_bad_signature() from exc
    claims = parsed.claims
    accepted = {
        f"{fake.authority}/{name}/oauth2/{version}token"
        for name in {tenant.tenant_id, segment, *(d.name for d in tenant.domains)}
        for version in ("v2.0/", "")
    }
    if claims.get("aud") not in accepted:
        raise errors.assertion_audience(claims.get("aud"), fake.token_endpoint(tenant.tenant_id))
    if claims.get("iss") != app.client_id:
        raise errors.assertion_issuer(app.client_id)
    if claims.get("sub") != claims.get("iss"):
        raise errors.assertion_subject_mismatch()
    if not isinstance(claims.get("jti"), str) or not claims["jti"]:
        raise errors.assertion_malformed("The 'jti' claim is missing.")
    now = int(fake.now())
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not isinstance(exp, int | float) or now >= exp + CLOCK_SKEW or (
            nbf is not None and (not isinstance(nbf, int | float) or nbf > now + CLOCK_SKEW)):
        raise errors.assertion_time(now, nbf, exp)


def _redeem_code(fake: FakeEntra, tenant: Tenant, app: App) -> dict[str, Any]:
    form = request.form
    code = form.get("code")
    if not code:
        raise errors.missing_parameter("code")
    record = fake.code(code)
    if record is None:
        raise errors.code_malformed()
    if record.tenant_id != tenant.tenant_id:
        raise errors.code_other_tenant()
    if record.client_id != app.client_id:
        raise errors.code_other_client()
    if record.redeemed:
        raise errors.code_redeemed()
    if fake.now() >= record.expires_at:
        raise errors.code_expired()
    redirect_uri = form.get("redirect_uri")
    if not redirect_uri:
        raise errors.missing_parameter("redirect_uri")
    if redirect_uri != record.redirect_uri:
        raise errors.reply_address_mismatch(redirect_uri, record.redirect_uri)
    if record.code_challenge is not None:
        verifier = form.get("code_verifier")
        if not verifier:
            raise errors.pkce_missing_verifier()
        if record.code_challenge_method == "S256":
            computed = jose.b64url(hashlib.sha256(verifier.encode("ascii", "replace")).digest())
        else:
            computed = verifier
        if not hmac.compare_digest(computed, record.code_challenge):
            raise errors.pkce_mismatch()
    record.redeemed = True
    user = fake.user(record.tenant_id, record.oid)
    granted = {s for s in record.scopes if s != "offline_access"} | {"User.Read"}
    body: dict[str, Any] = {
        "token_type": "Bearer",
        "scope": " ".join(sorted(s if s in ("openid", "profile", "email") or "/" in s
                                 else f"https://graph.microsoft.com/{s}" for s in granted)),
        "expires_in": TOKEN_EXPIRES_IN,
        "ext_expires_in": TOKEN_EXPIRES_IN,
        "access_token": fake.user_access_token(user, app, record.scopes),
    }
    if "openid" in record.scopes:
        body["id_token"] = fake.issue_id_token(
            user, app.client_id, nonce=record.nonce, scopes=record.scopes, sid=record.sid,
            tamper=fake.take_tamper())
    return body


def _client_credentials(fake: FakeEntra, tenant: Tenant, app: App,
                        appidacr: str) -> dict[str, Any]:
    scope = request.form.get("scope")
    if not scope:
        raise errors.missing_parameter("scope")
    scopes = scope.split()
    if len(scopes) != 1 or not scopes[0].endswith("/.default"):
        raise errors.invalid_scope_default(scope)
    resource = scopes[0][: -len("/.default")]
    if resource not in GRAPH_RESOURCES:
        raise errors.resource_not_found(resource, tenant.tenant_id)
    return {
        "token_type": "Bearer",
        "expires_in": TOKEN_EXPIRES_IN,
        "ext_expires_in": TOKEN_EXPIRES_IN,
        "access_token": fake.app_access_token(tenant, app, appidacr),
    }
