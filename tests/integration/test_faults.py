"""The faults operators meet (issue 9, items 3-6), each against real processes: Redis flushed,
restarted or gone; PostgreSQL restarted under load; a node killed with ``kill -9`` during
sign-ins and token grants; a mail worker killed mid-delivery.

Durable truth is in PostgreSQL, Redis holds rebuildable hot state, and every change is one
transaction: so no lock, sign-in or revocation is lost or revived, a request that meets a
missing backend answers 503 (never 500, never half-written), and service resumes by itself.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from idp.models import AccessToken, Event, OutboxItem, TokenFamily, UserSession
from tests import services
from tests.cluster import Cluster, running_cluster
from tests.faults import private_postgres, private_redis, redis_with_sentinel
from tests.helpers import PASSWORD
from tests.integration.test_account_access import FIREFOX_WINDOWS, live_browser, open_account
from tests.mailserver import running_mail_server
from tests.oidc import Browser, RelyingParty, register_client

pytestmark = pytest.mark.integration
WRONG = "not the password, sorry"


def password_sign_in(base: str, email: str, password: str = PASSWORD) -> requests.Response:
    """One browser's sign-in; 303 to the account page when it worked."""
    browser = live_browser(base, FIREFOX_WINDOWS)
    page = browser.http.get(base + "/login", timeout=10)
    return browser.sign_in_form(page, email, password)


def signed_in(browser: Browser) -> bool:
    page = browser.http.get(browser.base + "/account", allow_redirects=False, timeout=10)
    return page.status_code == 200


def scalar(cluster: Cluster, statement: object) -> int:
    with cluster.runtime.session_factory() as db:
        return int(db.scalar(statement) or 0)  # type: ignore[call-overload]


# --- Redis ---------------------------------------------------------------------------------

def test_redis_flushed_or_restarted_loses_nothing_durable(tmp_path: Path) -> None:
    with private_redis() as redis_server, running_cluster(
            tmp_path / "c", nodes=2, redis_url=redis_server.url,
            users=("alice@example.com", "bob@example.com")) as cluster:
        base = cluster.base
        rp = RelyingParty(base, register_client(cluster.runtime))
        alice = live_browser(base, FIREFOX_WINDOWS)
        tokens, _ = rp.sign_in(alice)
        revoked, _ = rp.sign_in(live_browser(base, FIREFOX_WINDOWS))
        assert rp.revoke(revoked["access_token"]).status_code == 200
        for _ in range(10):  # bob's account locks (default threshold 10)
            assert password_sign_in(base, "bob@example.com", WRONG).status_code == 200
        assert password_sign_in(base, "bob@example.com").status_code == 200  # locked

        for fault in ("flush", "restart"):
            if fault == "flush":
                redis_server.flush()
            else:
                redis_server.stop()
                redis_server.start()
            for _ in range(2):  # both nodes
                assert signed_in(alice), f"alice was signed out by a Redis {fault}"
                assert rp.introspect(tokens["access_token"]).json()["active"] is True
                assert rp.introspect(revoked["access_token"]).json() == {"active": False}
                refused = password_sign_in(base, "bob@example.com")
                assert refused.status_code == 200 and "Locked out?" in refused.text
            assert password_sign_in(base, "alice@example.com").status_code == 303


