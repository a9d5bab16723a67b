"""The hot path of introspection, userinfo, client authentication and client-credentials
grants: single-row ``SELECT``s and the grant's one-statement write on the driver
(``HotSelect``, ``HotWrite``), autocommit connections kept between requests (``ReaderPool``),
remembered signature checks of access tokens and the plain client-credentials grant answered
without authlib's request machinery.

Each is a shortcut around work SQLAlchemy or joserfc would do; these tests pin down that the
answers are the same and that nothing a shortcut skips (type conversion, disconnect handling,
the idle ping, expiry, tampering) is lost."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from joserfc import jwt
from sqlalchemy import exc, func, select, text, update
from werkzeug.test import TestResponse

from idp import db as idp_db
from idp.db import HotSelect, ReaderPool
from idp.events import EventTag
from idp.models import Event
from idp.models.keys import SigningKey
from idp.models.tokens import AccessToken
from idp.provider import tokens as token_module
from idp.provider.clients import ClientService
from idp.provider.keys import KeyService
from idp.provider.server import IdpAuthorizationServer
from idp.provider.tokens import Principal, TokenService
from idp.runtime import Runtime
from tests.helpers import create_user
from tests.oidc import register_client

POSTGRESQL_ONLY = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def _issue(
    rt: Runtime, clock: Callable[[], datetime] | None = None, email: str = "hot@example.com"
) -> str:
    """A user access token issued by the real TokenService (as the code flow would)."""
    user = create_user(rt, email)
    registered = register_client(rt)
    with rt.session_factory() as db:
        keys = KeyService.from_settings(db, rt.settings)
        keys.ensure_keys()
        service = TokenService(db, keys, rt.settings, **({"clock": clock} if clock else {}))
        issued = service.issue(
            registered.client_id,
            Principal(user=user, session_id=None, auth_time=int(time.time())),
            "openid profile email",
            grant_type="authorization_code",
            include_refresh_token=False,
        )
        db.commit()
    token: str = issued["access_token"]
    return token


def _params(rt: Runtime, token: str) -> dict[str, Any]:
    peeked = token_module._peek(token)
    assert peeked is not None
    kid, jti = peeked
    with rt.session_factory() as db:
        cutoff = KeyService.from_settings(db, rt.settings).published_cutoff()
    return {"kid": kid, "jti": jti, "cutoff": cutoff}


def test_a_hot_select_returns_exactly_what_sqlalchemy_returns(runtime: Runtime) -> None:
    token = _issue(runtime)
    params = _params(runtime, token)
    statement = token_module._KEY_LIVE_STATUS_AND_CLAIMS
    with runtime.engine.connect() as conn:
        reader = conn.execution_options(isolation_level="AUTOCOMMIT")
        expected = tuple(reader.execute(statement, params).one())
        got = HotSelect(statement).one(reader, params)
    assert got == expected
    assert [type(v) for v in got] == [type(v) for v in expected]
    assert isinstance(got[1], dict) and got[1]["kid"] == params["kid"]  # the JSON column
    assert got[10] == "hot@example.com" and got[11] is True  # the user's email, verified
    # A row of NULLs (nothing matches) converts as well.
    missing = {**params, "kid": "no-such-kid", "jti": "no-such-jti"}
    with runtime.engine.connect() as conn:
        reader = conn.execution_options(isolation_level="AUTOCOMMIT")
        assert HotSelect(statement).one(reader, missing) == tuple(
            reader.execute(statement, missing).one()
        )


@POSTGRESQL_ONLY
def test_a_hot_select_on_a_dead_connection_fails_like_any_query_and_the_next_one_works(
    runtime: Runtime,
) -> None:
    """PostgreSQL ends the backend under the request (a restart, a failover): the request
    gets SQLAlchemy's OperationalError (a clean 503 in the app), the connection is
    invalidated and never reused, and the next request reads normally."""
    token = _issue(runtime)
    params = _params(runtime, token)
    hot = HotSelect(token_module._KEY_AND_LIVE_STATUS)
    pool = ReaderPool(runtime.engine)
    reader = pool.acquire()
    assert hot.one(reader, params)[0] == "RS256"
    pid = reader.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with runtime.engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        admin.commit()
    with pytest.raises(exc.OperationalError):
        hot.one(reader, params)
    assert reader.invalidated
    pool.release(reader)
    fresh = pool.acquire()
    assert fresh is not reader
    assert hot.one(fresh, params)[0] == "RS256"
    pool.release(fresh)
    pool.close()


def test_the_reader_pool_keeps_connections_in_autocommit_between_requests(
    runtime: Runtime,
) -> None:
    pool = ReaderPool(runtime.engine, size=1)
    first = pool.acquire()
    second = pool.acquire()  # two requests at once: two connections
    assert first is not second
    pool.release(first)
    pool.release(second)  # beyond ``size``: back to the engine's pool
    assert second.closed and not first.closed
    again = pool.acquire()
    assert again is first  # the next request reuses it, already in autocommit
    assert again.get_execution_options()["isolation_level"] == "AUTOCOMMIT"
    pool.release(again)
    pool.close()
    assert first.closed


@POSTGRESQL_ONLY
def test_a_reader_killed_while_idle_is_pinged_and_replaced_without_failing_a_request(
    runtime: Runtime,
) -> None:
    """A kept connection idle for more than a second goes back to the engine's pool as idle
    since its last use, so the pool's checkout ping notices that PostgreSQL closed it."""
    pool = ReaderPool(runtime.engine)
    reader = pool.acquire()
    pid = reader.execute(text("SELECT pg_backend_pid()")).scalar_one()
    pool.release(reader)
    with runtime.engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        admin.commit()
    time.sleep(idp_db.IDLE_PING_SECONDS + 0.1)
    fresh = pool.acquire()
    assert fresh is not reader and reader.closed
    assert fresh.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    pool.release(fresh)
    pool.close()


