"""Password sign-in and sign-out driven through a real browser against gunicorn."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import LiveServer

pytestmark = pytest.mark.browser

GENERIC_FAILURE = "Incorrect email or password."
ON_LOGIN = re.compile(r"/login(\?.*)?$")
ON_LOGIN_FORM = re.compile(r"/login$")
ON_ACCOUNT = re.compile(r"/account$")


def email_field(page: Page) -> Locator:
    return page.get_by_label("Email address", exact=True)


def password_field(page: Page) -> Locator:
    return page.get_by_label("Password", exact=True)


def fill_login(page: Page, email: str, password: str) -> None:
    """Open the sign-in page, type the credentials and press "Sign in"."""
    page.goto("/login")
    email_field(page).fill(email)
    password_field(page).fill(password)
    page.get_by_role("button", name="Sign in").click()


def expect_refused(page: Page, typed_email: str) -> None:
    """The form came back with the one generic error, the email kept and the password empty."""
    expect(page).to_have_url(ON_LOGIN_FORM)
    error = page.locator("p.error[role=alert]")
    expect(error).to_have_count(1)
    expect(error).to_have_text(GENERIC_FAILURE, use_inner_text=True)
    assert (error.text_content() or "").strip() == GENERIC_FAILURE
    expect(email_field(page)).to_have_value(typed_email)
    expect(password_field(page)).to_have_value("")
    expect(page.locator("[data-testid=display-name]")).to_have_count(0)


def test_sign_in_shows_account_then_sign_out(
    page: Page, live_server: LiveServer, screenshots: Path
) -> None:
    account = live_server.account
    fill_login(page, account.email, account.password)

    expect(page).to_have_url(ON_ACCOUNT)
    expect(page.locator("[data-testid=display-name]")).to_have_text(account.display_name)
    expect(page.locator("[data-testid=email]")).to_have_text(account.email)
    page.screenshot(path=str(screenshots / "account.png"), full_page=True)

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login\?signed_out=1$"))
    expect(page.get_by_role("status")).to_have_text("You have been signed out.")

    page.goto("/account")
    expect(page).to_have_url(ON_LOGIN)
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(page.locator("[data-testid=display-name]")).to_have_count(0)


def test_wrong_password_is_refused(page: Page, live_server: LiveServer, screenshots: Path) -> None:
    email = live_server.account.email
    fill_login(page, email, "not the right password at all")
    expect_refused(page, email)
    page.screenshot(path=str(screenshots / "login-refused.png"), full_page=True)


def test_unknown_email_is_refused_the_same_way(page: Page) -> None:
    email = "nobody.here@example.com"
    fill_login(page, email, "whatever password you like")
    expect_refused(page, email)


def test_login_form_labels_and_autocomplete(page: Page, screenshots: Path) -> None:
    page.goto("/login")
    expect(email_field(page)).to_have_attribute("autocomplete", "username")
    expect(password_field(page)).to_have_attribute("autocomplete", "current-password")
    page.screenshot(path=str(screenshots / "login.png"), full_page=True)
