"""Forgotten password and sign-up in a real browser, with mail read from a real SMTP server;
a sign-up that started at an application's authorization request ends back at the application.

The server is ``idp serve`` (one process, the outbox worker in a thread, so mail goes out by
itself) on PostgreSQL and Redis, with sign-up turned on and ``IDP_SMTP_URL`` pointing at the
test's SMTP server.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Browser, Page, expect

from tests import services
from tests.browser.conftest import _delete_redis_prefix
from tests.helpers import PASSWORD
from tests.mailserver import MailServer, running_mail_server

pytestmark = pytest.mark.browser
NEW_PASSWORD = "an entirely new passphrase"


@dataclass(frozen=True)
class MailingServer:
    base_url: str
    env: dict[str, str]
    smtp: MailServer


@pytest.fixture(scope="module")
def mailing_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailingServer]:
    services.check_redis()
    name = f"idp_reset_browser_{services.RUN_ID}"
    database_url = services.create_postgres_database(name)
    prefix = f"idpresetbrowser:{services.RUN_ID}:"
    tmp = tmp_path_factory.mktemp("idp_reset_browser")
    port = services.free_port()
    try:
        with running_mail_server() as smtp:
            env = services.idp_env(
                database_url=database_url, redis_url=services.REDIS_URL, redis_prefix=prefix,
                secret_key=secrets.token_urlsafe(48), data_dir=str(tmp / "var"),
                issuer=f"http://127.0.0.1:{port}", smtp_url=smtp.url, signup_enabled="true",
                argon2_memory_kib="1024", argon2_time_cost="1")
            upgraded = services.run_idp("db", "upgrade", env=env)
            assert upgraded.returncode == 0, upgraded.stderr
            args = [sys.executable, "-m", "idp", "serve", "--port", str(port)]
            with services.running_server(args, env, port, tmp / "serve.log") as base_url:
                yield MailingServer(base_url, env, smtp)
    finally:
        services.drop_postgres_database(name)
        _delete_redis_prefix(prefix)


@pytest.fixture
def page(browser: Browser, mailing_server: MailingServer) -> Iterator[Page]:
    context = browser.new_context(base_url=mailing_server.base_url, locale="en-GB")
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def _mail(smtp: MailServer, to: str, subject: str, timeout: float = 15) -> EmailMessage:
    """The newest mail to ``to`` with ``subject``, waiting for the worker to send it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in smtp.to(to) if str(m["Subject"]) == subject]
        if found:
            return found[-1]
        time.sleep(0.2)
    raise AssertionError(f"no mail {subject!r} to {to} within {timeout}s")


def _link(message: EmailMessage, path: str) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    match = re.search(rf"(http://\S+{path}[A-Za-z0-9_-]+)", str(body.get_content()))
    assert match, body.get_content()
    return match.group(1)


def _sign_in(page: Page, email: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("Email address", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_forgot_password_reset_and_sign_in_with_the_new_one(
    page: Page, mailing_server: MailingServer, screenshots: Path
) -> None:
    email = "reset.browser@example.com"
    made = services.run_idp("user", "create", email, "--password-stdin", "--first-name", "Rita",
                            env=mailing_server.env, stdin=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr

    page.goto("/login")
    page.get_by_role("link", name="Forgot your password?").click()
    expect(page).to_have_url(re.compile(r"/password/forgot$"))
    page.get_by_label("Email address", exact=True).fill(email)
    page.get_by_role("button", name="Send the reset link").click()
    expect(page.get_by_test_id("reset-sent")).to_contain_text("If an account uses this address")

    url = _link(_mail(mailing_server.smtp, email, "Reset your password"), "/password/reset/")
    page.goto(url)
    new = page.get_by_label("New password", exact=True)
    expect(new).to_have_attribute("autocomplete", "new-password")
    new.fill(NEW_PASSWORD)
    page.get_by_label("New password again", exact=True).fill(NEW_PASSWORD)
    page.screenshot(path=str(screenshots / "password-reset.png"), full_page=True)
    page.get_by_role("button", name="Set the new password").click()
    expect(page).to_have_url(re.compile(r"/login\?reset=1$"))
    expect(page.get_by_role("status")).to_contain_text("Your password was reset")

    _sign_in(page, email, PASSWORD)  # the old password no longer works
    expect(page.get_by_role("alert")).to_contain_text("Incorrect email or password.")
    _sign_in(page, email, NEW_PASSWORD)
    expect(page).to_have_url(re.compile(r"/account$"))
    _mail(mailing_server.smtp, email, "Your password was reset")

    page.goto(url)  # the link worked once
    expect(page.get_by_role("alert")).to_contain_text("has already been used")


def test_sign_up_verify_then_sign_in(page: Page, mailing_server: MailingServer) -> None:
    email = "signup.browser@example.com"
    page.goto("/login")
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("Email address", exact=True).fill(email)
    page.get_by_label("First name", exact=True).fill("Sam")
    page.get_by_label("Last name", exact=True).fill("Signup")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_test_id("signup-sent")).to_contain_text("Check your inbox")
    # The worker makes the account, then its mail: once the mail is there, so is the account.
    _mail(mailing_server.smtp, email, "Verify your email address")

    _sign_in(page, email, PASSWORD)  # not verified yet: refused like a wrong password
    expect(page.get_by_role("alert")).to_contain_text("Incorrect email or password.")
    expect(page.get_by_test_id("verify-first")).to_be_visible()  # and a new link is mailed

    deadline = time.monotonic() + 15
    while len([m for m in mailing_server.smtp.to(email)
               if str(m["Subject"]) == "Verify your email address"]) < 2:
        assert time.monotonic() < deadline, "the second verification mail did not arrive"
        time.sleep(0.2)
    url = _link(_mail(mailing_server.smtp, email, "Verify your email address"), "/verify-email/")
    page.goto(url)
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Verify my email address").click()
    expect(page).to_have_url(re.compile(r"/login\?verified=1$"))
    _sign_in(page, email, PASSWORD)
    expect(page).to_have_url(re.compile(r"/account$"))


def test_sign_up_from_an_application_returns_to_it(
    page: Page, mailing_server: MailingServer
) -> None:
    created = services.run_idp("client", "create", "Shop", "--redirect-uri",
                               "https://rp.example/cb", "--first-party", "--json",
                               env=mailing_server.env)
    assert created.returncode == 0, created.stderr
    client_id = json.loads(created.stdout)["client_id"]
    # The application itself is not there: the browser's arrival at its callback is the end.
    page.route("https://rp.example/**", lambda route: route.fulfill(body="back at the shop"))
    email = "from.the.shop@example.com"
    page.goto("/authorize?" + urlencode({
        "client_id": client_id, "response_type": "code", "scope": "openid email",
        "redirect_uri": "https://rp.example/cb", "state": "shop-state", "nonce": "n"}))
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fauthorize"))
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("Email address", exact=True).fill(email)
    page.get_by_label("First name", exact=True).fill("Shay")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_test_id("signup-sent")).to_contain_text("Check your inbox")

    url = _link(_mail(mailing_server.smtp, email, "Verify your email address"), "/verify-email/")
    page.goto(url)
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Verify my email address").click()
    expect(page).to_have_url(re.compile(r"/login\?verified=1&next=(/|%2F)authorize"))
    page.get_by_label("Email address", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(
        re.compile(r"^https://rp\.example/cb\?code=[^&]+&state=shop-state(&|$)"))
