"""What operators see (issue 9, item 7): /metrics in Prometheus format, protected from the
public; counters that follow what really happened (committed events only, summed over
gunicorn workers); request ids in responses, logs and events; JSON logs; and no secret in
the logs of a full run."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from flask import Flask
from prometheus_client import REGISTRY
from sqlalchemy import select

from idp.events import EventTag, record_event
from idp.models import Event, OutboxItem
from idp.runtime import Runtime
from tests import services
from tests.helpers import PASSWORD, create_user, csrf_token, events, sign_in
from tests.oidc import Browser, RelyingParty, register_client


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- in-process ---------------------------------------------------------------------------

def test_metrics_count_sign_ins_failures_and_requests(app: Flask, runtime: Runtime) -> None:
    create_user(runtime)
    client = app.test_client()
    before = (sample("idp_sign_ins_total", outcome="success"),
              sample("idp_sign_ins_total", outcome="failure"),
              sample("idp_request_duration_seconds_count", endpoint="login.login_submit",
                     method="POST"))
    assert sign_in(client).status_code == 303
    client = app.test_client()
    assert sign_in(client, password="not the password at all").status_code == 200
    assert sample("idp_sign_ins_total", outcome="success") == before[0] + 1
    assert sample("idp_sign_ins_total", outcome="failure") == before[1] + 1
    assert sample("idp_request_duration_seconds_count", endpoint="login.login_submit",
                  method="POST") == before[2] + 2
    text = client.get("/metrics").get_data(as_text=True)
    assert "# TYPE idp_sign_ins_total counter" in text
    assert 'idp_sign_ins_total{outcome="success"}' in text
    assert "idp_request_duration_seconds_bucket" in text


def test_invented_methods_add_no_series(app: Flask) -> None:
    """The method is the client's to choose: each invented one must not become a label value
    (unbounded series, memory and scrape size), whether a route matches or not."""
    client = app.test_client()
    for method in ("BREW", "XY1" + secrets.token_hex(4).upper(), "PROPFIND"):
        client.open("/nowhere", method=method)
        client.open("/login", method=method)
    text = client.get("/metrics").get_data(as_text=True)
    assert "BREW" not in text and "PROPFIND" not in text and 'method="XY1' not in text
    assert 'method="other"' in text


def test_an_event_counts_only_when_its_transaction_commits(runtime: Runtime) -> None:
    before = sample("idp_events_total", action="account:lockout:lock")
    with runtime.session_factory() as db:
        record_event(db, EventTag.ACCOUNT_LOCKED, details={})
        db.rollback()
        assert sample("idp_events_total", action="account:lockout:lock") == before
        record_event(db, EventTag.ACCOUNT_LOCKED, details={})
        db.commit()
    assert sample("idp_events_total", action="account:lockout:lock") == before + 1
    assert sample("idp_lockouts_total") >= 1


def test_database_errors_never_carry_the_statements_values(runtime: Runtime) -> None:
    """A failed statement's message reaches the logs (an unexpected error's traceback), an
    outbox item's last_error and `idp outbox failed`; the values it wrote (here an outbox
    payload with a one-time link) must not be in it."""
    from sqlalchemy.exc import IntegrityError

    link = "https://id.example/unlock/" + secrets.token_urlsafe(32)
    with runtime.session_factory() as db:
        db.add(OutboxItem(kind=None, payload={"context": {"link": link}}))
        with pytest.raises(IntegrityError) as failed:
            db.flush()
    assert "parameters hidden" in str(failed.value)
    assert link.rsplit("/", 1)[1] not in str(failed.value)


def test_metrics_are_not_public(app: Flask, runtime: Runtime) -> None:
    outside = app.test_client()
    outside.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    assert outside.get("/metrics").status_code == 404
    assert app.test_client().get("/metrics").status_code == 200  # loopback


@pytest.mark.parametrize("hops", [1, 2])
def test_a_forwarded_loopback_address_does_not_open_metrics(tmp_path: Path, database_url: str,
                                                             redis_url: str, hops: int) -> None:
    """With IDP_PROXY_HOPS set, a host that reaches a node directly (not through the proxy)
    chooses X-Forwarded-For itself: claiming 127.0.0.1 there must not make it loopback.
    Through a proxy on this machine, the forwarded client still decides."""
    from idp import create_app
    from tests.conftest import empty_tables, make_settings

    app = create_app(make_settings(tmp_path, database_url=database_url, redis_url=redis_url,
                                   proxy_hops=hops))
    rt: Runtime = app.extensions["idp"]
    try:
        direct = app.test_client()
        direct.environ_base["REMOTE_ADDR"] = "10.0.0.99"
        spoofed = ", ".join(["127.0.0.1"] * hops)
        assert direct.get("/metrics", headers={"X-Forwarded-For": spoofed}).status_code == 404
        local_proxy = app.test_client()  # a public client through nginx on this machine
        public = ", ".join(["203.0.113.9"] + ["127.0.0.1"] * (hops - 1))
        assert local_proxy.get("/metrics",
                               headers={"X-Forwarded-For": public}).status_code == 404
        agent = ", ".join(["127.0.0.1"] * hops)  # a node-local agent through that proxy
        assert local_proxy.get("/metrics", headers={"X-Forwarded-For": agent}).status_code == 200
        assert local_proxy.get("/metrics").status_code == 200  # straight from this machine
    finally:
        empty_tables(rt)
        rt.close()


def test_a_metrics_token_lets_a_remote_scraper_in(tmp_path: Path, database_url: str,
                                                  redis_url: str) -> None:
    from idp import create_app
    from tests.conftest import empty_tables, make_settings

    token = secrets.token_urlsafe(32)
    app = create_app(make_settings(tmp_path, database_url=database_url, redis_url=redis_url,
                                   metrics_token=token))
    rt: Runtime = app.extensions["idp"]
    try:
        outside = app.test_client()
        outside.environ_base["REMOTE_ADDR"] = "203.0.113.9"
        def scrape(authorization: str) -> int:
            return outside.get("/metrics", headers={"Authorization": authorization}).status_code

        assert scrape(f"Bearer {token}") == 200
        assert scrape("Bearer " + "x" * 43) == 404
        assert outside.get("/metrics").status_code == 404
    finally:
        empty_tables(rt)
        rt.close()


@pytest.mark.parametrize("proxy_hops", [0, 1])
def test_the_request_id_reaches_the_response_and_the_events(
    tmp_path: Path, database_url: str, redis_url: str, proxy_hops: int
) -> None:
    """Behind a proxy (IDP_PROXY_HOPS), its well-formed X-Request-ID is kept, returned and
    stored with the events; without one, the header is the client's own and is replaced."""
    from idp import create_app
    from tests.conftest import empty_tables, make_settings

    app = create_app(make_settings(tmp_path, database_url=database_url, redis_url=redis_url,
                                   proxy_hops=proxy_hops))
    runtime: Runtime = app.extensions["idp"]
    try:
        create_user(runtime)
        client = app.test_client()
        token = csrf_token(client.get("/login").get_data(as_text=True))
        response = client.post("/login", headers={"X-Request-ID": "lb-7f3a9c2e-0001"},
                               data={"csrf_token": token, "email": "alice@example.com",
                                     "password": PASSWORD})
        [event] = events(runtime, "account:login:success")
        if proxy_hops:
            assert response.headers["X-Request-ID"] == "lb-7f3a9c2e-0001"
            assert event.request_id == "lb-7f3a9c2e-0001"
        else:
            assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
            assert event.request_id == response.headers["X-Request-ID"]
        # a malformed id from outside is replaced, never reflected
        bad = client.get("/healthz", headers={"X-Request-ID": "<script>alert(1)</script>"})
        assert re.fullmatch(r"[0-9a-f]{32}", bad.headers["X-Request-ID"])
        assert client.get("/healthz").headers["X-Request-ID"] != bad.headers["X-Request-ID"]
    finally:
        empty_tables(runtime)
        runtime.store.delete_prefix()
        runtime.close()


