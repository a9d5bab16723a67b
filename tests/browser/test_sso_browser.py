""""Log in with SSO" in a real browser: idp on 127.0.0.1, the fake Entra on https://localhost,
so Entra's form_post back to idp is a cross-site POST, as in production."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from idp import create_app
from idp.runtime import Runtime
from tests.conftest import empty_tables, make_settings
from tests.fake_entra import run_fake_entra
from tests.oidc import serve
from tests.services import free_port
from tests.sso import ADA, CLIENT_ID, SECRET, TID, World

pytestmark = pytest.mark.browser


@pytest.fixture
def sso_page(browser: Browser, tmp_path: Path, postgres_database: str, redis_url: str,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Page, World]]:
    with run_fake_entra(url_host="localhost") as fake:
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        app = create_app(make_settings(
            tmp_path, database_url=postgres_database, redis_url=redis_url, issuer=base,
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
            world.link("Contoso", TID, CLIENT_ID, ["contoso.com"])
            with serve(app, port):
                yield context.new_page(), world
        finally:
            context.close()
            empty_tables(rt)
            rt.store.delete_prefix()
            rt.close()


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
