"""A password reset ends every session for relying services too: refresh tokens are revoked,
access tokens stop being active at introspection, and back-channel logouts are sent."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from sqlalchemy import select

from idp.models import OutboxItem
from idp.runtime import Runtime
from idp.worker import build_worker
from tests.helpers import csrf_token
from tests.integration.conftest import Receiver
from tests.oidc import Browser, RelyingParty, register_client

NEW_PASSWORD = "an entirely new passphrase"


def _reset_url(rt: Runtime) -> str:
    with rt.session_factory() as db:
        payloads = db.scalars(select(OutboxItem.payload).where(OutboxItem.kind == "mail"))
        urls = [str(p["context"]["reset_url"]) for p in payloads
                if p["template"] == "password_reset"]
    (url,) = urls
    return url


def test_a_reset_revokes_tokens_and_tells_relying_services(
    live: tuple[str, Runtime], receiver: Receiver
) -> None:
    from tests.helpers import create_user

    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt, backchannel_logout_uri=receiver.url))
    tokens, _ = rp.sign_in(Browser(base))
    assert rp.introspect(tokens["access_token"]).json()["active"] is True

    stranger = Browser(base)  # another browser asks for the link
    form = stranger.http.get(base + "/password/forgot", timeout=10).text
    asked = stranger.http.post(base + "/password/forgot", timeout=10, data={
        "csrf_token": csrf_token(form), "email": "alice@example.com"})
    assert asked.status_code == 200
    build_worker(rt).run_once()  # the request becomes a link and a queued mail
    path = urlsplit(_reset_url(rt)).path
    page = stranger.http.get(base + path, timeout=10).text
    done = stranger.http.post(base + path, allow_redirects=False, timeout=10, data={
        "csrf_token": csrf_token(page), "new_password": NEW_PASSWORD,
        "new_password_again": NEW_PASSWORD})
    assert done.status_code == 303, done.text

    assert rp.introspect(tokens["access_token"]).json() == {"active": False}
    assert rp.refresh(tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert receiver.forms == []  # never on the request path
    build_worker(rt).run_once()
    assert len(receiver.forms) == 1 and re.match(r"^[\w-]+\.[\w-]+\.[\w-]+$",
                                                 receiver.forms[0]["logout_token"][0])
