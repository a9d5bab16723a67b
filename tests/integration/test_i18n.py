"""Languages (issue 8, item 1): how a page's language is chosen, the switcher, the account's
setting, localized dates, and a mail in the recipient's language at a real SMTP server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from idp.i18n import COOKIE, from_ui_locales, mail_time, supported
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
    assert "Firefox 128 on Linux" in text
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
