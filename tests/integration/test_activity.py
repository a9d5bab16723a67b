"""The activity log pages: every filter alone and combined returns exactly the seeded rows, days
are whole days in the chosen time zone, keyset pages neither repeat nor skip rows while new
events arrive, the CSV export is the filtered view with formulas defused, organization admins
see only their own organization, and nothing can edit or delete an event."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, select, update

from idp.activity import ActivityService, UserScope, parse_filters
from idp.events import EventTag
from idp.models import Client, Device, Event, Membership, Role, UserSession
from idp.runtime import Runtime
from tests.helpers import PASSWORD, create_user, csrf_token, sign_in
from tests.organizations import post

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
_ROW_ID = re.compile(r'<tr data-event-id="(\d+)">')
_NEXT = re.compile(r'<a href="([^"]+)" rel="next">')


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def add_events(rt: Runtime, *events: dict[str, Any]) -> list[int]:
    """Insert events as given (the log's own writer stamps the current time)."""
    with rt.session_factory() as db:
        rows = [Event(**{"product": "account", "ip": "", "details": {}, **e}) for e in events]
        db.add_all(rows)
        db.commit()
        return [r.id for r in rows]


def forget_events(rt: Runtime) -> None:
    with rt.session_factory() as db:
        db.execute(delete(Event))
        db.commit()


def ids_on(html: str) -> list[int]:
    return [int(i) for i in _ROW_ID.findall(html)]


def page(client: FlaskClient, path: str, **args: str) -> tuple[int, str]:
    response = client.get(path, query_string=args)
    return response.status_code, response.get_data(as_text=True)


# Seeded data ------------------------------------------------------------------------------


@pytest.fixture
def alice(runtime: Runtime, client: FlaskClient) -> dict[str, Any]:
    """Alice, signed in, with a known log (and Bob, whose events she must never see)."""
    user = create_user(runtime)
    bob = create_user(runtime, "bob@example.com", first_name="Bob", last_name="Builder")
    assert sign_in(client).status_code == 303
    forget_events(runtime)  # the sign-in's own events would blur the expectations
    with runtime.session_factory() as db:
        db.add_all([
            Client(client_id="mail", name="Webmail", redirect_uris=["https://mail.example/cb"]),
            Client(client_id="drive", name="Drive", redirect_uris=["https://drive.example/cb"]),
        ])
        db.commit()
    u = user.id
    ids = add_events(
        runtime,
        dict(occurred_at=at("2026-03-01T08:00:00"), user_id=u, action=EventTag.LOGIN_SUCCESS,
             ip="203.0.113.5", details={"method": "password"}),
        dict(occurred_at=at("2026-03-01T09:00:00"), user_id=u, action=EventTag.LOGIN_FAILURE,
             ip="198.51.100.7", details={"reason": "bad_password", "user_agent": FIREFOX}),
        dict(occurred_at=at("2026-03-02T10:00:00"), user_id=u, action=EventTag.LOGIN_FAILURE,
             ip="198.51.100.7", details={"reason": "locked"}),
        dict(occurred_at=at("2026-03-02T11:00:00"), user_id=u, action=EventTag.ACCOUNT_LOCKED,
             details={"threshold": 10}),
        dict(occurred_at=at("2026-03-03T12:00:00"), user_id=u, action=EventTag.TOKEN_GRANTED,
             product="mail", details={"grant_type": "authorization_code", "scope": "openid"}),
        dict(occurred_at=at("2026-03-04T13:00:00"), user_id=u, action=EventTag.CONSENT_GRANTED,
             product="drive", details={"scope": "openid email"}),
        dict(occurred_at=at("2026-03-05T14:00:00"), user_id=u,
             action=EventTag.TWO_FACTOR_ENABLED, details={"method": "totp"}),
        dict(occurred_at=at("2026-03-05T15:00:00"), user_id=u, action=EventTag.ALERTS_CHANGED,
             details={"alert_on_success": "always", "alert_on_failure": True}),
        dict(occurred_at=at("2026-03-06T16:00:00"), user_id=u, action=EventTag.LOGOUT),
        dict(occurred_at=at("2026-03-06T17:00:00"), user_id=u, action="billing:invoice:paid",
             details={"amount": "100%"}),
        dict(occurred_at=at("2026-03-01T08:30:00"), user_id=bob.id,
             action=EventTag.LOGIN_SUCCESS, ip="203.0.113.5"),
    )
    return {"user": user, "bob": bob, "e": dict(enumerate(ids[:10], start=1))}


FILTER_CASES: list[tuple[str, dict[str, str], list[int]]] = [
    ("nothing", {}, [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]),
    ("date range", {"from": "2026-03-02", "to": "2026-03-03"}, [5, 4, 3]),
    ("from only", {"from": "2026-03-05"}, [10, 9, 8, 7]),
    ("to only", {"to": "2026-03-01"}, [2, 1]),
    ("product: an application", {"product": "mail"}, [5]),
    ("product: the account", {"product": "account"}, [10, 9, 8, 7, 4, 3, 2, 1]),
    ("product: unknown", {"product": "nothing"}, []),
    ("type: sign-ins", {"type": "sign-ins"}, [3, 2, 1]),
    ("type: sessions", {"type": "sessions"}, [9]),
    ("type: lockouts", {"type": "lockouts"}, [4]),
    ("type: security", {"type": "security"}, [7]),
    ("type: applications", {"type": "applications"}, [6, 5]),
    ("type: settings", {"type": "settings"}, [8]),
    ("text in the sentence only", {"q": "WRONG password"}, [2]),
    ("text in a reason's own sentence", {"q": "while your account was locked"}, [3]),
    ("text in sentences of two tags", {"q": "locked"}, [4, 3]),
    ("text in the details", {"q": "firefox"}, [2]),
    ("text in the IP address", {"q": "203.0.113"}, [1]),
    ("text in the application's name", {"q": "webMAIL"}, [5]),
    ("generic sentence of an unknown tag", {"q": "something happened"}, [10]),
    ("a percent sign is not a wildcard", {"q": "%"}, [10]),
    ("an underscore is not a wildcard", {"q": "bad_passwor_"}, []),
    ("text that nothing contains", {"q": "kangaroo"}, []),
    ("type and date", {"type": "sign-ins", "from": "2026-03-02", "to": "2026-03-02"}, [3]),
    ("type and text", {"type": "sign-ins", "q": "locked"}, [3]),
    ("product, type and date", {"product": "account", "type": "lockouts",
                                "from": "2026-03-01", "to": "2026-03-31"}, [4]),
    ("product and text", {"product": "drive", "q": "allowed"}, [6]),
    ("everything, nothing left", {"product": "mail", "type": "sign-ins"}, []),
]


@pytest.mark.parametrize(("args", "expected"), [c[1:] for c in FILTER_CASES],
                         ids=[c[0] for c in FILTER_CASES])
def test_filters_return_exactly_the_expected_rows(
    client: FlaskClient, alice: dict[str, Any], args: dict[str, str], expected: list[int]
) -> None:
    status, html = page(client, "/account/activity", **args)
    assert status == 200, html
    assert ids_on(html) == [alice["e"][n] for n in expected]


@pytest.mark.parametrize("text", ["Müller", "müller", "MÜLLER", 'Say "hi', "\\Share"])
def test_search_finds_accents_and_quotes_in_the_details(
    runtime: Runtime, client: FlaskClient, alice: dict[str, Any], text: str
) -> None:
    """The details are stored as JSON, which escapes non-ASCII letters, quotes and
    backslashes: the search still finds what the reader sees."""
    (renamed,) = add_events(runtime, dict(
        occurred_at=at("2026-03-08T10:00:00"), user_id=alice["user"].id,
        action=EventTag.ORGANIZATION_RENAMED,
        details={"from": "Müller AG", "to": 'Say "hi" \\Share'}))
    status, html = page(client, "/account/activity", q=text)
    assert status == 200
    assert ids_on(html) == [renamed]


def test_each_row_says_what_happened_where_and_from_which_device(
    runtime: Runtime, client: FlaskClient, alice: dict[str, Any]
) -> None:
    user = alice["user"]
    with runtime.session_factory() as db:
        device = Device(user_id=user.id, browser_key_hash="k" * 64, browser="Chrome 131",
                        os="Windows 10")
        db.add(device)
        db.flush()
        db.add(UserSession(id="s-1", token_hash="t" * 64, user_id=user.id, device_id=device.id,
                           expires_at=at("2026-04-01T00:00:00")))
        db.commit()
        device_id = device.id
    by_device, by_session = add_events(
        runtime,
        dict(occurred_at=at("2026-03-10T12:00:00"), user_id=user.id,
             action=EventTag.LOGIN_SUCCESS, device_id=device_id, ip="192.0.2.1"),
        dict(occurred_at=at("2026-03-10T12:05:00"), user_id=user.id, action=EventTag.LOGOUT,
             session_id="s-1"),
    )
    _, html = page(client, "/account/activity", tz="Europe/Zurich", **{"from": "2026-03-10"})
    assert ids_on(html) == [by_session, by_device]
    assert '<time datetime="2026-03-10T12:00:00Z">2026-03-10 13:00:00 CET</time>' in html
    assert html.count("Chrome 131 on Windows 10") == 2  # the device, and the session's device
    assert "You signed in" in html and "You signed out" in html and "192.0.2.1" in html

    _, html = page(client, "/account/activity", **{"to": "2026-03-04"})
    assert "Firefox 128 on Linux" in html  # a failed sign-in's User-Agent
    assert "Someone tried to sign in with a wrong password" in html
    assert "Webmail" in html and "Drive" in html and "Your account" in html


@pytest.mark.parametrize("zone", ["Europe/Zurich", "America/New_York"])
def test_date_range_boundaries_are_whole_days_in_the_chosen_zone(
    runtime: Runtime, client: FlaskClient, alice: dict[str, Any], zone: str
) -> None:
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(zone)
    first = datetime(2026, 3, 10, 0, 0, 0, tzinfo=tz)
    last = datetime(2026, 3, 10, 23, 59, 59, 999999, tzinfo=tz)
    u = alice["user"].id
    before, first_id, last_id, after = add_events(
        runtime,
        *(dict(occurred_at=t.astimezone(UTC), user_id=u, action=EventTag.LOGIN_SUCCESS)
          for t in (first - timedelta(microseconds=1), first, last,
                    last + timedelta(microseconds=1))),
    )
    _, html = page(client, "/account/activity", tz=zone,
                   **{"from": "2026-03-10", "to": "2026-03-10"})
    assert ids_on(html) == [last_id, first_id]
    assert "00:00:00" in html and "23:59:59" in html
    _, html = page(client, "/account/activity", tz=zone, **{"from": "2026-03-11"})
    assert ids_on(html) == [after]
    _, html = page(client, "/account/activity", tz=zone,
                   **{"from": "2026-03-09", "to": "2026-03-09"})
    assert ids_on(html) == [before]


def test_the_day_daylight_saving_begins_has_its_last_second(
    runtime: Runtime, client: FlaskClient, alice: dict[str, Any]
) -> None:
    u = alice["user"].id
    inside, outside = add_events(
        runtime,  # 23:59:59 CEST on the 29th, and midnight after it
        dict(occurred_at=at("2026-03-29T21:59:59"), user_id=u, action=EventTag.LOGOUT),
        dict(occurred_at=at("2026-03-29T22:00:00"), user_id=u, action=EventTag.LOGOUT),
    )
    _, html = page(client, "/account/activity", tz="Europe/Zurich",
                   **{"from": "2026-03-29", "to": "2026-03-29"})
    assert ids_on(html) == [inside]
    assert "2026-03-29 23:59:59 CEST" in html
    _, html = page(client, "/account/activity", tz="Europe/Zurich",
                   **{"from": "2026-03-30", "to": "2026-03-30"})
    assert ids_on(html) == [outside]


def test_pages_neither_repeat_nor_skip_rows_while_new_events_arrive(
    runtime: Runtime, client: FlaskClient, alice: dict[str, Any]
) -> None:
    forget_events(runtime)
    u = alice["user"].id
    base = at("2026-02-01T00:00:00")
    # 130 events, in pairs sharing one timestamp: the id breaks the tie.
    seeded = add_events(runtime, *(
        dict(occurred_at=base + timedelta(minutes=i // 2), user_id=u,
             action=EventTag.LOGIN_SUCCESS if i % 3 else EventTag.LOGIN_FAILURE)
        for i in range(130)))
    expected = list(reversed(seeded))  # times and ids both grow: newest first is reversed

    seen: list[int] = []
    path, args = "/account/activity", {"type": "sign-ins"}
    for round_ in range(10):
        status, html = page(client, path, **args)
        assert status == 200
        seen += ids_on(html)
        # Meanwhile, new events: newer than everything, and one at the very instant of the
        # last row shown (a higher id, so it sorts before it and must not appear later).
        last_time = base + timedelta(minutes=(seeded.index(seen[-1]) // 2))
        add_events(runtime,
                   dict(occurred_at=datetime.now(UTC), user_id=u, action=EventTag.LOGIN_SUCCESS),
                   dict(occurred_at=last_time, user_id=u, action=EventTag.LOGIN_SUCCESS))
        found = _NEXT.search(html)
        if found is None:
            break
        query = parse_qs(urlsplit(found.group(1).replace("&amp;", "&")).query)
        assert query["type"] == ["sign-ins"]  # the filters travel with the cursor
        args = {k: v[0] for k, v in query.items()}
    assert round_ == 2  # 50 + 50 + 30
    assert seen == expected
    assert len(set(seen)) == len(seen)


def test_export_is_every_filtered_row_with_formulas_defused(
    runtime: Runtime, client: FlaskClient, alice: dict[str, Any]
) -> None:
    u = alice["user"].id
    with runtime.session_factory() as db:
        db.add(Client(client_id="evil", name='=HYPERLINK("https://evil.example","x")',
                      redirect_uris=["https://evil.example/cb"]))
        db.add(Device(id="d-evil", user_id=u, browser_key_hash="e" * 64, browser="@SUM(1+1)"))
        db.commit()
    evil = add_events(
        runtime,
        dict(occurred_at=at("2026-03-07T10:00:00"), user_id=u, action=EventTag.TOKEN_GRANTED,
             product="evil", ip="-2+3", device_id="d-evil"),
        dict(occurred_at=at("2026-03-07T11:00:00"), user_id=u, action=EventTag.TOKEN_REVOKED,
             product="+cmd|' /C calc'!A0"),
    )
    response = client.get("/account/activity.csv", query_string={
        "type": "applications", "tz": "Europe/Zurich"})
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True).removeprefix("\ufeff"))))
    e = alice["e"]
    assert [int(r["id"]) for r in rows] == [evil[1], evil[0], e[6], e[5]]
    assert rows[1]["product_name"] == '\'=HYPERLINK("https://evil.example","x")'
    assert rows[1]["ip"] == "'-2+3" and rows[1]["device"] == "'@SUM(1+1)"
    assert rows[0]["product"] == "'+cmd|' /C calc'!A0"
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value
    assert rows[2]["time"] == "2026-03-04T14:00:00+01:00"
    assert rows[2]["time_utc"] == "2026-03-04T13:00:00Z"
    assert rows[2]["sentence"] == "You allowed an application to use your account"


