"""Error pages: a clear message and status, never internals.

On the JSON endpoints (the protocol endpoints relying services call, and the health probes) an
error is an RFC 6749 §5.2 JSON body instead of a page, whatever went wrong: an unsupported
method, a body too large, a backend down, a bug.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, make_response, render_template, request, url_for
from flask_babel import gettext, lazy_gettext
from redis.exceptions import ConnectionError as StoreConnectionError
from redis.exceptions import ReadOnlyError as StoreReadOnlyError
from redis.exceptions import TimeoutError as StoreTimeoutError
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.routing import BuildError

from idp.runtime import request_db

log = logging.getLogger("idp.errors")

MESSAGES = {
    400: (lazy_gettext("Bad request"), lazy_gettext("The request could not be understood.")),
    401: (lazy_gettext("Sign in required"), lazy_gettext("Sign in to continue.")),
    403: (lazy_gettext("Forbidden"), lazy_gettext("You are not allowed to do this.")),
    404: (lazy_gettext("Page not found"), lazy_gettext("There is nothing at this address.")),
    405: (
        lazy_gettext("Method not allowed"),
        lazy_gettext("This address does not accept that kind of request."),
    ),
    413: (lazy_gettext("Too large"), lazy_gettext("What you sent is too large.")),
    429: (
        lazy_gettext("Too many requests"),
        lazy_gettext("Too many attempts. Wait a moment and try again."),
    ),
    500: (
        lazy_gettext("Something went wrong"),
        lazy_gettext("An unexpected error occurred. Please try again."),
    ),
    503: (
        lazy_gettext("Temporarily unavailable"),
        lazy_gettext("The service is temporarily unavailable. Try again soon."),
    ),
}
CSRF_MESSAGE = lazy_gettext(
    "This form has expired or was not sent from this site. Reload the page and try again."
)


# RFC 6749 §5.2 / §4.1.2.1 error codes for failures that happen before a view can answer.
OAUTH_ERRORS = {500: "server_error", 503: "temporarily_unavailable"}


def _on_json_endpoint() -> bool:
    """Whether the request addressed a JSON endpoint. Matched by path, because a request with
    the wrong method never reaches the endpoint (no ``url_rule``)."""
    from idp.provider.openapi import JSON_ENDPOINTS

    path = request.script_root + request.path
    for endpoint in JSON_ENDPOINTS:
        try:
            if url_for(endpoint) == path:
                return True
        except BuildError:  # an application without the provider blueprint
            continue
    return False


def _json_error(code: int, message: str) -> tuple[Response, int]:
    response = jsonify(error=OAUTH_ERRORS.get(code, "invalid_request"), error_description=message)
    response.headers["Cache-Control"] = "no-store"
    return response, code


def _page(code: int, message: str | None = None) -> tuple[str | Response, int]:
    title, default = MESSAGES.get(
        code, (gettext("Error %(code)s", code=code), gettext("The request failed."))
    )
    if _on_json_endpoint():
        return _json_error(code, message or default)
    return render_template(
        "errors/error.html", code=code, title=title, message=message or default
    ), code


def init_app(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        if code == 400 and exc.description == "csrf":
            return make_response(_page(400, CSRF_MESSAGE))
        response = make_response(_page(code))
        # Keep the exception's own headers, e.g. Allow on a 405 (RFC 9110 §15.5.6).
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeoutError)  # every pooled connection busy for pool_timeout
    @app.errorhandler(StoreConnectionError)
    @app.errorhandler(StoreTimeoutError)
    # A managed Redis's single endpoint still on the old primary, now a replica, during a
    # failover (or IDP_REDIS_URL naming a replica): writes refused until it moves on.
    @app.errorhandler(StoreReadOnlyError)
    def _backend_down(exc: Exception) -> tuple[str | Response, int]:
        log.error("backend unavailable: %s", exc.__class__.__name__)
        return _page(503)

    @app.errorhandler(DataError)
    def _value_refused(exc: DataError) -> tuple[str | Response, int]:
        """The database refused a value taken from the request (a NUL character, which
        PostgreSQL text cannot hold; a number out of range): bad input, not a failure. The
        request's transaction is rolled back, so nothing it began is kept."""
        request_db().rollback()
        log.info("value refused by the database: %s", type(exc.orig).__name__)
        return _page(400)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response | tuple[str | Response, int]:
        if isinstance(exc, HTTPException):
            return _http_error(exc)
        log.exception("unhandled error", exc_info=exc)
        return _page(InternalServerError.code)
