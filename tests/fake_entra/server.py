"""``FakeEntra``: a Microsoft Entra ID (v2.0 endpoints) and Microsoft Graph stand-in served over
HTTPS on 127.0.0.1, for tests only.

Two servers share one directory: the login service at ``authority`` (what
``login.microsoftonline.com`` is in production) and Graph at ``graph_url`` (what
``graph.microsoft.com`` is). Both use a certificate from a per-run ``trustme`` CA whose PEM is at
``ca_bundle_path``.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import trustme
from cryptography import x509
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from tests.fake_entra import jose
from tests.fake_entra.errors import AUTHORIZE_ERROR_DEFAULTS
from tests.fake_entra.jose import JsonDict, SigningKey, b64url
from tests.fake_entra.state import (
    CONSUMERS_TENANT_ID,
    GRAPH_APP_ID,
    GRAPH_RESOURCE,
    REMOVE,
    SPECIAL_TENANTS,
    App,
    AuthCode,
    Domain,
    Logout,
    QueuedError,
    RecordedRequest,
    Signing,
    Tamper,
    Tenant,
    User,
)

TOKEN_LIFETIME = 3599


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class _LazyHandshakeContext(ssl.SSLContext):
    """Leaves the TLS handshake to the request thread, so a client that connects and says
    nothing (browsers pre-connect) cannot stall the accept loop."""

    def wrap_socket(self, sock: Any, server_side: bool = False,
                    do_handshake_on_connect: bool = True, *args: Any,
                    **kwargs: Any) -> ssl.SSLSocket:
        return super().wrap_socket(sock, server_side, False, *args, **kwargs)


class FakeEntra:
    """A fake Entra ID + Graph. Use :func:`run_fake_entra` (or ``with FakeEntra() as fake``).

    Configure the directory with :meth:`add_tenant`, :meth:`register_app`, :meth:`add_user`;
    decide who signs in with :meth:`next_login` (or a ``login_hint`` naming a user, or the
    sign-in page); break things with :meth:`next_error`, :meth:`tamper_next_id_token`,
    :meth:`rotate_keys`, :meth:`advance_clock`.
    """

    def __init__(self, *, host: str = "127.0.0.1", url_host: str | None = None,
                 code_lifetime: int = 600, token_lifetime: int = 3600) -> None:
        """``host`` is the address the servers bind; ``url_host`` the name in their URLs
        (``"localhost"`` or ``"127.0.0.1"``, both in the certificate). Serve the app under test
        on the other name to keep the ``form_post`` cross-site, as it is in production."""
        self.host = host
        self.url_host = url_host or host
        self.code_lifetime = code_lifetime
        self.token_lifetime = token_lifetime
        self.lock = threading.RLock()
        self._clock_offset = 0.0
        self._tenants: dict[str, Tenant] = {}
        self._apps: dict[str, App] = {}
        self._users: dict[tuple[str, str], User] = {}
        self._codes: dict[str, AuthCode] = {}
        self._next_login: dict[str, str] = {}
        self._next_error: QueuedError | None = None
        self._tamper: Tamper | None = None
        self._keys: list[SigningKey] = [SigningKey.generate()]
        self._retired_keys: list[SigningKey] = []
        self._pairwise_salt = secrets.token_bytes(16)
        self.pending_sign_ins: dict[str, tuple[str, dict[str, str]]] = {}
        self.request_log: list[RecordedRequest] = []
        self.id_tokens: list[JsonDict] = []
        self.logouts: list[Logout] = []
        self._servers: list[BaseWSGIServer] = []
        self._threads: list[threading.Thread] = []
        self._tmpdir: Path | None = None
        self._authority = ""
        self._graph_url = ""
        self._ca_pem = b""

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> FakeEntra:
        from tests.fake_entra.graph import make_graph_app
        from tests.fake_entra.login import make_login_app

        ca = trustme.CA(organization_name="fake-entra test CA")
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        context = _LazyHandshakeContext(ssl.PROTOCOL_TLS_SERVER)
        leaf.configure_cert(context)
        self._tmpdir = Path(tempfile.mkdtemp(prefix="fake-entra-"))
        self._ca_pem = ca.cert_pem.bytes()
        (self._tmpdir / "ca.pem").write_bytes(self._ca_pem)
        for name, factory in (("login", make_login_app), ("graph", make_graph_app)):
            server = make_server(self.host, 0, factory(self), threaded=True,
                                 request_handler=_QuietHandler, ssl_context=context)
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                      name=f"fake-entra-{name}", daemon=True)
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
            base = f"https://{self.url_host}:{server.server_port}"
            if name == "login":
                self._authority = base
            else:
                self._graph_url = base
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> FakeEntra:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- where it is --------------------------------------------------------------------------

    @property
    def authority(self) -> str:
        """Base URL of the login service, e.g. ``https://127.0.0.1:PORT`` (no tenant)."""
        return self._authority

    @property
    def graph_url(self) -> str:
        """Base URL of Graph, e.g. ``https://127.0.0.1:PORT`` (``/v1.0/...`` goes after it)."""
        return self._graph_url

    @property
    def ca_bundle_path(self) -> str:
        """PEM file holding the test CA that signed both servers' certificate."""
        if self._tmpdir is None:
            raise RuntimeError("FakeEntra is not running")
        return str(self._tmpdir / "ca.pem")

    @property
    def ca_pem(self) -> bytes:
        return self._ca_pem

    def env(self) -> dict[str, str]:
        """Environment for an app under test (``monkeypatch.setenv`` each item)."""
        return {
            "IDP_ENTRA_AUTHORITY": self.authority,
            "IDP_GRAPH_URL": self.graph_url,
            "REQUESTS_CA_BUNDLE": self.ca_bundle_path,
            "SSL_CERT_FILE": self.ca_bundle_path,
        }

    def issuer(self, tenant_id: str) -> str:
        return f"{self.authority}/{tenant_id}/v2.0"

    def discovery_url(self, tenant: str) -> str:
        return f"{self.authority}/{tenant}/v2.0/.well-known/openid-configuration"

    def authorization_endpoint(self, tenant: str) -> str:
        return f"{self.authority}/{tenant}/oauth2/v2.0/authorize"

    def token_endpoint(self, tenant: str) -> str:
        return f"{self.authority}/{tenant}/oauth2/v2.0/token"

    def jwks_uri(self, tenant: str) -> str:
        return f"{self.authority}/{tenant}/discovery/v2.0/keys"

    def end_session_endpoint(self, tenant: str) -> str:
        return f"{self.authority}/{tenant}/oauth2/v2.0/logout"

    # --- clock --------------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        """Move the fake's clock (codes expire, assertions age, new tokens carry later times)."""
        with self.lock:
            self._clock_offset += seconds

    # --- directory ----------------------------------------------------------------------------

    def add_tenant(self, tenant_id: str, verified_domains: Sequence[str],
                   default_domain: str | None = None, *, display_name: str | None = None,
                   initial_domain: str | None = None) -> Tenant:
        """A tenant with its verified domains. Like Entra, a domain is verified in one tenant at
        most, and every tenant also has an initial ``*.onmicrosoft.com`` domain (derived from
        the first domain unless given or already listed)."""
        tenant_id = str(uuid.UUID(tenant_id))
        with self.lock:
            if tenant_id in self._tenants:
                raise ValueError(f"tenant {tenant_id} exists")
            names = list(dict.fromkeys(verified_domains))
            if not names:
                raise ValueError("a tenant needs at least one domain")
            initial = initial_domain or next(
                (n for n in names if n.lower().endswith(".onmicrosoft.com")), None)
            if initial is None:
                initial = self._free_initial_domain(names[0].split(".")[0])
            if initial not in names:
                names.append(initial)
            for name in names:
                owner = self._domain_owner(name)
                if owner is not None:
                    raise ValueError(f"domain {name} is already verified by tenant {owner}")
            default = default_domain or names[0]
            if default not in names:
                raise ValueError(f"default domain {default} is not among the verified domains")
            tenant = Tenant(
                tenant_id=tenant_id,
                display_name=display_name or names[0].split(".")[0].capitalize(),
                domains=[Domain(n, is_default=n == default, is_initial=n == initial)
                         for n in names],
            )
            self._tenants[tenant_id] = tenant
            return tenant

    def add_domain(self, tenant_id: str, name: str, *, default: bool = False) -> None:
        """Verify one more domain in a tenant."""
        with self.lock:
            tenant = self.tenant(tenant_id)
            owner = self._domain_owner(name)
            if owner is not None:
                raise ValueError(f"domain {name} is already verified by tenant {owner}")
            if default:
                for d in tenant.domains:
                    d.is_default = False
            tenant.domains.append(Domain(name, is_default=default))

    def remove_domain(self, tenant_id: str, name: str) -> None:
        with self.lock:
            tenant = self.tenant(tenant_id)
            tenant.domains = [d for d in tenant.domains if d.name.lower() != name.lower()]

    def tenant(self, tenant_id: str) -> Tenant:
        return self._tenants[str(uuid.UUID(tenant_id))]

    def resolve_tenant(self, segment: str) -> Tenant | None:
        """A tenant named by GUID or by any of its verified domains, as Entra resolves paths."""
        try:
            return self._tenants.get(str(uuid.UUID(segment)))
        except ValueError:
            pass
        return next((t for t in self._tenants.values() if t.has_domain(segment)), None)

    def _domain_owner(self, name: str) -> str | None:
        return next((t.tenant_id for t in self._tenants.values() if t.has_domain(name)), None)

    def _free_initial_domain(self, label: str) -> str:
        candidate, n = f"{label}.onmicrosoft.com", 1
        while self._domain_owner(candidate) is not None:
            n += 1
            candidate = f"{label}{n}.onmicrosoft.com"
        return candidate

    def register_app(self, tenant_id: str, client_id: str, client_secret: str | None = None,
                     certificate: str | bytes | x509.Certificate | None = None,
                     redirect_uris: Iterable[str] = (), *, multi_tenant: bool = False,
                     graph_roles: Iterable[str] = ("Organization.Read.All",),
                     front_channel_logout_url: str | None = None,
                     display_name: str | None = None) -> App:
        """An app registration in ``tenant_id``. ``certificate`` is the public X.509
        certificate (PEM) the app signs ``client_assertion`` with; ``graph_roles`` are the
        Graph application permissions an admin consented to. Redirect URIs double as the
        allowed ``post_logout_redirect_uri`` values, as in Entra."""
        with self.lock:
            tenant = self.tenant(tenant_id)
            if client_id in self._apps:
                raise ValueError(f"client {client_id} exists")
            app = App(
                tenant_id=tenant.tenant_id,
                client_id=client_id,
                display_name=display_name or f"app {client_id}",
                service_principal_id=str(uuid.uuid4()),
                redirect_uris=list(redirect_uris),
                multi_tenant=multi_tenant,
                graph_roles=tuple(graph_roles),
                front_channel_logout_url=front_channel_logout_url,
            )
            if client_secret is not None:
                app.client_secrets.append(client_secret)
            if certificate is not None:
                app.certificates.append(_load_certificate(certificate))
            self._apps[client_id] = app
            return app

    def add_client_secret(self, client_id: str, secret: str) -> None:
        with self.lock:
            self._apps[client_id].client_secrets.append(secret)

    def remove_client_secret(self, client_id: str, secret: str) -> None:
        with self.lock:
            self._apps[client_id].client_secrets.remove(secret)

    def add_certificate(self, client_id: str, certificate: str | bytes | x509.Certificate) -> None:
        with self.lock:
            self._apps[client_id].certificates.append(_load_certificate(certificate))

    def app(self, client_id: str) -> App:
        return self._apps[client_id]

    def find_app(self, tenant: Tenant, client_id: str) -> App | None:
        """The app as seen from ``tenant``: its own registrations, or a multi-tenant one.
        Entra reads the client id as a GUID, so its letters' case does not matter."""
        app = self._apps.get(client_id) or next(
            (a for key, a in self._apps.items() if key.lower() == client_id.lower()), None)
        if app is None or (app.tenant_id != tenant.tenant_id and not app.multi_tenant):
            return None
        return app

    def apps_in(self, tenant: Tenant) -> list[App]:
        """Apps usable in ``tenant``: its own and multi-tenant ones."""
        return [a for a in self._apps.values() if self.find_app(tenant, a.client_id)]

    def add_user(self, tenant_id: str, oid: str, email: str | None, preferred_username: str,
                 name: str, email_verified_domain_owner: bool | None = None,
                 guest: bool = False, *, home_tenant_id: str | None = None,
                 idp: str | None = None) -> User:
        """A user object in ``tenant_id``'s directory.

        ``email_verified_domain_owner`` becomes the ``xms_edov`` claim (left out when None).
        ``guest`` marks a B2B guest: the token gets ``acct: 1`` and an ``idp`` claim naming the
        home tenant (``https://sts.windows.net/{home_tenant_id}/`` unless ``idp`` is given).
        """
        with self.lock:
            tenant = self.tenant(tenant_id)
            oid = str(uuid.UUID(oid))
            if (tenant.tenant_id, oid) in self._users:
                raise ValueError(f"user {oid} exists in {tenant.tenant_id}")
            if guest and idp is None:
                home = home_tenant_id or str(uuid.uuid4())
                idp = f"https://sts.windows.net/{home}/"
            user = User(tenant_id=tenant.tenant_id, oid=oid, email=email,
                        preferred_username=preferred_username, name=name,
                        xms_edov=email_verified_domain_owner, guest=guest, idp=idp)
            self._users[(tenant.tenant_id, oid)] = user
            return user

    def user(self, tenant_id: str, oid: str) -> User:
        return self._users[(str(uuid.UUID(tenant_id)), str(uuid.UUID(oid)))]

    def users_in(self, tenant_id: str) -> list[User]:
        return [u for (tid, _), u in self._users.items() if tid == tenant_id]

    # --- sign-in control ----------------------------------------------------------------------

    def next_login(self, tenant_id: str, oid: str) -> None:
        """The next authorize request to ``tenant_id`` signs this user in without a page."""
        with self.lock:
            user = self.user(tenant_id, oid)
            self._next_login[user.tenant_id] = user.oid

    def take_next_login(self, tenant_id: str) -> User | None:
        oid = self._next_login.pop(tenant_id, None)
        return None if oid is None else self._users[(tenant_id, oid)]

    def next_error(self, error: str, description: str | None = None, *,
                   code: int | None = None) -> None:
        """The next authorize request (any tenant) ends with this error, delivered to the
        redirect URI like Entra does (``error``, ``error_description: AADSTSnnn: ...``)."""
        default_code, default_message = AUTHORIZE_ERROR_DEFAULTS.get(
            error, (90014, "The request could not be completed."))
        with self.lock:
            self._next_error = QueuedError(error, code or default_code,
                                           description or default_message)

    def take_next_error(self) -> QueuedError | None:
        queued, self._next_error = self._next_error, None
        return queued

    def tamper_next_id_token(self, *, signing: Signing | None = None,
                             header: Mapping[str, Any] | None = None, **claims: Any) -> None:
        """Forge the next ID token the token endpoint returns.

        ``claims`` override claims (``aud="other"``, ``exp=0``, ``nonce="x"``); the value
        :data:`REMOVE` drops one (``oid=REMOVE``). ``header`` overrides header fields
        (``{"kid": "nope"}``; None or REMOVE drops one). ``signing``: ``"unknown_key"`` (a key
        never published, its own kid), ``"retired_key"`` (the last key dropped by
        :meth:`rotate_keys`), ``"hs256"`` (HMAC keyed with the current RSA public key PEM: alg
        confusion), ``"none"`` (``alg: none``, empty signature), ``"bad_signature"`` (valid
        header and claims, signature of other bytes). The signature is computed with the
        algorithm the mode implies, whatever ``header["alg"]`` then claims.
        """
        with self.lock:
            self._tamper = Tamper(claims=dict(claims), header=dict(header or {}),
                                  signing=signing)

    # --- keys ---------------------------------------------------------------------------------

    @property
    def signing_key(self) -> SigningKey:
        return self._keys[-1]

    @property
    def signing_kid(self) -> str:
        return self.signing_key.kid

    @property
    def published_kids(self) -> list[str]:
        return [k.kid for k in self._keys]

    def rotate_keys(self, *, drop_old: bool = False) -> str:
        """Publish a new signing key and sign with it from now on; ``drop_old`` also removes
        the previous keys from the JWKS. Returns the new kid. (Entra's keys are the same for
        every tenant, so is the fake's.)"""
        with self.lock:
            key = SigningKey.generate()
            if drop_old:
                self._retired_keys.extend(self._keys)
                self._keys = []
            self._keys.append(key)
            return key.kid

    def jwks(self, tenant_id: str | None = None) -> JsonDict:
        issuer = self.issuer(tenant_id) if tenant_id else f"{self.authority}/{{tenantid}}/v2.0"
        return {"keys": [k.jwk(issuer) for k in self._keys]}

    def published_key(self, kid: object) -> SigningKey | None:
        return next((k for k in self._keys if k.kid == kid), None)

    # --- tokens -------------------------------------------------------------------------------

    def sub_for(self, tenant_id: str, oid: str, client_id: str) -> str:
        """The pairwise ``sub``: stable per (tenant, user, app), different across apps."""
        digest = hashlib.sha256(
            self._pairwise_salt + f"{tenant_id}|{oid}|{client_id}".encode()).digest()
        return b64url(b"\0" * 8 + digest[:24])

    def id_token_claims(self, user: User, client_id: str, *, nonce: str | None,
                        scopes: Sequence[str], sid: str) -> JsonDict:
        now = int(self.now())
        claims: JsonDict = {
            "aud": client_id,
            "iss": self.issuer(user.tenant_id),
            "iat": now,
            "nbf": now,
            "exp": now + self.token_lifetime,
            # The optional claim idp's setup asks for; the fake keeps no session, so every
            # sign-in authenticates (a silent one is forged with tamper_next_id_token).
            "auth_time": now,
        }
        if "email" in scopes and user.email:
            claims["email"] = user.email
        if user.guest and user.idp:
            claims["idp"] = user.idp
        if "profile" in scopes:
            claims["name"] = user.name
        if nonce is not None:
            claims["nonce"] = nonce
        if "profile" in scopes:
            claims["oid"] = user.oid
            claims["preferred_username"] = user.preferred_username
        claims["rh"] = f"1.{b64url(secrets.token_bytes(24))}."
        claims["sid"] = sid
        claims["sub"] = self.sub_for(user.tenant_id, user.oid, client_id)
        claims["tid"] = user.tenant_id
        claims["uti"] = b64url(secrets.token_bytes(16))
        claims["ver"] = "2.0"
        if user.guest:
            claims["acct"] = 1
        if user.xms_edov is not None:
            claims["xms_edov"] = user.xms_edov
        return claims

    def sign(self, claims: JsonDict, *, header: Mapping[str, Any] | None = None,
             signing: Signing | None = None, v1: bool = False) -> str:
        """Sign like Entra (RS256, ``kid``; v1.0 access tokens also carry ``x5t``), or forge."""
        key = self.signing_key
        if signing == "unknown_key":
            key = SigningKey.generate()
        elif signing == "retired_key":
            if not self._retired_keys:
                raise ValueError("no retired key: rotate_keys(drop_old=True) first")
            key = self._retired_keys[-1]
        hdr: JsonDict = {"typ": "JWT", "alg": "RS256"}
        if v1:
            hdr["x5t"] = key.kid
        hdr["kid"] = key.kid
        secret: Any = key.private_key
        if signing == "hs256":
            hdr["alg"], secret = "HS256", key.public_pem()
        elif signing == "none":
            hdr["alg"], secret = "none", None
        alg = hdr["alg"]
        for name, value in (header or {}).items():
            if value is None or value is REMOVE:
                hdr.pop(name, None)
            else:
                hdr[name] = value
        token = jose.encode(hdr, claims, secret, alg=alg)
        if signing == "bad_signature":
            other = jose.encode(hdr, {**claims, "forged": True}, secret, alg=alg)
            token = token.rsplit(".", 1)[0] + "." + other.rsplit(".", 1)[1]
        return token

    def issue_id_token(self, user: User, client_id: str, *, nonce: str | None,
                       scopes: Sequence[str], sid: str, tamper: Tamper | None = None) -> str:
        claims = self.id_token_claims(user, client_id, nonce=nonce, scopes=scopes, sid=sid)
        if tamper is not None:
            for name, value in tamper.claims.items():
                if value is REMOVE:
                    claims.pop(name, None)
                else:
                    claims[name] = value
        self.id_tokens.append(claims)
        return self.sign(claims, header=tamper.header if tamper else None,
                         signing=tamper.signing if tamper else None)

    def mint_id_token(self, tenant_id: str, oid: str, client_id: str, *,
                      nonce: str | None = None,
                      scopes: Sequence[str] = ("openid", "profile", "email"),
                      signing: Signing | None = None, header: Mapping[str, Any] | None = None,
                      **claims: Any) -> str:
        """An ID token as the token endpoint would issue it, without the flow (for unit tests
        of a validator). Same overrides as :meth:`tamper_next_id_token`."""
        with self.lock:
            user = self.user(tenant_id, oid)
            return self.issue_id_token(
                user, client_id, nonce=nonce, scopes=scopes, sid=str(uuid.uuid4()),
                tamper=Tamper(claims=dict(claims), header=dict(header or {}), signing=signing))

    def take_tamper(self) -> Tamper | None:
        tamper, self._tamper = self._tamper, None
        return tamper

    def user_access_token(self, user: User, app: App, scopes: Sequence[str]) -> str:
        """A delegated v1.0 access token for Graph (opaque to the client, as in Entra)."""
        now = int(self.now())
        scp = sorted({s for s in scopes if "/" not in s} | {"User.Read"})
        claims: JsonDict = {
            "aud": GRAPH_APP_ID, "iss": f"https://sts.windows.net/{user.tenant_id}/",
            "iat": now, "nbf": now, "exp": now + TOKEN_LIFETIME,
            "app_displayname": app.display_name, "appid": app.client_id, "appidacr": "1",
            "idtyp": "user", "name": user.name, "oid": user.oid, "scp": " ".join(scp),
            "sub": self.sub_for(user.tenant_id, user.oid, GRAPH_APP_ID),
            "tid": user.tenant_id, "unique_name": user.preferred_username,
            "upn": user.preferred_username, "uti": b64url(secrets.token_bytes(16)),
            "ver": "1.0",
        }
        return self.sign(claims, v1=True)

    def app_access_token(self, tenant: Tenant, app: App, appidacr: str) -> str:
        """An app-only v1.0 access token for Graph carrying the consented app roles."""
        now = int(self.now())
        claims: JsonDict = {
            "aud": GRAPH_RESOURCE, "iss": f"https://sts.windows.net/{tenant.tenant_id}/",
            "iat": now, "nbf": now, "exp": now + TOKEN_LIFETIME,
            "app_displayname": app.display_name, "appid": app.client_id, "appidacr": appidacr,
            "idp": f"https://sts.windows.net/{tenant.tenant_id}/", "idtyp": "app",
            "oid": app.service_principal_id, "roles": list(app.graph_roles),
            "sub": app.service_principal_id, "tid": tenant.tenant_id,
            "uti": b64url(secrets.token_bytes(16)), "ver": "1.0",
        }
        return self.sign(claims, v1=True)

    def new_code(self, **fields: Any) -> AuthCode:
        code = "1.A" + b64url(secrets.token_bytes(48))
        record = AuthCode(code=code, expires_at=self.now() + self.code_lifetime, **fields)
        self._codes[code] = record
        return record

    def code(self, code: str) -> AuthCode | None:
        return self._codes.get(code)

    # --- inspection ---------------------------------------------------------------------------

    def count_requests(self, path_suffix: str, method: str = "GET",
                       service: str = "login") -> int:
        """How many requests hit a path ending with ``path_suffix`` (e.g. the JWKS)."""
        return sum(1 for r in self.request_log if r.service == service and r.method == method
                   and r.path.endswith(path_suffix))

    def front_channel_logout_url(self, client_id: str, sid: str) -> str:
        """The URL Entra's sign-out page loads (in an iframe) for an app that registered a
        front-channel logout URL: ``{url}?sid={sid}``."""
        url = self.app(client_id).front_channel_logout_url
        if url is None:
            raise ValueError(f"app {client_id} has no front-channel logout URL")
        return f"{url}{'&' if '?' in url else '?'}sid={sid}"


def _load_certificate(certificate: str | bytes | x509.Certificate) -> x509.Certificate:
    if isinstance(certificate, x509.Certificate):
        return certificate
    data = certificate.encode() if isinstance(certificate, str) else certificate
    return x509.load_pem_x509_certificate(data)


@contextmanager
def run_fake_entra(**kwargs: Any) -> Iterator[FakeEntra]:
    """Start a :class:`FakeEntra` on free ports for the ``with`` block."""
    fake = FakeEntra(**kwargs)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


__all__ = ["CONSUMERS_TENANT_ID", "SPECIAL_TENANTS", "FakeEntra", "run_fake_entra"]