def test_export_is_in_the_readers_language(client: FlaskClient, alice: dict[str, Any]) -> None:
    """The file is streamed after the view returned: its sentences and labels are still in
    the language of the page it was downloaded from."""
    response = client.get("/account/activity.csv", query_string={"product": "drive"},
                          headers={"Accept-Language": "fr"})
    [row] = csv.DictReader(io.StringIO(response.get_data(as_text=True).removeprefix("\ufeff")))
    assert row["sentence"] == "Vous avez autorisé une application à utiliser votre compte"
    assert row["action_label"] == "Consentement donné"
    response = client.get("/account/activity.csv", query_string={"product": "account",
                          "type": "sessions"}, headers={"Accept-Language": "fr"})
    [row] = csv.DictReader(io.StringIO(response.get_data(as_text=True).removeprefix("\ufeff")))
    assert row["product_name"] == "Votre compte"


def test_export_streams_all_rows_beyond_one_batch(
    runtime: Runtime, alice: dict[str, Any]
) -> None:
    with runtime.session_factory() as db:
        service = ActivityService(db)
        filters = parse_filters({"product": "account"})
        everything = [r.id for r in service.iter_rows(UserScope(alice["user"].id), filters, 3)]
    assert everything == [alice["e"][n] for n in (10, 9, 8, 7, 4, 3, 2, 1)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"from": "2026-02-30"}, "Enter the start date as YYYY-MM-DD"),
        ({"to": "last week"}, "Enter the end date as YYYY-MM-DD"),
        ({"from": "2026-03-05", "to": "2026-03-01"}, "The start date is after the end date."),
        ({"type": "hacking"}, "Unknown type of action"),
        ({"cursor": "bm9wZQ"}, "This page link is not valid"),
        # "1:5:<a row id past BIGINT>"
        ({"cursor": "MTo1Ojk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5"}, "This page link is not valid"),
        ({"cursor": "MTo1OsKy"}, "This page link is not valid"),  # "1:5:²"
        ({"tz": "Europe/Atlantis"}, "Unknown time zone"),
        # PostgreSQL refuses a NUL in a query; the export had already answered 200
        ({"q": "a\x00b"}, "The search contains characters that cannot be shown."),
        ({"q": "a\x07b"}, "The search contains characters that cannot be shown."),
    ],
)
def test_bad_filters_answer_400_with_a_clear_message(
    client: FlaskClient, alice: dict[str, Any], args: dict[str, str], message: str
) -> None:
    for path in ("/account/activity", "/account/activity.csv"):
        status, html = page(client, path, **args)
        assert status == 400
        assert 'role="alert"' in html and message in html
        assert ids_on(html) == []


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_the_log_cannot_be_edited_or_deleted(
    client: FlaskClient, alice: dict[str, Any], method: str
) -> None:
    org_paths = ["/organizations/x/activity", "/organizations/x/activity.csv"]
    for path in ["/account/activity", "/account/activity.csv", *org_paths]:
        assert client.open(path, method=method).status_code == 405, path


