"""Accessibility (WCAG 2.1 AA) and small screens, in a real browser.

Every page a person can reach is checked with axe-core (axe-playwright-python bundles it; no
network): no violation of impact "serious" or "critical" is allowed. Each page is visited at
1280x800 and at 360x740 in English, French, German and Italian (light mode; dark mode, which
changes only colours, in English); every page must be in the language the browser asks for;
at 360 px the page must not scroll sideways.
Screenshots of every page at both widths go to artifacts/screenshots/<page>-1280.png and
<page>-360.png (dark mode: <page>-1280-dark.png, <page>-360-dark.png; other languages:
<page>-1280-fr.png...), the CI artifact folder.

The pages are served by a second gunicorn on the browser tests' database, with sign-up on and a
roomy sign-in rate limit (this test signs in many times), under its own Redis prefix.
Keyboard-only sign-in and the announcement of a wrong password are tested at the end.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import pyotp
import pytest
from axe_playwright_python.sync_playwright import Axe
from babel.support import Translations
from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from idp.accounts import AccountService
from idp.db import normalize_url
from idp.events import Actor
from idp.i18n import TRANSLATIONS
from idp.models import OutboxItem, User
from idp.runtime import Runtime
from idp.security.email_verification import EmailVerificationService, VerificationPurpose
from idp.security.lockout import LockoutService
from idp.security.password_reset import ResetLinkIssuer
from idp.settings import load_settings
from tests import services
from tests.browser.conftest import LiveServer, _delete_redis_prefix, _start_gunicorn
from tests.fake_entra import FakeEntra, run_fake_entra
from tests.helpers import PASSWORD
from tests.sso import CLIENT_ID, SECRET, TID

pytestmark = pytest.mark.browser

AXE = Axe()
BLOCKING = ("serious", "critical")
ON_ACCOUNT = re.compile(r"/account$")
OWNER = "owner.a11y@example.com"
ORG = "Accessibility Review Organisation of Northern Testing"  # long: must wrap at 360 px
REDIRECT_URI = "http://127.0.0.1:9/callback"
MEMBER = "member.a11y@example.com"
SSO_DOMAIN = "contoso.com"  # served by the organization's SSO connection (the fake Entra)


@dataclass(frozen=True)
class Combo:
    """One way of looking at the pages: a viewport and a colour scheme."""

    width: int
    height: int
    scheme: str
    lang: str = "en"

    @property
    def label(self) -> str:
        return f"{self.width}-{self.scheme}-{self.lang}"

    @property
    def suffix(self) -> str:
        base = f"{self.width}" if self.scheme == "light" else f"{self.width}-dark"
        return base if self.lang == "en" else f"{base}-{self.lang}"

    @property
    def browser_locale(self) -> str:
        return BROWSER_LOCALES[self.lang]


# Every page in every language, light at both widths; dark mode (colours only) in English.
BROWSER_LOCALES = {"en": "en-GB", "fr": "fr-FR", "de": "de-DE", "it": "it-IT"}
COMBOS = [
    Combo(1280, 800, "light"),
    Combo(360, 740, "light"),
    Combo(1280, 800, "dark"),
    Combo(360, 740, "dark"),
] + [
    Combo(w, h, "light", lang) for lang in ("fr", "de", "it") for w, h in ((1280, 800), (360, 740))
]

Translate = Callable[[str], str]


def _english(text: str) -> str:
    return text


def translator(lang: str) -> Translate:
    """The pages' own catalog: the test finds labels and buttons by their text in ``lang``."""
    if lang == "en":
        return _english
    catalog = Translations.load(str(TRANSLATIONS), [lang])
    return catalog.gettext


@dataclass(frozen=True)
class Site:
    """The second server and what was made in it for the pages to show."""

    base_url: str
    env: dict[str, str]
    org_id: str
    client_id: str
    member_id: str
    fake: FakeEntra


