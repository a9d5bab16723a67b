"""Deleting one's own account: the password once more, refused while the account holds an
organization together, then immediate: sessions, tokens and everything personal gone, relying
services told, the activity log kept without identities."""

from __future__ import annotations

import re

import pyotp
import pytest
from flask import Flask
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from idp.events import EventTag
from idp.models import (
    Consent,
    Device,
    Event,
    FederatedIdentity,
    Membership,
    OutboxItem,
    RecoveryCode,
    Role,
    TokenFamily,
    User,
    UserSession,
)
from idp.provider.logout import BACKCHANNEL_LOGOUT
from idp.runtime import Runtime
from idp.security.account_deletion import AccountGone
from tests.helpers import (
    PASSWORD,
    account_deletion_service,
    count,
    create_user,
    csrf_token,
    events,
    sign_in,
)
from tests.integration.conftest import Receiver
from tests.integration.test_account_access import (
    FIREFOX_WINDOWS,
    Live,
    assert_tokens_dead,
    live_browser,
)
from tests.locks import waits_for
from tests.oidc import RelyingParty, register_client
from tests.organizations import post, seed_org, signed_in


def _delete_page(client: object) -> str:
    page = client.get("/account/delete")  # type: ignore[attr-defined]
    assert page.status_code == 200
    return str(page.get_data(as_text=True))


def test_the_only_member_of_an_organization_is_told_to_delete_it_or_appoint_someone(
    app: Flask, runtime: Runtime
) -> None:
    seed_org(runtime, "Solo", {"me": ("alice@example.com", Role.OWNER)})
    client = signed_in(app, "alice@example.com")
    page = _delete_page(client)
    assert (
        "You are the only member of Solo: delete the organization or appoint someone else first."
        in page
    )
    refused = post(client, "/account/delete", password=PASSWORD)
    assert refused.status_code == 409
    assert count(runtime, User) == 1


def test_the_only_owner_with_other_members_must_appoint_another_owner_first(
    app: Flask, runtime: Runtime
) -> None:
    org = seed_org(
        runtime,
        "Acme",
        {"me": ("alice@example.com", Role.OWNER), "bob": ("bob@example.com", Role.MEMBER)},
    )
    client = signed_in(app, "alice@example.com")
    assert "You are the only owner of Acme: appoint another owner first." in _delete_page(client)
    assert post(client, "/account/delete", password=PASSWORD).status_code == 409

    promoted = post(client, f"/organizations/{org.id}/members/{org.users['bob']}/role",
                    role="owner")
    assert promoted.status_code == 303
    page = _delete_page(client)
    assert "cannot be deleted yet" not in page
    wrong = post(client, "/account/delete", password="not my password")
    assert wrong.status_code == 400 and "not your password" in wrong.get_data(as_text=True)
    done = post(client, "/account/delete", password=PASSWORD)
    assert done.status_code == 303 and done.headers["Location"].endswith("/account/deleted")
    assert count(runtime, User, User.email == "alice@example.com") == 0
    assert count(runtime, Membership, Membership.organization_id == org.id) == 1
    # Signed out here; the account cannot sign in again.
    assert client.get("/account").status_code == 303
    assert sign_in(app.test_client(), "alice@example.com").status_code != 303