# --- a real deployment: gunicorn, two workers, JSON logs -----------------------------------

@dataclass
class Node:
    base: str
    log: Path
    runtime: Runtime


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    services.check_redis()
    name = f"idp_observe_{services.RUN_ID}"
    url = services.create_postgres_database(name)
    port = services.free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    settings = {
        "database_url": url, "redis_url": services.REDIS_URL,
        "redis_prefix": f"idptest:{services.RUN_ID}:observe:",
        "secret_key": secrets.token_urlsafe(48), "data_dir": str(tmp_path / "var"),
        "issuer": f"http://127.0.0.1:{port}", "argon2_memory_kib": "1024",
        "argon2_time_cost": "1", "log_format": "json", "log_level": "DEBUG",
    }
    env = services.idp_env(**settings)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    from idp.settings import load_settings

    runtime = Runtime(load_settings(overrides=settings, environ={}))
    try:
        assert services.run_idp("db", "upgrade", env=env).returncode == 0
        created = services.run_idp("user", "create", "alice@example.com", "--password-stdin",
                                   env=env, stdin=PASSWORD + "\n")
        assert created.returncode == 0, created.stderr
        log = tmp_path / "server.log"
        args = services.gunicorn_args(port, workers=2)
        with services.running_server(args, env, port, log) as base:
            yield Node(base, log, runtime)
    finally:
        runtime.store.delete_prefix()
        runtime.close()
        services.drop_postgres_database(name)


