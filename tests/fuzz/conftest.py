"""A live idp for fuzzing, with a confidential client and a signed-in user's access token, so
that authenticated paths are exercised and not only the 401s."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask

from idp import create_app
from idp.runtime import Runtime
from tests.conftest import empty_tables, make_settings
from tests.helpers import create_user
from tests.oidc import Browser, RegisteredRP, RelyingParty, register_client, serve
from tests.services import free_port


@dataclass
class LiveIdp:
    base: str
    runtime: Runtime
    rp: RegisteredRP
    access_token: str


@pytest.fixture
def live_idp(tmp_path: Path, database_url: str, redis_url: str) -> Iterator[LiveIdp]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app: Flask = create_app(
        make_settings(tmp_path, database_url=database_url, redis_url=redis_url, issuer=base)
    )
    rt: Runtime = app.extensions["idp"]
    try:
        with serve(app, port):
            create_user(rt)
            rp = register_client(rt)
            tokens, _ = RelyingParty(base, rp).sign_in(Browser(base))
            yield LiveIdp(base, rt, rp, tokens["access_token"])
    finally:
        empty_tables(rt)
        rt.store.delete_prefix()
        rt.close()
