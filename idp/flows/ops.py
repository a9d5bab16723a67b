"""Operational endpoints: liveness (/healthz) and readiness (/readyz)."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from idp.runtime import runtime
from idp.schema import schema_state

bp = Blueprint("ops", __name__)
log = logging.getLogger("idp.ops")


@bp.get("/healthz")
def healthz() -> Response:
    """The process answers."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Database and store both reachable and the database schema up to date for this
    release; 503 otherwise, naming what is not."""
    rt = runtime()
    checks: dict[str, str] = {}
    try:
        with rt.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
            checks["schema"] = schema_state(conn)
        if checks["schema"] != "ok":
            log.warning("readiness: database schema outdated: run `idp db upgrade`")
    except Exception as exc:  # any driver error means "not ready"
        log.warning("readiness: database unreachable: %s", type(exc).__name__)
        checks["database"] = "unreachable"
        checks["schema"] = "unknown"
    try:
        rt.store.ping()
        checks["store"] = "ok"
    except Exception as exc:
        log.warning("readiness: store unreachable: %s", type(exc).__name__)
        checks["store"] = "unreachable"
    ready = all(v == "ok" for v in checks.values())
    return jsonify(status="ready" if ready else "not ready", **checks), 200 if ready else 503