def test_signed_out_visitors_are_sent_to_sign_in(runtime: Runtime, client: FlaskClient) -> None:
    response = client.get("/account/activity?type=lockouts")
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/login?next=")
    assert client.get("/account/activity.csv").status_code == 303
    assert client.get("/organizations/x/activity").status_code == 303


def test_the_account_page_links_to_the_log(client: FlaskClient, alice: dict[str, Any]) -> None:
    assert 'href="/account/activity"' in client.get("/account").get_data(as_text=True)


# Organizations ----------------------------------------------------------------------------


@pytest.fixture
def orgs(runtime: Runtime, client: FlaskClient) -> dict[str, Any]:
    """Acme (Alice owner, Carol admin, Bob member) and Globex (Dave owner, Erin member)."""
    people = {
        "alice": create_user(runtime, "alice@example.com", organization="Acme", role=Role.OWNER),
        "carol": create_user(runtime, "carol@example.com", organization="Acme", role=Role.ADMIN,
                             first_name="Carol", last_name="Danvers"),
        "bob": create_user(runtime, "bob@example.com", organization="Acme", role=Role.MEMBER,
                           first_name="Bob", last_name="Builder"),
        "dave": create_user(runtime, "dave@example.com", organization="Globex",
                            role=Role.OWNER, first_name="Dave"),
        "erin": create_user(runtime, "erin@example.com", organization="Globex",
                            role=Role.MEMBER, first_name="Erin"),
    }
    forget_events(runtime)
    with runtime.session_factory() as db:  # members since January (the events are in March)
        db.execute(update(Membership).values(created_at=at("2026-01-01T00:00:00")))
        db.commit()
    ids = add_events(runtime, *(
        dict(occurred_at=at("2026-03-01T08:00:00") + timedelta(hours=i), user_id=user.id,
             action=EventTag.LOGIN_SUCCESS, ip=f"192.0.2.{i}")
        for i, user in enumerate(people.values())))
    with runtime.session_factory() as db:
        from idp.accounts import AccountService

        accounts = AccountService(db, runtime.passwords)
        acme, globex = accounts.find_organization("Acme"), accounts.find_organization("Globex")
        assert acme is not None and globex is not None
    return {"people": people, "events": dict(zip(people, ids, strict=True)),
            "acme": acme.id, "globex": globex.id}