@dataclass
class Audit:
    """Runs axe on pages and gathers what it finds, to fail once with the whole list."""

    combo: Combo
    screenshots: Path
    problems: list[str] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)

    @property
    def t(self) -> Translate:
        return translator(self.combo.lang)

    def check(self, page: Page, name: str) -> None:
        page.wait_for_load_state("load")
        self.seen.append(name)
        lang = page.evaluate("() => document.documentElement.lang")
        if lang != self.combo.lang:
            self.problems.append(f"{name} ({page.url}): in {lang!r}, not {self.combo.lang!r}")
        results = AXE.run(page)
        for violation in results.response["violations"]:
            if violation["impact"] not in BLOCKING:
                continue
            targets = [", ".join(map(str, node["target"])) for node in violation["nodes"]]
            self.problems.append(
                f"{name} ({page.url}): {violation['id']} [{violation['impact']}] "
                f"{violation['help']}: {'; '.join(targets[:6])}"
            )
        if self.combo.width < 400:
            widths = page.evaluate(
                "() => [document.documentElement.scrollWidth, window.innerWidth]"
            )
            if widths[0] > widths[1] + 1:
                wide = page.evaluate(WIDEST_ELEMENTS)
                self.problems.append(
                    f"{name} ({page.url}): scrolls sideways at {self.combo.width} px "
                    f"(scrollWidth {widths[0]}): {wide}"
                )
        page.screenshot(
            path=str(self.screenshots / f"{name}-{self.combo.suffix}.png"), full_page=True
        )


# The elements sticking out to the right, to name them in the failure.
WIDEST_ELEMENTS = """() => {
  const limit = window.innerWidth + 1;
  const out = [];
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.right > limit) {
      out.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
               (el.className && typeof el.className === 'string' ? '.' + el.className : '') +
               ' right=' + Math.round(r.right));
    }
  }
  return out.slice(0, 8).join('; ');
}"""


