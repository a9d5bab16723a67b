"""Entra-shaped errors: the token endpoint's JSON, the authorize endpoint's redirect parameters
and error page, and Microsoft Graph's ``{"error": {...}}`` envelope.

The AADSTS numbers and wording follow Microsoft's "Microsoft Entra authentication and
authorization error codes" reference; Entra itself warns that wording changes over time, so
callers must react to ``error`` only.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Response


def entra_timestamp(now: dt.datetime | None = None) -> str:
    """Entra's format: ``2016-01-09 02:02:12Z``."""
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M:%SZ")


@dataclass(eq=False)
class EntraError(Exception):
    """One AADSTS failure. ``status`` is the HTTP status the token endpoint would answer with."""

    error: str
    code: int
    message: str
    status: int = 400
    trace_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    correlation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    timestamp: str = field(default_factory=entra_timestamp)

    def __str__(self) -> str:
        return self.description

    @property
    def description(self) -> str:
        return (
            f"AADSTS{self.code}: {self.message}\r\nTrace ID: {self.trace_id}"
            f"\r\nCorrelation ID: {self.correlation_id}\r\nTimestamp: {self.timestamp}"
        )

    def body(self, error_uri_base: str) -> dict[str, Any]:
        return {
            "error": self.error,
            "error_description": self.description,
            "error_codes": [self.code],
            "timestamp": self.timestamp,
            "trace_id": self.trace_id,
            "correlation_id": self.correlation_id,
            "error_uri": f"{error_uri_base}/error?code={self.code}",
        }

    def json_response(self, error_uri_base: str) -> Response:
        return Response(
            json.dumps(self.body(error_uri_base)),
            status=self.status,
            content_type="application/json; charset=utf-8",
            headers=NO_STORE,
        )

    def error_page(self) -> Response:
        """The HTML page Entra shows when it cannot trust the redirect URI (no redirect)."""
        text = html.escape(self.description).replace("\r\n", "<br>")
        page = (
            "<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body>"
            "<div id=\"error\"><h1>Sorry, but we're having trouble signing you in.</h1>"
            f"<p id=\"aadsts\">{text}</p>"
            f"<p>Request Id: {self.trace_id}<br>Correlation Id: {self.correlation_id}"
            f"<br>Timestamp: {html.escape(self.timestamp)}</p></div></body></html>"
        )
        return Response(page, status=self.status, content_type="text/html; charset=utf-8",
                        headers=NO_STORE)


NO_STORE = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}


# --- the token endpoint (400 unless client authentication failed: 401) ----------------------

def missing_parameter(name: str) -> EntraError:
    return EntraError("invalid_request", 900144,
                      f"The request body must contain the following parameter: '{name}'.")


def tenant_not_found(tenant: str) -> EntraError:
    return EntraError(
        "invalid_tenant", 90002,
        f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
        "signing into the correct cloud. Check with your subscription administrator, this may "
        "happen if there are no active subscriptions for the tenant.",
    )


def not_multi_tenant(client_id: str) -> EntraError:
    return EntraError(
        "invalid_request", 50194,
        f"Application '{client_id}' is not configured as a multi-tenant application. Usage of "
        "the /common endpoint is not supported for such applications. Use a tenant-specific "
        "endpoint or configure the application to be multi-tenant.",
    )


def application_not_found(client_id: str, tenant: str) -> EntraError:
    return EntraError(
        "unauthorized_client", 700016,
        f"Application with identifier '{client_id}' was not found in the directory '{tenant}'. "
        "This can happen if the application has not been installed by the administrator of "
        "the tenant or consented to by any user in the tenant. You may have sent your "
        "authentication request to the wrong tenant.",
    )


def credentials_missing() -> EntraError:
    return EntraError("invalid_client", 7000218,
                      "The request body must contain the following parameter: "
                      "'client_assertion' or 'client_secret'.", status=401)


def invalid_client_secret(client_id: str) -> EntraError:
    return EntraError(
        "invalid_client", 7000215,
        "Invalid client secret provided. Ensure the secret being sent in the request is the "
        f"client secret value, not the client secret ID, for a secret added to app "
        f"'{client_id}'.",
        status=401,
    )