def _sign_in_as(client: FlaskClient, email: str) -> None:
    assert sign_in(client, email).status_code == 303


def test_an_owner_sees_the_members_activity_and_can_pick_one_member(
    runtime: Runtime, client: FlaskClient, orgs: dict[str, Any]
) -> None:
    _sign_in_as(client, "alice@example.com")
    ev = orgs["events"]
    path = f"/organizations/{orgs['acme']}/activity"
    status, html = page(client, path, **{"to": "2026-03-31"})
    assert status == 200
    assert ids_on(html) == [ev["bob"], ev["carol"], ev["alice"]]
    assert "Bob Builder signed in" in html and "erin@example.com" not in html

    status, html = page(client, path, member=orgs["people"]["bob"].id)
    assert status == 200
    assert set(ids_on(html)) == {ev["bob"]}

    _, html = page(client, path, q="danvers")  # the member's name
    assert ids_on(html) == [ev["carol"]]

    response = client.get(path + ".csv", query_string={"to": "2026-03-31"})
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True).removeprefix("\ufeff"))))
    assert [(r["member"], r["member_email"]) for r in rows] == [
        ("Bob Builder", "bob@example.com"),
        ("Carol Danvers", "carol@example.com"),
        ("Alice Liddell", "alice@example.com"),
    ]