def _idp(env: dict[str, str], *args: str, stdin: str = "") -> str:
    result = services.run_idp(*args, env=env, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _user(env: dict[str, str], email: str, first: str, *extra: str) -> None:
    _idp(
        env,
        "user",
        "create",
        email,
        "--password-stdin",
        "--first-name",
        first,
        "--last-name",
        "Tester",
        *extra,
        stdin=PASSWORD + "\n",
    )


@pytest.fixture(scope="module")
def site(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """gunicorn with sign-up on, an organization with an owner and a member, a client that
    asks consent, and the organization's SSO connection to a tenant of the fake Entra ID (on
    https://localhost, so its form_post back is cross-site as in production)."""
    port = services.free_port()
    prefix = f"idpa11y:{services.RUN_ID}:"
    base = f"http://127.0.0.1:{port}"
    with run_fake_entra(url_host="localhost") as fake:
        env = dict(live_server.env)
        env.update(fake.env())
        env.update(
            IDP_SIGNUP_ENABLED="true",
            IDP_LOGIN_ATTEMPTS_PER_IP_PER_MINUTE="10000",
            IDP_EMAIL_REQUESTS_PER_IP_PER_HOUR="10000",
            IDP_REDIS_PREFIX=prefix,
            IDP_ISSUER=base,
        )
        fake.add_tenant(TID, [SSO_DOMAIN])
        fake.register_app(
            TID,
            CLIENT_ID,
            client_secret=SECRET,
            redirect_uris=[f"{base}/login/sso/callback", f"{base}/login/sso/logged-out"],
        )
        org_id = _idp(env, "org", "create", ORG).split()[-1]
        _user(env, OWNER, "Olive", "--org", ORG, "--role", "owner")
        _user(env, MEMBER, "Mia", "--org", ORG)
        _idp(
            env,
            "sso",
            "link",
            ORG,
            "--tenant-id",
            TID,
            "--client-id",
            CLIENT_ID,
            "--client-secret-stdin",
            "--domain",
            SSO_DOMAIN,
            stdin=SECRET + "\n",
        )
        created = _idp(
            env,
            "client",
            "create",
            "Reader App",
            "--redirect-uri",
            REDIRECT_URI,
            "--post-logout-redirect-uri",
            REDIRECT_URI,
        )
        client_id = created.split()[0]
        log = tmp_path_factory.mktemp("idp_a11y") / "gunicorn.log"
        try:
            with _start_gunicorn(env, port, log) as base_url:
                yield Site(base_url, env, org_id, client_id, _user_id(env, MEMBER), fake)
        finally:
            _delete_redis_prefix(prefix)


def _user_id(env: dict[str, str], email: str) -> str:
    engine = create_engine(normalize_url(env["IDP_DATABASE_URL"]))
    try:
        with engine.connect() as conn:
            found = conn.execute(select(User.id).where(User.email_normalized == email)).scalar()
    finally:
        engine.dispose()
    assert found, f"no account {email}"
    return str(found)


def _context(browser: Browser, site: Site, combo: Combo) -> BrowserContext:
    ctx = browser.new_context(
        base_url=site.base_url,
        locale=combo.browser_locale,
        viewport={"width": combo.width, "height": combo.height},
        color_scheme="dark" if combo.scheme == "dark" else "light",
        ignore_https_errors=True,  # the fake Entra's certificate
    )
    ctx.set_default_timeout(10_000)
    return ctx


def _sign_in(page: Page, email: str, t: Translate = _english) -> None:
    page.goto("/login")
    page.get_by_label(t("Email address"), exact=True).fill(email)
    page.get_by_label(t("Password"), exact=True).fill(PASSWORD)
    page.get_by_role("button", name=t("Sign in")).click()


def _mailed_link(env: dict[str, str], template: str, email: str) -> str:
    """The link in the newest mail of ``template`` queued for ``email`` (no worker runs here)."""
    engine = create_engine(normalize_url(env["IDP_DATABASE_URL"]))
    try:
        with engine.connect() as conn:
            payloads = conn.execute(select(OutboxItem.payload).order_by(OutboxItem.id)).scalars()
            links = [
                p["context"]["link"]
                for p in payloads
                if p.get("template") == template and p["to"] == email
            ]
    finally:
        engine.dispose()
    assert links, f"no {template} mail queued for {email}"
    return str(links[-1])


@contextmanager
def _server_runtime(env: dict[str, str]) -> Iterator[Runtime]:
    """The running server's database and store, opened in this process (no worker runs
    here, so mailed tokens are issued the way the outbox worker does)."""
    runtime = Runtime(load_settings(environ=env))
    try:
        yield runtime
    finally:
        runtime.close()


def _account(db: Session, email: str) -> User:
    user = db.scalar(select(User).where(User.email_normalized == email))
    assert user is not None, f"no account {email}"
    return user


def _reset_token(env: dict[str, str], email: str) -> str:
    """A reset link's token."""
    with _server_runtime(env) as runtime, runtime.session_factory() as db:
        issuer = ResetLinkIssuer(runtime.session_factory, runtime.settings, runtime.passwords)
        token = issuer.issue(db, email, Actor(ip="127.0.0.1", user_agent="a11y test"))
    assert token, f"no account {email}"
    return token


def _unlock_token(env: dict[str, str], email: str) -> str:
    """Lock the account as too many failed sign-ins do; the unlock link's token."""
    with _server_runtime(env) as runtime, runtime.session_factory() as db:
        token = LockoutService(db, runtime.store, runtime.settings).lock(
            _account(db, email), Actor(ip="127.0.0.1", user_agent="a11y test")
        )
        db.commit()
    return token


def _verification_token(env: dict[str, str], email: str) -> str:
    """A sign-up's verification link token."""
    with _server_runtime(env) as runtime, runtime.session_factory() as db:
        service = EmailVerificationService(
            db, runtime.settings, AccountService(db, runtime.passwords)
        )
        token = service.issue(_account(db, email), email, VerificationPurpose.ACCOUNT)
        db.commit()
    return token


def _rate_limited(page: Page, audit: Audit, tag: str) -> None:
    """A real 429: more reset links asked for one address than an hour allows."""
    t = audit.t
    address = f"limited.{tag}@example.com"
    status = 0
    for _ in range(12):
        page.goto("/password/forgot")
        page.get_by_label(t("Email address")).fill(address)
        with page.expect_response(
            lambda r: r.request.method == "POST" and r.url.endswith("/password/forgot")
        ) as answer:
            page.get_by_role("button", name=t("Send the reset link")).click()
        status = answer.value.status
        if status == 429:
            break
    assert status == 429
    audit.check(page, "error-429")


def _token_pages(page: Page, audit: Audit, site: Site, tag: str) -> None:
    """Pages reached from a mailed link, and the page after an account is deleted."""
    locked = f"locked.{tag}@example.com"
    _user(site.env, locked, "Lou")
    page.goto(f"/verify-email/{_verification_token(site.env, locked)}")
    audit.check(page, "verify-email")
    page.goto(f"/unlock/{_unlock_token(site.env, locked)}")
    audit.check(page, "unlock-link")
    page.goto("/unlock/not-a-valid-token")
    audit.check(page, "unlock-link-invalid")
    page.goto("/account/deleted")
    audit.check(page, "account-deleted")


def _sso_pages(browser: Browser, audit: Audit, site: Site, tag: str) -> None:
    """The pages of "Log in with SSO" that ask for proof: an existing account offered for
    linking (then linked with its password), a new account whose address Entra did not verify
    (confirmed with a mailed code), and the error page."""
    t = audit.t

    def start(page: Page, email: str) -> None:
        page.goto("/login/sso")
        page.locator("main input[name=email]").fill(email)
        page.locator("main form button[type=submit]").first.click()

    existing = f"link.{tag}@{SSO_DOMAIN}"
    _user(site.env, existing, "Lina")
    site.fake.add_user(
        TID, str(uuid.uuid4()), existing, existing, "Lina Tester", email_verified_domain_owner=True
    )
    newcomer = f"new.{tag}@{SSO_DOMAIN}"
    site.fake.add_user(
        TID, str(uuid.uuid4()), newcomer, newcomer, "Nina Tester", email_verified_domain_owner=False
    )

    ctx = _context(browser, site, audit.combo)
    try:
        page = ctx.new_page()
        start(page, existing)
        expect(page.locator("#sso-link-prove")).to_be_visible()
        audit.check(page, "sso-link-offer")
        page.locator("#sso-link-prove").click()
        page.get_by_label(t("Email address"), exact=True).fill(existing)
        page.get_by_label(t("Password"), exact=True).fill(PASSWORD)
        page.get_by_role("button", name=t("Sign in")).click()
        expect(page).to_have_url(re.compile(r"/login/sso/link$"))
        audit.check(page, "sso-link")
    finally:
        ctx.close()

    ctx = _context(browser, site, audit.combo)
    try:
        page = ctx.new_page()
        start(page, newcomer)
        expect(page.get_by_role("button", name=t("Email me a code"))).to_be_visible()
        audit.check(page, "sso-confirm-email")
        page.get_by_role("button", name=t("Email me a code")).click()
        expect(page).to_have_url(re.compile(r"/login/sso/link/code$"))
        audit.check(page, "sso-code")
        page.locator("#code").fill("000000")
        page.get_by_role("button", name=t("Confirm"), exact=True).click()
        expect(page.get_by_role("alert")).to_be_visible()
        audit.check(page, "sso-code-error")
        page.context.clear_cookies()
        page.goto("/login/sso/link/code")  # the offer is gone: the SSO error page
        audit.check(page, "sso-error")
    finally:
        ctx.close()


def _anonymous_pages(page: Page, audit: Audit, site: Site, email: str) -> None:
    t = audit.t
    page.goto("/login")
    audit.check(page, "login")
    page.get_by_label(t("Email address"), exact=True).fill("nobody.a11y@example.com")
    page.get_by_label(t("Password"), exact=True).fill("not the password")
    page.get_by_role("button", name=t("Sign in")).click()
    expect(page.get_by_role("alert")).to_be_visible()
    audit.check(page, "login-error")
    page.goto("/login/sso")
    audit.check(page, "login-sso")
    page.goto("/unlock")
    audit.check(page, "unlock")
    page.goto("/password/forgot")
    audit.check(page, "password-forgot")
    page.get_by_label(t("Email address")).fill(email)
    page.get_by_role("button", name=t("Send the reset link")).click()
    expect(page.get_by_role("status")).to_be_visible()
    audit.check(page, "password-forgot-sent")
    page.goto(f"/password/reset/{_reset_token(site.env, email)}")
    audit.check(page, "password-reset")
    page.get_by_label(t("New password"), exact=True).fill(PASSWORD)
    page.get_by_role("button").last.click()
    audit.check(page, "password-reset-error")
    page.goto("/signup")
    audit.check(page, "signup")
    page.get_by_label(t("Email address")).fill("x" + email)
    page.get_by_label(t("First name"), exact=True).fill("Sam")
    page.get_by_label(t("Password"), exact=True).fill(PASSWORD)
    page.get_by_label(t("Password again")).fill(PASSWORD + "-not-the-same")
    page.get_by_role("button", name=t("Create account")).click()
    expect(page.get_by_role("alert")).to_be_visible()
    audit.check(page, "signup-error")
    page.get_by_label(t("Password"), exact=True).fill(PASSWORD)
    page.get_by_label(t("Password again")).fill(PASSWORD)
    page.get_by_role("button", name=t("Create account")).click()
    expect(page.get_by_role("status")).to_be_visible()
    audit.check(page, "signup-sent")
    page.goto("/no-such-page")
    audit.check(page, "error-404")
    page.goto("/authorize?client_id=nobody&response_type=code")
    audit.check(page, "oidc-error")
    # A form whose CSRF token no longer matches: the 400 page.
    page.goto("/unlock")
    page.locator("input[name=csrf_token]").evaluate("el => el.value = 'stale'")
    page.get_by_label(t("Email address")).fill("nobody.a11y@example.com")
    page.locator("main form button[type=submit]").first.click()
    audit.check(page, "error-400-csrf")


def _account_pages(page: Page, audit: Audit) -> None:
    for path, name in [
        ("/account", "account"),
        ("/account/profile", "account-profile"),
        ("/account/profile?edit=1", "account-profile-edit"),
        ("/account/sessions", "account-sessions"),
        ("/account/sessions/end-others", "account-sessions-end-others"),
        ("/account/activity", "account-activity"),
        ("/account/alerts", "account-alerts"),
        ("/account/lockout", "account-lockout"),
        ("/account/password", "account-password"),
        ("/account/two-factor", "account-two-factor"),
        ("/account/email", "account-email"),
        ("/account/delete", "account-delete"),
    ]:
        page.goto(path)
        audit.check(page, name)


def _organization_pages(page: Page, audit: Audit, site: Site, invitee: str) -> None:
    t = audit.t
    org = f"/organizations/{site.org_id}"
    page.goto("/organizations")
    audit.check(page, "organizations")
    page.goto(f"{org}/settings")
    audit.check(page, "organization-settings")
    page.goto(f"{org}/members")
    page.get_by_label(t("Email address")).fill(invitee)
    page.get_by_role("button", name=t("Send invitation")).click()
    expect(page.get_by_test_id("members-notice")).to_be_visible()
    audit.check(page, "organization-members")
    page.get_by_test_id("invitation").first.get_by_role("link").click()
    audit.check(page, "organization-invitation-withdraw")
    page.goto(f"{org}/activity")
    audit.check(page, "organization-activity")
    page.goto(f"{org}/sso")
    audit.check(page, "organization-sso")
    page.goto(f"{org}/delete")
    audit.check(page, "organization-delete")
    page.goto(f"{org}/leave")
    audit.check(page, "organization-leave")
    page.goto(f"{org}/members/{site.member_id}/remove")
    audit.check(page, "organization-remove-member")
    page.goto(f"{org}/branding/remove?which=square")
    audit.check(page, "organization-remove-logo")
    page.goto(f"{org}/sso/remove")
    audit.check(page, "organization-sso-remove")


def _relying_party_pages(page: Page, audit: Audit, site: Site) -> None:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    query = urlencode(
        {
            "client_id": site.client_id,
            "response_type": "code",
            "scope": "openid profile email",
            "redirect_uri": REDIRECT_URI,
            "state": "a11y",
            "nonce": "a11y",
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }
    )
    page.goto(f"/authorize?{query}")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    audit.check(page, "consent")
    page.goto("/end-session?" + urlencode({"client_id": site.client_id}))
    audit.check(page, "logout-confirm")


def _two_factor_pages(page: Page, audit: Audit, email: str) -> None:
    t = audit.t
    page.goto("/account/two-factor")
    page.get_by_label(t("Your password")).fill(PASSWORD)
    page.get_by_role("button", name=t("Set up two-factor authentication")).click()
    expect(page.locator("[data-testid=totp-qr]")).to_be_visible()
    audit.check(page, "two-factor-enroll")
    secret = page.locator("[data-testid=totp-secret]").inner_text().replace(" ", "")
    totp = pyotp.TOTP(secret)
    page.get_by_label(t("6-digit code")).fill(totp.now())
    page.get_by_role("button", name=t("Turn on")).click()
    expect(page.locator("[data-testid=recovery-codes] li")).to_have_count(10)
    audit.check(page, "two-factor-recovery-codes")
    page.goto("/account/two-factor")
    audit.check(page, "account-two-factor-on")
    page.goto("/account")
    page.get_by_role("button", name=t("Sign out")).click()
    _sign_in(page, email, t)
    expect(page).to_have_url(re.compile(r"/login/code"))
    audit.check(page, "login-code")
    page.get_by_label(t("Authentication code")).fill("000000")
    page.get_by_role("button", name=t("Verify")).click()
    expect(page.get_by_role("alert")).to_be_visible()
    audit.check(page, "login-code-error")
    page.get_by_label(t("Authentication code")).fill(totp.at(time.time() + 30))
    page.get_by_role("button", name=t("Verify")).click()
    expect(page).to_have_url(ON_ACCOUNT)


def _email_change_confirm(page: Page, audit: Audit, site: Site, tag: str) -> None:
    """The page the link mailed to a new address opens (it asks before changing)."""
    t = audit.t
    new_address = f"changed.{tag}@example.com"
    page.goto("/account/email")
    page.get_by_label(t("New email address")).fill(new_address)
    page.get_by_label(t("Your password")).fill(PASSWORD)
    page.get_by_role("button", name=t("Send confirmation link")).click()
    expect(page.get_by_role("status")).to_be_visible()
    page.goto(_mailed_link(site.env, "email_change_confirm", new_address))
    audit.check(page, "email-change-confirm")


@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: c.label)
def test_every_page_passes_axe_and_fits(
    combo: Combo, browser: Browser, site: Site, screenshots: Path
) -> None:
    audit = Audit(combo, screenshots)
    t = audit.t
    tag = f"{combo.width}{combo.scheme}{combo.lang}"
    # A long address: it must wrap on the members and invitation pages, not widen them.
    invitee = f"invitee.with.a.rather.long.address.{tag}@mail.subsidiary.example.com"

    email = f"totp.{tag}@example.com"
    _user(site.env, email, "Tess")
    ctx = _context(browser, site, combo)
    try:
        page = ctx.new_page()
        _anonymous_pages(page, audit, site, email)
        _sign_in(page, OWNER, t)
        expect(page).to_have_url(ON_ACCOUNT)
        _account_pages(page, audit)
        _organization_pages(page, audit, site, invitee)
        _relying_party_pages(page, audit, site)
    finally:
        ctx.close()

    ctx = _context(browser, site, combo)
    try:
        page = ctx.new_page()
        page.goto(_mailed_link(site.env, "invitation", invitee))
        expect(page.get_by_test_id("invited-email")).to_have_text(invitee)
        audit.check(page, "invitation")
    finally:
        ctx.close()

    ctx = _context(browser, site, combo)
    try:
        page = ctx.new_page()
        _sign_in(page, email, t)
        expect(page).to_have_url(ON_ACCOUNT)
        _email_change_confirm(page, audit, site, tag)
        _two_factor_pages(page, audit, email)
        page.context.clear_cookies()
        page.goto(f"/password/reset/{_reset_token(site.env, email)}")
        expect(page.get_by_label(t("Authentication code"))).to_be_visible()
        audit.check(page, "password-reset-two-factor")
        _token_pages(page, audit, site, tag)
        _rate_limited(page, audit, tag)
    finally:
        ctx.close()

    _sso_pages(browser, audit, site, tag)

    assert not audit.problems, (
        f"{len(audit.problems)} problem(s) at {combo.label} on {len(audit.seen)} pages:\n"
        + "\n".join(audit.problems)
    )


def test_keyboard_only_sign_in(page: Page, live_server: LiveServer) -> None:
    """Tab to each field, type, and press Enter: no mouse needed to sign in."""
    page.goto("/login")
    page.locator("body").focus()
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement && document.activeElement.id") == "email":
            break
    assert page.evaluate("() => document.activeElement.id") == "email"
    page.keyboard.type(live_server.account.email)
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "password"
    page.keyboard.type(live_server.account.password)
    page.keyboard.press("Enter")
    expect(page).to_have_url(ON_ACCOUNT)
    expect(page.get_by_test_id("email")).to_have_text(live_server.account.email)


def test_wrong_password_is_announced_and_tied_to_the_fields(page: Page) -> None:
    page.goto("/login")
    email = page.get_by_label("Email address", exact=True)
    password = page.get_by_label("Password", exact=True)
    email.fill("nobody.announced@example.com")
    password.fill("not the password")
    password.press("Enter")
    alert = page.get_by_role("alert")
    expect(alert).to_have_text("Incorrect email or password.")
    error_id = alert.get_attribute("id")
    assert error_id
    for field_ in (email, password):
        expect(field_).to_have_attribute("aria-invalid", "true")
        described = (field_.get_attribute("aria-describedby") or "").split()
        assert error_id in described
    # The error's text is what a screen reader reads as the fields' description.
    expect(email).to_have_accessible_description(re.compile("Incorrect email or password"))
    # Focus goes to a field again, so a keyboard user can retype at once.
    focused = page.evaluate("() => document.activeElement && document.activeElement.id")
    assert focused in ("email", "password")
