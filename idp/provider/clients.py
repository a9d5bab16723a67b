"""Client registration and authentication (RFC 6749 §2, §2.3.1; OIDC Core §3.1.2.1).

Redirect URIs are absolute https URLs, or http on a loopback host (RFC 8252 §7.3), without a
fragment (RFC 6749 §3.1.2), and are compared byte for byte (RFC 9700 §4.1.3). Secrets are 256
random bits, shown once, stored as SHA-256 and compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import string
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from authlib.oauth2.rfc6749 import ClientMixin, scope_to_list
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from sqlalchemy import Connection, Table, bindparam, select
from sqlalchemy.orm import Session

from idp.events import Application, EventTag, record_event
from idp.models import utcnow
from idp.models.clients import DEFAULT_SCOPES, Client
from idp.net import is_loopback

SUPPORTED_SCOPES = ("openid", "profile", "email", "offline_access")
ID_TOKEN_ALGS = ("RS256", "ES256")


class ClientError(ValueError):
    """A client registration request that cannot be carried out; the message says why."""


_ALPHANUMERIC = string.ascii_letters + string.digits
# Unicode categories refused in client names: control characters (tab, newline ...) and line
# and paragraph separators would break one-client-per-line, tab-separated listings.
_LINE_BREAKING = frozenset({"Cc", "Zl", "Zp"})


def new_client_id() -> str:
    """24 random letters and digits (~143 bits): safe in URLs, forms and command lines (a
    leading "-" would read as an option)."""
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(24))


def secret_digest(secret: str) -> str:
    """What is stored of a client secret: its SHA-256, hex (the secret is 256 random bits)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str | None) -> bool:
    """Whether ``secret`` is the client secret whose SHA-256 is stored (constant time)."""
    if stored_hash is None:
        return False
    return hmac.compare_digest(secret_digest(secret), stored_hash)