def test_what_someone_did_before_joining_is_not_the_organizations_business(
    runtime: Runtime, client: FlaskClient, orgs: dict[str, Any]
) -> None:
    """Frank had an account (sign-ins, a password change) before Acme invited him in April:
    Acme's owner sees what he does from then on, in the list, with the member filter, in the
    search and in the CSV export, never what came before."""
    frank = create_user(runtime, "frank@example.com", first_name="Frank")
    before_sign_in, before_password, after_sign_in = add_events(
        runtime,
        dict(occurred_at=at("2026-03-10T08:00:00"), user_id=frank.id,
             action=EventTag.LOGIN_SUCCESS, ip="198.51.100.7"),
        dict(occurred_at=at("2026-03-11T08:00:00"), user_id=frank.id,
             action=EventTag.PASSWORD_CHANGED, ip="198.51.100.7"),
        dict(occurred_at=at("2026-04-02T08:00:00"), user_id=frank.id,
             action=EventTag.LOGIN_SUCCESS, ip="203.0.113.9"),
    )
    with runtime.session_factory() as db:
        db.add(Membership(user_id=frank.id, organization_id=orgs["acme"], role=Role.MEMBER,
                          created_at=at("2026-04-01T00:00:00")))
        db.commit()
    _sign_in_as(client, "alice@example.com")
    path = f"/organizations/{orgs['acme']}/activity"
    for member in (None, frank.id):
        _, html = page(client, path, to="2026-04-30", **({"member": member} if member else {}))
        shown = ids_on(html)
        assert after_sign_in in shown
        assert before_sign_in not in shown and before_password not in shown
    assert ids_on(page(client, path, q="198.51.100.7")[1]) == []
    assert ids_on(page(client, path, q="203.0.113.9")[1]) == [after_sign_in]
    export = client.get(path + ".csv", query_string={"to": "2026-04-30"}).get_data(as_text=True)
    assert "203.0.113.9" in export and "198.51.100.7" not in export
    # Frank's own log still has everything.
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/account").get_data(
        as_text=True))})
    _sign_in_as(client, "frank@example.com")
    mine = ids_on(page(client, "/account/activity", to="2026-04-30")[1])
    assert {before_sign_in, before_password, after_sign_in} <= set(mine)


