"""Error pages: a clear message and status, never internals."""

from __future__ import annotations

import logging

from flask import Flask, render_template
from redis.exceptions import ConnectionError as StoreConnectionError
from redis.exceptions import TimeoutError as StoreTimeoutError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger("idp.errors")

MESSAGES = {
    400: ("Bad request", "The request could not be understood."),
    401: ("Sign in required", "Sign in to continue."),
    403: ("Forbidden", "You are not allowed to do this."),
    404: ("Page not found", "There is nothing at this address."),
    405: ("Method not allowed", "This address does not accept that kind of request."),
    413: ("Too large", "What you sent is too large."),
    429: ("Too many requests", "Too many attempts. Wait a moment and try again."),
    500: ("Something went wrong", "An unexpected error occurred. Please try again."),
    503: ("Temporarily unavailable", "The service is temporarily unavailable. Try again soon."),
}
CSRF_MESSAGE = (
    "This form has expired or was not sent from this site. Reload the page and try again."
)


def _page(code: int, message: str | None = None) -> tuple[str, int]:
    title, default = MESSAGES.get(code, (f"Error {code}", "The request failed."))
    return render_template(
        "errors/error.html", code=code, title=title, message=message or default
    ), code


def init_app(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[str, int]:
        code = exc.code or 500
        if code == 400 and exc.description == "csrf":
            return _page(400, CSRF_MESSAGE)
        return _page(code)

    @app.errorhandler(OperationalError)
    @app.errorhandler(StoreConnectionError)
    @app.errorhandler(StoreTimeoutError)
    def _backend_down(exc: Exception) -> tuple[str, int]:
        log.error("backend unavailable: %s", exc.__class__.__name__)
        return _page(503)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[str, int]:
        if isinstance(exc, HTTPException):
            return _http_error(exc)
        log.exception("unhandled error", exc_info=exc)
        return _page(InternalServerError.code)
