"""Operational endpoints: liveness (/healthz) and readiness (/readyz)."""

from __future__ import annotations

import logging
from functools import cache

from flask import Blueprint, Response, jsonify
from sqlalchemy import Connection, inspect, text

from idp.runtime import runtime

bp = Blueprint("ops", __name__)
log = logging.getLogger("idp.ops")


@bp.get("/healthz")
def healthz() -> Response:
    """The process answers."""
    return jsonify(status="ok")


@cache
def _known_revisions() -> tuple[str, frozenset[str]]:
    """This release's newest migration and every migration it ships (read once)."""
    from alembic.script import ScriptDirectory

    from idp.settings import PROJECT_ROOT

    scripts = ScriptDirectory(str(PROJECT_ROOT / "migrations"))
    head = scripts.get_current_head()
    assert head is not None, "the migrations form one line"
    return head, frozenset(script.revision for script in scripts.walk_revisions())


def schema_state(conn: Connection) -> str:
    """``ok`` when the database has this release's migrations: at its newest one, or at one
    this release does not know (a newer release migrated it; migrations only expand, so this
    release still works on it: README "Upgrades with nodes still running"). ``outdated``
    when ``idp db upgrade`` has not been run for this release: its code would fail on the
    missing tables and columns, so the node must not take traffic yet."""
    head, known = _known_revisions()
    if not inspect(conn).has_table("alembic_version"):  # never migrated
        return "outdated"
    current = set(conn.scalars(text("SELECT version_num FROM alembic_version")))
    if head in current or current - known:
        return "ok"
    return "outdated"


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