def test_what_a_member_did_in_another_organization_stays_there(
    runtime: Runtime, client: FlaskClient, orgs: dict[str, Any]
) -> None:
    """Bob, a member of Acme, also runs his own Globex team: Acme's owner sees his sign-ins,
    never his Globex invitations (with their addresses) or renames."""
    bob = orgs["people"]["bob"]
    with runtime.session_factory() as db:
        db.add(Membership(user_id=bob.id, organization_id=orgs["globex"], role=Role.ADMIN))
        db.commit()
    base = at("2026-03-02T08:00:00")
    elsewhere, at_acme = add_events(
        runtime,
        dict(occurred_at=base, user_id=bob.id, organization_id=orgs["globex"],
             action=EventTag.MEMBER_INVITED, details={"email": "secret@globex.example"}),
        dict(occurred_at=base + timedelta(hours=1), user_id=bob.id, organization_id=orgs["acme"],
             action=EventTag.MEMBER_INVITED, details={"email": "new@acme.example"}),
    )
    _sign_in_as(client, "alice@example.com")
    path = f"/organizations/{orgs['acme']}/activity"
    for member in (None, bob.id):
        _, html = page(client, path, to="2026-03-31", **({"member": member} if member else {}))
        shown = ids_on(html)
        assert at_acme in shown and orgs["events"]["bob"] in shown
        assert elsewhere not in shown
    assert ids_on(page(client, path, q="secret")[1]) == []
    export = client.get(path + ".csv", query_string={"to": "2026-03-31"}).get_data(as_text=True)
    assert "secret@globex.example" not in export and "new@acme.example" in export


