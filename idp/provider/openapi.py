"""The OpenAPI 3.1 description of idp's protocol and operational endpoints, served at
``/openapi.json``.

It is hand-maintained: each operation below is written from the specification it implements
(RFC 6749 §3-§6, RFC 6750 §2-§3, RFC 7009 §2, RFC 7517 §5, RFC 7662 §2, OIDC Core §3.1.2 and
§5.3, OIDC Discovery 1.0 §3, OIDC RP-Initiated Logout 1.0 §2). Only the paths are not written
here: the view maps each Flask endpoint name to its URL with ``url_for``, exactly as discovery
does, so the document and discovery cannot name different addresses.

The test suite fuzzes a live idp against this document (tests/fuzz): whatever idp answers must
be documented here, status, media type, headers and body alike.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from idp.provider import cors

VERSION = "1"

# Flask endpoints whose every answer, errors included, is JSON (see idp/flows/errors.py).
JSON_ENDPOINTS = frozenset(
    {
        "oidc.discovery",
        "oidc.jwks",
        "oidc.token",
        "oidc.userinfo",
        "oidc.introspect",
        "oidc.revoke",
        "oidc.openapi",
        "ops.healthz",
        "ops.readyz",
    }
)

# RFC 6749 §5.2: error and error_description are limited to these printable ASCII characters
# (no double quote, no backslash), so they can be carried in a WWW-Authenticate challenge.
_ERROR_CHARS = r"^[\x20\x21\x23-\x5B\x5D-\x7E]*$"

_JSON = "application/json"
_FORM = "application/x-www-form-urlencoded"
_HTML = "text/html"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}, **extra}


def _error(codes: list[str], description: str, **extra: Any) -> dict[str, Any]:
    """An RFC 6749 §5.2 error body whose ``error`` is one of ``codes``."""
    schema = {
        "allOf": [_ref("OAuthError"), {"properties": {"error": {"enum": codes}}}],
    }
    return _json(schema, description, **extra)


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {_HTML: {"schema": {"type": "string"}}}}


def _redirect(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"Location": {"required": True, "schema": {"type": "string", "minLength": 1}}},
    }


_NO_STORE = {
    "Cache-Control": {
        "description": "RFC 6749 §5.1: token responses are never cached.",
        "required": True,
        "schema": {"type": "string", "pattern": "no-store"},
    }
}
_BASIC_CHALLENGE = {
    "WWW-Authenticate": {
        "description": "RFC 6749 §5.2 / RFC 7235 §4.1: how to authenticate the client.",
        "required": True,
        "schema": {"type": "string", "pattern": "^Basic "},
    }
}
_BEARER_CHALLENGE = {
    "WWW-Authenticate": {
        "description": "RFC 6750 §3: the Bearer challenge, with error when a token was sent.",
        "required": True,
        "schema": {"type": "string", "pattern": '^Bearer realm="idp"'},
    }
}

_CLIENT_AUTH_FIELDS = {
    "client_id": {
        "type": "string",
        "description": "client_secret_post (RFC 6749 §2.3.1) or a public client (§3.2.1).",
    },
    "client_secret": {"type": "string", "description": "client_secret_post (RFC 6749 §2.3.1)."},
}
_CLIENT_AUTH: list[dict[str, list[str]]] = [{"clientSecretBasic": []}, {}]

# The form of introspection (RFC 7662 §2.1) and revocation (RFC 7009 §2.1) requests.
_TOKEN_FORM: dict[str, Any] = {
    "required": True,
    "content": {
        _FORM: {
            "schema": {
                "type": "object",
                "required": ["token"],
                "properties": {
                    "token": {"type": "string"},
                    "token_type_hint": {"type": "string"},
                    **_CLIENT_AUTH_FIELDS,
                },
            }
        }
    },
}


def _token_request(grant_type: str, required: list[str], **fields: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["grant_type", *required],
        "properties": {"grant_type": {"const": grant_type}, **fields, **_CLIENT_AUTH_FIELDS},
    }


_SCHEMAS: dict[str, Any] = {
    "OAuthError": {
        "description": "RFC 6749 §5.2 error response.",
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string", "minLength": 1, "pattern": _ERROR_CHARS},
            "error_description": {"type": "string", "pattern": _ERROR_CHARS},
            "error_uri": {"type": "string"},
        },
        "additionalProperties": False,
    },
    "ProviderMetadata": {
        "description": "OIDC Discovery 1.0 §3 (with RFC 8414 §2 fields).",
        "type": "object",
        "required": [
            "issuer",
            "authorization_endpoint",
            "token_endpoint",
            "userinfo_endpoint",
            "jwks_uri",
            "introspection_endpoint",
            "revocation_endpoint",
            "end_session_endpoint",
            "response_types_supported",
            "subject_types_supported",
            "id_token_signing_alg_values_supported",
        ],
        "properties": {
            "issuer": {"type": "string"},
            "authorization_endpoint": {"type": "string"},
            "token_endpoint": {"type": "string"},
            "userinfo_endpoint": {"type": "string"},
            "jwks_uri": {"type": "string"},
            "introspection_endpoint": {"type": "string"},
            "revocation_endpoint": {"type": "string"},
            "end_session_endpoint": {"type": "string"},
            "response_types_supported": {"type": "array", "items": {"type": "string"}},
            "subject_types_supported": {"type": "array", "items": {"type": "string"}},
            "id_token_signing_alg_values_supported": {
                "type": "array",
                "items": {"type": "string"},
            },
        },
    },
    "JWKS": {
        "description": "RFC 7517 §5: public keys only (no private members).",
        "type": "object",
        "required": ["keys"],
        "properties": {
            "keys": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["kty", "kid", "use", "alg"],
                    "properties": {
                        "kty": {"enum": ["RSA", "EC"]},
                        "kid": {"type": "string"},
                        "use": {"const": "sig"},
                        "alg": {"enum": ["RS256", "ES256"]},
                    },
                    "not": {
                        "anyOf": [
                            {"required": [name]} for name in ("d", "p", "q", "dp", "dq", "qi")
                        ]
                    },
                },
            }
        },
    },
    "TokenResponse": {
        "description": "RFC 6749 §5.1 (with OIDC Core §3.1.3.3 id_token).",
        "type": "object",
        "required": ["access_token", "token_type", "expires_in"],
        "properties": {
            "access_token": {"type": "string", "minLength": 1},
            "token_type": {"const": "Bearer"},
            "expires_in": {"type": "integer", "minimum": 1},
            "refresh_token": {"type": "string", "minLength": 1},
            "id_token": {"type": "string", "minLength": 1},
            "scope": {"type": "string"},
        },
    },
    "Introspection": {
        "description": "RFC 7662 §2.2: only `active` when the token is not active for the caller.",
        "type": "object",
        "required": ["active"],
        "properties": {
            "active": {"type": "boolean"},
            "scope": {"type": "string"},
            "client_id": {"type": "string"},
            "token_type": {"type": "string"},
            "sub": {"type": "string"},
            "aud": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
            "iss": {"type": "string"},
            "exp": {"type": "integer"},
            "iat": {"type": "integer"},
            "jti": {"type": "string"},
            "sid": {"type": "string"},
            "auth_time": {"type": "integer"},
        },
        "if": {"properties": {"active": {"const": False}}},
        "then": {"maxProperties": 1},
    },
    "UserInfo": {
        "description": "OIDC Core §5.3.2: claims of the token's scope.",
        "type": "object",
        "required": ["sub"],
        "properties": {
            "sub": {"type": "string", "minLength": 1},
            "name": {"type": "string"},
            "given_name": {"type": "string"},
            "family_name": {"type": "string"},
            "email": {"type": "string"},
            "email_verified": {"type": "boolean"},
        },
    },
    "BearerError": {
        "description": "RFC 6750 §3.1: empty when no token was sent, else the error.",
        "type": "object",
        "properties": {
            "error": {"enum": ["invalid_request", "invalid_token", "insufficient_scope"]},
            "error_description": {"type": "string", "pattern": _ERROR_CHARS},
        },
        "additionalProperties": False,
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"const": "ok"}},
    },
    "Readiness": {
        "type": "object",
        "required": ["status", "database", "schema", "store"],
        "properties": {
            "status": {"enum": ["ready", "not ready"]},
            "database": {"enum": ["ok", "unreachable"]},
            "schema": {"enum": ["ok", "outdated", "unknown"]},
            "store": {"enum": ["ok", "unreachable"]},
        },
    },
}

_AUTHORIZATION_PARAMETERS = [
    {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
    for name in (
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
        "prompt",
        "max_age",
        "login_hint",
        "domain_hint",
    )
]
_AUTHORIZATION_RESPONSES = {
    "200": _html("A page for the person: the consent question."),
    "302": _redirect(
        "Back to the client's registered redirect URI with `code` or `error`, `state` and "
        "`iss` (RFC 6749 §4.1.2, RFC 9207)."
    ),
    "303": _redirect("To the sign-in page, which returns here afterwards."),
    "400": _html(
        "The error shown to the person, never redirected, when the client or its redirect "
        "URI cannot be trusted (RFC 6749 §4.1.2.1)."
    ),
}
_END_SESSION_PARAMETERS = [
    {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
    for name in ("id_token_hint", "client_id", "post_logout_redirect_uri", "state")
]
_END_SESSION_RESPONSES = {
    "200": _html("Asks the person to confirm signing out (RP-Initiated Logout §6)."),
    "303": _redirect("To the registered post_logout_redirect_uri, or to the sign-in page."),
    "400": _html("The logout request was malformed (e.g. a bad id_token_hint)."),
}


def _userinfo_responses() -> dict[str, Any]:
    return {
        "200": _json(_ref("UserInfo"), "The claims (OIDC Core §5.3.2)."),
        "400": _json(
            _ref("BearerError"),
            "The token was sent more than one way (RFC 6750 §2, §3.1 invalid_request).",
            headers=_BEARER_CHALLENGE,
        ),
        "401": _json(
            _ref("BearerError"),
            "No token, or an invalid, expired or revoked one (RFC 6750 §3.1).",
            headers=_BEARER_CHALLENGE,
        ),
        "403": _json(
            _ref("BearerError"),
            "The token lacks the openid scope (RFC 6750 §3.1 insufficient_scope).",
            headers=_BEARER_CHALLENGE,
        ),
    }


# Flask endpoint name -> OpenAPI path item. The view turns the names into paths.
OPERATIONS: dict[str, dict[str, Any]] = {
    "oidc.discovery": {
        "get": {
            "operationId": "discovery",
            "summary": "OpenID Provider Metadata (OIDC Discovery 1.0 §4).",
            "responses": {"200": _json(_ref("ProviderMetadata"), "The provider metadata.")},
        }
    },
    "oidc.jwks": {
        "get": {
            "operationId": "jwks",
            "summary": "Public signing keys (RFC 7517 §5). Refetch on an unknown `kid`.",
            "responses": {
                "200": {
                    "description": "The key set.",
                    "content": {
                        _JSON: {"schema": _ref("JWKS")},
                    },
                }
            },
        }
    },
    "oidc.authorize": {
        "get": {
            "operationId": "authorize",
            "summary": "Authorization endpoint (RFC 6749 §4.1.1, OIDC Core §3.1.2): a browser "
            "address, not an API.",
            "parameters": _AUTHORIZATION_PARAMETERS,
            "responses": _AUTHORIZATION_RESPONSES,
        },
        "post": {
            "operationId": "authorizePost",
            "summary": "The same request, form-encoded (OIDC Core §3.1.2.1).",
            "requestBody": {
                "required": False,
                "content": {
                    _FORM: {
                        "schema": {
                            "type": "object",
                            "properties": {
                                p["name"]: {"type": "string"} for p in _AUTHORIZATION_PARAMETERS
                            },
                        }
                    }
                },
            },
            "responses": _AUTHORIZATION_RESPONSES,
        },
    },
    "oidc.token": {
        "post": {
            "operationId": "token",
            "summary": "Token endpoint (RFC 6749 §3.2, §4.1.3, §4.4.2, §6).",
            "security": _CLIENT_AUTH,
            "requestBody": {
                "required": True,
                "content": {
                    _FORM: {
                        "schema": {
                            "oneOf": [
                                _token_request(
                                    "authorization_code",
                                    ["code", "redirect_uri"],
                                    code={"type": "string"},
                                    redirect_uri={"type": "string"},
                                    code_verifier={"type": "string"},
                                ),
                                _token_request(
                                    "refresh_token",
                                    ["refresh_token"],
                                    refresh_token={"type": "string"},
                                    scope={"type": "string"},
                                ),
                                _token_request("client_credentials", [], scope={"type": "string"}),
                            ]
                        }
                    }
                },
            },
            "responses": {
                "200": _json(_ref("TokenResponse"), "Tokens (RFC 6749 §5.1).", headers=_NO_STORE),
                "400": _error(
                    [
                        "invalid_request",
                        "invalid_grant",
                        "unauthorized_client",
                        "unsupported_grant_type",
                        "invalid_scope",
                    ],
                    "RFC 6749 §5.2.",
                    headers=_NO_STORE,
                ),
                "401": _error(
                    ["invalid_client"],
                    "Client authentication failed (RFC 6749 §5.2).",
                    headers={**_NO_STORE, **_BASIC_CHALLENGE},
                ),
            },
        }
    },
    "oidc.userinfo": {
        "get": {
            "operationId": "userinfo",
            "summary": "UserInfo (OIDC Core §5.3) with a Bearer token (RFC 6750 §2.1).",
            "security": [{"bearerAccessToken": []}],
            "responses": _userinfo_responses(),
        },
        "post": {
            "operationId": "userinfoPost",
            "summary": "UserInfo with the token in the header or the form body (RFC 6750 §2.2).",
            "security": [{"bearerAccessToken": []}, {}],
            "requestBody": {
                "required": False,
                "content": {
                    _FORM: {
                        "schema": {
                            "type": "object",
                            "properties": {"access_token": {"type": "string"}},
                        }
                    }
                },
            },
            "responses": _userinfo_responses(),
        },
    },
    "oidc.introspect": {
        "post": {
            "operationId": "introspect",
            "summary": "Token introspection (RFC 7662 §2), for the client the token was issued to.",
            "security": _CLIENT_AUTH,
            "requestBody": _TOKEN_FORM,
            "responses": {
                "200": _json(_ref("Introspection"), "RFC 7662 §2.2.", headers=_NO_STORE),
                "400": _error(["invalid_request"], "RFC 7662 §2.3.", headers=_NO_STORE),
                "401": _error(
                    ["invalid_client"],
                    "Client authentication failed (RFC 7662 §2.3).",
                    headers={**_NO_STORE, **_BASIC_CHALLENGE},
                ),
            },
        }
    },
    "oidc.revoke": {
        "post": {
            "operationId": "revoke",
            "summary": "Token revocation (RFC 7009 §2): 200 whether or not the token was valid; "
            "a token issued to another client is refused (§2.1).",
            "security": _CLIENT_AUTH,
            "requestBody": _TOKEN_FORM,
            "responses": {
                "200": {"description": "Revoked, or nothing to revoke (RFC 7009 §2.2)."},
                "400": _error(
                    ["invalid_request", "unsupported_token_type", "invalid_grant"],
                    "RFC 7009 §2.2.1; invalid_grant: the token was issued to another client.",
                    headers=_NO_STORE,
                ),
                "401": _error(
                    ["invalid_client"],
                    "Client authentication failed (RFC 7009 §2.2.1).",
                    headers={**_NO_STORE, **_BASIC_CHALLENGE},
                ),
            },
        }
    },
    "oidc.end_session": {
        "get": {
            "operationId": "endSession",
            "summary": "RP-Initiated Logout (OIDC RP-Initiated Logout 1.0 §2): a browser address.",
            "parameters": _END_SESSION_PARAMETERS,
            "responses": _END_SESSION_RESPONSES,
        },
        "post": {
            "operationId": "endSessionPost",
            "summary": "The same request, form-encoded (RP-Initiated Logout §2); also the "
            "person's confirmation.",
            "requestBody": {
                "required": False,
                "content": {
                    _FORM: {
                        "schema": {
                            "type": "object",
                            "properties": {
                                p["name"]: {"type": "string"} for p in _END_SESSION_PARAMETERS
                            },
                        }
                    }
                },
            },
            "responses": _END_SESSION_RESPONSES,
        },
    },
    "oidc.openapi": {
        "get": {
            "operationId": "openapi",
            "summary": "This document.",
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1.")},
        }
    },
    "ops.healthz": {
        "get": {
            "operationId": "healthz",
            "summary": "Liveness: the process answers.",
            "responses": {"200": _json(_ref("Health"), "Alive.")},
        }
    },
    "ops.readyz": {
        "get": {
            "operationId": "readyz",
            "summary": "Readiness: database and store reachable, database schema up to date.",
            "responses": {
                "200": _json(_ref("Readiness"), "Ready."),
                "503": _json(_ref("Readiness"), "Not ready; names what is unreachable."),
            },
        }
    },
}


def _preflight(name: str, methods: str) -> dict[str, Any]:
    """The CORS preflight of an endpoint a browser-based client calls (Fetch Standard
    §3.2.2, :mod:`idp.provider.cors`): 204 with what may be sent, any origin, no credentials."""
    return {
        "operationId": f"{name}Preflight",
        "summary": "CORS preflight (Fetch Standard §3.2.2); any origin, never credentials.",
        "responses": {
            "204": {
                "description": "Allowed.",
                "headers": {
                    "Access-Control-Allow-Origin": {"schema": {"const": "*"}},
                    "Access-Control-Allow-Methods": {"schema": {"const": methods}},
                    "Access-Control-Allow-Headers": {"schema": {"const": cors.ALLOWED_HEADERS}},
                    "Access-Control-Max-Age": {
                        "schema": {"const": str(cors.MAX_AGE_SECONDS)}
                    },
                },
            }
        },
    }


for _name, (_methods, _exposed) in cors.ENDPOINTS.items():
    OPERATIONS[f"oidc.{_name}"]["options"] = _preflight(_name, _methods)


def openapi_document(issuer: str, paths: Mapping[str, str]) -> dict[str, Any]:
    """The document for ``issuer``; ``paths`` maps each name of :data:`OPERATIONS` to its
    URL path (``url_for``), the same source discovery uses."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "idp protocol endpoints",
            "version": VERSION,
            "description": "OpenID Connect provider, OAuth 2.0 token services and health "
            "probes. Start at the discovery document.",
        },
        "servers": [{"url": issuer}],
        "paths": {paths[name]: copy.deepcopy(item) for name, item in OPERATIONS.items()},
        "components": {
            "schemas": copy.deepcopy(_SCHEMAS),
            "securitySchemes": {
                "clientSecretBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "client_secret_basic (RFC 6749 §2.3.1).",
                },
                "bearerAccessToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An access token (RFC 6750 §2.1, RFC 9068).",
                },
            },
        },
    }
