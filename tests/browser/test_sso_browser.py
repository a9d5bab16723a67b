""""Log in with SSO" in a real browser: idp on 127.0.0.1, the fake Entra on https://localhost,
so Entra's form_post back to idp is a cross-site POST, as in production."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from idp import create_app
from idp.models import Organization
from idp.models.accounts import Role
from idp.runtime import Runtime
from tests.browser.conftest import SCREENSHOTS
from tests.conftest import empty_tables, make_settings
from tests.fake_entra import run_fake_entra
from tests.helpers import PASSWORD, create_user
from tests.oidc import serve
from tests.services import free_port
from tests.sso import ADA, CLIENT_ID, SECRET, TID, World

pytestmark = pytest.mark.browser


@contextmanager
def _sso_site(browser: Browser, tmp_path: Path, database_url: str, redis_url: str,
              monkeypatch: pytest.MonkeyPatch, *, linked: bool) -> Iterator[tuple[Page, World]]:
    """idp served on a free port, the fake Entra with Contoso's tenant and Ada, and a page;
    the tenant is linked to the organization when ``linked``."""
    with run_fake_entra(url_host="localhost") as fake:
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        app = create_app(make_settings(
            tmp_path, database_url=database_url, redis_url=redis_url, issuer=base,
            entra_authority=fake.authority, graph_url=fake.graph_url,
            secret_key=secrets.token_urlsafe(48)))
        rt: Runtime = app.extensions["idp"]
        fake.add_tenant(TID, ["contoso.com"])
        fake.register_app(TID, CLIENT_ID, client_secret=SECRET,
                          redirect_uris=[f"{base}/login/sso/callback",
                                         f"{base}/login/sso/logged-out"])
        fake.add_user(TID, ADA, "ada@contoso.com", "ada@contoso.com", "Ada Lovelace",
                      email_verified_domain_owner=True)
        world = World(fake, app, app.test_client(), rt)
        context = browser.new_context(base_url=base, locale="en-GB", ignore_https_errors=True)
        context.set_default_timeout(10_000)
        try:
            if linked:
                world.link("Contoso", TID, CLIENT_ID, ["contoso.com"])
            with serve(app, port):
                yield context.new_page(), world
        finally:
            context.close()
            empty_tables(rt)
            rt.store.delete_prefix()
            rt.close()


@pytest.fixture(params=[True], ids=["linked"])
def sso_page(request: pytest.FixtureRequest, browser: Browser, tmp_path: Path,
             postgres_database: str, redis_url: str,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Page, World]]:
    """The site with Contoso's tenant linked, or not (``indirect`` parametrization)."""
    with _sso_site(browser, tmp_path, postgres_database, redis_url, monkeypatch,
                   linked=request.param) as site:
        yield site


@pytest.mark.parametrize("sso_page", [False], ids=["unlinked"], indirect=True)
def test_an_owner_links_the_tenant_then_a_member_signs_in_with_sso(
        sso_page: tuple[Page, World]) -> None:
    page, world = sso_page
    create_user(world.runtime, "owner@contoso.com", organization="Contoso", role=Role.OWNER,
                first_name="Olga", last_name="Owner")
    with world.runtime.session_factory() as db:
        org = db.scalar(select(Organization).where(Organization.name == "Contoso"))
        assert org is not None
        org_id = org.id
    page.goto("/login")
    page.get_by_label("Email address", exact=True).fill("owner@contoso.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/account$"))
    page.goto(f"/organizations/{org_id}/members")
    page.get_by_role("link", name="Enterprise SSO (Entra ID)").click()
    expect(page.get_by_text("Not linked.")).to_be_visible()
    page.get_by_label("Directory (tenant) ID").fill("contoso.com")  # resolved to the GUID
    page.get_by_label("Application (client) ID").fill(CLIENT_ID)
    page.get_by_label("Client secret value").fill(SECRET)
    page.get_by_label("Email domains").fill("contoso.com")
    page.get_by_role("button", name="Test and save").click()
    expect(page.locator("#sso-message")).to_have_text("Connection tested and saved.")
    expect(page.locator("#linked-tenant")).to_have_text(TID)
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#sso-message")).to_contain_text("Test passed")
    page.screenshot(path=str(SCREENSHOTS / "sso-admin-linked.png"), full_page=True)
    page.context.clear_cookies()
    page.goto("/login")
    page.get_by_role("link", name="Log in with SSO").click()
    page.get_by_label("Work email address").fill("ada@contoso.com")
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.locator("[data-testid=display-name]")).to_have_text("Ada Lovelace")


def test_log_in_with_sso_lands_signed_in(sso_page: tuple[Page, World]) -> None:
    page, world = sso_page
    page.goto("/login")
    page.get_by_role("link", name="Log in with SSO").click()
    page.get_by_label("Work email address").fill("ada@contoso.com")
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.locator("[data-testid=display-name]")).to_have_text("Ada Lovelace")
    # the callback really came from Entra's page on another site
    assert world.fake.authority.startswith("https://localhost:")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login\?signed_out=1$"))
    assert world.fake.logouts and world.fake.logouts[-1].redirected
