"""Account self-service and organization administration in a real browser: editing the name,
uploading a picture (a too-small one refused with the reason), inviting someone who accepts,
changing a role, and deleting an account that is blocked until another owner is appointed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import create_engine, select, text

from idp.db import normalize_url
from idp.models import OutboxItem
from tests import services
from tests.browser.conftest import LiveServer
from tests.helpers import PASSWORD
from tests.images import picture

pytestmark = pytest.mark.browser
ON_ACCOUNT = re.compile(r"/account$")


def _idp(live_server: LiveServer, *args: str, stdin: str = "") -> str:
    result = services.run_idp(*args, env=live_server.env, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _user(live_server: LiveServer, email: str, first: str, *extra: str) -> None:
    _idp(live_server, "user", "create", email, "--password-stdin", "--first-name", first,
         "--last-name", "Tester", *extra, stdin=PASSWORD + "\n")


def _sign_in(page: Page, email: str) -> None:
    page.goto("/login")
    page.get_by_label("Email address", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(ON_ACCOUNT)


def _invitation_link(live_server: LiveServer, email: str) -> str:
    engine = create_engine(normalize_url(live_server.env["IDP_DATABASE_URL"]))
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
            payloads = conn.execute(select(OutboxItem.payload).order_by(OutboxItem.id)).scalars()
            links = [p["context"]["link"] for p in payloads
                     if p.get("template") == "invitation" and p["to"] == email]
    finally:
        engine.dispose()
    assert links, f"no invitation mailed to {email}"
    return str(links[-1])


def test_edit_name_and_upload_a_picture(
    page: Page, live_server: LiveServer, screenshots: Path, tmp_path: Path
) -> None:
    email = "profile.browser@example.com"
    _user(live_server, email, "Pat")
    _sign_in(page, email)
    expect(page.get_by_test_id("display-name")).to_have_text("Pat Tester")

    page.get_by_role("link", name="Edit your name").first.click()
    page.get_by_label("First name").fill("Patricia")
    page.get_by_label("Last name").fill("Tester-Smith")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_test_id("profile-notice")).to_have_text("Your name was saved.")
    expect(page.get_by_test_id("profile-name")).to_have_text("Patricia Tester-Smith")
    expect(page.get_by_test_id("avatar-initials")).to_have_text("PT")

    small = tmp_path / "small.png"
    small.write_bytes(picture(120, 120))
    page.get_by_label("Upload a picture").set_input_files(str(small))
    page.get_by_role("button", name="Upload picture").click()
    expect(page.get_by_test_id("picture-error")).to_contain_text(
        "This picture is 120 x 120 pixels; it must be at least 210 x 210"
    )
    expect(page.get_by_test_id("avatar-initials")).to_be_visible()

    good = tmp_path / "me.jpg"
    good.write_bytes(picture(640, 480, "JPEG"))
    page.get_by_label("Upload a picture").set_input_files(str(good))
    page.get_by_role("button", name="Upload picture").click()
    expect(page.get_by_test_id("profile-notice")).to_have_text("Your picture was saved.")
    avatar = page.get_by_test_id("avatar")
    expect(avatar).to_be_visible()
    assert avatar.evaluate("img => img.complete && img.naturalWidth") == 256
    page.screenshot(path=str(screenshots / "profile-picture.png"), full_page=True)
    page.goto("/account")
    expect(page.get_by_test_id("display-name")).to_have_text("Patricia Tester-Smith")
    expect(page.get_by_test_id("avatar")).to_be_visible()


def test_invite_accept_then_change_the_role(
    page: Page, browser: Browser, live_server: LiveServer, screenshots: Path
) -> None:
    owner, invitee = "owner.invite@example.com", "invitee.browser@example.com"
    _idp(live_server, "org", "create", "Invite Browser Org")
    _user(live_server, owner, "Olive", "--org", "Invite Browser Org", "--role", "owner")
    _sign_in(page, owner)
    expect(page.get_by_test_id("current-organization-name")).to_have_text("Invite Browser Org")
    page.get_by_test_id("current-organization").click()
    page.get_by_role("link", name="Members").click()
    page.get_by_label("Email address").fill(invitee)
    page.get_by_label("Role", exact=True).select_option("member")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_test_id("members-notice")).to_have_text("Invitation sent.")
    expect(page.get_by_test_id("invitation")).to_contain_text(invitee)

    link = _invitation_link(live_server, invitee)
    guest_context = browser.new_context(base_url=live_server.base_url, locale="en-GB")
    try:
        guest = guest_context.new_page()
        guest.goto(link)
        expect(guest.get_by_test_id("invited-email")).to_have_text(invitee)
        guest.get_by_label("First name").fill("Ivy")
        guest.get_by_label("Last name").fill("Newcomer")
        guest.get_by_label("Password", exact=True).fill(PASSWORD)
        guest.get_by_label("Password again").fill(PASSWORD)
        guest.get_by_role("button", name="Create account and join").click()
        expect(guest).to_have_url(re.compile(r"/organizations$"))
        expect(guest.get_by_test_id("current-organization-name")).to_have_text(
            "Invite Browser Org"
        )
        expect(guest.get_by_test_id("organization")).to_contain_text("Member")
    finally:
        guest_context.close()

    page.reload()
    row = page.locator(f'[data-testid=member][data-email="{invitee}"]')
    expect(row.get_by_test_id("member-role")).to_have_text("member")
    row.get_by_label(f"Role of {invitee}").select_option("admin")
    row.get_by_role("button", name="Change role").click()
    expect(page.get_by_test_id("members-notice")).to_have_text("Role changed.")
    expect(page.locator(f'[data-testid=member][data-email="{invitee}"]')
           .get_by_test_id("member-role")).to_have_text("admin")
    page.screenshot(path=str(screenshots / "organization-members.png"), full_page=True)


def test_delete_account_blocked_until_another_owner_is_appointed(
    page: Page, live_server: LiveServer
) -> None:
    owner, colleague = "owner.delete@example.com", "colleague.delete@example.com"
    _idp(live_server, "org", "create", "Delete Browser Org")
    _user(live_server, owner, "Otto", "--org", "Delete Browser Org", "--role", "owner")
    _user(live_server, colleague, "Cleo", "--org", "Delete Browser Org", "--role", "member")
    _sign_in(page, owner)
    page.get_by_role("link", name="Delete account").click()
    expect(page.get_by_test_id("blocker")).to_contain_text(
        "You are the only owner of Delete Browser Org: appoint another owner first."
    )
    expect(page.get_by_role("button", name="Delete my account")).to_have_count(0)

    page.get_by_role("link", name="Appoint an owner in Delete Browser Org").click()
    row = page.locator(f'[data-testid=member][data-email="{colleague}"]')
    row.get_by_label(f"Role of {colleague}").select_option("owner")
    row.get_by_role("button", name="Change role").click()
    expect(page.locator(f'[data-testid=member][data-email="{colleague}"]')
           .get_by_test_id("member-role")).to_have_text("owner")

    page.goto("/account/delete")
    expect(page.get_by_test_id("blocker")).to_have_count(0)
    page.get_by_label("Your password").fill("not my password")
    page.get_by_role("button", name="Delete my account").click()
    expect(page.get_by_test_id("delete-error")).to_have_text("That is not your password.")
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Delete my account").click()
    expect(page.get_by_test_id("account-deleted")).to_be_visible()

    page.goto("/account")
    expect(page).to_have_url(re.compile(r"/login"))
    page.get_by_label("Email address", exact=True).fill(owner)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/login"))
