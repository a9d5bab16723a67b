"""Small helpers the tests share: making accounts, reading forms, signing in."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from idp.accounts import AccountService
from idp.media.store import ImageStore
from idp.models import Event, OutboxItem, Role, User
from idp.organizations.service import OrganizationService
from idp.runtime import Runtime
from idp.security.account_deletion import AccountDeletionService
from idp.security.ratelimit import RateLimiter
from idp.security.reauth import PasswordConfirmation
from idp.security.sessions import SessionService

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def create_user(
    runtime: Runtime,
    email: str = "alice@example.com",
    password: str = PASSWORD,
    *,
    organization: str | None = None,
    role: Role = Role.MEMBER,
    first_name: str = "Alice",
    last_name: str = "Liddell",
) -> User:
    with runtime.session_factory() as db:
        accounts = AccountService(db, runtime.passwords)
        if organization and accounts.find_organization(organization) is None:
            accounts.create_organization(organization)
        return accounts.create_user(
            email,
            password,
            first_name=first_name,
            last_name=last_name,
            organization=organization,
            role=role,
        )


def csrf_token(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def login_form(client: FlaskClient, path: str = "/login") -> str:
    response = client.get(path)
    assert response.status_code == 200
    return csrf_token(response.get_data(as_text=True))


def sign_in(
    client: FlaskClient,
    email: str = "alice@example.com",
    password: str = PASSWORD,
    next_url: str | None = None,
) -> TestResponse:
    token = login_form(client)
    data = {"csrf_token": token, "email": email, "password": password}
    if next_url is not None:
        data["next"] = next_url
    return client.post("/login", data=data)


def count(runtime: Runtime, model: type, *where: object) -> int:
    with runtime.session_factory() as db:
        return db.scalar(select(func.count()).select_from(model).where(*where)) or 0


def events(runtime: Runtime, action: str) -> list[Event]:
    with runtime.session_factory() as db:
        return list(db.scalars(select(Event).where(Event.action == action).order_by(Event.id)))


def count_verifications(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, every argon2id verification of ``runtime`` appends the hash it checked
    against (the real one, or the dummy of an unknown address) to the returned list."""
    calls: list[str] = []
    hasher = runtime.passwords.hasher

    class CountingHasher:
        def verify(self, stored: str, password: str) -> bool:
            calls.append(stored)
            return hasher.verify(stored, password)

        def __getattr__(self, name: str) -> object:
            return getattr(hasher, name)

    monkeypatch.setattr(runtime.passwords, "hasher", CountingHasher())
    return calls


def request_email_change(client: FlaskClient, new_email: str, password: str = PASSWORD) -> str:
    """Ask, signed in, to change the address to ``new_email``; the path of the confirmation
    link mailed there (read from the outbox)."""
    page = client.get("/account/email").get_data(as_text=True)
    sent = client.post("/account/email", data={
        "csrf_token": csrf_token(page), "email": new_email, "password": password})
    assert sent.status_code == 200, sent.get_data(as_text=True)
    return email_change_links(client.application.extensions["idp"], new_email)[-1]


def email_change_links(runtime: Runtime, new_email: str) -> list[str]:
    """The paths of the email change links mailed to ``new_email`` so far, oldest first."""
    with runtime.session_factory() as db:
        items = db.scalars(select(OutboxItem).where(OutboxItem.kind == "mail")
                           .order_by(OutboxItem.id)).all()
    return ["/" + str(i.payload["context"]["link"]).split("://", 1)[1].split("/", 1)[1]
            for i in items if i.payload.get("template") == "email_change_confirm"
            and i.payload.get("to") == new_email]


def organization_service(runtime: Runtime, db: Session) -> OrganizationService:
    """The organization service on ``db`` (for tests that run changes side by side)."""
    return OrganizationService(
        db,
        AccountService(db, runtime.passwords),
        PasswordConfirmation(runtime.passwords, RateLimiter(runtime.store), runtime.store),
    )


def account_deletion_service(runtime: Runtime, db: Session) -> AccountDeletionService:
    """The account deletion service on ``db`` (for tests that run deletions side by side)."""
    return AccountDeletionService(
        db,
        PasswordConfirmation(runtime.passwords, RateLimiter(runtime.store), runtime.store),
        SessionService(db, runtime.store, runtime.settings),
        ImageStore(db),
    )
