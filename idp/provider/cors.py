"""CORS (Fetch Standard §3.2) for the endpoints a browser-based relying service calls itself:
discovery, the JWKS, token, userinfo (OIDC Core §5.3: it SHOULD support CORS) and revocation.

None of them reads a cookie (clients authenticate by their credentials or a bearer token), so
any origin may call them and credentials are never allowed. The authorization, introspection
and end-session endpoints and the account pages are navigations or server-to-server calls,
and get no CORS headers at all.
"""

from __future__ import annotations

from flask import Blueprint, request
from werkzeug.wrappers import Response

MAX_AGE_SECONDS = 3600
ALLOWED_HEADERS = "Authorization, Content-Type"

# Blueprint-relative endpoint name -> (methods, headers the browser may read in the answer).
ENDPOINTS: dict[str, tuple[str, str]] = {
    "discovery": ("GET", ""),
    "jwks": ("GET", ""),
    "token": ("POST", ""),
    "userinfo": ("GET, POST", "WWW-Authenticate"),  # RFC 6750 §3 errors
    "revoke": ("POST", ""),
}


def _rule() -> tuple[str, str] | None:
    endpoint = request.endpoint or ""
    return ENDPOINTS.get(endpoint.rpartition(".")[2]) if "." in endpoint else None


def preflight() -> Response | None:
    """Answer a CORS preflight (an OPTIONS request) for these endpoints: 204, no body."""
    rule = _rule()
    if request.method != "OPTIONS" or rule is None:
        return None
    response = Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = rule[0]
    response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
    response.headers["Access-Control-Max-Age"] = str(MAX_AGE_SECONDS)
    return response


def allow_any_origin(response: Response) -> Response:
    """``Access-Control-Allow-Origin: *`` (never with credentials) on these endpoints."""
    rule = _rule()
    if rule is not None:
        response.headers["Access-Control-Allow-Origin"] = "*"
        if rule[1]:
            response.headers["Access-Control-Expose-Headers"] = rule[1]
    return response


def init_blueprint(bp: Blueprint) -> None:
    bp.before_request(preflight)
    bp.after_request(allow_any_origin)
