"""Two-factor authentication in a real browser: enroll, sign out, sign in with a code."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import Page, expect

from tests import services
from tests.browser.conftest import LiveServer
from tests.helpers import PASSWORD

pytestmark = pytest.mark.browser
EMAIL = "totp.browser@example.com"


def _sign_in_password(page: Page) -> None:
    page.goto("/login")
    page.get_by_label("Email address", exact=True).fill(EMAIL)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_enroll_then_sign_in_with_a_code(
    page: Page, live_server: LiveServer, screenshots: Path
) -> None:
    made = services.run_idp("user", "create", EMAIL, "--password-stdin", "--first-name", "Tom",
                            env=live_server.env, stdin=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    _sign_in_password(page)
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.locator("[data-testid=two-factor]")).to_contain_text("Off")

    page.locator("[data-testid=two-factor]").get_by_role("link", name="Manage").click()
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Set up two-factor authentication").click()
    expect(page.locator("[data-testid=totp-qr]")).to_be_visible()
    page.screenshot(path=str(screenshots / "two-factor-enroll.png"), full_page=True)
    secret = page.locator("[data-testid=totp-secret]").inner_text().replace(" ", "")
    totp = pyotp.TOTP(secret)
    page.get_by_label("6-digit code").fill(totp.now())
    page.get_by_role("button", name="Turn on").click()
    codes = page.locator("[data-testid=recovery-codes] li")
    expect(codes).to_have_count(10)

    page.goto("/account")
    expect(page.locator("[data-testid=two-factor]")).to_contain_text("On")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login\?signed_out=1$"))

    _sign_in_password(page)
    expect(page).to_have_url(re.compile(r"/login/code"))
    code_field = page.get_by_label("Authentication code")
    expect(code_field).to_have_attribute("autocomplete", "one-time-code")
    code_field.fill("000000")
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("alert")).to_contain_text("That code is not valid")
    # The next step's code: the one used to confirm is spent, and the window allows ±1 step.
    page.get_by_label("Authentication code").fill(_next_code(totp))
    page.get_by_role("button", name="Verify").click()
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.locator("[data-testid=email]")).to_have_text(EMAIL)


def _next_code(totp: pyotp.TOTP) -> str:
    """The code of the next time step (accepted within the ±1 step window, and never used)."""
    return totp.at(time.time() + 30)