def test_a_remembered_signature_check_never_outlives_the_tokens_expiry(
    runtime: Runtime,
) -> None:
    now = datetime.now(UTC)
    token = _issue(runtime)
    clock = {"now": now}
    with runtime.session_factory() as db:
        service = TokenService(
            db,
            KeyService.from_settings(db, runtime.settings),
            runtime.settings,
            clock=lambda: clock["now"],
        )
        assert service.live_access_token(token) is not None  # verified, and remembered
        assert token_module._verified.kid_and_jti(token) is not None
        clock["now"] = now + timedelta(minutes=runtime.settings.access_token_minutes, seconds=1)
        assert service.live_access_token(token) is None  # expired, remembered or not


def test_a_token_from_a_node_whose_clock_runs_ahead_is_live_here(runtime: Runtime) -> None:
    """Several nodes: a token issued by one whose clock is a few seconds ahead is introspected
    at once by another; its ``iat`` lies in this node's future, within the clock skew allowed.
    One issued further ahead than that is refused."""
    ahead = _issue(runtime, clock=lambda: datetime.now(UTC) + timedelta(seconds=3))
    with runtime.session_factory() as db:
        service = TokenService(db, KeyService.from_settings(db, runtime.settings), runtime.settings)
        assert service.live_access_token(ahead) is not None
        assert service.live_access_token(ahead, with_claims=True) is not None
    far = _issue(
        runtime, clock=lambda: datetime.now(UTC) + timedelta(minutes=6), email="far@example.com"
    )
    with runtime.session_factory() as db:
        service = TokenService(db, KeyService.from_settings(db, runtime.settings), runtime.settings)
        assert service.live_access_token(far) is None


