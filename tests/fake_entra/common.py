"""Plumbing shared by the login and Graph apps."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from flask import Flask, request
from werkzeug.wrappers import Response

from tests.fake_entra.state import RecordedRequest

if TYPE_CHECKING:
    from tests.fake_entra.server import FakeEntra


def install_common(app: Flask, fake: FakeEntra, service: Literal["login", "graph"]) -> None:
    """Serialize requests on the fake's lock and record each one."""

    @app.before_request
    def record() -> None:
        fake.request_log.append(RecordedRequest(
            service=service, method=request.method,
            path=request.path, args={k: v for k, v in request.args.items()}))

    @app.after_request
    def record_status(response: Response) -> Response:
        if fake.request_log:
            fake.request_log[-1].status = response.status_code
        return response

    wsgi = app.wsgi_app

    def locked(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        with fake.lock:
            return list(wsgi(environ, start_response))

    app.wsgi_app = locked  # type: ignore[method-assign]
