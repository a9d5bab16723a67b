"""X-Forwarded-* headers are trusted only when IDP_PROXY_HOPS says a proxy is in front."""

from __future__ import annotations

from pathlib import Path

import pytest

from idp import create_app
from idp.events import EventTag
from idp.runtime import Runtime
from tests.conftest import empty_tables, make_settings
from tests.helpers import create_user, events, sign_in


@pytest.mark.parametrize(("hops", "recorded_ip"), [(0, "127.0.0.1"), (1, "203.0.113.7")])
def test_client_ip_comes_from_proxy_headers_only_when_configured(
    tmp_path: Path, database_url: str, redis_url: str, hops: int, recorded_ip: str
) -> None:
    app = create_app(
        make_settings(tmp_path, database_url=database_url, redis_url=redis_url, proxy_hops=hops)
    )
    rt: Runtime = app.extensions["idp"]
    try:
        create_user(rt)
        client = app.test_client()
        client.environ_base["HTTP_X_FORWARDED_FOR"] = "203.0.113.7"
        assert sign_in(client).status_code == 303
        (event,) = events(rt, EventTag.LOGIN_SUCCESS)
        assert event.ip == recorded_ip
    finally:
        empty_tables(rt)
        rt.store.delete_prefix()
        rt.close()