def test_what_a_member_did_in_a_deleted_organization_stays_out(
    app: Flask, runtime: Runtime, client: FlaskClient, orgs: dict[str, Any]
) -> None:
    """Bob, a member of Acme, owns Globex too, invites someone there, then deletes Globex: its
    events lose their organization, but they never were Acme's business (and "Bob deleted
    the organization" in Acme's log would read as if Acme were gone)."""
    bob = orgs["people"]["bob"]
    with runtime.session_factory() as db:
        db.add(Membership(user_id=bob.id, organization_id=orgs["globex"], role=Role.OWNER))
        db.commit()
    (invited,) = add_events(runtime, dict(
        occurred_at=at("2026-03-02T08:00:00"), user_id=bob.id, organization_id=orgs["globex"],
        action=EventTag.MEMBER_INVITED, details={"email": "secret@globex.example"}))
    owner = app.test_client()
    _sign_in_as(owner, "bob@example.com")
    assert post(owner, f"/organizations/{orgs['globex']}/delete",
                password=PASSWORD).status_code == 303
    with runtime.session_factory() as db:
        deleted = db.scalar(select(Event.id).where(Event.action == EventTag.ORGANIZATION_DELETED))
    assert invited in ids_on(page(owner, "/account/activity")[1])  # his own log keeps them
    _sign_in_as(client, "alice@example.com")
    path = f"/organizations/{orgs['acme']}/activity"
    for args in ({}, {"member": bob.id}):
        _, html = page(client, path, **args)
        shown = ids_on(html)
        assert orgs["events"]["bob"] in shown
        assert invited not in shown and deleted not in shown
    assert "secret@globex.example" not in client.get(path + ".csv").get_data(as_text=True)


def test_what_the_idp_command_did_to_the_organization_shows_in_its_log_only(
    runtime: Runtime, client: FlaskClient, orgs: dict[str, Any]
) -> None:
    """``idp org create`` and ``idp sso link`` record events without a user: the
    organization's admins see them (by an operator); another organization's, and a former
    member's de-identified events, stay out."""
    base = at("2026-03-03T08:00:00")
    ours, linked, theirs, former = add_events(
        runtime,
        dict(occurred_at=base, organization_id=orgs["acme"], action=EventTag.ORGANIZATION_CREATED,
             details={"name": "Acme", "by": "operator"}),
        dict(occurred_at=base + timedelta(hours=1), organization_id=orgs["acme"],
             action=EventTag.SSO_CONNECTION_SAVED,
             details={"domains": ["acme.example"], "by": "operator"}),
        dict(occurred_at=base + timedelta(hours=2), organization_id=orgs["globex"],
             action=EventTag.SSO_CONNECTION_SAVED,
             details={"domains": ["globex.example"], "by": "operator"}),
        dict(occurred_at=base + timedelta(hours=3), organization_id=orgs["acme"],
             action=EventTag.USER_DELETED),
    )
    _sign_in_as(client, "carol@example.com")  # an admin of Acme
    path = f"/organizations/{orgs['acme']}/activity"
    _, html = page(client, path, to="2026-03-31")
    shown = ids_on(html)
    assert linked in shown and ours in shown
    assert theirs not in shown and former not in shown
    assert "An operator linked the organization to its Entra ID tenant" in html
    assert ids_on(page(client, path, q="globex")[1]) == []
    export = client.get(path + ".csv", query_string={"to": "2026-03-31"}).get_data(as_text=True)
    assert "acme.example" in export and "globex.example" not in export
    # picking a member shows that member's events only
    bob = orgs["people"]["bob"].id
    assert linked not in ids_on(page(client, path, member=bob)[1])


def test_what_a_former_admin_did_stays_in_the_organizations_log(
    app: Flask, runtime: Runtime, client: FlaskClient, orgs: dict[str, Any]
) -> None:
    """Carol, an admin, makes Bob an admin and then leaves: the owner still sees who did it
    and that she left (the organization's own record), but none of her account's events."""
    bob = orgs["people"]["bob"]
    admin = app.test_client()
    _sign_in_as(admin, "carol@example.com")
    acme = orgs["acme"]
    assert post(admin, f"/organizations/{acme}/members/{bob.id}/role", role="admin"
                ).status_code == 303
    assert post(admin, f"/organizations/{acme}/leave").status_code == 303
    with runtime.session_factory() as db:
        role_change, left = (db.scalar(select(Event.id).where(Event.action == tag))
                             for tag in (EventTag.MEMBER_ROLE_CHANGED, EventTag.MEMBER_LEFT))
    _sign_in_as(client, "alice@example.com")
    _, html = page(client, f"/organizations/{acme}/activity")
    shown = ids_on(html)
    assert role_change in shown and left in shown
    assert "Carol Danvers changed a member&#39;s role" in html
    assert "Carol Danvers left the organization" in html
    assert orgs["events"]["carol"] not in shown  # her sign-in: her business now
    assert ids_on(page(client, f"/organizations/{acme}/activity", q="danvers")[1]) == [
        left, role_change]


