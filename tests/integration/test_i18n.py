"""Languages (issue 8, item 1): how a page's language is chosen, the switcher, the account's
setting, localized dates, and a mail in the recipient's language at a real SMTP server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from idp.i18n import COOKIE, from_ui_locales, mail_time, supported
from idp.mail import queue_mail
from idp.mail.messages import (
    Message,
    account_language,
    account_unlocked,
    login_alert_failures,
    login_alert_success,
)
from idp.models import User
from idp.runtime import Runtime
from idp.worker import build_worker
from tests.conftest import make_settings, running_app
from tests.helpers import create_user, csrf_token, sign_in
from tests.mailserver import MailServer

ALICE = "alice@example.com"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
HEADINGS = {"en": "Sign in", "fr": "Se connecter", "de": "Anmelden", "it": "Accedi"}


def _lang(html: str) -> str:
    match = re.search(r'<html lang="([^"]+)"', html)
    assert match
    return match.group(1)


def _login_page(client: FlaskClient, path: str = "/login", **headers: str) -> str:
    response = client.get(path, headers=headers)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def _set_locale(rt: Runtime, email: str, locale: str | None) -> None:
    with rt.session_factory() as db:
        db.execute(update(User).where(User.email_normalized == email).values(locale=locale))
        db.commit()


def test_english_without_any_preference(client: FlaskClient) -> None:
    html = _login_page(client)
    assert _lang(html) == "en"
    assert "<h1>Sign in</h1>" in html


@pytest.mark.parametrize("lang", ["fr", "de", "it"])
def test_accept_language_picks_the_page_language(client: FlaskClient, lang: str) -> None:
    html = _login_page(client, **{"Accept-Language": f"{lang}-CH, en;q=0.5"})
    assert _lang(html) == lang
    assert f"<h1>{HEADINGS[lang]}</h1>" in html


def test_an_unsupported_browser_language_falls_back_to_english(client: FlaskClient) -> None:
    assert _lang(_login_page(client, **{"Accept-Language": "ja, pt;q=0.8"})) == "en"


def test_ui_locales_of_the_relying_service_when_the_browser_says_nothing_usable(
    client: FlaskClient,
) -> None:
    nxt = quote("/authorize?client_id=x&ui_locales=es de-CH fr", safe="")
    assert _lang(_login_page(client, f"/login?next={nxt}")) == "de"
    # the browser's Accept-Language comes first (the order)
    html = _login_page(client, f"/login?next={nxt}", **{"Accept-Language": "it"})
    assert _lang(html) == "it"
    assert _lang(_login_page(client, "/login?ui_locales=fr")) == "fr"


def test_the_provider_error_page_marks_the_english_detail_as_english(
    client: FlaskClient,
) -> None:
    """The page is French; the protocol detail (for the application's developer) stays in
    English and says so, so a screen reader does not read it with French rules (WCAG 3.1.2)."""
    response = client.get(
        "/authorize?response_type=code&client_id=no-such-client&scope=openid"
        "&redirect_uri=https%3A%2F%2Frp.example%2Fcb",
        headers={"Accept-Language": "fr"},
    )
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert _lang(html) == "fr"
    detail = re.search(r'<span lang="en">([^<]+)</span>', html)
    assert detail is not None and detail.group(1).strip()
    assert "Erreur" in html


def test_the_switcher_sets_a_cookie_that_wins_over_the_browser(client: FlaskClient) -> None:
    html = _login_page(client, **{"Accept-Language": "de"})
    switcher = re.search(r'data-testid="language-switcher".*?</nav>', html, re.S)
    assert switcher and 'lang="fr"' in switcher.group(0) and ">Français<" in switcher.group(0)
    assert 'aria-current="true">Deutsch<' in switcher.group(0)

    response = client.get("/language?lang=fr&next=/login")
    assert response.status_code == 303 and response.headers["Location"].endswith("/login")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=fr;") and "SameSite=Lax" in cookie
    assert "Max-Age=31536000" in cookie
    assert _lang(_login_page(client, **{"Accept-Language": "de"})) == "fr"


def test_the_switcher_refuses_unknown_languages_and_foreign_targets(
    client: FlaskClient,
) -> None:
    assert client.get("/language?lang=xx").status_code == 400
    response = client.get("/language?lang=it&next=https://evil.example/")
    assert response.status_code == 303 and response.headers["Location"].endswith("/login")


def test_the_account_setting_wins_and_is_set_on_the_profile_page(
    app: Flask, client: FlaskClient, runtime: Runtime
) -> None:
    create_user(runtime)
    assert sign_in(client).status_code == 303
    page = client.get("/account/profile", headers={"Accept-Language": "de"})
    html = page.get_data(as_text=True)
    assert _lang(html) == "de"
    assert '<option value="it" lang="it">Italiano</option>' in html
    response = client.post(
        "/account/profile/language",
        data={"csrf_token": csrf_token(html), "locale": "it"},
        headers={"Accept-Language": "de"},
    )
    assert response.status_code == 303
    client.delete_cookie(COOKIE)  # the account's setting, not the cookie set with it
    html = client.get("/account/profile", headers={"Accept-Language": "de"}).get_data(
        as_text=True
    )
    assert _lang(html) == "it" and "Il suo profilo" in html
    assert "La sua lingua è stata salvata." not in html  # a notice only after saving
    with runtime.session_factory() as db:
        assert db.query(User).one().locale == "it"

    # back to "the language of my browser"
    client.post(
        "/account/profile/language", data={"csrf_token": csrf_token(html), "locale": ""}
    )
    client.delete_cookie(COOKIE)
    html = client.get("/account/profile", headers={"Accept-Language": "de"}).get_data(
        as_text=True
    )
    assert _lang(html) == "de"
    assert client.post(
        "/account/profile/language", data={"csrf_token": csrf_token(html), "locale": "xx"}
    ).status_code == 400


def test_python_messages_and_activity_sentences_are_translated(
    client: FlaskClient, runtime: Runtime
) -> None:
    response = client.post(
        "/login",
        data={"csrf_token": csrf_token(_login_page(client)), "email": "", "password": ""},
        headers={"Accept-Language": "fr"},
    )
    assert "Saisissez votre adresse e-mail et votre mot de passe." in response.get_data(
        as_text=True
    )
    create_user(runtime)
    sign_in(client)
    html = client.get("/account/activity", headers={"Accept-Language": "de"}).get_data(
        as_text=True
    )
    assert "Sie haben sich angemeldet" in html and "Anmeldung" in html
    assert "You signed in" not in html


def test_dates_are_localized(client: FlaskClient, runtime: Runtime) -> None:
    create_user(runtime)
    sign_in(client)
    html = client.get("/account", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    month = r"(janv|févr|mars|avr|mai|juin|juil|août|sept|oct|nov|déc)"
    assert re.search(r"\d{1,2} " + month + r"\.? \d{4} \d\d:\d\d UTC", html), html
    assert mail_time("2025-03-01 14:05 UTC", "de") == "01.03.2025 14:05 UTC"
    assert mail_time("2025-03-01 14:05 UTC", "it") == "1 mar 2025 14:05 UTC"
    assert mail_time("not a time", "fr") == "not a time"


def test_language_tags() -> None:
    assert supported("fr-CH") == "fr" and supported("DE_at") == "de"
    assert supported("es") is None and supported(None) is None
    assert from_ui_locales("es  it-IT fr") == "it"
    assert from_ui_locales("") is None


def test_a_mail_to_an_account_is_in_the_account_language() -> None:
    assert account_language(User(locale="de")) == "de"
    assert account_language(User(locale="it-CH")) == "it"
    assert account_language(User(locale=None)) == "en"


# A mail in the recipient's language ---------------------------------------------------------


@pytest.fixture
def mail_app(
    tmp_path: Path, database_url: str, redis_url: str, smtp: MailServer
) -> Iterator[Flask]:
    settings = make_settings(
        tmp_path, database_url=database_url, redis_url=redis_url, smtp_url=smtp.url
    )
    with running_app(settings) as app:
        yield app


def _text(mail: EmailMessage) -> str:
    part = mail.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def _html(mail: EmailMessage) -> str:
    part = mail.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def test_a_login_alert_in_french_for_a_french_account(
    mail_app: Flask, smtp: MailServer
) -> None:
    rt: Runtime = mail_app.extensions["idp"]
    create_user(rt)
    _set_locale(rt, ALICE, "fr")
    browser = mail_app.test_client()
    browser.environ_base["HTTP_USER_AGENT"] = FIREFOX
    assert sign_in(browser).status_code == 303
    assert build_worker(rt).run_once() == 1
    [mail] = smtp.to(ALICE)
    assert mail["Subject"] == "Nouvel appareil connecté à votre compte"
    text = _text(mail)
    assert "Bonjour Alice," in text
    assert "Quelqu\u2019un vient de se connecter à votre compte alice@example.com" in text
    assert re.search(r"Quand :\s+\d{1,2} \w+\.? \d{4} \d\d:\d\d UTC", text), text
    assert "Firefox 128 sur Linux" in text
    assert "Ceci est un message automatique" in text
    html = _html(mail)
    assert '<html lang="fr">' in html and "Agissez maintenant" in html
    assert "Someone" not in text + html


def test_a_mail_to_an_account_without_a_language_is_in_english(
    mail_app: Flask, smtp: MailServer
) -> None:
    rt: Runtime = mail_app.extensions["idp"]
    create_user(rt)
    browser = mail_app.test_client()
    browser.environ_base["HTTP_USER_AGENT"] = FIREFOX
    sign_in(browser)
    build_worker(rt).run_once()
    [mail] = smtp.to(ALICE)
    assert mail["Subject"] == "New device signed in to your account"
    assert '<html lang="en">' in _html(mail)


def _alice(rt: Runtime) -> User:
    with rt.session_factory() as db:
        user = db.scalars(select(User).where(User.email_normalized == ALICE)).one()
        db.expunge(user)
        return user


def test_a_french_login_alert_names_the_device_and_an_unknown_ip_in_french(
    mail_app: Flask, smtp: MailServer
) -> None:
    rt: Runtime = mail_app.extensions["idp"]
    create_user(rt)
    _set_locale(rt, ALICE, "fr")
    alice = _alice(rt)
    now = datetime.now(UTC)
    with rt.session_factory() as db:
        queue_mail(db, ALICE, login_alert_success(alice, ("Firefox 128", "Linux"), "", now, ""))
        queue_mail(db, ALICE, login_alert_success(alice, ("", ""), "192.0.2.7", now, ""))
        queue_mail(db, ALICE, login_alert_failures(alice, 2, now, now, ["", "192.0.2.8"]))
        db.commit()
    assert build_worker(rt).run_once() == 3
    known, unknown, failures = smtp.to(ALICE)
    text, html = " ".join(_text(known).split()), _html(known)
    assert "Appareil : Firefox 128 sur Linux" in text
    assert "Adresse IP : inconnue" in text
    assert "<td>Firefox 128 sur Linux</td>" in html and "<td>inconnue</td>" in html
    assert "Appareil inconnu" in _text(unknown) and "192.0.2.7" in _text(unknown)
    assert "inconnue, 192.0.2.8" in _text(failures) and "inconnue, 192.0.2.8" in _html(failures)
    for mail in (known, unknown, failures):
        assert not re.search(r"\b(on|unknown|Unknown)\b", _text(mail) + _html(mail))


def test_a_mail_queued_by_the_previous_version_still_renders(
    mail_app: Flask, smtp: MailServer
) -> None:
    """Outbox rows written before device, IP and unlocker became plain values carry the old
    ready-made English phrases; they are delivered as they were written."""
    rt: Runtime = mail_app.extensions["idp"]
    create_user(rt)
    greeting = {"name": "Alice", "email": ALICE}
    with rt.session_factory() as db:
        queue_mail(db, ALICE, Message("login_alert_success", {
            **greeting, "device": "Firefox 128 on Linux", "ip": "unknown",
            "when": "2026-03-01 14:05 UTC", "application": "", "new_device": True}))
        queue_mail(db, ALICE, Message("login_alert_failures", {
            **greeting, "count": 1, "first_at": "2026-03-01 14:05 UTC",
            "last_at": "2026-03-01 14:05 UTC", "ips": ["unknown"]}))
        queue_mail(db, ALICE, Message("account_unlocked", {
            **greeting, "by_whom": "an administrator of Acme"}))
        db.commit()
    assert build_worker(rt).run_once() == 3
    success, failures, unlocked = smtp.to(ALICE)
    assert "Firefox 128 on Linux" in _text(success) and "unknown" in _text(success)
    assert "From IP address: unknown" in _text(failures)
    assert "unlocked by an administrator of Acme" in _text(unlocked)


@pytest.mark.parametrize(("unlocked_by", "organization", "sentence"), [
    ("admin", "Acme", "Ihr Konto alice@example.com wurde von einem Administrator von Acme "
                      "entsperrt. Sie können sich wieder anmelden."),
    ("admin", "", "Ihr Konto alice@example.com wurde von einem Administrator entsperrt."),
    ("self", "", "Ihr Konto alice@example.com wurde mit dem Link entsperrt, den wir Ihnen "
                 "gesendet haben."),
])
def test_the_unlock_mail_of_a_german_account_says_who_in_german(
    mail_app: Flask, smtp: MailServer, unlocked_by: str, organization: str, sentence: str
) -> None:
    rt: Runtime = mail_app.extensions["idp"]
    create_user(rt)
    _set_locale(rt, ALICE, "de")
    with rt.session_factory() as db:
        queue_mail(db, ALICE, account_unlocked(_alice(rt), unlocked_by, organization))
        db.commit()
    assert build_worker(rt).run_once() == 1
    [mail] = smtp.to(ALICE)
    assert mail["Subject"] == "Ihr Konto wurde entsperrt"
    assert sentence in " ".join(_text(mail).split())
    assert sentence.replace("alice@example.com", "<strong>alice@example.com</strong>") in " ".join(
        _html(mail).split()
    )
    assert "unlocked" not in _text(mail) and " you" not in _text(mail)


def test_the_sessions_page_names_the_device_in_italian(
    client: FlaskClient, runtime: Runtime
) -> None:
    create_user(runtime)
    _set_locale(runtime, ALICE, "it")
    client.environ_base["HTTP_USER_AGENT"] = FIREFOX
    assert sign_in(client).status_code == 303
    page = client.get("/account/sessions").get_data(as_text=True)
    assert '<html lang="it">' in page
    assert re.search(r'<h2 id="device-1">Firefox 128 su Linux\b', page), page
    assert "Firefox 128 on Linux" not in page
    account = client.get("/account").get_data(as_text=True)
    assert "Firefox 128 su Linux" in account


# No English left on the pages of a French browser -------------------------------------------

ENGLISH_WORDS = re.compile(
    r"\b(the|your|you|and|with|sign|password|account|this|that|not|enter|choose)\b", re.I
)


def _visible_lines(html: str) -> list[str]:
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    html = re.sub(r"<[^>]+>", "\n", html)
    return [line.strip() for line in html.splitlines() if line.strip()]


def _english_lines(client: FlaskClient, path: str) -> list[str]:
    response = client.get(path, headers={"Accept-Language": "fr"})
    assert response.status_code in (200, 404), path
    return [
        f"{path}: {line}"
        for line in _visible_lines(response.get_data(as_text=True))
        if ENGLISH_WORDS.search(line)
    ]


def test_the_pages_of_a_french_browser_show_no_english(
    client: FlaskClient, runtime: Runtime
) -> None:
    from idp.models import Organization, Role

    found: list[str] = []
    for path in ["/login", "/login/sso", "/unlock", "/password/forgot", "/signup", "/nowhere"]:
        found += _english_lines(client, path)
    create_user(runtime, organization="Acme", role=Role.OWNER)
    sign_in(client)
    with runtime.session_factory() as db:
        org = db.query(Organization).one()
    for path in [
        "/account",
        "/account/profile",
        "/account/sessions",
        "/account/sessions/end-others",
        "/account/activity",
        "/account/alerts",
        "/account/lockout",
        "/account/password",
        "/account/two-factor",
        "/account/email",
        "/account/delete",
        "/organizations",
        f"/organizations/{org.id}/settings",
        f"/organizations/{org.id}/members",
        f"/organizations/{org.id}/activity",
        f"/organizations/{org.id}/sso",
        f"/organizations/{org.id}/delete",
    ]:
        found += _english_lines(client, path)
    assert found == []
    # and the check does find English: the same page for an English browser
    english = client.get("/account", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert any(ENGLISH_WORDS.search(line) for line in _visible_lines(english))