def test_a_full_run_logs_json_with_request_ids_and_never_a_secret(node: Node) -> None:
    rp = RelyingParty(node.base, register_client(node.runtime))
    secrets_seen: list[str] = [PASSWORD, rp.rp.client_secret or ""]
    for _ in range(3):  # spread over both workers
        browser = Browser(node.base)
        tokens, _nonce = rp.sign_in(browser)
        secrets_seen += [tokens["access_token"], tokens["refresh_token"], tokens["id_token"]]
        secrets_seen += [c.value or "" for c in browser.http.cookies]
        assert rp.userinfo(tokens["access_token"]).status_code == 200
        assert rp.introspect(tokens["access_token"]).json()["active"] is True
        refreshed = rp.refresh(tokens["refresh_token"]).json()
        secrets_seen += [refreshed["access_token"], refreshed["refresh_token"]]
        assert rp.revoke(refreshed["refresh_token"]).status_code == 200
    wrong = Browser(node.base)
    page = wrong.http.get(node.base + "/login", timeout=10)
    wrong.sign_in_form(page, "alice@example.com", "a wrong password, typed by mistake")
    secrets_seen.append("a wrong password, typed by mistake")
    granted = requests.post(node.base + "/token", data={"grant_type": "client_credentials"},
                            auth=(rp.rp.client_id, rp.rp.client_secret or ""), timeout=10)
    assert granted.status_code == 200
    secrets_seen.append(granted.json()["access_token"])

    # metrics: summed over the two workers (prometheus-client multiprocess mode)
    scraped = requests.get(node.base + "/metrics", timeout=10).text
    assert re.search(r'^idp_sign_ins_total\{outcome="success"\} 3\.0$', scraped, re.M), scraped
    assert re.search(r'^idp_sign_ins_total\{outcome="failure"\} 1\.0$', scraped, re.M)
    assert re.search(
        r'^idp_token_grants_total\{grant_type="client_credentials"\} 1\.0$', scraped, re.M)
    assert re.search(
        r'^idp_token_grants_total\{grant_type="authorization_code"\} 3\.0$', scraped, re.M)

    # a locked account and its one-time unlock link (a token in the URL path)
    for _ in range(10):
        page = wrong.http.get(node.base + "/login", timeout=10)
        wrong.sign_in_form(page, "alice@example.com", "a wrong password, typed by mistake")
    with node.runtime.session_factory() as db:
        [mail] = db.scalars(select(OutboxItem).where(
            OutboxItem.payload["template"].as_string() == "account_locked")).all()
        unlock_url = str(mail.payload["context"]["unlock_url"])
    assert wrong.http.get(unlock_url, timeout=10).status_code == 200
    secrets_seen.append(unlock_url.rsplit("/", 1)[1])

    text = node.log.read_text()
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(r["logger"] == "idp.access" and r["message"].startswith("GET /unlock/<token> 200")
               for r in records)
    assert len(records) >= 40
    assert {r["logger"].split(".")[0] for r in records} == {"idp"}
    in_requests = [r for r in records if r["request_id"] != "-"]
    assert in_requests and all(re.fullmatch(r"[0-9a-f]{32}", r["request_id"])
                               for r in in_requests)
    with node.runtime.session_factory() as db:
        ids = {e.request_id for e in db.scalars(select(Event))}
    assert len(ids - {""}) >= 7  # each sign-in and grant in its own request
    for value in secrets_seen:
        assert value and len(value) >= 12
        assert value not in text, f"a secret ({value[:6]}…) appears in the logs"
