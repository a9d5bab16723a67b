"""Prometheus metrics (``GET /metrics``, text exposition format 0.0.4).

Counted where they happen, once the database transaction that records them commits (events
are counted on commit, so a rolled-back sign-in counts nothing): sign-ins by outcome, lockouts,
unlocks, token grants by grant type, every activity-log event by action; mails and login
alerts queued, sent and failed; request latency by endpoint.

Under gunicorn with several workers, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory
(prometheus-client's multiprocess mode): every worker writes its samples there and ``/metrics``
sums them for the node. Each node is scraped on its own.

Access: from loopback only by default; with ``IDP_METRICS_TOKEN`` set, also from anywhere
with ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from weakref import WeakSet

from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

SIGN_INS = Counter(
    "idp_sign_ins_total",
    "Sign-in attempts by outcome (success, sso, failure, second_factor_failure)",
    ["outcome"],
)
SIGN_IN_FAILURES = Counter(
    "idp_sign_in_failures_total", "Failed password sign-ins by reason", ["reason"]
)
LOCKOUTS = Counter("idp_lockouts_total", "Accounts locked after too many failed sign-ins")
UNLOCKS = Counter("idp_unlocks_total", "Accounts unlocked", ["by"])
TOKEN_GRANTS = Counter("idp_token_grants_total", "Tokens issued by grant type", ["grant_type"])
EVENTS = Counter("idp_events_total", "Activity-log events recorded, by action", ["action"])
MAIL = Counter(
    "idp_mail_total",
    "Mail by template and outcome (queued, sent, retry, failed)",
    ["template", "outcome"],
)
ALERTS = Counter(
    "idp_login_alerts_total",
    "Login alert mails by kind (success, failures) and outcome (queued, sent, retry, failed)",
    ["kind", "outcome"],
)
OUTBOX = Counter(
    "idp_outbox_total",
    "Outbox items (mail, back-channel logouts, alerts) by kind and outcome "
    "(delivered, retry, failed = given up after the last attempt)",
    ["kind", "outcome"],
)
REQUEST_SECONDS = Histogram(
    "idp_request_duration_seconds",
    "Time to answer a request, by endpoint and method",
    ["endpoint", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RESPONSES = Counter(
    "idp_responses_total",
    "Responses by endpoint, method and status",
    ["endpoint", "method", "status"],
)

_PENDING = "idp_metrics_events"
_SIGN_IN_TAGS = {
    "account:login:success": "success",
    "account:login:sso": "sso",
    "account:login:failure": "failure",
    "account:login:second_factor_failure": "second_factor_failure",
}


def note_event(db: Session, action: str, details: Mapping[str, Any]) -> None:
    """Remember an event added to ``db``'s transaction; it is counted if that commits."""
    db.info.setdefault(_PENDING, []).append((action, dict(details)))


def count_event(action: str, details: Mapping[str, Any]) -> None:
    """Count an event whose row is already committed (written outside a Session)."""
    EVENTS.labels(action).inc()
    outcome = _SIGN_IN_TAGS.get(action)
    if outcome is not None:
        SIGN_INS.labels(outcome).inc()
        if outcome == "failure":
            SIGN_IN_FAILURES.labels(str(details.get("reason", "bad_password"))[:40]).inc()
    elif action == "account:lockout:lock":
        LOCKOUTS.inc()
    elif action == "account:lockout:unlock":
        UNLOCKS.labels(str(details.get("by", "unknown"))[:40]).inc()
    elif action == "oauth:token:grant":
        TOKEN_GRANTS.labels(str(details.get("grant_type", "unknown"))[:40]).inc()


def _after_commit(session: Session) -> None:
    for action, details in session.info.pop(_PENDING, []):
        count_event(action, details)


def _after_rollback(session: Session, _previous: object) -> None:
    session.info.pop(_PENDING, None)


_COUNTED_FACTORIES: WeakSet[sessionmaker[Session]] = WeakSet()


def count_on_commit(factory: sessionmaker[Session]) -> None:
    """Count the events of every session ``factory`` makes when (and only when) it commits.

    Idempotent per factory. Not ``event.contains``: SQLAlchemy keys that on ``id()`` of the
    factory's Session class and keeps the entry after the class is gone, so a new factory whose
    class reuses a dead one's address looked registered and counted nothing."""
    if factory in _COUNTED_FACTORIES:
        return
    event.listen(factory, "after_commit", _after_commit)
    event.listen(factory, "after_soft_rollback", _after_rollback)
    _COUNTED_FACTORIES.add(factory)


def mail_outcome(template: str, outcome: str) -> None:
    MAIL.labels(template, outcome).inc()
    if template.startswith("login_alert_"):
        ALERTS.labels(template.removeprefix("login_alert_"), outcome).inc()


def exposition() -> bytes:
    """The text exposition of this process, or of all the node's workers in multiprocess
    mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(DEFAULT_REGISTRY)