def test_a_tampered_copy_of_a_remembered_token_is_refused(runtime: Runtime) -> None:
    token = _issue(runtime)
    header, payload, signature = token.split(".")
    with runtime.session_factory() as db:
        service = TokenService(db, KeyService.from_settings(db, runtime.settings), runtime.settings)
        assert service.live_access_token(token) is not None
        claims = token_module._b64url_json(payload)
        forged = json.dumps({**claims, "scope": "openid profile email admin"}).encode()
        forged_payload = base64.urlsafe_b64encode(forged).decode().rstrip("=")
        assert service.live_access_token(f"{header}.{forged_payload}.{signature}") is None
        other_end = "BBBB" if signature.endswith("AAAA") else "AAAA"
        assert service.live_access_token(f"{header}.{payload}.{signature[:-4]}{other_end}") is None
        assert service.live_access_token(token) is not None


def test_the_remembered_checks_are_bounded(runtime: Runtime) -> None:
    remembered = token_module._VerifiedTokens(size=2)
    with runtime.session_factory() as db:
        keys = KeyService.from_settings(db, runtime.settings)
        keys.ensure_keys()
        signing = keys.signing_key("RS256")

    def make(n: int) -> str:
        return jwt.encode(
            {"alg": "RS256", "typ": "at+jwt", "kid": signing.kid}, {"jti": f"t{n}"}, signing
        )

    tokens = [make(n) for n in range(3)]
    for token in tokens:
        remembered(token, signing.kid, signing)
    assert remembered.kid_and_jti(tokens[0]) is None  # the oldest went first
    assert remembered.kid_and_jti(tokens[2]) == (signing.kid, "t2")


# Introspection's client authentication on the row read with the token's status -------------


def _basic(client_id: str, secret: str) -> dict[str, str]:
    pair = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": "Basic " + pair}


def _introspect(
    client: FlaskClient, token: str, headers: dict[str, str], **form: str
) -> TestResponse:
    return client.post("/introspect", data={"token": token, **form}, headers=headers)


def _cc_token(client: FlaskClient, client_id: str, secret: str) -> str:
    response = client.post(
        "/token", data={"grant_type": "client_credentials"}, headers=_basic(client_id, secret)
    )
    assert response.status_code == 200, response.text
    token: str = response.json["access_token"]  # type: ignore[index]
    return token


def test_introspection_authenticates_the_client_exactly_as_before(
    runtime: Runtime, client: FlaskClient
) -> None:
    """The attacks fail the same way whichever path answers: a wrong, rotated or missing
    secret, another client's credentials, a public client, unreadable Basic credentials and a
    deleted client all get 401 invalid_client (or, for another client, an inactive token)."""
    a = register_client(runtime, "A")
    b = register_client(runtime, "B")
    public = register_client(runtime, "Public", public=True)
    assert a.client_secret and b.client_secret
    token = _cc_token(client, a.client_id, a.client_secret)

    ok = _introspect(client, token, _basic(a.client_id, a.client_secret))
    assert ok.status_code == 200 and ok.json is not None
    assert ok.json["active"] is True and ok.json["client_id"] == a.client_id
    assert ok.headers["Cache-Control"] == "no-store"

    def refused(headers: dict[str, str], **form: str) -> None:
        response = _introspect(client, token, headers, **form)
        assert response.status_code == 401, (headers, response.text)
        assert response.json is not None and response.json["error"] == "invalid_client"
        assert "WWW-Authenticate" in response.headers

    refused(_basic(a.client_id, a.client_secret + "x"))
    refused(_basic(a.client_id, ""))
    refused(_basic(a.client_id, b.client_secret))
    refused(_basic(public.client_id, ""))
    refused(_basic(public.client_id, "anything"))
    refused({"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:x").decode()})
    refused({"Authorization": "Basic"})
    # Basic credentials without the id do not borrow the id from the form.
    refused(_basic("", a.client_secret), client_id=a.client_id)
    refused({})
    # Another client's valid credentials learn nothing about A's token (RFC 7662 §4).
    other = _introspect(client, token, _basic(b.client_id, b.client_secret))
    assert other.status_code == 200 and other.json == {"active": False}

    with runtime.session_factory() as db:
        new_secret = ClientService(db).rotate_secret(a.client_id)
    refused(_basic(a.client_id, a.client_secret))  # rotated: the old secret is gone at once
    again = _introspect(client, token, _basic(a.client_id, new_secret))
    assert again.status_code == 200 and again.json is not None and again.json["active"]

    with runtime.session_factory() as db:
        ClientService(db).delete(a.client_id)
    refused(_basic(a.client_id, new_secret))


