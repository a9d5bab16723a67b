"""Per-request observability: the request id (in, out, and in the logs) and request metrics;
and ``GET /metrics`` for Prometheus."""

from __future__ import annotations

import hmac
import logging
import time

from flask import Blueprint, Flask, Response, abort, g, request
from prometheus_client import CONTENT_TYPE_LATEST

from idp.net import is_loopback
from idp.observability import metrics
from idp.observability.logs import new_request_id, request_id
from idp.runtime import Runtime, runtime

bp = Blueprint("metrics", __name__)
REQUEST_ID_HEADER = "X-Request-ID"
access = logging.getLogger("idp.access")
# The methods counted by name (RFC 9110 §9.3, RFC 5789). The method is the client's to choose
# (any token, RFC 9110 §9.1), so every other one counts as "other": one label value per
# invented method would grow the series without bound.
KNOWN_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
)


def method_label(method: str) -> str:
    """``method`` as a metrics label: itself when standard, else ``"other"``."""
    return method if method in KNOWN_METHODS else "other"


def from_loopback() -> bool:
    """Whether the request comes from this machine: the client (``X-Forwarded-For`` as
    trusted by ``IDP_PROXY_HOPS``) and the peer that connected to idp are both loopback.

    Both: behind a proxy on this machine the peer is always loopback, so the client decides;
    and the forwarded client alone is whatever someone reaching the node directly (another
    host of the internal network) writes into ``X-Forwarded-For``."""
    original = request.environ.get("werkzeug.proxy_fix.orig") or {}
    peer = original.get("REMOTE_ADDR", request.remote_addr) or ""
    return is_loopback(request.remote_addr or "") and is_loopback(peer)


@bp.get("/metrics")
def scrape() -> Response:
    """Prometheus text exposition; loopback, or a bearer ``IDP_METRICS_TOKEN``."""
    token = runtime().settings.metrics_token
    given = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        pass
    elif not from_loopback():
        abort(404)  # not advertised to the public
    response = Response(metrics.exposition(), mimetype=CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    rt: Runtime = app.extensions["idp"]
    metrics.count_on_commit(rt.session_factory)

    # A request id from outside is a proxy's only behind proxies (IDP_PROXY_HOPS); without
    # them it is the client's own choice, which must not go into the activity log's events
    # (e.g. copying the id of someone else's request to muddle an investigation).
    trust_incoming = rt.settings.proxy_hops > 0

    @app.before_request
    def _start() -> None:
        g.idp_started = time.perf_counter()
        incoming = request.headers.get(REQUEST_ID_HEADER) if trust_incoming else None
        g.idp_request_id_token = request_id.set(new_request_id(incoming))

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = request_id.get()
        started = g.get("idp_started")
        if started is not None:
            endpoint = request.url_rule.endpoint if request.url_rule else "unmatched"
            seconds = time.perf_counter() - started
            method = method_label(request.method)
            metrics.REQUEST_SECONDS.labels(endpoint, method).observe(seconds)
            metrics.RESPONSES.labels(endpoint, method, str(response.status_code)).inc()
            # The route pattern, never the path or query: paths can carry one-time tokens.
            access.info(
                "%s %s %s %.1fms",
                method,
                request.url_rule.rule if request.url_rule else "(no route)",
                response.status_code,
                1000 * seconds,
            )
        return response

    @app.teardown_request
    def _forget(_: BaseException | None) -> None:
        token = g.pop("idp_request_id_token", None)
        if token is not None:
            request_id.reset(token)

    app.register_blueprint(bp)
