"""Changing the email address: the password, a single-use link to the new address, a notice to
the old one, and no change until the link is used. A taken address gets the same answer (its
owner a notice), the typed addresses count with the other mail forms' limits, an address whose
organization enforces SSO cannot be changed, and a confirmed change voids the links mailed to
the old address."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from flask import Flask
from sqlalchemy import func, select, update
from werkzeug.test import TestResponse

from idp.events import EventTag
from idp.mail import messages
from idp.mail.compose import MailComposer
from idp.models import (
    EmailChange,
    OneTimeToken,
    Organization,
    OutboxItem,
    SsoConnection,
    SsoDomain,
    User,
    utcnow,
)
from idp.runtime import Runtime
from idp.security.lockout import UNLOCK_PURPOSE
from idp.worker import build_worker
from tests.conftest import make_settings, running_app
from tests.helpers import PASSWORD, create_user, csrf_token, events, sign_in
from tests.organizations import post, signed_in

MANAGED = "Your organization manages this address; ask its administrator to change it."


def _mails(runtime: Runtime) -> list[dict[str, object]]:
    with runtime.session_factory() as db:
        return [i.payload for i in db.scalars(select(OutboxItem).order_by(OutboxItem.id))
                if i.kind == "mail"]


def _email(runtime: Runtime) -> tuple[str, bool]:
    with runtime.session_factory() as db:
        user = db.scalar(select(User))
        assert user is not None
        return user.email, user.email_verified


def _without_csrf(page: str) -> str:
    return re.sub(r'name="csrf_token" value="[^"]+"', 'name="csrf_token" value=""', page)


def _link_sso(runtime: Runtime, domain: str, *, enforce_sso: bool) -> None:
    """An organization's SSO connection serving ``domain`` (no Entra needed to look it up)."""
    with runtime.session_factory() as db:
        org = Organization(name="Corp")
        db.add(org)
        db.flush()
        connection = SsoConnection(organization_id=org.id, tenant_id="t", client_id="c",
                                   client_secret="sealed", enforce_sso=enforce_sso)
        db.add(connection)
        db.flush()
        db.add(SsoDomain(domain=domain, connection_id=connection.id))
        db.commit()


def _enforce_sso(runtime: Runtime) -> None:
    with runtime.session_factory() as db:
        db.execute(update(SsoConnection).values(enforce_sso=True))
        db.commit()


def _request(client: object, email: str, password: str = PASSWORD) -> object:
    page = client.get("/account/email").get_data(as_text=True)  # type: ignore[attr-defined]
    return client.post(  # type: ignore[attr-defined]
        "/account/email", data={"csrf_token": csrf_token(page), "email": email,
                                "password": password})


