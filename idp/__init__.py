"""idp: an identity provider and SSO gateway.

``create_app`` is the only place that wires settings, database, store and services together;
``gunicorn 'idp:create_app()'`` serves it in production.
"""

from __future__ import annotations

import logging
import sys

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from idp.heap import freeze_startup_objects
from idp.observability.logs import configure_logging
from idp.runtime import Runtime
from idp.settings import PROJECT_ROOT, Settings, SettingsError, ensure_secret_key, load_settings

__all__ = ["create_app"]


def _ensure_signing_keys(runtime: Runtime) -> None:
    """Create the first signing keys if there are none (idempotent across processes)."""
    from sqlalchemy.exc import SQLAlchemyError

    from idp.services import key_service_for

    try:
        with runtime.session_factory() as db:
            key_service_for(db, runtime.settings).ensure_keys()
    except SQLAlchemyError as exc:
        logging.getLogger("idp").warning(
            "signing keys not checked (%s): run `idp db upgrade`", type(exc).__name__
        )


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI application. Without ``settings``, read them (file, then environment);
    a bad setting ends the process with one line naming it.

    Called without settings, this is the process's own application, built once per server
    process (``gunicorn 'idp:create_app()'``): what start-up made is then frozen out of the
    garbage collector's full collections (:mod:`idp.heap`)."""
    serving = settings is None
    if settings is None:
        try:
            settings = ensure_secret_key(load_settings())
        except SettingsError as exc:
            print(f"idp: {exc}", file=sys.stderr)
            # 3 is gunicorn's "worker failed to boot": the master stops instead of retrying.
            raise SystemExit(3) from None
    else:
        settings = ensure_secret_key(settings)
    configure_logging(settings.log_level, settings.log_format)

    app = Flask(
        "idp",
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=1024 * 1024,
        MAX_FORM_MEMORY_SIZE=64 * 1024,
        SEND_FILE_MAX_AGE_DEFAULT=3600,
        PREFERRED_URL_SCHEME="https" if settings.secure_cookies else "http",
        TRAP_HTTP_EXCEPTIONS=False,
    )
    if settings.proxy_hops:
        n = settings.proxy_hops
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n
        )

    runtime = Runtime(settings)
    runtime.init_app(app)
    _ensure_signing_keys(runtime)

    from idp import i18n
    from idp.flows import register_flows
    from idp.observability import web as observability
    from idp.provider import endpoints
    from idp.provider.server import IdpAuthorizationServer
    from idp.security import cookie_session, csrf, headers
    from idp.services import provider_services

    cookie_session.init_app(app)
    csrf.init_app(app, secure=settings.secure_cookies)
    headers.init_app(app, https=settings.secure_cookies)
    app.extensions["idp_oauth"] = IdpAuthorizationServer(provider_services)
    i18n.init_app(app)
    register_flows(app)
    app.register_blueprint(endpoints.bp)
    observability.init_app(app)
    if serving:
        freeze_startup_objects()
    return app