def validate_redirect_uri(uri: str, label: str = "redirect URI") -> str:
    """``uri`` unchanged if a client may register it, else :class:`ClientError` saying why."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 -- reading it checks the port is a number in range
    except ValueError:  # e.g. "https://[::1" or a port beyond 65535
        raise ClientError(f"{label} is malformed: {uri!r}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ClientError(f"{label} must be an absolute https URL: {uri!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ClientError(f"{label} must use https unless the host is loopback: {uri!r}")
    if parts.fragment or "#" in uri:
        raise ClientError(f"{label} must not contain a fragment: {uri!r}")
    if any(c.isspace() for c in uri) or len(uri) > 2000:
        raise ClientError(f"{label} is malformed: {uri!r}")
    return uri


def scope_allowed(allowed_scopes: str, scope: str | None) -> bool:
    """Whether every scope of ``scope`` is one the client was registered with (RFC 6749 §3.3:
    the server grants a client only what it may have; no scope asks for nothing)."""
    return set(scope_to_list(scope or "")) <= set(scope_to_list(allowed_scopes))


class RegisteredClient(ClientMixin):  # type: ignore[misc]
    """authlib's view of a :class:`Client` row."""

    def __init__(self, row: Client) -> None:
        self.row = row

    @property
    def client_id(self) -> str:
        return self.row.client_id

    def get_client_id(self) -> str:
        return self.row.client_id

    @property
    def client_metadata(self) -> dict[str, list[str]]:
        return {"post_logout_redirect_uris": list(self.row.post_logout_redirect_uris)}

    def get_default_redirect_uri(self) -> str | None:
        # OIDC Core §3.1.2.1: redirect_uri is required; never guess one.
        return None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The requested scope if the client may have all of it, else None (invalid_scope,
        RFC 6749 §4.1.2.1)."""
        if not scope_allowed(self.row.allowed_scopes, scope):
            return None
        return " ".join(dict.fromkeys(scope_to_list(scope or "")))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.row.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secret_matches(client_secret, self.row.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.row.public:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        if grant_type == "client_credentials":
            return not self.row.public
        # Refresh tokens are issued only with the offline_access scope (OIDC Core §11).
        return grant_type in ("authorization_code", "refresh_token")


# Client authentication's lookup, built once: a Core select of the row (see
# ClientService.for_authentication).
CLIENTS = cast(Table, Client.__table__)
_CLIENT_BY_ID = select(CLIENTS).where(Client.__table__.c.client_id == bindparam("client_id"))


@dataclass(frozen=True)
class CreatedClient:
    client: Client
    secret: str | None


class ClientService:
    def __init__(
        self,
        db: Session,
        reader: Callable[[], Connection] | None = None,
        *,
        changed_by: Mapping[str, Any] | None = None,
    ) -> None:
        """``reader`` gives the connection :meth:`for_authentication` reads on (default: the
        session's); requests pass their autocommit one (:func:`idp.runtime.request_reader`).
        ``changed_by``: details naming who registers, changes or deletes clients through this
        service (:func:`idp.events.by_operator` for the ``idp`` command), kept in each event."""
        self.db = db
        self.reader = reader or db.connection
        self.changed_by = dict(changed_by or {})
        # Rows this request already read from the database, as columns (see remember()).
        self._read: dict[str, dict[str, Any] | None] = {}

    def remember(self, client_id: str, columns: dict[str, Any] | None) -> None:
        """A row's columns (or None: no such client) this request has just read from the
        database together with something else (see ``TokenService.prefetch_introspection``):
        the request's client authentication uses them instead of reading the row again.
        Never kept beyond the request."""
        self._read[client_id] = columns

    def authenticates_by_basic(self, client_id: str, authorization: str | None) -> bool:
        """Whether ``authorization`` holds HTTP Basic credentials (RFC 6749 §2.3.1, RFC 7617)
        of ``client_id``, a confidential client whose row this request has already read, with
        its current secret: exactly what authlib's ``client_secret_basic`` accepts for it.

        The hot endpoints (introspection) check this on the row they read with the token's
        status, without building authlib's request and an ORM object. Whenever it says no,
        the caller lets authlib authenticate as usual: every refusal and its error response
        stay authlib's."""
        columns = self._read.get(client_id)
        if not columns or columns["public"]:
            return False
        secret = basic_secret(client_id, authorization)
        return secret is not None and secret_matches(secret, columns["secret_hash"])

    def allows_scope(self, client_id: str, scope: str) -> bool:
        """Whether the client whose row this request has already read (see
        :meth:`authenticates_by_basic`) was registered with every scope of ``scope``."""
        columns = self._read.get(client_id)
        return columns is not None and scope_allowed(columns["allowed_scopes"], scope)

    def get(self, client_id: str) -> Client | None:
        if not client_id or len(client_id) > 64:
            return None
        return self.db.scalar(select(Client).where(Client.client_id == client_id))

    def application_of(self, target: str) -> Application | None:
        """The application a sign-in continues to: ``target`` (the sign-in's same-origin
        ``next``) is this provider's authorization request of a registered client. None for
        anything else (the account's own pages)."""
        parts = urlsplit(target)
        if parts.path != "/authorize":
            return None
        client_id = parse_qs(parts.query).get("client_id", [""])[0]
        client = self.get(client_id)
        return Application(client.client_id, client.name) if client is not None else None

    def for_authentication(self, client_id: str) -> Client | None:
        """The client's current row, read from the database on every call (never cached, so a
        deleted client or a rotated secret takes effect at once on every process), as a
        *transient* :class:`Client` that is not attached to the session.

        Why not :meth:`get`: client authentication runs on every token, introspection and
        revocation request, and the ORM lookup (a transaction, the identity map, loading) was
        about a third of an introspection. One Core select on the request's autocommit reader
        gives the same columns; the row is only read (authlib checks the secret, the methods,
        the grant types and scopes on it) and never flushed."""
        if not client_id or len(client_id) > 64:
            return None
        if client_id in self._read:
            columns = self._read[client_id]
            return Client(**columns) if columns is not None else None
        row = self.reader().execute(_CLIENT_BY_ID, {"client_id": client_id}).one_or_none()
        return Client(**row._mapping) if row is not None else None

    def require(self, client_id: str) -> Client:
        client = self.get(client_id)
        if client is None:
            raise ClientError(f"no client with id {client_id!r}")
        return client

    def _record(self, tag: EventTag, client_id: str, details: dict[str, Any]) -> None:
        """The change's activity-log event, in the change's transaction (product: the client)."""
        record_event(
            self.db,
            tag,
            product=client_id,
            details={**details, **self.changed_by},
        )

    def list_all(self) -> list[Client]:
        return list(self.db.scalars(select(Client).order_by(Client.created_at)))

    def create(
        self,
        name: str,
        redirect_uris: list[str],
        *,
        public: bool = False,
        first_party: bool = False,
        post_logout_redirect_uris: list[str] | None = None,
        backchannel_logout_uri: str | None = None,
        scopes: str = DEFAULT_SCOPES,
        id_token_alg: str = "RS256",
    ) -> CreatedClient:
        name = name.strip()
        if not name or len(name) > 200:
            raise ClientError("client name must be 1 to 200 characters")
        if any(unicodedata.category(c) in _LINE_BREAKING for c in name):
            raise ClientError("client name must not contain control characters or line breaks")
        if not redirect_uris:
            raise ClientError("at least one --redirect-uri is required")
        uris = [validate_redirect_uri(u) for u in redirect_uris]
        logout_uris = [
            validate_redirect_uri(u, "post-logout redirect URI")
            for u in post_logout_redirect_uris or []
        ]
        if backchannel_logout_uri:
            validate_redirect_uri(backchannel_logout_uri, "back-channel logout URI")
        if id_token_alg not in ID_TOKEN_ALGS:
            raise ClientError(f"ID token algorithm must be one of {', '.join(ID_TOKEN_ALGS)}")
        unknown = set(scope_to_list(scopes)) - set(SUPPORTED_SCOPES)
        if unknown:
            raise ClientError(f"unsupported scope {sorted(unknown)[0]!r}")
        secret = None if public else secrets.token_urlsafe(32)
        client = Client(
            client_id=new_client_id(),
            name=name,
            secret_hash=secret_digest(secret) if secret else None,
            public=public,
            first_party=first_party,
            redirect_uris=uris,
            post_logout_redirect_uris=logout_uris,
            backchannel_logout_uri=backchannel_logout_uri or None,
            allowed_scopes=" ".join(scope_to_list(scopes)),
            id_token_alg=id_token_alg,
        )
        self.db.add(client)
        self._record(
            EventTag.CLIENT_CREATED,
            client.client_id,
            {"name": name, "public": public, "first_party": first_party, "redirect_uris": uris},
        )
        self.db.commit()
        return CreatedClient(client=client, secret=secret)

    def rotate_secret(self, client_id: str) -> str:
        """A new secret replaces the old one at once (the old one stops working)."""
        client = self.require(client_id)
        if client.public:
            raise ClientError("a public client has no secret")
        secret = secrets.token_urlsafe(32)
        client.secret_hash = secret_digest(secret)
        client.secret_rotated_at = utcnow()
        self._record(EventTag.CLIENT_SECRET_ROTATED, client.client_id, {"name": client.name})
        self.db.commit()
        return secret

    def delete(self, client_id: str) -> None:
        """Delete a client; its consents and tokens go with it."""
        client = self.require(client_id)
        self.db.delete(client)
        self._record(EventTag.CLIENT_DELETED, client.client_id, {"name": client.name})
        self.db.commit()


def malformed_basic_credentials(authorization: str | None) -> bool:
    """Whether an Authorization header is a Basic one that cannot be read (RFC 7617 §2:
    "Basic" then base64 of UTF-8 "id:secret"), or a scheme without credentials. authlib
    raises ValueError (a 500) on these; they are a failed client authentication."""
    if not authorization or " " not in authorization:
        return False
    parts = authorization.split(None, 1)
    if len(parts) < 2:
        return True
    if parts[0].lower() != "basic":
        return False
    try:
        base64.b64decode(parts[1]).decode("utf-8")
    except binascii.Error:
        return False  # authlib reads bad base64 as "no credentials"
    except ValueError:  # not ASCII, or not UTF-8 once decoded
        return True
    return False


def basic_secret(client_id: str, authorization: str | None) -> str | None:
    """The secret ``authorization`` presents for ``client_id`` with HTTP Basic (RFC 6749
    §2.3.1, read the way authlib reads it), or None: no readable Basic credentials, another
    client id, or an empty secret. Nothing is authenticated here."""
    if malformed_basic_credentials(authorization):
        return None
    presented_id, secret = extract_basic_authorization({"Authorization": authorization})
    if presented_id != client_id or not secret:
        return None
    return str(secret)


def presented_client_id(authorization: str | None, form_client_id: str | None) -> str | None:
    """The client id a token-endpoint-style request presents (client_secret_basic, else
    client_secret_post), read the way authlib reads it; None when there is none or it cannot
    be read. Only a hint for reading the client early: authlib authenticates afterwards."""
    try:
        client_id, _ = extract_basic_authorization({"Authorization": authorization})
    except (TypeError, ValueError):  # authentication will refuse it
        return None
    return client_id or form_client_id or None