def test_the_change_waits_for_the_link_sent_to_the_new_address(
    app: Flask, runtime: Runtime
) -> None:
    create_user(runtime)
    client = signed_in(app, "alice@example.com")
    sent = _request(client, "Alice.New@Example.com")
    assert sent.status_code == 200  # type: ignore[attr-defined]
    assert "We sent a confirmation link to Alice.New@Example.com" in sent.get_data(as_text=True)  # type: ignore[attr-defined]
    assert _email(runtime)[0] == "alice@example.com"  # nothing changed yet
    mails = [m for m in _mails(runtime) if m["template"].startswith("email_change")]  # type: ignore[union-attr]
    assert [(m["to"], m["template"]) for m in mails] == [
        ("Alice.New@Example.com", "email_change_confirm"),
        ("alice@example.com", "email_change_notice"),
    ]
    link = str(mails[0]["context"]["link"])  # type: ignore[index]
    path = link.removeprefix("http://127.0.0.1:8000")
    with runtime.session_factory() as db:
        stored = db.scalar(select(EmailChange))
        assert stored is not None and path.rsplit("/", 1)[1] not in stored.token_hash

    visitor = app.test_client()
    page = visitor.get(path)  # a mail scanner's GET changes nothing
    assert page.status_code == 200 and _email(runtime)[0] == "alice@example.com"
    done = visitor.post(path, data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert done.status_code == 200
    assert "Your email address is now Alice.New@Example.com" in done.get_data(as_text=True)
    assert _email(runtime) == ("Alice.New@Example.com", True)
    assert sign_in(app.test_client(), "alice.new@example.com").status_code == 303
    assert len(events(runtime, EventTag.EMAIL_CHANGE_REQUESTED)) == 1
    assert len(events(runtime, EventTag.EMAIL_CHANGED)) == 1
    # Single use.
    assert visitor.get(path).status_code == 404


def test_refusals(app: Flask, runtime: Runtime) -> None:
    create_user(runtime)
    create_user(runtime, "bob@example.com", first_name="Bob")
    client = signed_in(app, "alice@example.com")
    wrong = _request(client, "new@example.com", "not my password")
    assert wrong.status_code == 400  # type: ignore[attr-defined]
    assert "not your password" in wrong.get_data(as_text=True)  # type: ignore[attr-defined]
    bad = _request(client, "not an address")
    assert bad.status_code == 400  # type: ignore[attr-defined]
    assert not [m for m in _mails(runtime) if m["template"] == "email_change_confirm"]


def test_an_expired_or_replaced_link_does_not_work(app: Flask, runtime: Runtime) -> None:
    create_user(runtime)
    client = signed_in(app, "alice@example.com")
    _request(client, "first@example.com")
    _request(client, "second@example.com")
    first, second = (str(m["context"]["link"]).removeprefix("http://127.0.0.1:8000")  # type: ignore[index]
                     for m in _mails(runtime) if m["template"] == "email_change_confirm")
    assert app.test_client().get(first).status_code == 404  # replaced
    with runtime.session_factory() as db:
        db.execute(update(EmailChange).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.commit()
    assert app.test_client().get(second).status_code == 404
    assert _email(runtime)[0] == "alice@example.com"


# --- an address whose organization enforces SSO ------------------------------------------------

def test_an_address_whose_organization_enforces_sso_cannot_be_changed(
    app: Flask, runtime: Runtime
) -> None:
    create_user(runtime, "grace@corp.com", first_name="Grace")
    client = signed_in(app, "grace@corp.com")  # signed in before SSO was enforced
    _link_sso(runtime, "corp.com", enforce_sso=True)
    page = client.get("/account/email")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert MANAGED in text and 'id="new-email"' not in text  # no form, the reason instead
    refused = post(client, "/account/email", email="grace@private.example", password=PASSWORD)
    assert refused.status_code == 403
    assert MANAGED in refused.get_data(as_text=True)
    assert not [m for m in _mails(runtime) if str(m["template"]).startswith("email_change")]
    with runtime.session_factory() as db:
        assert db.scalar(select(func.count()).select_from(EmailChange)) == 0
    assert _email(runtime)[0] == "grace@corp.com"
    assert not events(runtime, EventTag.EMAIL_CHANGE_REQUESTED)


def test_sso_enforced_after_the_request_stops_the_confirmation(
    app: Flask, runtime: Runtime
) -> None:
    create_user(runtime, "grace@corp.com", first_name="Grace")
    _link_sso(runtime, "corp.com", enforce_sso=False)  # linked, not enforced: may change
    client = signed_in(app, "grace@corp.com")
    assert _request(client, "grace@private.example").status_code == 200  # type: ignore[attr-defined]
    (link,) = [str(m["context"]["link"]).removeprefix("http://127.0.0.1:8000")  # type: ignore[index]
               for m in _mails(runtime) if m["template"] == "email_change_confirm"]
    _enforce_sso(runtime)
    visitor = app.test_client()
    page = visitor.get(link)
    assert page.status_code == 403 and MANAGED in page.get_data(as_text=True)
    assert "<button" not in page.get_data(as_text=True)  # no button that would be refused
    form_page = visitor.get("/login").get_data(as_text=True)  # a CSRF token of this browser
    refused = visitor.post(link, data={"csrf_token": csrf_token(form_page)})
    assert refused.status_code == 403 and MANAGED in refused.get_data(as_text=True)
    assert _email(runtime) == ("grace@corp.com", True)
    assert not events(runtime, EventTag.EMAIL_CHANGED)
    with runtime.session_factory() as db:
        change = db.scalar(select(EmailChange))
        assert change is not None and change.used_at is None  # nothing changed


# --- a taken address gets the answer of a free one ---------------------------------------------

def test_a_taken_address_gets_the_same_answer_and_its_owner_a_notice(
    app: Flask, runtime: Runtime
) -> None:
    create_user(runtime)
    create_user(runtime, "bob@example.com", first_name="Bob")
    client = signed_in(app, "alice@example.com")
    free: TestResponse = _request(client, "carol@example.com")  # type: ignore[assignment]
    taken: TestResponse = _request(client, "bob@example.com")  # type: ignore[assignment]
    assert free.status_code == taken.status_code == 200
    assert _without_csrf(free.get_data(as_text=True)).replace("carol@", "x@") == \
        _without_csrf(taken.get_data(as_text=True)).replace("bob@", "x@")
    assert sorted(free.headers.keys()) == sorted(taken.headers.keys())
    mails = [(m["to"], m["template"]) for m in _mails(runtime)
             if str(m["template"]).startswith("email_change")]
    assert mails == [
        ("carol@example.com", "email_change_confirm"),
        ("alice@example.com", "email_change_notice"),
        ("bob@example.com", "email_change_existing_address"),  # no link to bob's mailbox
        ("alice@example.com", "email_change_notice"),  # as for a free address
    ]
    (notice,) = [m for m in _mails(runtime) if m["to"] == "bob@example.com"]
    assert "Alice" not in str(notice["context"])  # no word of the other account
    with runtime.session_factory() as db:  # the newer request replaced carol's, as always
        assert db.scalar(select(func.count()).select_from(EmailChange)) == 0
    assert len(events(runtime, EventTag.EMAIL_CHANGE_REQUESTED)) == 2


def test_the_notice_to_the_owner_of_a_taken_address_renders(runtime: Runtime) -> None:
    create_user(runtime, "bob@example.com", first_name="Bob")
    with runtime.session_factory() as db:
        bob = db.scalar(select(User))
        assert bob is not None
        message = messages.email_change_existing_address(bob)
    subject, text, html = MailComposer(runtime.settings).render(message)
    assert subject == "Someone asked to use your email address for another account"
    assert "Hello Bob," in text and "bob@example.com" in text and "nothing changed" in text
    assert "<strong>bob@example.com</strong>" in html and "{{" not in text + html
    french = MailComposer(runtime.settings).render(replace(message, language="fr"))
    assert french[0] != subject and "Bob" in french[1]


def test_an_address_taken_before_the_confirmation_is_refused(
    app: Flask, runtime: Runtime
) -> None:
    create_user(runtime)
    client = signed_in(app, "alice@example.com")
    _request(client, "carol@example.com")
    (link,) = [str(m["context"]["link"]).removeprefix("http://127.0.0.1:8000")  # type: ignore[index]
               for m in _mails(runtime) if m["template"] == "email_change_confirm"]
    create_user(runtime, "Carol@example.com", first_name="Carol")
    visitor = app.test_client()
    page = visitor.get(link).get_data(as_text=True)
    refused = visitor.post(link, data={"csrf_token": csrf_token(page)})
    assert refused.status_code == 400
    assert "now belongs to another account" in refused.get_data(as_text=True)
    assert _email(runtime)[0] == "alice@example.com"


# --- the limits of every form that mails a typed address ---------------------------------------

def test_requests_count_with_the_other_mail_forms_per_address(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with running_app(make_settings(tmp_path, database_url=database_url, redis_url=redis_url,
                                   email_requests_per_address_per_hour=2)) as app:
        runtime: Runtime = app.extensions["idp"]
        create_user(runtime)
        create_user(runtime, "bob@example.com", first_name="Bob")
        create_user(runtime, "dave@example.com", first_name="Dave")
        alice = signed_in(app, "alice@example.com")
        free = [_request(alice, "carol@example.com") for _ in range(3)]
        assert [a.status_code for a in free] == [200, 200, 429]  # type: ignore[attr-defined]
        assert 1 <= int(free[2].headers["Retry-After"]) <= 3600  # type: ignore[attr-defined]
        dave = signed_in(app, "dave@example.com")
        taken = [_request(dave, "bob@example.com") for _ in range(3)]
        assert [a.status_code for a in taken] == [200, 200, 429]  # type: ignore[attr-defined]
        assert _without_csrf(free[2].get_data(as_text=True)).replace(  # type: ignore[attr-defined]
            "carol@", "x@").replace("alice@", "y@") == _without_csrf(
            taken[2].get_data(as_text=True)).replace(  # type: ignore[attr-defined]
            "bob@", "x@").replace("dave@", "y@")
        to = [m["to"] for m in _mails(runtime)
              if m["template"] in ("email_change_confirm", "email_change_existing_address")]
        assert to == ["carol@example.com"] * 2 + ["bob@example.com"] * 2  # two each, not three
        # The count is shared with the password reset form.
        stranger = app.test_client()
        page = stranger.get("/password/forgot").get_data(as_text=True)
        forgot = stranger.post("/password/forgot", data={
            "csrf_token": csrf_token(page), "email": "carol@example.com"})
        assert forgot.status_code == 429


# --- links mailed to the old address -----------------------------------------------------------

def test_confirming_voids_the_links_mailed_to_the_old_address(
    app: Flask, runtime: Runtime
) -> None:
    create_user(runtime)
    stranger = app.test_client()  # whoever keeps the old mailbox asks for a reset link
    page = stranger.get("/password/forgot").get_data(as_text=True)
    assert stranger.post("/password/forgot", data={
        "csrf_token": csrf_token(page), "email": "alice@example.com"}).status_code == 200
    build_worker(runtime).run_once()  # the request becomes a link and a queued mail
    (reset,) = [str(m["context"]["reset_url"]).removeprefix("http://127.0.0.1:8000")  # type: ignore[index]
                for m in _mails(runtime) if m["template"] == "password_reset"]
    before = stranger.get(reset)
    assert before.status_code == 200  # works before the change
    token = csrf_token(before.get_data(as_text=True))
    with runtime.session_factory() as db:
        user = db.scalar(select(User))
        assert user is not None
        db.add(OneTimeToken(purpose=UNLOCK_PURPOSE, user_id=user.id, token_hash="0" * 64,
                            binding="lock", expires_at=utcnow() + timedelta(hours=1)))
        db.commit()

    client = signed_in(app, "alice@example.com")
    _request(client, "alice@new.example")
    (link,) = [str(m["context"]["link"]).removeprefix("http://127.0.0.1:8000")  # type: ignore[index]
               for m in _mails(runtime) if m["template"] == "email_change_confirm"]
    visitor = app.test_client()
    confirm_page = visitor.get(link).get_data(as_text=True)
    assert visitor.post(link, data={"csrf_token": csrf_token(confirm_page)}).status_code == 200
    assert _email(runtime)[0] == "alice@new.example"

    assert stranger.get(reset).status_code == 400  # the old mailbox's link is dead
    assert stranger.post(reset, data={
        "csrf_token": token, "new_password": "a password of the stranger",
        "new_password_again": "a password of the stranger"}).status_code == 400
    with runtime.session_factory() as db:
        assert db.scalar(select(func.count()).select_from(OneTimeToken)
                         .where(OneTimeToken.used_at.is_(None))) == 0
    assert sign_in(app.test_client(), "alice@new.example").status_code == 303


def _input(page: str, field_id: str) -> str:
    match = re.search(rf'<input id="{field_id}"[^>]*>', page)
    assert match, field_id
    return match.group(0)


def test_a_refusal_is_tied_to_the_field_it_is_about(app: Flask, runtime: Runtime) -> None:
    create_user(runtime)
    client = signed_in(app, "alice@example.com")
    wrong = _request(client, "new@example.com", "not my password")
    page = wrong.get_data(as_text=True)  # type: ignore[attr-defined]
    tied = _input(page, "password")
    assert 'aria-describedby="email-error"' in tied and 'aria-invalid="true"' in tied
    assert "aria-invalid" not in _input(page, "new-email")
    bad = _request(client, "not an address")
    page = bad.get_data(as_text=True)  # type: ignore[attr-defined]
    tied = _input(page, "new-email")
    assert 'aria-describedby="email-error"' in tied and 'aria-invalid="true"' in tied
    assert "aria-invalid" not in _input(page, "password")
