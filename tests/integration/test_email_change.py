"""Changing the email address: the password, a single-use link to the new address, a notice to
the old one, and no change until the link is used."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from sqlalchemy import select, update

from idp.events import EventTag
from idp.models import EmailChange, OutboxItem, User, utcnow
from idp.runtime import Runtime
from tests.helpers import PASSWORD, create_user, csrf_token, events, sign_in
from tests.organizations import signed_in


def _mails(runtime: Runtime) -> list[dict[str, object]]:
    with runtime.session_factory() as db:
        return [i.payload for i in db.scalars(select(OutboxItem).order_by(OutboxItem.id))
                if i.kind == "mail"]


def _email(runtime: Runtime) -> tuple[str, bool]:
    with runtime.session_factory() as db:
        user = db.scalar(select(User))
        assert user is not None
        return user.email, user.email_verified


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
    taken = _request(client, "BOB@example.com")
    assert taken.status_code == 400  # type: ignore[attr-defined]
    assert "another account" in taken.get_data(as_text=True)  # type: ignore[attr-defined]
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
