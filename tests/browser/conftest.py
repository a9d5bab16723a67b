"""Fixtures for the browser tests: a real idp (gunicorn, PostgreSQL, Redis) and Debian chromium.

The server runs once per session with its own database and Redis prefix, and one user account;
each test gets a fresh browser context (no shared cookies) and a page in it.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests import services
from tests.helpers import PASSWORD

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = services.ROOT / "artifacts" / "screenshots"


@dataclass(frozen=True)
class Account:
    """The user the browser tests sign in as."""

    email: str
    password: str
    first_name: str
    last_name: str

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


@dataclass(frozen=True)
class LiveServer:
    """A running idp and the account made in it."""

    base_url: str
    account: Account
    env: dict[str, str]  # the server's settings, to run `idp` commands against it


ACCOUNT = Account("alice.browser@example.com", PASSWORD, "Alice", "Liddell")


def _check(result: subprocess.CompletedProcess[str], what: str) -> None:
    """Fail with the command's output when an ``idp`` subcommand did not succeed."""
    if result.returncode != 0:
        pytest.fail(f"idp {what} failed ({result.returncode}): {result.stderr.strip()}")


def _prepare(env: dict[str, str], account: Account) -> None:
    """Create the schema and the account through the ``idp`` command line."""
    _check(services.run_idp("db", "upgrade", env=env), "db upgrade")
    created = services.run_idp(
        "user",
        "create",
        account.email,
        "--password-stdin",
        "--first-name",
        account.first_name,
        "--last-name",
        account.last_name,
        env=env,
        stdin=account.password + "\n",
    )
    _check(created, "user create")


def _delete_redis_prefix(prefix: str) -> None:
    """Remove every Redis key the server wrote under ``prefix``."""
    import redis

    client = redis.Redis.from_url(services.REDIS_URL, socket_connect_timeout=3)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


@contextlib.contextmanager
def _start_gunicorn(env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    """services.running_server, failing with the end of gunicorn's log when it does not start."""
    server = services.running_server(services.gunicorn_args(port, workers=2), env, port, log)
    try:
        base_url = server.__enter__()
    except RuntimeError as exc:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        pytest.fail(f"gunicorn did not start: {exc}\n{tail}", pytrace=False)
    try:
        yield base_url
    finally:
        server.__exit__(None, None, None)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """gunicorn serving ``idp:create_app()`` with two workers on a free loopback port."""
    services.check_redis()
    name = f"idp_browser_{services.RUN_ID}"
    database_url = services.create_postgres_database(name)
    prefix = f"idpbrowser:{services.RUN_ID}:"
    tmp = tmp_path_factory.mktemp("idp_browser")
    port = services.free_port()
    env = services.idp_env(
        database_url=database_url,
        redis_url=services.REDIS_URL,
        redis_prefix=prefix,
        secret_key=secrets.token_urlsafe(48),
        data_dir=str(tmp / "var"),
        issuer=f"http://127.0.0.1:{port}",
    )
    try:
        _prepare(env, ACCOUNT)
        with _start_gunicorn(env, port, tmp / "gunicorn.log") as base_url:
            yield LiveServer(base_url=base_url, account=ACCOUNT, env=env)
    finally:
        services.drop_postgres_database(name)
        _delete_redis_prefix(prefix)


@pytest.fixture(scope="session")
def playwright_instance() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    """Debian's chromium, headless; never a browser downloaded by ``playwright install``."""
    if not CHROMIUM.exists():
        services.unavailable("chromium", f"{CHROMIUM} does not exist (apt-get install chromium)")
    launched = playwright_instance.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    yield launched
    launched.close()


@pytest.fixture
def context(browser: Browser, live_server: LiveServer) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) per test, pointed at the live server."""
    ctx = browser.new_context(base_url=live_server.base_url, locale="en-GB")
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """The folder for screenshots worth looking at (git-ignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
