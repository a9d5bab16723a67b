"""Account access (/account/sessions): the live sessions by device, and signing them out.

What a user checks when wondering "is someone else in my account?": every browser signed in
right now, grouped by device, with the applications each signed in to and "This device" on
their own; signing one out (or all others) takes effect at the next request of that browser,
and its tokens die with it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select, update

from idp.accounts import AccountService
from idp.events import EventTag
from idp.models import Device, OutboxItem, UserSession
from idp.provider.logout import BACKCHANNEL_LOGOUT
from idp.runtime import Runtime
from idp.security.devices import ClientInfo, hash_key
from idp.security.session_list import SessionListService, SessionNotFound
from idp.security.sessions import TOUCH_INTERVAL_SECONDS, SessionService
from tests.account_pages import read_devices, shown_session_ids
from tests.helpers import count, create_user, csrf_token, events, sign_in
from tests.integration.conftest import Receiver
from tests.locks import waits_for
from tests.oidc import Browser, RelyingParty, register_client

Live = tuple[str, Runtime]

FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
CHROME_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)


# Helpers -----------------------------------------------------------------------------------


def live_browser(base: str, user_agent: str) -> Browser:
    browser = Browser(base)
    browser.http.headers["User-Agent"] = user_agent
    return browser


def open_account(browser: Browser, email: str = "alice@example.com") -> None:
    """Sign in through the account page, as a person would."""
    page = browser.follow(browser.base + "/account", email=email)
    assert page.status_code == 200 and email in page.text


def live_session_id(runtime: Runtime, browser: Browser) -> str:
    return _session_of_token(runtime, browser.http.cookies.get("idp_session"))


def client_session_id(runtime: Runtime, client: FlaskClient) -> str:
    cookie = client.get_cookie("idp_session")
    assert cookie is not None, "not signed in"
    return _session_of_token(runtime, cookie.value)


def _session_of_token(runtime: Runtime, token: str | None) -> str:
    assert token, "not signed in"
    with runtime.session_factory() as db:
        session_id = db.scalar(
            select(UserSession.id).where(UserSession.token_hash == hash_key(token))
        )
    assert session_id is not None
    return session_id


def browser_client(app: Flask, user_agent: str, ip: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = user_agent
    client.environ_base["REMOTE_ADDR"] = ip
    return client


def signed_in_client(
    app: Flask, user_agent: str, ip: str, email: str = "alice@example.com"
) -> FlaskClient:
    client = browser_client(app, user_agent, ip)
    assert sign_in(client, email).status_code == 303
    return client


def is_signed_in(client: FlaskClient) -> bool:
    return client.get("/account").status_code == 200


def end_row(runtime: Runtime, session_id: str) -> UserSession:
    with runtime.session_factory() as db:
        row = db.get(UserSession, session_id)
        assert row is not None
        db.expunge(row)
        return row


def assert_tokens_dead(rp: RelyingParty, tokens: dict[str, Any]) -> None:
    assert rp.introspect(tokens["access_token"]).json() == {"active": False}
    assert rp.userinfo(tokens["access_token"]).status_code == 401
    assert rp.introspect(tokens["refresh_token"]).json() == {"active": False}
    refresh = rp.refresh(tokens["refresh_token"])
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"


# The list ----------------------------------------------------------------------------------


def test_the_page_lists_exactly_the_live_sessions_by_device_with_their_applications(
    live: Live,
) -> None:
    base, rt = live
    alice = create_user(rt)
    create_user(rt, "bob@example.com", first_name="Bob")
    shop = RelyingParty(base, register_client(rt, "Shop"))
    wiki = RelyingParty(base, register_client(rt, "Wiki", redirect_uri="https://wiki.example/cb"))

    # The laptop signs in to two applications in one session.
    laptop = live_browser(base, FIREFOX_WINDOWS)
    shop.sign_in(laptop)
    wiki.sign_in(laptop)
    # The phone has two sessions on one device (the second browser carries its device cookie).
    phone = live_browser(base, SAFARI_IPHONE)
    open_account(phone)
    phone_again = live_browser(base, SAFARI_IPHONE)
    phone_again.http.cookies.set("idp_device", phone.http.cookies.get("idp_device"))
    open_account(phone_again)
    # Sessions that must not be listed: signed out, idle too long, past the absolute lifetime,
    # and someone else's.
    signed_out = live_browser(base, CHROME_LINUX)
    open_account(signed_out)
    account = signed_out.http.get(base + "/account", timeout=10).text
    signed_out.http.post(base + "/logout", data={"csrf_token": csrf_token(account)}, timeout=10)
    idle, expired = live_browser(base, CHROME_LINUX), live_browser(base, CHROME_LINUX)
    open_account(idle)
    open_account(expired)
    bob = live_browser(base, CHROME_LINUX)
    open_account(bob, "bob@example.com")
    now = datetime.now(UTC)
    idle_minutes = rt.settings.session_idle_minutes
    with rt.session_factory() as db:
        for browser, values in (
            (idle, {"last_seen_at": now - timedelta(minutes=idle_minutes + 2)}),
            (expired, {"expires_at": now - timedelta(seconds=1)}),
        ):
            token = browser.http.cookies.get("idp_session")
            db.execute(
                update(UserSession)
                .where(UserSession.token_hash == hash_key(token))
                .values(**values)
            )
            rt.store.client.delete(rt.store.session_key(hash_key(token)))  # TTL ran out
        db.commit()

    page = laptop.http.get(base + "/account/sessions", timeout=10)

    assert page.status_code == 200
    devices = read_devices(page.text)
    assert [(d.label, d.current, d.this_device_marker) for d in devices] == [
        ("Firefox 128 on Windows 10", True, True),  # this device first
        ("Mobile Safari 17 on iOS 17", False, False),
    ]
    laptop_device, phone_device = devices
    assert laptop_device.session_ids == {live_session_id(rt, laptop)}
    assert laptop_device.sessions[0].applications == "Shop, Wiki"
    assert laptop_device.sessions[0].ip == "127.0.0.1"
    assert phone_device.session_ids == {
        live_session_id(rt, phone),
        live_session_id(rt, phone_again),
    }
    assert all(s.applications == "None (this account page only)" for s in phone_device.sessions)
    assert page.text.count("This device") == 1
    # Devices keep their history: the signed-out, idle and expired browsers are still known.
    assert count(rt, Device, Device.user_id == alice.id) == 5


def test_last_activity_comes_from_the_store_without_a_database_write_per_request(
    runtime: Runtime,
) -> None:
    clock = Clock()
    user = create_user(runtime)
    with runtime.session_factory() as db:
        service = SessionService(db, runtime.store, runtime.settings, clock)
        started = service.start(user, ClientInfo("192.0.2.1", FIREFOX_WINDOWS))
        db.commit()
        service.cache(started.token, started.session)
        session_id = started.session.id
        statements: list[str] = []

        def seen(_c: object, _cur: object, statement: str, *_: object) -> None:
            statements.append(statement)

        event.listen(runtime.engine, "before_cursor_execute", seen)
        try:
            for _ in range(5):  # requests within the same minute
                clock.now += timedelta(seconds=10)
                assert service.resolve(started.token) is not None
        finally:
            event.remove(runtime.engine, "before_cursor_execute", seen)
        assert statements == []  # the store answered: no database read, no write
        db.expire_all()
        [live] = service.live_sessions(user.id)

    assert end_row(runtime, session_id).last_seen_at == START  # one write a minute at most
    assert live.last_activity == START + timedelta(seconds=50)


def test_a_session_idle_too_long_leaves_the_list_as_it_stops_working(runtime: Runtime) -> None:
    clock = Clock()
    user = create_user(runtime)
    with runtime.session_factory() as db:
        service = SessionService(db, runtime.store, runtime.settings, clock)
        started = service.start(user, ClientInfo("192.0.2.1", FIREFOX_WINDOWS))
        db.commit()
        service.cache(started.token, started.session)
        clock.now += timedelta(minutes=runtime.settings.session_idle_minutes, seconds=1)
        # While the store entry lives (its TTL is the idle lifetime), the session is live.
        assert [s.row.id for s in service.live_sessions(user.id)] == [started.session.id]
        runtime.store.client.delete(runtime.store.session_key(hash_key(started.token)))
        clock.now += timedelta(seconds=TOUCH_INTERVAL_SECONDS)
        assert service.live_sessions(user.id) == []
        assert service.resolve(started.token) is None


def test_a_request_racing_the_ending_cannot_bring_the_session_back(runtime: Runtime) -> None:
    """The ending drops the store entry before it commits; a request on another process that
    reads the still-live row in between must not put the entry back."""
    user = create_user(runtime)
    with runtime.session_factory() as db:
        service = SessionService(db, runtime.store, runtime.settings)
        started = service.start(user, ClientInfo("192.0.2.1", FIREFOX_WINDOWS))
        db.commit()
        service.cache(started.token, started.session)
    with runtime.session_factory() as ending_db, runtime.session_factory() as other_db:
        ending = SessionService(ending_db, runtime.store, runtime.settings)
        other = SessionService(other_db, runtime.store, runtime.settings)
        assert ending.end(started.session.id, "ended_by_user", commit=False)
        # Not committed yet: the other process still reads a live row from the database.
        assert other.resolve(started.token) is None
        ending_db.commit()
    with runtime.session_factory() as db:
        service = SessionService(db, runtime.store, runtime.settings)
        assert service.resolve(started.token) is None
        assert runtime.store.client.get(runtime.store.session_key(hash_key(started.token))) is None


# Ending one --------------------------------------------------------------------------------


def test_signing_out_another_device_ends_it_at_its_next_request_with_its_tokens(
    live: Live, receiver: Receiver
) -> None:
    base, rt = live
    create_user(rt)
    shop = RelyingParty(base, register_client(rt, "Shop", backchannel_logout_uri=receiver.url))
    laptop = live_browser(base, FIREFOX_WINDOWS)
    tokens, _ = shop.sign_in(laptop)
    phone = live_browser(base, SAFARI_IPHONE)
    open_account(phone)
    laptop_sid = live_session_id(rt, laptop)

    confirm = phone.http.get(f"{base}/account/sessions/{laptop_sid}/end", timeout=10)
    assert confirm.status_code == 200
    assert "Sign out this device?" in confirm.text
    assert "Firefox 128 on Windows 10" in confirm.text and "Shop" in confirm.text
    assert not read_devices(confirm.text)  # nothing ended by looking
    assert laptop.http.get(base + "/account", allow_redirects=False, timeout=10).status_code == 200

    done = phone.http.post(
        f"{base}/account/sessions/{laptop_sid}/end",
        data={"csrf_token": csrf_token(confirm.text)},
        allow_redirects=False,
        timeout=10,
    )

    assert done.status_code == 303
    assert done.headers["Location"].endswith("/account/sessions?ended=1")
    after = laptop.http.get(base + "/account", allow_redirects=False, timeout=10)
    assert after.status_code == 303 and "/login" in after.headers["Location"]
    assert_tokens_dead(shop, tokens)
    with rt.session_factory() as db:
        logouts = [
            i.payload for i in db.scalars(select(OutboxItem)) if i.kind == BACKCHANNEL_LOGOUT
        ]
    assert [p["sid"] for p in logouts] == [laptop_sid]
    [event] = events(rt, EventTag.SESSION_ENDED)
    assert event.session_id == laptop_sid and event.details["reason"] == "ended_by_user"
    assert event.details["device"] == "Firefox 128 on Windows 10"
    listing = phone.http.get(urljoin(done.url, done.headers["Location"]), timeout=10)
    assert "1 session was signed out." in listing.text
    assert shown_session_ids(listing.text) == {live_session_id(rt, phone)}
    assert end_row(rt, laptop_sid).end_reason == "ended_by_user"


def test_signing_out_this_device_from_the_list_is_signing_out(app: Flask, runtime: Runtime) -> None:
    create_user(runtime)
    client = signed_in_client(app, FIREFOX_WINDOWS, "192.0.2.1")
    sid = client_session_id(runtime, client)
    confirm = client.get(f"/account/sessions/{sid}/end")
    assert "you will be signed out here" in confirm.get_data(as_text=True)

    done = client.post(
        f"/account/sessions/{sid}/end",
        data={"csrf_token": csrf_token(confirm.get_data(as_text=True))},
    )

    assert done.status_code == 303 and "/login?signed_out=1" in done.headers["Location"]
    assert not is_signed_in(client)
    assert len(events(runtime, EventTag.SESSION_ENDED)) == 1


def test_ending_an_already_ended_session_says_so_and_records_nothing_more(
    app: Flask, runtime: Runtime
) -> None:
    create_user(runtime)
    laptop = signed_in_client(app, FIREFOX_WINDOWS, "192.0.2.1")
    phone = signed_in_client(app, SAFARI_IPHONE, "192.0.2.2")
    sid = client_session_id(runtime, phone)
    token = csrf_token(laptop.get("/account/sessions").get_data(as_text=True))
    assert (
        laptop.post(f"/account/sessions/{sid}/end", data={"csrf_token": token}).status_code == 303
    )

    again = laptop.post(
        f"/account/sessions/{sid}/end", data={"csrf_token": token}, follow_redirects=True
    )

    assert "Nothing to sign out: that session had already ended." in again.get_data(as_text=True)
    assert len(events(runtime, EventTag.SESSION_ENDED)) == 1
    assert laptop.get(f"/account/sessions/{sid}/end").status_code == 404  # no longer live


# Ending all others -------------------------------------------------------------------------


def test_signing_out_all_other_devices_keeps_only_this_one(app: Flask, runtime: Runtime) -> None:
    create_user(runtime)
    laptop = signed_in_client(app, FIREFOX_WINDOWS, "192.0.2.1")
    phone = signed_in_client(app, SAFARI_IPHONE, "192.0.2.2")
    desktop = signed_in_client(app, CHROME_LINUX, "192.0.2.3")
    create_user(runtime, "bob@example.com", first_name="Bob")
    bob = signed_in_client(app, CHROME_LINUX, "192.0.2.4", "bob@example.com")
    listing = laptop.get("/account/sessions").get_data(as_text=True)
    assert "Sign out all other devices" in listing
    confirm = laptop.get("/account/sessions/end-others").get_data(as_text=True)
    assert "Sign out all other devices?" in confirm
    assert "Mobile Safari 17 on iOS 17" in confirm and "Chrome 126 on Linux" in confirm
    assert "192.0.2.1" not in confirm  # this session is not among those to end

    done = laptop.post(
        "/account/sessions/end-others",
        data={"csrf_token": csrf_token(confirm)},
        follow_redirects=True,
    )

    page = done.get_data(as_text=True)
    assert "2 sessions were signed out." in page
    assert shown_session_ids(page) == {client_session_id(runtime, laptop)}
    assert "No other device is signed in to your account." in page
    assert is_signed_in(laptop) and is_signed_in(bob)
    assert not is_signed_in(phone) and not is_signed_in(desktop)
    ended = events(runtime, EventTag.SESSION_ENDED)
    assert len(ended) == 2
    assert {e.details["reason"] for e in ended} == {"ended_by_user"}
    assert {e.details["by_session"] for e in ended} == {client_session_id(runtime, laptop)}


# Who may end what --------------------------------------------------------------------------


def test_another_users_session_is_not_found(app: Flask, runtime: Runtime) -> None:
    create_user(runtime)
    create_user(runtime, "bob@example.com", first_name="Bob")
    alice = signed_in_client(app, FIREFOX_WINDOWS, "192.0.2.1")
    bob = signed_in_client(app, CHROME_LINUX, "192.0.2.9", "bob@example.com")
    bobs = client_session_id(runtime, bob)
    token = csrf_token(alice.get("/account/sessions").get_data(as_text=True))

    assert alice.get(f"/account/sessions/{bobs}/end").status_code == 404
    assert (
        alice.post(f"/account/sessions/{bobs}/end", data={"csrf_token": token}).status_code == 404
    )
    for unknown in ("00000000-0000-0000-0000-000000000000", "x" * 300):
        assert (
            alice.post(f"/account/sessions/{unknown}/end", data={"csrf_token": token}).status_code
            == 404
        )

    assert is_signed_in(bob)
    assert end_row(runtime, bobs).ended_at is None
    assert events(runtime, EventTag.SESSION_ENDED) == []


def test_the_service_refuses_to_end_a_session_of_someone_else(runtime: Runtime) -> None:
    alice = create_user(runtime)
    bob = create_user(runtime, "bob@example.com", first_name="Bob")
    with runtime.session_factory() as db:
        sessions = SessionService(db, runtime.store, runtime.settings)
        started = sessions.start(bob, ClientInfo("192.0.2.9", CHROME_LINUX))
        db.commit()
        service = SessionListService(db, sessions, AccountService(db, runtime.passwords))
        with pytest.raises(SessionNotFound):
            service.end(alice.id, started.session.id)
        assert service.end(bob.id, started.session.id) is True


def test_forms_without_the_csrf_token_change_nothing(app: Flask, runtime: Runtime) -> None:
    create_user(runtime)
    laptop = signed_in_client(app, FIREFOX_WINDOWS, "192.0.2.1")
    phone = signed_in_client(app, SAFARI_IPHONE, "192.0.2.2")
    sid = client_session_id(runtime, phone)

    assert laptop.post(f"/account/sessions/{sid}/end").status_code == 400
    assert (
        laptop.post(f"/account/sessions/{sid}/end", data={"csrf_token": "forged"}).status_code
        == 400
    )
    assert laptop.post("/account/sessions/end-others", data={}).status_code == 400

    assert is_signed_in(phone)
    assert events(runtime, EventTag.SESSION_ENDED) == []


def test_signed_out_visitors_are_sent_to_sign_in(client: FlaskClient, runtime: Runtime) -> None:
    page = client.get("/account/sessions")
    assert page.status_code == 303
    assert page.headers["Location"].endswith("/login?next=/account/sessions")
    assert client.get("/account/sessions/end-others").status_code == 303


def test_the_account_page_links_to_account_access_and_password(
    app: Flask, runtime: Runtime
) -> None:
    create_user(runtime)
    page = signed_in_client(app, FIREFOX_WINDOWS, "192.0.2.1").get("/account")
    text = page.get_data(as_text=True)
    assert 'href="/account/sessions"' in text and 'href="/account/password"' in text


# Clock for the service-level tests ---------------------------------------------------------

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def test_odd_counts_in_the_address_are_ignored(app: Flask, runtime: Runtime) -> None:
    """The "N sessions ended" notices read a count from the address; anything but a few ASCII
    digits (a superscript two, a huge number) is no count, not an error page."""
    create_user(runtime)
    laptop = signed_in_client(app, FIREFOX_WINDOWS, "192.0.2.10")
    for odd in ("\u00b2", "9" * 5000, "-1"):
        for path in ("/account/sessions", "/account/password"):
            page = laptop.get(path, query_string={"ended": odd})
            assert page.status_code == 200, (path, odd)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_ending_a_session_while_its_token_is_renewed_guards_the_new_token(
    app: Flask, runtime: Runtime
) -> None:
    """A password change renews the session's token while another device signs it out: the
    ending waits for the renewal and guards the token that is then current, so the browser
    cannot get the ended session cached again under its new cookie."""
    create_user(runtime)
    laptop = signed_in_client(app, FIREFOX_WINDOWS, "192.0.2.1")
    sid = client_session_id(runtime, laptop)
    renewing = runtime.session_factory()  # the password change, not committed yet
    renewing.execute(
        update(UserSession).where(UserSession.id == sid).values(token_hash=hash_key("renewed"))
    )

    def end() -> bool:
        with runtime.session_factory() as db:
            return SessionService(db, runtime.store, runtime.settings).end(sid, "ended_by_user")

    assert waits_for(renewing, end)

    assert runtime.store.client.exists(runtime.store.session_ended_key(hash_key("renewed")))
    with runtime.session_factory() as db:
        assert SessionService(db, runtime.store, runtime.settings).resolve("renewed") is None
