"""Fixtures shared by the OpenID Connect integration tests.

``live``: idp served on a free loopback port (its issuer is that base URL), with its runtime,
on each database backend. ``receiver``: a tiny HTTP server standing in for a relying
service's back-channel logout endpoint.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from flask import Flask
from sqlalchemy import delete

from idp import create_app
from idp.db import make_engine
from idp.models import Base
from idp.runtime import Runtime
from tests.conftest import empty_tables, make_settings
from tests.mailserver import MailServer, running_mail_server
from tests.oidc import serve
from tests.services import COMMAND_SECRET_KEY, free_port, idp_env


@pytest.fixture
def smtp() -> Iterator[MailServer]:
    """A real SMTP server (aiosmtpd) on a free port, for the tests that read mail."""
    with running_mail_server() as server:
        yield server


@contextmanager
def live_server(
    tmp_path: Path, database_url: str, redis_url: str, **overrides: Any
) -> Iterator[tuple[str, Runtime]]:
    """idp with these settings served on a free loopback port (the issuer); its tables and
    store keys are emptied afterwards."""
    port = free_port()
    app: Flask = create_app(make_settings(tmp_path, database_url=database_url,
                                          redis_url=redis_url,
                                          issuer=f"http://127.0.0.1:{port}", **overrides))
    rt: Runtime = app.extensions["idp"]
    try:
        with serve(app, port) as base:
            yield base, rt
    finally:
        empty_tables(rt)
        rt.store.delete_prefix()
        rt.close()


@pytest.fixture
def live(tmp_path: Path, database_url: str, redis_url: str) -> Iterator[tuple[str, Runtime]]:
    with live_server(tmp_path, database_url, redis_url) as served:
        yield served


@dataclass
class Receiver:
    """What a relying service's back-channel logout endpoint received."""

    url: str
    status: int = 200
    forms: list[dict[str, list[str]]] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    port = free_port()
    received = Receiver(url=f"http://127.0.0.1:{port}/backchannel-logout")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode()
            received.forms.append(parse_qs(body))
            received.content_types.append(self.headers.get("Content-Type", ""))
            self.send_response(received.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> Iterator[dict[str, str]]:
    """The environment of an ``idp`` command (tests.services.run_idp) on this test's
    database, with the servers' secret key and a fast argon2; the tables are emptied after."""
    yield idp_env(
        database_url=database_url,
        data_dir=str(tmp_path / "var"),
        secret_key=COMMAND_SECRET_KEY,
        argon2_memory_kib="1024",
        argon2_time_cost="1",
    )
    engine = make_engine(database_url)
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))
    engine.dispose()