def test_an_organizations_lockout_policy_stays_in_its_log(
    app: Flask, runtime: Runtime, client: FlaskClient, orgs: dict[str, Any]
) -> None:
    """Carol, an admin of Acme and of Globex, sets Acme's lockout floor: Globex's owner never
    sees it (it is Acme's policy), and Acme's owner still does after Carol left."""
    carol = orgs["people"]["carol"]
    with runtime.session_factory() as db:
        db.add(Membership(user_id=carol.id, organization_id=orgs["globex"], role=Role.ADMIN))
        db.commit()
    admin = app.test_client()
    _sign_in_as(admin, "carol@example.com")
    acme = orgs["acme"]
    members = admin.get(f"/organizations/{acme}/members").get_data(as_text=True)
    assert admin.post(f"/organizations/{acme}/lockout-floor", data={
        "csrf_token": csrf_token(members), "floor": "6"}).status_code == 303
    with runtime.session_factory() as db:
        floor = db.scalar(select(Event.id).where(
            Event.action == EventTag.LOCKOUT_THRESHOLD_CHANGED))
    _sign_in_as(client, "dave@example.com")  # Globex's owner
    globex = f"/organizations/{orgs['globex']}/activity"
    assert floor not in ids_on(page(client, globex)[1])
    assert floor not in ids_on(page(client, globex, member=carol.id)[1])
    assert "organization_floor" not in client.get(globex + ".csv").get_data(as_text=True)

    assert post(admin, f"/organizations/{acme}/leave").status_code == 303
    owner = app.test_client()
    _sign_in_as(owner, "alice@example.com")
    _, html = page(owner, f"/organizations/{acme}/activity")
    assert floor in ids_on(html)
    assert "Carol Danvers changed after how many failed attempts accounts lock" in html


def test_what_a_deleted_account_did_shows_by_a_former_member_in_the_readers_language(
    app: Flask, runtime: Runtime, client: FlaskClient, orgs: dict[str, Any]
) -> None:
    """Carol, an admin, makes Bob an admin, then deletes her account: her events are
    de-identified, and the organization's log names her "a former member" (translated)."""
    admin = app.test_client()
    _sign_in_as(admin, "carol@example.com")
    acme, bob = orgs["acme"], orgs["people"]["bob"]
    assert post(admin, f"/organizations/{acme}/members/{bob.id}/role", role="admin"
                ).status_code == 303
    assert post(admin, "/account/delete", password=PASSWORD).status_code == 303
    _sign_in_as(client, "alice@example.com")
    path = f"/organizations/{acme}/activity"
    _, html = page(client, path)
    assert "A former member changed a member&#39;s role" in html
    html = client.get(path, headers={"Accept-Language": "de"}).get_data(as_text=True)
    assert "Ein ehemaliges Mitglied hat die Rolle eines Mitglieds geändert" in html


def test_a_member_of_another_organization_cannot_be_picked(
    client: FlaskClient, orgs: dict[str, Any]
) -> None:
    _sign_in_as(client, "carol@example.com")  # an admin of Acme
    status, html = page(client, f"/organizations/{orgs['acme']}/activity",
                        member=orgs["people"]["erin"].id)
    assert status == 400 and "Unknown member" in html
    assert ids_on(html) == []


def test_an_admin_of_one_organization_cannot_read_another_organizations_log(
    client: FlaskClient, orgs: dict[str, Any]
) -> None:
    _sign_in_as(client, "carol@example.com")
    for suffix in ("", ".csv"):
        assert client.get(f"/organizations/{orgs['globex']}/activity{suffix}").status_code == 403
        assert client.get(f"/organizations/{orgs['acme']}/activity{suffix}").status_code == 200
        assert client.get(f"/organizations/no-such-org/activity{suffix}").status_code == 403


def test_a_member_cannot_read_the_admin_view(client: FlaskClient, orgs: dict[str, Any]) -> None:
    _sign_in_as(client, "bob@example.com")
    for suffix in ("", ".csv"):
        response = client.get(f"/organizations/{orgs['acme']}/activity{suffix}")
        assert response.status_code == 403
        assert "Bob" not in response.get_data(as_text=True)
    assert client.get("/account/activity").status_code == 200  # their own log, of course
