"""What a session that timed out left to relying services, and the ends that take it back.

A browser session that idles out (or passes its absolute lifetime) leaves its applications'
tokens alone: a refresh token granted for offline access outlives the browser session (OIDC
Core §11). But every end a person asks for must still reach them: "sign out all other
devices", a password change that signs the others out, a password reset, account deletion,
and "Sign out" (or a relying service's RP-initiated logout) in the very browser whose session
timed out while its page stayed open. The attack these close: a stolen password signs in to
an application with offline access, the thief's browser session idles out, and the victim's
password reset still left the thief's refresh token working.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from idp.events import EventTag
from idp.models import OutboxItem, UserSession
from idp.provider.logout import BACKCHANNEL_LOGOUT
from idp.runtime import Runtime
from idp.security.devices import hash_key
from idp.worker import build_worker
from tests.helpers import PASSWORD, create_user, csrf_token, events
from tests.integration.conftest import Receiver, live_server
from tests.mailserver import MailServer
from tests.oidc import Browser, RelyingParty, register_client

Live = tuple[str, Runtime]
NEW_PASSWORD = "a new and much longer passphrase"
LOGGED_OUT = "https://rp.example/logged-out"
RESET_LINK = re.compile(r"(http://\S+/password/reset/[A-Za-z0-9_-]+)")


def session_id(rt: Runtime, browser: Browser) -> str:
    token = browser.http.cookies.get("idp_session")
    assert token
    with rt.session_factory() as db:
        sid = db.scalar(select(UserSession.id).where(UserSession.token_hash == hash_key(token)))
    assert sid is not None
    return sid


def idle_out(rt: Runtime, browser: Browser) -> None:
    """The browser stays away past the idle limit, then comes back: its session ends 'idle'."""
    token = browser.http.cookies.get("idp_session")
    assert token
    with rt.session_factory() as db:
        db.execute(
            update(UserSession)
            .where(UserSession.token_hash == hash_key(token))
            .values(
                last_seen_at=datetime.now(UTC)
                - timedelta(minutes=rt.settings.session_idle_minutes + 2)
            )
        )
        db.commit()
    rt.store.client.delete(rt.store.session_key(hash_key(token)))  # its TTL ran out
    back = browser.http.get(browser.base + "/account", allow_redirects=False, timeout=10)
    assert back.status_code == 303 and "/login" in back.headers["Location"]
    with rt.session_factory() as db:
        row = db.scalar(select(UserSession).where(UserSession.token_hash == hash_key(token)))
        assert row is not None and row.end_reason == "idle"


def alive(rp: RelyingParty, tokens: dict[str, Any]) -> bool:
    return bool(rp.introspect(tokens["access_token"]).json()["active"])


def assert_dead(rp: RelyingParty, tokens: dict[str, Any]) -> None:
    assert rp.introspect(tokens["access_token"]).json() == {"active": False}
    assert rp.userinfo(tokens["access_token"]).status_code == 401
    refresh = rp.refresh(tokens["refresh_token"])
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"


def logout_sids(rt: Runtime) -> list[str]:
    with rt.session_factory() as db:
        return [
            item.payload["sid"]
            for item in db.scalars(select(OutboxItem).order_by(OutboxItem.id))
            if item.kind == BACKCHANNEL_LOGOUT
        ]


def signed_in(base: str, rp: RelyingParty) -> tuple[Browser, dict[str, Any]]:
    browser = Browser(base)
    tokens, _ = rp.sign_in(browser)
    assert "refresh_token" in tokens  # offline access: the tokens outlive the session
    return browser, tokens


@pytest.fixture
def shop(live: Live, receiver: Receiver) -> RelyingParty:
    base, rt = live
    create_user(rt)
    registered = register_client(
        rt, "Shop", backchannel_logout_uri=receiver.url, post_logout_redirect_uris=[LOGGED_OUT]
    )
    return RelyingParty(base, registered)


def test_timing_out_alone_leaves_the_tokens_for_offline_access(
    live: Live, shop: RelyingParty
) -> None:
    base, rt = live
    laptop, tokens = signed_in(base, shop)

    idle_out(rt, laptop)

    assert alive(shop, tokens)
    assert shop.refresh(tokens["refresh_token"]).status_code == 200
    assert logout_sids(rt) == []


def test_signing_out_all_other_devices_ends_what_a_timed_out_session_left(
    live: Live, shop: RelyingParty
) -> None:
    base, rt = live
    thief, stolen = signed_in(base, shop)
    thief_sid = session_id(rt, thief)
    idle_out(rt, thief)
    owner, own = signed_in(base, shop)
    # No other live session to list (the page offers no button then); the form's POST is
    # what a page opened before the thief's session timed out would send.
    page = owner.http.get(base + "/account", timeout=10)

    done = owner.http.post(
        base + "/account/sessions/end-others",
        data={"csrf_token": csrf_token(page.text)},
        allow_redirects=False,
        timeout=10,
    )

    assert done.status_code == 303
    assert_dead(shop, stolen)
    assert logout_sids(rt) == [thief_sid]
    assert alive(shop, own)  # this browser's own sign-in stays
    assert shop.refresh(own["refresh_token"]).status_code == 200


def test_a_password_change_signing_the_others_out_ends_them_too(
    live: Live, shop: RelyingParty
) -> None:
    base, rt = live
    thief, stolen = signed_in(base, shop)
    idle_out(rt, thief)
    owner, own = signed_in(base, shop)
    form = owner.http.get(base + "/account/password", timeout=10)

    changed = owner.http.post(
        base + "/account/password",
        data={
            "csrf_token": csrf_token(form.text),
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "new_password_again": NEW_PASSWORD,
            "sign_out_others": "on",
        },
        allow_redirects=False,
        timeout=10,
    )

    assert changed.status_code == 303, changed.text[:300]
    assert_dead(shop, stolen)
    assert alive(shop, own)


@pytest.fixture
def mailed(tmp_path: Path, database_url: str, redis_url: str, smtp: MailServer) -> Iterator[Live]:
    with live_server(tmp_path, database_url, redis_url, smtp_url=smtp.url) as served:
        yield served


def test_a_password_reset_ends_what_every_timed_out_session_left(
    mailed: Live, smtp: MailServer, receiver: Receiver
) -> None:
    base, rt = mailed
    create_user(rt)
    shop = RelyingParty(base, register_client(rt, "Shop", backchannel_logout_uri=receiver.url))
    thief, stolen = signed_in(base, shop)
    thief_sid = session_id(rt, thief)
    idle_out(rt, thief)
    owner = Browser(base)
    forgot = owner.http.get(base + "/password/forgot", timeout=10)
    owner.http.post(
        base + "/password/forgot",
        data={"csrf_token": csrf_token(forgot.text), "email": "alice@example.com"},
        timeout=10,
    )
    worker = build_worker(rt)
    while worker.run_once():
        pass
    [link] = [
        m.group(1)
        for message in smtp.to("alice@example.com")
        for part in [message.get_body(("plain",))]
        if part is not None
        for m in [RESET_LINK.search(str(part.get_content()))]
        if m
    ]
    form = owner.http.get(link, timeout=10)

    reset = owner.http.post(
        link,
        data={
            "csrf_token": csrf_token(form.text),
            "new_password": NEW_PASSWORD,
            "new_password_again": NEW_PASSWORD,
        },
        allow_redirects=False,
        timeout=10,
    )

    assert reset.status_code == 303, reset.text[:300]
    assert_dead(shop, stolen)
    assert logout_sids(rt) == [thief_sid]
    # The thief's stale tab signs out: nothing left to end, nobody told twice.
    login = thief.http.get(base + "/login", timeout=10)
    thief.http.post(base + "/logout", data={"csrf_token": csrf_token(login.text)}, timeout=10)
    assert logout_sids(rt) == [thief_sid]


def test_deleting_the_account_tells_the_applications_of_timed_out_sessions(
    live: Live, shop: RelyingParty
) -> None:
    base, rt = live
    old, _ = signed_in(base, shop)
    old_sid = session_id(rt, old)
    idle_out(rt, old)
    owner, _ = signed_in(base, shop)
    owner_sid = session_id(rt, owner)
    page = owner.http.get(base + "/account/delete", timeout=10)

    deleted = owner.http.post(
        base + "/account/delete",
        data={"csrf_token": csrf_token(page.text), "password": PASSWORD},
        allow_redirects=False,
        timeout=10,
    )

    assert deleted.status_code == 303, deleted.text[:300]
    assert sorted(logout_sids(rt)) == sorted([old_sid, owner_sid])


def test_sign_out_in_a_browser_whose_session_timed_out_still_ends_its_tokens(
    live: Live, shop: RelyingParty
) -> None:
    base, rt = live
    laptop, tokens = signed_in(base, shop)
    laptop_sid = session_id(rt, laptop)
    page = laptop.http.get(base + "/account", timeout=10)  # left open past the idle limit
    idle_out(rt, laptop)

    out = laptop.http.post(
        base + "/logout",
        data={"csrf_token": csrf_token(page.text)},
        allow_redirects=False,
        timeout=10,
    )

    assert out.status_code == 303 and "signed_out=1" in out.headers["Location"]
    assert_dead(shop, tokens)
    assert logout_sids(rt) == [laptop_sid]
    [logout] = events(rt, EventTag.LOGOUT)
    assert logout.session_id == laptop_sid
    with rt.session_factory() as db:
        row = db.get(UserSession, laptop_sid)
        assert row is not None and row.end_reason == "logout"
    # Once: signing out again tells nobody anything new.
    login = laptop.http.get(base + "/login", timeout=10)
    again = laptop.http.post(
        base + "/logout", data={"csrf_token": csrf_token(login.text)}, timeout=10
    )
    assert again.status_code == 200
    assert logout_sids(rt) == [laptop_sid] and len(events(rt, EventTag.LOGOUT)) == 1


def test_rp_initiated_logout_after_a_timeout_ends_the_sessions_tokens(
    live: Live, shop: RelyingParty
) -> None:
    base, rt = live
    laptop, tokens = signed_in(base, shop)
    laptop_sid = session_id(rt, laptop)
    idle_out(rt, laptop)

    out = laptop.http.get(
        base + "/end-session",
        params={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": LOGGED_OUT,
            "state": "s1",
        },
        allow_redirects=False,
        timeout=10,
    )

    assert out.status_code == 303, out.text[:300]
    assert out.headers["Location"] == LOGGED_OUT + "?state=s1"
    assert_dead(shop, tokens)
    assert logout_sids(rt) == [laptop_sid]


def test_another_browsers_timed_out_session_is_not_signed_out_by_a_hint_alone(
    live: Live, shop: RelyingParty
) -> None:
    """RP-initiated logout §6: a hint naming another session than the browser's asks first."""
    base, rt = live
    laptop, tokens = signed_in(base, shop)
    idle_out(rt, laptop)
    other, _ = signed_in(base, shop)
    idle_out(rt, other)

    asked = other.http.get(
        base + "/end-session",
        params={"id_token_hint": tokens["id_token"]},
        allow_redirects=False,
        timeout=10,
    )

    assert asked.status_code == 200 and "csrf_token" in asked.text
    assert alive(shop, tokens)