def test_deleting_is_immediate_everywhere_and_de_identifies_the_log(
    live: Live, receiver: Receiver
) -> None:
    base, rt = live
    alice = create_user(rt)
    shop = RelyingParty(base, register_client(rt, "Shop", backchannel_logout_uri=receiver.url))
    laptop = live_browser(base, FIREFOX_WINDOWS)
    tokens, _ = shop.sign_in(laptop)
    phone = live_browser(base, FIREFOX_WINDOWS)
    page = phone.follow(base + "/account")
    assert page.status_code == 200
    with rt.session_factory() as db:
        user = db.get(User, alice.id)
        assert user is not None
        user.totp_secret = "sealed"
        db.add(RecoveryCode(user_id=alice.id, code_hash="x" * 64))
        db.add(FederatedIdentity(organization_id=_an_org(rt), tenant_id="t", object_id="o",
                                 user_id=alice.id))
        db.commit()
    assert count(rt, Event, Event.user_id == alice.id) > 0

    confirm = phone.http.get(base + "/account/delete", timeout=10)
    assert "cannot be undone" in confirm.text
    done = phone.http.post(
        base + "/account/delete",
        data={"csrf_token": csrf_token(confirm.text), "password": PASSWORD},
        allow_redirects=False,
        timeout=10,
    )
    assert done.status_code == 303

    # Every browser is signed out at its next request; applications lose access.
    after = laptop.http.get(base + "/account", allow_redirects=False, timeout=10)
    assert after.status_code == 303 and "/login" in after.headers["Location"]
    assert_tokens_dead(shop, tokens)
    with rt.session_factory() as db:
        logouts = [i.payload for i in db.scalars(select(OutboxItem))
                   if i.kind == BACKCHANNEL_LOGOUT]
    assert [p["sub"] for p in logouts] == [alice.id]
    # Nothing personal is left...
    for model, column in (
        (User, User.id), (UserSession, UserSession.user_id), (Device, Device.user_id),
        (RecoveryCode, RecoveryCode.user_id), (FederatedIdentity, FederatedIdentity.user_id),
        (Consent, Consent.user_id), (TokenFamily, TokenFamily.user_id),
        (Membership, Membership.user_id),
    ):
        assert count(rt, model, column == alice.id) == 0, model.__name__
    # ...and the log keeps its rows, without identities.
    assert count(rt, Event, Event.user_id == alice.id) == 0
    with rt.session_factory() as db:
        rows = db.scalars(select(Event)).all()
    assert any(e.action == EventTag.LOGIN_SUCCESS for e in rows)
    assert all(e.ip == "" and e.session_id is None and e.device_id is None for e in rows
               if e.action == EventTag.LOGIN_SUCCESS)
    assert len(events(rt, EventTag.USER_DELETED)) == 1
    assert pyotp  # (the TOTP secret went with the user row)


def _an_org(runtime: Runtime) -> str:
    org = seed_org(runtime, "Contoso", {"boss": ("boss@contoso.example", Role.OWNER)})
    return org.id


def test_guessing_the_password_to_delete_is_rate_limited(app: Flask, runtime: Runtime) -> None:
    create_user(runtime)
    client = signed_in(app, "alice@example.com")
    statuses = [post(client, "/account/delete", password=f"guess {i}").status_code
                for i in range(6)]
    assert statuses == [400] * 5 + [429]
    assert post(client, "/account/delete", password=PASSWORD).status_code == 429
    assert count(runtime, User) == 1


def _deleting_meanwhile(runtime: Runtime, user_id: str) -> Session:
    """Another "Delete my account" in progress: the row locked and deleted, not committed."""
    holder = runtime.session_factory()
    holder.execute(select(User.id).where(User.id == user_id).with_for_update())
    holder.execute(delete(User).where(User.id == user_id))
    return holder


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_second_deletion_at_the_same_time_waits_and_records_nothing(
    app: Flask, runtime: Runtime
) -> None:
    """It waited for nothing before: it removed no row and recorded account:user:delete a
    second time. Now it waits for the account's row lock, then finds the account gone."""
    user = create_user(runtime)

    def delete_again() -> None:
        with app.test_request_context(), runtime.session_factory() as db:
            stored = db.get(User, user.id)  # read before the first deletion commits
            assert stored is not None
            service = account_deletion_service(runtime, db)
            service.delete(stored, PASSWORD)

    with pytest.raises(AccountGone):
        waits_for(_deleting_meanwhile(runtime, user.id), delete_again)
    assert events(runtime, EventTag.USER_DELETED) == []  # the holder recorded none either


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_page_of_a_second_deletion_at_the_same_time_is_as_signed_out(
    app: Flask, runtime: Runtime
) -> None:
    create_user(runtime)
    client = signed_in(app, "alice@example.com")
    token = csrf_token(_delete_page(client))
    with runtime.session_factory() as db:
        user_id = db.scalars(select(User.id)).one()
    answer = waits_for(
        _deleting_meanwhile(runtime, user_id),
        lambda: client.post("/account/delete", data={"csrf_token": token, "password": PASSWORD}),
    )
    assert answer.status_code == 303 and "/login" in answer.headers["Location"]
    assert "Max-Age=0" in answer.headers.get("Set-Cookie", "")
    assert events(runtime, EventTag.USER_DELETED) == []


def test_a_wrong_password_is_tied_to_the_password_field(app: Flask, runtime: Runtime) -> None:
    create_user(runtime)
    client = signed_in(app, "alice@example.com")
    page = post(client, "/account/delete", password="not my password").get_data(as_text=True)
    field = re.search(r'<input id="password"[^>]*>', page)
    assert field and 'role="alert" id="delete-error"' in page
    assert 'aria-describedby="delete-error"' in field.group(0)
    assert 'aria-invalid="true"' in field.group(0)
