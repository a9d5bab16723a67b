"""Account access in real browsers: two browser profiles signed in as the same user; one signs
the other out from /account/sessions, and the other's next navigation lands on /login."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests import services
from tests.browser.conftest import LiveServer
from tests.helpers import PASSWORD

pytestmark = pytest.mark.browser
EMAIL = "sessions.browser@example.com"
ON_LOGIN = re.compile(r"/login(\?.*)?$")
ON_ACCOUNT = re.compile(r"/account$")


def _sign_in(page: Page) -> None:
    page.goto("/login")
    page.get_by_label("Email address", exact=True).fill(EMAIL)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(ON_ACCOUNT)


def test_one_browser_signs_the_other_out(
    context: BrowserContext,
    browser: Browser,
    live_server: LiveServer,
    screenshots: Path,
) -> None:
    made = services.run_idp(
        "user",
        "create",
        EMAIL,
        "--password-stdin",
        "--first-name",
        "Sam",
        env=live_server.env,
        stdin=PASSWORD + "\n",
    )
    assert made.returncode == 0, made.stderr
    elsewhere = context.new_page()  # say, a laptop left signed in somewhere
    _sign_in(elsewhere)
    mine = browser.new_context(base_url=live_server.base_url, locale="en-GB")
    mine.set_default_timeout(10_000)
    try:
        page = mine.new_page()
        _sign_in(page)

        page.get_by_role("link", name="Account access: devices and sessions").click()
        expect(page).to_have_url(re.compile(r"/account/sessions$"))
        devices = page.locator("[data-testid=device]")
        expect(devices).to_have_count(2)
        this_device = page.locator("[data-testid=device][data-current=true]")
        expect(this_device.get_by_text("This device", exact=True)).to_be_visible()
        other = page.locator("[data-testid=device][data-current=false]")
        expect(other.locator("[data-testid=session]")).to_have_count(1)
        page.screenshot(path=str(screenshots / "account-sessions.png"), full_page=True)

        other.get_by_role("link", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign out this device?")).to_be_visible()
        page.screenshot(path=str(screenshots / "account-session-end.png"), full_page=True)
        page.get_by_role("button", name="Sign out", exact=True).click()

        expect(page).to_have_url(re.compile(r"/account/sessions\?ended=1$"))
        expect(page.get_by_role("status")).to_have_text("1 session was signed out.")
        expect(devices).to_have_count(1)
        expect(page.locator("[data-testid=device][data-current=false]")).to_have_count(0)

        # The other browser's next navigation lands on the sign-in page.
        elsewhere.goto("/account")
        expect(elsewhere).to_have_url(ON_LOGIN)
        expect(elsewhere.get_by_role("button", name="Sign in")).to_be_visible()
        # This browser is still signed in.
        page.goto("/account")
        expect(page).to_have_url(ON_ACCOUNT)
    finally:
        mine.close()


def test_password_page_offers_to_sign_out_other_devices(
    page: Page, live_server: LiveServer, screenshots: Path
) -> None:
    page.goto("/login")
    page.get_by_label("Email address", exact=True).fill(live_server.account.email)
    page.get_by_label("Password", exact=True).fill(live_server.account.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(ON_ACCOUNT)
    page.get_by_role("link", name="Change password").click()
    expect(page.get_by_label("Current password")).to_have_attribute(
        "autocomplete", "current-password"
    )
    expect(page.get_by_label("Sign out all other devices")).to_be_checked()
    page.get_by_label("Current password").fill("not the password")
    page.get_by_label("New password", exact=True).fill("another long passphrase here")
    page.get_by_label("New password again").fill("another long passphrase here")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("alert")).to_have_text("That is not your current password.")
    page.screenshot(path=str(screenshots / "account-password.png"), full_page=True)
