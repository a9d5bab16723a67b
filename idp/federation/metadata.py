"""Per-tenant Entra ID metadata and signing keys, cached in the store (OpenID Connect
Discovery 1.0 §4; JWKS per RFC 7517).

Keys are looked up by ``kid``. The key set of a tenant is kept for :data:`KEYS_TTL`; a token
naming a ``kid`` that is not in it causes one refetch, at most once per
:data:`REFETCH_INTERVAL` per tenant, so a flood of forged ``kid`` values cannot make idp hammer
Entra, while a real key rotation is picked up without a restart.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import requests
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from idp.federation.entra import EntraDirectory, EntraError
from idp.i18n import N_
from idp.store import Store

log = logging.getLogger("idp.federation")

METADATA_TTL = 24 * 3600
KEYS_TTL = 24 * 3600
REFETCH_INTERVAL = 60


class TenantMetadata:
    def __init__(self, store: Store, directory: EntraDirectory) -> None:
        self.store = store
        self.directory = directory

    def metadata(self, tenant_id: str) -> dict[str, Any]:
        key = self.store.entra_metadata_key(tenant_id)
        cached = self.store.client.get(key)
        if cached is not None:
            data: dict[str, Any] = json.loads(cached)
            return data
        data = self.directory.discovery(tenant_id)
        if data.get("issuer") != self.directory.issuer(tenant_id):
            raise EntraError(
                N_("the metadata of tenant %(tenant)s names another issuer"), tenant=tenant_id
            )
        self.store.client.set(key, json.dumps(data), ex=METADATA_TTL)
        return data

    def endpoint(self, tenant_id: str, name: str) -> str:
        value = self.metadata(tenant_id).get(name)
        if not isinstance(value, str) or not value.startswith("https://"):
            raise EntraError(
                N_("the metadata of tenant %(tenant)s has no https %(name)s"),
                tenant=tenant_id,
                name=name,
            )
        return value

    def _fetch_keys(self, tenant_id: str) -> dict[str, Any]:
        uri = self.endpoint(tenant_id, "jwks_uri")
        try:
            response = requests.get(uri, timeout=self.directory.timeout)
            response.raise_for_status()
            data: dict[str, Any] = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise EntraError(
                N_("cannot read the keys of tenant %(tenant)s: %(error)s"),
                tenant=tenant_id,
                error=exc.__class__.__name__,
            ) from None
        if not isinstance(data.get("keys"), list):
            raise EntraError(N_("the key set of tenant %(tenant)s has no keys"), tenant=tenant_id)
        self.store.client.set(self.store.entra_jwks_key(tenant_id), json.dumps(data), ex=KEYS_TTL)
        return data

    def _cached_keys(self, tenant_id: str) -> dict[str, Any] | None:
        cached = self.store.client.get(self.store.entra_jwks_key(tenant_id))
        if cached is None:
            return None
        data: dict[str, Any] = json.loads(cached)
        return data

    def signing_key(self, tenant_id: str, kid: str) -> RSAKey | None:
        """The tenant's RSA key with this ``kid``, refetching the key set at most once per
        :data:`REFETCH_INTERVAL` when it is unknown."""
        keys = self._cached_keys(tenant_id)
        fresh = keys is None
        if keys is None:
            keys = self._fetch_keys(tenant_id)
        found = _find(keys, kid)
        if (
            found is None
            and not fresh
            and self.store.client.set(
                self.store.entra_jwks_refetch_key(tenant_id), "1", nx=True, ex=REFETCH_INTERVAL
            )
        ):
            log.info("unknown kid for tenant %s: refetching its keys", tenant_id)
            found = _find(self._fetch_keys(tenant_id), kid)
        return found


def _find(keys: dict[str, Any], kid: str) -> RSAKey | None:
    for jwk in keys.get("keys", []):
        if isinstance(jwk, dict) and jwk.get("kid") == kid and jwk.get("kty") == "RSA":
            try:
                return RSAKey.import_key(
                    {k: v for k, v in jwk.items() if k in ("kty", "n", "e", "kid")}
                )
            except (JoseError, ValueError):
                return None
    return None
