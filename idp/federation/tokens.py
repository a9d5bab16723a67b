"""Checking an Entra ID v2.0 ID token (OpenID Connect Core 1.0 §3.1.3.7, with Entra's
tenant rules).

Every check has a reason string that is logged, never shown. The token must be RS256 (no other
algorithm is accepted, whatever the header says), signed by a key of the tenant's key set named
by ``kid``, for our client id, issued by exactly ``{authority}/{tid}/v2.0`` for the
connection's tenant, within a two-minute clock skew, echo our nonce, and carry an ``oid``.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError

from idp.federation.entra import EntraDirectory, as_guid
from idp.federation.metadata import TenantMetadata

CLOCK_SKEW = 120


class TokenRejected(Exception):
    """The ID token fails a check; ``str(exc)`` is the reason for the log."""


def _header(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenRejected("not a compact JWS")
    try:
        raw = base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4))
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise TokenRejected("header is not base64url JSON") from None
    if not isinstance(header, dict):
        raise TokenRejected("header is not an object")
    return header


def _same_client(aud: object, client_id: str) -> bool:
    """Whether ``aud`` names our client id (OIDC Core §3.1.3.7 item 3): a single string, the
    same GUID (a connection saved before client ids were kept in lower case may have
    capitals; Entra's ``aud`` has none)."""
    if not isinstance(aud, str):
        return False
    guid = as_guid(client_id)
    return aud == client_id or (guid is not None and as_guid(aud) == guid)


class IdTokenValidator:
    def __init__(
        self,
        metadata: TenantMetadata,
        directory: EntraDirectory,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metadata = metadata
        self.directory = directory
        self.clock = clock

    def validate(self, token: str, *, tenant_id: str, client_id: str, nonce: str) -> dict[str, Any]:
        """The token's claims, or :class:`TokenRejected`."""
        header = _header(token)
        if header.get("alg") != "RS256":
            raise TokenRejected(f"alg {str(header.get('alg'))[:20]!r} is not RS256")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("no kid")
        key = self.metadata.signing_key(tenant_id, kid)
        if key is None:
            raise TokenRejected(f"unknown kid {kid[:64]!r}")
        try:
            claims: dict[str, Any] = dict(jwt.decode(token, key, algorithms=["RS256"]).claims)
        except (JoseError, ValueError) as exc:
            raise TokenRejected(f"signature: {exc.__class__.__name__}") from None
        self._check_claims(claims, tenant_id=tenant_id, client_id=client_id, nonce=nonce)
        return claims

    def _check_claims(
        self, claims: dict[str, Any], *, tenant_id: str, client_id: str, nonce: str
    ) -> None:
        if not _same_client(claims.get("aud"), client_id):
            raise TokenRejected("aud is not our client id")
        if claims.get("iss") != self.directory.issuer(tenant_id):
            raise TokenRejected("iss is not the tenant's issuer")
        if claims.get("tid") != tenant_id:
            raise TokenRejected("tid is not the connection's tenant")
        now = self.clock()
        exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat"))
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise TokenRejected("no exp")
        if now > exp + CLOCK_SKEW:
            raise TokenRejected("expired")
        if nbf is not None and (not isinstance(nbf, int | float) or now < nbf - CLOCK_SKEW):
            raise TokenRejected("not yet valid")
        got = claims.get("nonce")
        if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
            raise TokenRejected("nonce mismatch")
        if as_guid(str(claims.get("oid", ""))) is None:
            raise TokenRejected("no oid")