# A plain client-credentials grant, answered without authlib's request machinery -----------


def _grants(rt: Runtime) -> list[Event]:
    with rt.session_factory() as db:
        return list(
            db.scalars(
                select(Event).where(Event.action == str(EventTag.TOKEN_GRANTED)).order_by(Event.id)
            )
        )


def _header_and_claims(rt: Runtime, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    with rt.session_factory() as db:
        decoded = jwt.decode(token, KeyService.from_settings(db, rt.settings).verification_keyset())
    return dict(decoded.header), dict(decoded.claims)


@pytest.mark.parametrize("scope", ["", "email openid"])
def test_a_plain_client_credentials_grant_is_answered_exactly_as_authlib_answers_it(
    runtime: Runtime, client: FlaskClient, scope: str
) -> None:
    """client_secret_basic (the direct path) and client_secret_post (authlib's grant) give
    the same response headers, the same fields, a token with the same header and claims (but
    its own jti and times) and the same event; both tokens are live."""
    batch = register_client(runtime, "Batch")
    assert batch.client_secret
    form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
    direct = client.post("/token", data=form, headers=_basic(batch.client_id, batch.client_secret))
    through_authlib = client.post(
        "/token",
        data={**form, "client_id": batch.client_id, "client_secret": batch.client_secret},
    )

    assert direct.status_code == through_authlib.status_code == 200, direct.text
    for name in ("Content-Type", "Cache-Control", "Pragma"):
        assert direct.headers[name] == through_authlib.headers[name], name
    assert direct.headers["Cache-Control"] == "no-store"
    ours, theirs = direct.json, through_authlib.json
    assert ours is not None and theirs is not None
    assert set(ours) == set(theirs) == {"token_type", "access_token", "expires_in", "scope"}
    assert {k: ours[k] for k in ("token_type", "expires_in", "scope")} == {
        k: theirs[k] for k in ("token_type", "expires_in", "scope")
    }
    assert ours["scope"] == scope
    our_header, our_claims = _header_and_claims(runtime, ours["access_token"])
    their_header, their_claims = _header_and_claims(runtime, theirs["access_token"])
    assert our_header == their_header
    assert set(our_claims) == set(their_claims)
    varying = {"jti", "iat", "exp"}
    assert {k: v for k, v in our_claims.items() if k not in varying} == {
        k: v for k, v in their_claims.items() if k not in varying
    }
    assert our_claims["sub"] == our_claims["client_id"] == batch.client_id
    assert our_claims["jti"] != their_claims["jti"]

    first, second = _grants(runtime)
    for event in (first, second):
        assert event.product == batch.client_id and event.user_id is None
        assert event.details == {"grant_type": "client_credentials", "scope": scope}
        assert event.ip == first.ip and event.session_id is None
    for token in (ours["access_token"], theirs["access_token"]):
        live = _introspect(client, token, _basic(batch.client_id, batch.client_secret))
        assert live.json is not None and live.json["active"] is True


def test_only_a_plain_grant_by_basic_skips_authlib(
    runtime: Runtime, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every other token request still goes through authlib: another way to authenticate, a
    parameter the direct path does not know, a repeated one, one in the query string, a scope
    the server does not support, a wrong secret."""
    batch = register_client(runtime, "Batch")
    secret = batch.client_secret
    assert secret
    calls: list[str] = []
    original = IdpAuthorizationServer.create_token_response

    def counted(self: IdpAuthorizationServer, request: Any = None) -> Any:
        calls.append("authlib")
        return original(self, request)

    monkeypatch.setattr(IdpAuthorizationServer, "create_token_response", counted)
    basic = _basic(batch.client_id, secret)
    grant = {"grant_type": "client_credentials"}

    assert client.post("/token", data=grant, headers=basic).status_code == 200
    assert client.post("/token", data={**grant, "scope": "email"}, headers=basic).status_code == 200
    # authlib reads a scope split on any whitespace: so does the direct path.
    spaced = client.post("/token", data={**grant, "scope": "openid  email"}, headers=basic)
    assert spaced.status_code == 200 and spaced.json is not None
    assert spaced.json["scope"] == "openid  email"
    assert calls == []

    cases: list[tuple[str, dict[str, Any], dict[str, str], int]] = [
        ("/token", {**grant, "client_id": batch.client_id, "client_secret": secret}, {}, 200),
        ("/token", {**grant, "resource": "https://api.example"}, basic, 200),
        ("/token", {"grant_type": ["client_credentials", "client_credentials"]}, basic, 200),
        ("/token?scope=email", grant, basic, 200),
        ("/token", {**grant, "scope": "email payroll"}, basic, 400),
        ("/token", grant, _basic(batch.client_id, secret + "x"), 401),
    ]
    for path, form, headers, status in cases:
        before = len(calls)
        response = client.post(path, data=form, headers=headers)
        assert response.status_code == status, (path, form, response.text)
        assert len(calls) == before + 1, (path, form)
    # Successes and refusals alike: one event per token, none for a refusal.
    assert len(_grants(runtime)) == 3 + 4


def test_client_credentials_refusals_stay_authlibs_and_write_nothing(
    runtime: Runtime, client: FlaskClient
) -> None:
    batch = register_client(runtime, "Batch")
    other = register_client(runtime, "Other")
    public = register_client(runtime, "Public", public=True)
    limited = register_client(runtime, "Limited", scopes="openid profile")
    assert batch.client_secret and other.client_secret and limited.client_secret
    grant = {"grant_type": "client_credentials"}

    def refused(headers: dict[str, str], status: int, error: str, **form: str) -> None:
        response = client.post("/token", data={**grant, **form}, headers=headers)
        assert response.status_code == status, (headers, form, response.text)
        assert response.json is not None and response.json["error"] == error
        assert "access_token" not in response.json

    refused(_basic(batch.client_id, batch.client_secret + "x"), 401, "invalid_client")
    refused(_basic(batch.client_id, other.client_secret), 401, "invalid_client")
    refused(_basic(batch.client_id, ""), 401, "invalid_client")
    refused(_basic(public.client_id, "anything"), 401, "invalid_client")
    refused(
        {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:x").decode()},
        401,
        "invalid_client",
    )
    refused(_basic("", batch.client_secret), 401, "invalid_client", client_id=batch.client_id)
    refused(_basic(batch.client_id, batch.client_secret), 400, "invalid_scope", scope="payroll")
    refused(_basic(limited.client_id, limited.client_secret), 400, "invalid_scope",
            scope="openid email")
    with runtime.session_factory() as db:
        new_secret = ClientService(db).rotate_secret(batch.client_id)
    refused(_basic(batch.client_id, batch.client_secret), 401, "invalid_client")
    ok = client.post("/token", data=grant, headers=_basic(batch.client_id, new_secret))
    assert ok.status_code == 200
    with runtime.session_factory() as db:
        ClientService(db).delete(batch.client_id)
    refused(_basic(batch.client_id, new_secret), 401, "invalid_client")

    assert len(_grants(runtime)) == 1
    with runtime.session_factory() as db:
        assert db.scalar(select(func.count()).select_from(AccessToken)) == 0  # deleted with it


def _grant_params(client_id: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    family_id = str(uuid.uuid4())
    family = token_module._client_family_row(family_id, client_id, "", now)
    access = {
        "jti": uuid.uuid4().hex,
        "family_id": family_id,
        "expires_at": now + timedelta(minutes=5),
        "revoked_at": None,
    }
    event = {"occurred_at": now, **_grant_event(client_id)}
    return {
        **token_module._prefixed("f_", family),
        **token_module._prefixed("a_", access),
        **token_module._prefixed("e_", event),
    }


# The grants' events (registering a client and rotating its secret record events too).
_GRANT_EVENTS = select(Event).where(Event.action == EventTag.TOKEN_GRANTED).subquery()


def _count(rt: Runtime, table: Any) -> int:
    with rt.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


@POSTGRESQL_ONLY
def test_a_hot_write_commits_on_its_own_only_on_an_autocommit_connection(
    runtime: Runtime,
) -> None:
    """On the autocommit reader the grant's statement is its own transaction; on a connection
    in a transaction it stays in SQLAlchemy's hands (a rollback undoes it); a statement that
    fails writes none of its rows and raises SQLAlchemy's error."""
    batch = register_client(runtime, "Batch")
    hot = token_module._GRANT_IN_ONE_STATEMENT
    with runtime.engine.connect() as conn:
        hot.execute(conn, _grant_params(batch.client_id))
        conn.rollback()
        assert _count(runtime, AccessToken) == _count(runtime, _GRANT_EVENTS) == 0
        hot.execute(conn, _grant_params(batch.client_id))
        conn.commit()  # SQLAlchemy knows of the write: its commit keeps it
    assert _count(runtime, AccessToken) == _count(runtime, _GRANT_EVENTS) == 1

    pool = ReaderPool(runtime.engine)
    reader = pool.acquire()
    params = _grant_params(batch.client_id)
    hot.execute(reader, params)
    assert _count(runtime, AccessToken) == _count(runtime, _GRANT_EVENTS) == 2  # seen elsewhere
    with runtime.engine.connect() as conn:
        stored = conn.execute(
            select(Event.details, Event.occurred_at).where(Event.ip == "127.0.0.1")
        ).all()[-1]
    assert stored.details == params["e_details"] and stored.occurred_at == params["e_occurred_at"]

    again = {**_grant_params(batch.client_id), "f_id": params["f_id"]}  # the family exists
    with pytest.raises(exc.IntegrityError):
        hot.execute(reader, again)
    assert _count(runtime, AccessToken) == _count(runtime, _GRANT_EVENTS) == 2
    assert not reader.invalidated
    hot.execute(reader, _grant_params(batch.client_id))  # the connection still works
    assert _count(runtime, AccessToken) == 3
    pool.release(reader)
    pool.close()


@POSTGRESQL_ONLY
def test_a_hot_write_on_a_dead_connection_fails_like_any_write(runtime: Runtime) -> None:
    batch = register_client(runtime, "Batch")
    pool = ReaderPool(runtime.engine)
    reader = pool.acquire()
    pid = reader.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with runtime.engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        admin.commit()
    with pytest.raises(exc.OperationalError):
        token_module._GRANT_IN_ONE_STATEMENT.execute(reader, _grant_params(batch.client_id))
    assert reader.invalidated
    pool.release(reader)
    assert _count(runtime, AccessToken) == 0
    fresh = pool.acquire()
    token_module._GRANT_IN_ONE_STATEMENT.execute(fresh, _grant_params(batch.client_id))
    assert _count(runtime, AccessToken) == 1
    pool.release(fresh)
    pool.close()


def _service(rt: Runtime, db: Any, reader: Any) -> TokenService:
    return TokenService(
        db,
        KeyService.from_settings(db, rt.settings),
        rt.settings,
        reader=lambda: reader,
        one_statement_grants=rt.engine.dialect.name == "postgresql",
    )


def _grant_event(client_id: str) -> dict[str, Any]:
    return {
        "action": "oauth:token:grant",
        "user_id": None,
        "organization_id": None,
        "product": client_id,
        "ip": "127.0.0.1",
        "device_id": None,
        "session_id": None,
        "details": {"grant_type": "client_credentials", "scope": ""},
        "request_id": "",
    }


@POSTGRESQL_ONLY
def test_a_grant_in_one_round_trip_writes_only_for_the_right_secret_of_a_confidential_client(
    runtime: Runtime,
) -> None:
    """The secret is checked by the statement that writes: a wrong secret, another client's
    secret, a public client, an unknown client or no current key write nothing and return
    None (the request then goes the usual way, which refuses); the right secret writes the
    family, the token and the event and signs with the key current at that moment."""
    batch = register_client(runtime, "Batch")
    other = register_client(runtime, "Other")
    public = register_client(runtime, "Public", public=True)
    assert batch.client_secret and other.client_secret
    with runtime.session_factory() as db, runtime.engine.connect() as conn:
        tokens = _service(runtime, db, conn.execution_options(isolation_level="AUTOCOMMIT"))
        for client_id, secret in [
            (batch.client_id, batch.client_secret + "x"),
            (batch.client_id, other.client_secret),
            (public.client_id, ""),
            (public.client_id, "anything"),
            ("no-such-client", batch.client_secret),
        ]:
            event = _grant_event(client_id)
            assert tokens.grant_authenticated(client_id, secret, "", event) is None
        assert _count(runtime, AccessToken) == _count(runtime, _GRANT_EVENTS) == 0

        granted = tokens.grant_authenticated(
            batch.client_id, batch.client_secret, "", _grant_event(batch.client_id)
        )
        assert granted is not None and set(granted) == {
            "token_type", "access_token", "expires_in", "scope"
        }
        assert _count(runtime, AccessToken) == _count(runtime, _GRANT_EVENTS) == 1
        header, claims = _header_and_claims(runtime, granted["access_token"])
        keys = KeyService.from_settings(db, runtime.settings)
        assert header["kid"] == keys.current_kid("RS256")
        assert claims["sub"] == batch.client_id

        keys.rotate("RS256")
        rotated = tokens.grant_authenticated(
            batch.client_id, batch.client_secret, "", _grant_event(batch.client_id)
        )
        assert rotated is not None
        assert _header_and_claims(runtime, rotated["access_token"])[0]["kid"] == keys.current_kid(
            "RS256"
        ) != header["kid"]

        with runtime.engine.begin() as conn:  # no current key: nothing can be signed
            conn.execute(update(SigningKey).values(retired_at=datetime.now(UTC)))
        none = tokens.grant_authenticated(
            batch.client_id, batch.client_secret, "", _grant_event(batch.client_id)
        )
        assert none is None
        assert _count(runtime, AccessToken) == _count(runtime, _GRANT_EVENTS) == 2


def test_a_plain_grant_reads_the_client_only_where_one_round_trip_cannot_do_it(
    runtime: Runtime, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the right secret needs no separate read of the client; a wrong one falls
    back to reading it (and authlib refuses). On SQLite the client is always read first."""
    batch = register_client(runtime, "Batch")
    assert batch.client_secret
    reads: list[str] = []
    original = TokenService.prefetch_grant

    def counted(self: TokenService, client_id: str, clients: ClientService) -> None:
        reads.append(client_id)
        original(self, client_id, clients)

    monkeypatch.setattr(TokenService, "prefetch_grant", counted)
    grant = {"grant_type": "client_credentials"}
    ok = client.post("/token", data=grant, headers=_basic(batch.client_id, batch.client_secret))
    assert ok.status_code == 200
    one_round_trip = runtime.engine.dialect.name == "postgresql"
    assert reads == ([] if one_round_trip else [batch.client_id])
    reads.clear()
    wrong = client.post(
        "/token", data=grant, headers=_basic(batch.client_id, batch.client_secret + "x")
    )
    assert wrong.status_code == 401 and wrong.json is not None
    assert wrong.json["error"] == "invalid_client"
    assert reads == [batch.client_id]
    assert len(_grants(runtime)) == 1