def assertion_malformed(reason: str) -> EntraError:
    return EntraError("invalid_client", 50027, f"JWT token is invalid or malformed. {reason}",
                      status=401)


def assertion_key_not_registered(client_id: str, thumbprint: str) -> EntraError:
    return EntraError(
        "invalid_client", 700027,
        "The certificate with identifier used to sign the client assertion is not registered "
        f"on application. [Reason - The key was not found., Thumbprint of key used by client: "
        f"'{thumbprint}', Please visit the Azure Portal, Graph Explorer or directly use MS "
        f"Graph to see configured keys for app Id '{client_id}'.]",
        status=401,
    )


def assertion_bad_signature() -> EntraError:
    return EntraError("invalid_client", 700027,
                      "Client assertion failed signature validation.", status=401)


def assertion_audience(aud: object, expected: str) -> EntraError:
    return EntraError(
        "invalid_client", 700212,
        f"The audience '{aud}' of the client assertion is not valid. Expected '{expected}'.",
        status=401,
    )


def assertion_subject_mismatch() -> EntraError:
    return EntraError("invalid_client", 50048,
                      "Subject mismatches Issuer claim in the client assertion.", status=401)


def assertion_issuer(client_id: str) -> EntraError:
    return EntraError(
        "invalid_client", 700021,
        f"Client assertion application identifier doesn't match 'client_id' parameter "
        f"'{client_id}'.",
        status=401,
    )


def assertion_time(now: int, nbf: object, exp: object) -> EntraError:
    return EntraError(
        "invalid_client", 700024,
        f"Client assertion is not within its valid time range. Current time: {now}, "
        f"assertion valid from {nbf}, expiry time of assertion {exp}.",
        status=401,
    )


def unsupported_assertion_type(value: str) -> EntraError:
    return EntraError("invalid_request", 9002313,
                      f"Invalid request. Request is malformed or invalid. Unsupported "
                      f"client_assertion_type '{value}'.")


def unsupported_grant_type(value: str) -> EntraError:
    return EntraError("unsupported_grant_type", 70003,
                      f"The app requested an unsupported grant type '{value}'.")


def code_malformed() -> EntraError:
    return EntraError("invalid_grant", 9002313,
                      "Invalid request. Request is malformed or invalid.")


def code_redeemed() -> EntraError:
    return EntraError("invalid_grant", 54005,
                      "OAuth2 Authorization code was already redeemed, please retry with a new "
                      "valid code or use an existing refresh token.")


def code_expired() -> EntraError:
    return EntraError("invalid_grant", 70008,
                      "The provided authorization code or refresh token has expired due to "
                      "inactivity. Send a new interactive authorization request for this user "
                      "and resource.")


def code_other_client() -> EntraError:
    return EntraError("invalid_grant", 70000,
                      "The provided value for the 'code' parameter is not valid.")


def code_other_tenant() -> EntraError:
    return EntraError("invalid_grant", 700005,
                      "Provided Authorization Code is intended to use against other tenant, "
                      "thus rejected.")


def reply_address_mismatch(given: str, original: str) -> EntraError:
    return EntraError("invalid_grant", 500112,
                      f"The reply address '{given}' does not match the reply address "
                      f"'{original}' provided when requesting Authorization code.")


def pkce_missing_verifier() -> EntraError:
    return EntraError("invalid_grant", 50148,
                      "The code_verifier does not match the code_challenge supplied in the "
                      "authorization request for PKCE.")


def pkce_mismatch() -> EntraError:
    return EntraError("invalid_grant", 501481,
                      "The Code_Verifier does not match the code_challenge supplied in the "
                      "authorization request.")


def invalid_scope_default(scope: str) -> EntraError:
    return EntraError("invalid_scope", 1002012,
                      f"The provided value for scope {scope} is not valid. Client credential "
                      "flows must have a scope value with /.default suffixed to the resource "
                      "identifier (application ID URI).")