def test_without_redis_sign_in_fails_closed_and_resumes_by_itself(tmp_path: Path) -> None:
    with private_redis() as redis_server, running_cluster(
            tmp_path / "c", nodes=1, redis_url=redis_server.url) as cluster:
        base = cluster.base
        assert password_sign_in(base, "alice@example.com").status_code == 303
        redis_server.stop()
        down = password_sign_in(base, "alice@example.com")
        assert down.status_code == 503
        assert "temporarily unavailable" in down.text and "Traceback" not in down.text
        ready = requests.get(base + "/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["store"] == "unreachable"
        assert requests.get(base + "/healthz", timeout=10).status_code == 200
        redis_server.start()
        assert password_sign_in(base, "alice@example.com").status_code == 303
        assert requests.get(base + "/readyz", timeout=10).status_code == 200


def test_a_sentinel_failover_is_followed_without_restarting_idp(tmp_path: Path) -> None:
    with redis_with_sentinel() as group, running_cluster(
            tmp_path / "c", nodes=1, redis_url=group.url) as cluster:
        base = cluster.base
        alice = live_browser(base, FIREFOX_WINDOWS)
        open_account(alice)
        assert password_sign_in(base, "alice@example.com").status_code == 303
        group.master.stop()  # the master dies; the sentinel promotes the replica
        deadline = time.monotonic() + 30
        while group.current_master_port() != group.replica.port:
            assert time.monotonic() < deadline, "no failover"
            time.sleep(0.2)
        answers = []
        while time.monotonic() < deadline:
            answers.append(password_sign_in(base, "alice@example.com").status_code)
            if answers[-1] == 303:
                break
            time.sleep(0.5)
        assert answers[-1] == 303 and set(answers) <= {303, 503}, answers
        assert signed_in(alice)


# --- PostgreSQL ------------------------------------------------------------------------------

def _hammer(stop: threading.Event, work: Callable[[], int], out: list[int]) -> None:
    while not stop.is_set():
        try:
            out.append(work())
        except requests.RequestException:
            out.append(-1)


def test_a_postgresql_restart_fails_requests_cleanly_and_the_pool_recovers(
        tmp_path: Path) -> None:
    with private_postgres() as pg, running_cluster(
            tmp_path / "c", nodes=1, workers=2, database_url=pg.url,
            login_attempts_per_ip_per_minute="100000") as cluster:
        base = cluster.base
        rp = RelyingParty(base, register_client(cluster.runtime))
        tokens, _ = rp.sign_in(live_browser(base, FIREFOX_WINDOWS))
        statuses: list[int] = []
        stop = threading.Event()
        workers = [
            threading.Thread(target=_hammer, args=(stop, lambda: password_sign_in(
                base, "alice@example.com").status_code, statuses)),
            threading.Thread(target=_hammer, args=(stop, lambda: rp.introspect(
                tokens["access_token"]).status_code, statuses)),
        ]
        for worker in workers:
            worker.start()
        time.sleep(1.0)
        pg.stop()
        time.sleep(2.0)
        pg.start()
        time.sleep(1.5)
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
        seen = Counter(statuses)
        assert seen[503] > 0, seen  # requests met the restart ...
        assert set(seen) <= {200, 303, 503}, seen  # ... and failed cleanly: no 500, no hang
        # the pool recovered without restarting idp
        assert password_sign_in(base, "alice@example.com").status_code == 303
        assert rp.introspect(tokens["access_token"]).json()["active"] is True
        assert requests.get(base + "/readyz", timeout=10).json()["status"] == "ready"
        # nothing half-written: each session row came with its sign-in event
        sessions = scalar(cluster, select(func.count()).select_from(UserSession))
        logins = scalar(cluster, select(func.count()).select_from(Event).where(
            Event.action == "account:login:success"))
        assert sessions == logins == seen[303] + 2


# --- a node killed --------------------------------------------------------------------------

def test_a_node_killed_mid_traffic_corrupts_nothing(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "c", nodes=2,
                         login_attempts_per_ip_per_minute="100000") as cluster:
        base = cluster.base
        service = register_client(cluster.runtime, "Batch")
        grants: list[int] = []
        sign_ins: list[int] = []

        def grant() -> int:
            return requests.post(base + "/token", data={"grant_type": "client_credentials"},
                                 auth=(service.client_id, service.client_secret or ""),
                                 timeout=10).status_code

        stop = threading.Event()
        workers = [threading.Thread(target=_hammer, args=(stop, grant, grants)),
                   threading.Thread(target=_hammer, args=(stop, grant, grants)),
                   threading.Thread(target=_hammer, args=(stop, lambda: password_sign_in(
                       base, "alice@example.com").status_code, sign_ins))]
        for worker in workers:
            worker.start()
        time.sleep(1.5)
        cluster.kill_node(cluster.nodes[0], signal.SIGKILL)
        killed_at = (len(grants), len(sign_ins))
        time.sleep(2.5)
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
        # the surviving node served everything after the kill settled (nginx marks the dead
        # one down after its first failure)
        assert grants[killed_at[0] + 5:] and set(grants[killed_at[0] + 5:]) == {200}
        assert set(sign_ins[killed_at[1] + 3:]) <= {303}
        assert set(grants) <= {200, 502, -1} and set(sign_ins) <= {303, 502, -1}
        # no corrupt rows, no lost events: each grant is its token and its event, together
        with cluster.runtime.session_factory() as db:
            tokens = db.scalar(select(func.count()).select_from(AccessToken).join(
                TokenFamily, TokenFamily.id == AccessToken.family_id).where(
                TokenFamily.client_id == service.client_id)) or 0
            events = db.scalar(select(func.count()).select_from(Event).where(
                Event.action == "oauth:token:grant", Event.product == service.client_id)) or 0
            sessions = db.scalar(select(func.count()).select_from(UserSession)) or 0
            logins = db.scalar(select(func.count()).select_from(Event).where(
                Event.action == "account:login:success")) or 0
        assert tokens == events >= grants.count(200)
        assert sessions == logins >= sign_ins.count(303)
        assert requests.get(cluster.nodes[1].url + "/readyz", timeout=10).status_code == 200


# --- mail: SMTP down, then a worker killed mid-delivery -----------------------------------

def test_every_queued_mail_is_delivered_once_after_smtp_and_worker_failures(
        tmp_path: Path) -> None:
    with running_mail_server() as smtp:
        smtp.stop()  # SMTP down while mail is queued
        with running_cluster(tmp_path / "c", nodes=1, smtp_url=smtp.url,
                             outbox_lease_seconds="3") as cluster:
            for _ in range(3):  # each sign-in from a new browser queues a login alert
                assert password_sign_in(cluster.base, "alice@example.com").status_code == 303
            with cluster.runtime.session_factory() as db:
                queued = db.scalar(select(func.count()).select_from(OutboxItem).where(
                    OutboxItem.kind == "mail")) or 0
            assert queued >= 1
            smtp.start()
            smtp.stall_next_data()  # the first delivery hangs at the end of DATA ...
            log = (tmp_path / "worker.log").open("wb")
            worker = subprocess.Popen([sys.executable, "-m", "idp", "worker"], env=cluster.env,
                                      cwd=services.ROOT, stdout=log, stderr=subprocess.STDOUT)
            assert smtp.wait_for_stalled(timeout=20)
            worker.kill()  # ... and its worker dies with kill -9
            worker.wait(timeout=10)
            smtp.release()
            restarted = subprocess.Popen([sys.executable, "-m", "idp", "worker"], env=cluster.env,
                                         cwd=services.ROOT, stdout=log, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 30
                while len(smtp.messages) < queued and time.monotonic() < deadline:
                    time.sleep(0.2)
                time.sleep(1.0)  # anything extra would arrive now
            finally:
                restarted.terminate()
                restarted.wait(timeout=10)
                log.close()
            ids = [m["Message-ID"] for m in smtp.messages]
            assert len(ids) == queued and len(set(ids)) == queued, ids
            with cluster.runtime.session_factory() as db:
                pending = db.scalar(select(func.count()).select_from(OutboxItem).where(
                    OutboxItem.done_at.is_(None))) or 0
            assert pending == 0
