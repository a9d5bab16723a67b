"""Organization branding: a square logo (else initials), an optional wide logo offered to
relying services, shown in the account pages and on the organization's SSO sign-in page."""

from __future__ import annotations

import io

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from idp.events import EventTag
from idp.models import Organization, Role, SsoConnection
from idp.runtime import Runtime
from tests.helpers import events
from tests.images import picture
from tests.integration.test_account_access import FIREFOX_WINDOWS, Live, live_browser
from tests.oidc import RelyingParty, register_client
from tests.organizations import seed_org, signed_in, token_of


def _upload(client: FlaskClient, org_id: str, which: str, data: bytes) -> TestResponse:
    return client.post(
        f"/organizations/{org_id}/branding",
        data={"csrf_token": token_of(client), "which": which,
              "logo": (io.BytesIO(data), "logo.png")},
        content_type="multipart/form-data",
    )


def _org(runtime: Runtime, org_id: str) -> Organization:
    with runtime.session_factory() as db:
        org = db.get(Organization, org_id)
        assert org is not None
        db.expunge(org)
        return org


def test_initials_until_a_square_logo_then_the_logo_in_the_header(
    app: Flask, runtime: Runtime
) -> None:
    org = seed_org(runtime, "Acme Widgets", {"owner": ("owner@example.com", Role.OWNER)})
    client = signed_in(app, "owner@example.com")
    page = client.get("/account").get_data(as_text=True)
    assert '<span class="org-initials" aria-hidden="true">AW</span>' in page

    assert _upload(client, org.id, "square", picture(300, 300)).status_code == 303
    logo = _org(runtime, org.id).square_logo_id
    assert logo is not None
    page = client.get("/account").get_data(as_text=True)
    assert f'src="/media/{logo}.png"' in page and "org-initials" not in page
    [event] = events(runtime, EventTag.ORGANIZATION_BRANDING)
    assert event.details == {"logo": "square", "change": "set"}


def test_a_too_small_logo_is_refused_with_the_reason(app: Flask, runtime: Runtime) -> None:
    org = seed_org(runtime, "Acme", {"owner": ("owner@example.com", Role.OWNER)})
    client = signed_in(app, "owner@example.com")
    refused = _upload(client, org.id, "square", picture(64, 64))
    assert refused.status_code == 400
    assert "64 x 64 pixels; it must be at least 210 x 210" in refused.get_data(as_text=True)
    assert _org(runtime, org.id).square_logo_id is None


def test_the_wide_logo_has_a_public_url_and_an_org_logo_claim(live: Live) -> None:
    import requests

    base, rt = live
    org = seed_org(rt, "Acme", {"owner": ("alice@example.com", Role.OWNER)})
    assert requests.get(f"{base}/organizations/{org.id}/logo", timeout=10).status_code == 404
    shop = RelyingParty(base, register_client(rt, "Shop"))
    browser = live_browser(base, FIREFOX_WINDOWS)
    tokens, _ = shop.sign_in(browser)
    assert "org_logo" not in shop.userinfo(tokens["access_token"]).json()

    page = browser.http.get(f"{base}/organizations/{org.id}/settings", timeout=10).text
    from tests.helpers import csrf_token

    uploaded = browser.http.post(
        f"{base}/organizations/{org.id}/branding",
        data={"csrf_token": csrf_token(page), "which": "wide"},
        files={"logo": ("wide.png", picture(900, 300), "image/png")},
        timeout=10, allow_redirects=False,
    )
    assert uploaded.status_code == 303
    wide = _org(rt, org.id).wide_logo_id
    public = requests.get(f"{base}/organizations/{org.id}/logo", timeout=10,
                          allow_redirects=False)
    assert public.status_code == 302 and public.headers["Location"].endswith(f"/media/{wide}.png")
    claims = shop.userinfo(tokens["access_token"]).json()
    assert claims["org_logo"] == f"{base}/organizations/{org.id}/logo"


def test_the_sso_sign_in_page_shows_the_organizations_branding(
    app: Flask, runtime: Runtime
) -> None:
    org = seed_org(runtime, "Contoso", {"owner": ("owner@contoso.example", Role.OWNER)})
    plain = seed_org(runtime, "Plain", {"owner": ("owner@plain.example", Role.OWNER)})
    with runtime.session_factory() as db:
        db.add(SsoConnection(organization_id=org.id, tenant_id="t", client_id="c",
                             client_secret="x"))
        db.commit()
    visitor = app.test_client()
    page = visitor.get(f"/login/sso?org={org.id}").get_data(as_text=True)
    assert 'data-testid="sso-organization"' in page and "Contoso" in page
    # An organization without SSO cannot dress up the page.
    assert "sso-organization" not in visitor.get(f"/login/sso?org={plain.id}").get_data(
        as_text=True
    )