def resource_not_found(resource: str, tenant: str) -> EntraError:
    return EntraError("invalid_resource", 500011,
                      f"The resource principal named {resource} was not found in the tenant "
                      f"named {tenant}. This can happen if the application has not been "
                      "installed by the administrator of the tenant or consented to by any "
                      "user in the tenant. You might have sent your authentication request to "
                      "the wrong tenant.")


def method_not_allowed(method: str) -> EntraError:
    return EntraError("invalid_request", 900561,
                      f"The endpoint only accepts POST, OPTIONS requests. Received a {method} "
                      "request.")


# --- the authorize endpoint -------------------------------------------------------------------

def redirect_uri_mismatch(redirect_uri: str, client_id: str) -> EntraError:
    return EntraError(
        "invalid_request", 50011,
        f"The redirect URI '{redirect_uri}' specified in the request does not match the "
        f"redirect URIs configured for the application '{client_id}'. Make sure the redirect "
        "URI sent in the request matches one added to your application in the Azure portal. "
        "Navigate to https://aka.ms/redirectUriMismatchError to learn more about how to fix "
        "this.",
    )


def no_reply_address() -> EntraError:
    return EntraError("invalid_request", 900971, "No reply address provided.")


def post_logout_uri_mismatch(uri: str, client_id: str) -> EntraError:
    return EntraError(
        "invalid_request", 50011,
        f"The post logout redirect URI '{uri}' specified in the request does not match the "
        f"redirect URIs configured for the application '{client_id}'.",
    )


def unsupported_response_type(value: str) -> EntraError:
    if "id_token" in value.split() or "token" in value.split():
        return EntraError("unsupported_response_type", 700054,
                          "response_type 'id_token' is not enabled for the application.")
    return EntraError("unsupported_response_type", 70005,
                      f"The provided value for the input parameter 'response_type' is not "
                      f"allowed for this request. Expected value is 'code'. Received '{value}'.")


def unsupported_response_mode(value: str) -> EntraError:
    return EntraError("invalid_request", 70007,
                      f"The provided value for the input parameter 'response_mode' is not "
                      f"valid: '{value}'.")


def invalid_code_challenge_method(value: str) -> EntraError:
    return EntraError("invalid_request", 501491,
                      f"Invalid size or method of code_challenge parameter "
                      f"(code_challenge_method '{value}').")


def invalid_code_challenge_size() -> EntraError:
    return EntraError("invalid_request", 501491, "Invalid size of Code_Challenge parameter.")


def user_not_in_tenant(login: str, tenant: str) -> EntraError:
    return EntraError(
        "invalid_request", 50034,
        f"The user account {login} does not exist in the '{tenant}' directory. To sign into "
        "this application, the account must be added to the directory.",
    )


# Descriptions for ``FakeEntra.next_error`` when the test gives none.
AUTHORIZE_ERROR_DEFAULTS: dict[str, tuple[int, str]] = {
    "access_denied": (65004, "User declined to consent to access the app."),
    "interaction_required": (
        50076,
        "Due to a configuration change made by your administrator, or because you moved to a "
        "new location, you must use multi-factor authentication to access the application.",
    ),
    "login_required": (50058, "A silent sign-in request was sent but no user is signed in."),
    "consent_required": (65001, "The user or administrator has not consented to use the "
                                "application. Send an interactive authorization request for "
                                "this user and resource."),
    "invalid_request": (90014, "The required field is missing from the request."),
    "unauthorized_client": (700016, "Application was not found in the directory."),
    "server_error": (50000, "There was an error issuing a token or an issue with our sign-in "
                            "service."),
    "temporarily_unavailable": (90033, "A transient error has occurred. Please try again."),
    "invalid_resource": (500011, "The resource principal was not found in the tenant."),
}


# --- Microsoft Graph --------------------------------------------------------------------------

def graph_error(status: int, code: str, message: str,
                client_request_id: str | None = None) -> Response:
    request_id = str(uuid.uuid4())
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": client_request_id or request_id,
            },
        }
    }
    headers = {"request-id": request_id, "client-request-id": client_request_id or request_id}
    if status == 401:
        headers["WWW-Authenticate"] = (
            'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
            'oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"'
        )
    return Response(json.dumps(body), status=status,
                    content_type="application/json; charset=utf-8", headers=headers)
