"""Proof by a one-time code mailed to the address (issue 6, rule 7): just-in-time accounts for
emails the directory did not verify (no ``xms_edov``), and linking an existing local account
without its password. Mail goes through the outbox and the worker to a real SMTP server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from werkzeug.test import TestResponse

from idp.accounts import AccountService
from idp.models import FederatedIdentity, Organization, Role, User
from idp.worker import build_worker
from tests.helpers import PASSWORD, count, create_user, csrf_token, events, sign_in
from tests.mailserver import MailServer
from tests.organizations import post
from tests.organizations import signed_in as signed_in_as
from tests.sso import CLIENT_ID, GRACE, TID, World, make_world

CONFIRM = "Confirm your email address"
EXPIRED = "This confirmation has expired or had too many wrong codes"


@pytest.fixture
def world(tmp_path: Path, database_url: str, redis_url: str, smtp: MailServer,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with make_world(tmp_path, database_url, redis_url, monkeypatch,
                    idp_settings={"smtp_url": smtp.url}) as w:
        yield w


def mailed_codes(w: World, smtp: MailServer, address: str) -> list[str]:
    build_worker(w.runtime).run_once()
    found = []
    for message in smtp.to(address):
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        match = re.search(r"^[ \t]+(\d{6})[ \t\r]*$", body.get_content(), re.M)
        if match:
            found.append(match.group(1))
    return found


def ask_for_code(w: World, page: TestResponse) -> None:
    sent = w.client.post("/login/sso/link/code/send",
                         data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert sent.status_code == 303 and sent.headers["Location"].endswith("/login/sso/link/code")


def enter(w: World, code: str) -> TestResponse:
    form = w.client.get("/login/sso/link/code")
    assert form.status_code == 200
    return w.client.post("/login/sso/link/code", data={
        "csrf_token": csrf_token(form.get_data(as_text=True)), "code": code})


def signed_in(w: World) -> bool:
    return w.client.get("/account").status_code == 200


def test_jit_without_xms_edov_creates_the_account_after_the_mailed_code(
        world: World, smtp: MailServer) -> None:
    page = world.sign_in(GRACE, email="grace@contoso.com")  # no xms_edov for Grace
    assert page.status_code == 200 and CONFIRM in page.get_data(as_text=True)
    assert count(world.runtime, User) == 0 and not signed_in(world)
    ask_for_code(world, page)
    [code] = mailed_codes(world, smtp, "grace@contoso.com")
    wrong = "000000" if code != "000000" else "111111"
    refused = enter(world, wrong)
    assert refused.status_code == 400 and "not right" in refused.get_data(as_text=True)
    assert count(world.runtime, User) == 0
    done = enter(world, code)
    assert done.status_code == 303, done.get_data(as_text=True)
    assert signed_in(world)
    with world.runtime.session_factory() as db:
        user = db.scalar(select(User))
        assert user is not None and user.email == "grace@contoso.com" and user.email_verified
        identity = db.scalar(select(FederatedIdentity))
        assert identity is not None and identity.object_id == GRACE
    assert len(events(world.runtime, "account:login:sso")) == 1
    # the code worked once; the next sign-in needs none (the identity is linked)
    world.new_browser()
    assert world.sign_in(GRACE, email="grace@contoso.com").status_code == 303


def test_an_existing_account_is_linked_by_the_mailed_code(world: World,
                                                           smtp: MailServer) -> None:
    local = create_user(world.runtime, "ada@contoso.com")
    offer = world.sign_in()
    assert offer.status_code == 400 and "Email me a code instead" in offer.get_data(as_text=True)
    ask_for_code(world, offer)
    [code] = mailed_codes(world, smtp, "ada@contoso.com")
    assert enter(world, code).status_code == 303
    assert signed_in(world)
    with world.runtime.session_factory() as db:
        identity = db.scalar(select(FederatedIdentity))
        assert identity is not None and identity.user_id == local.id
    [linked] = events(world.runtime, "account:sso:link")
    assert linked.details["proof"] == "email_code"


def test_an_account_registered_ahead_of_its_owner_keeps_no_password_once_linked(
        world: World, smtp: MailServer) -> None:
    """Someone signed up with Ada's address (never verified) and chose the password; Ada
    links her Entra identity by the mailed code: the squatter's password must not open it."""
    with world.runtime.session_factory() as db:
        AccountService(db, world.runtime.passwords).create_user(
            "ada@contoso.com", "the squatter's own passphrase", first_name="Ada",
            last_name="Lovelace", email_verified=False)
    offer = world.sign_in()
    ask_for_code(world, offer)
    [code] = mailed_codes(world, smtp, "ada@contoso.com")
    assert enter(world, code).status_code == 303

    with world.runtime.session_factory() as db:
        ada = db.scalar(select(User))
        assert ada is not None and ada.email_verified and ada.password_hash is None
    squatter = world.app.test_client()
    assert sign_in(squatter, "ada@contoso.com", "the squatter's own passphrase").status_code == 200


def test_a_pending_confirmation_is_void_once_just_in_time_accounts_are_turned_off(
        world: World, smtp: MailServer) -> None:
    """The admin turned automatic accounts off while Grace's code was on its way: the right
    code no longer creates her account, and the page says why."""
    page = world.sign_in(GRACE, email="grace@contoso.com")
    ask_for_code(world, page)
    [code] = mailed_codes(world, smtp, "grace@contoso.com")
    world.link("Contoso", TID, CLIENT_ID, ["contoso.com"], jit=False)
    refused = world.client.post("/login/sso/link/code", data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "code": code})
    assert refused.status_code == 400
    assert "changed its sign-in settings" in refused.get_data(as_text=True)
    assert count(world.runtime, User) == 0 and not signed_in(world)


def test_a_mailed_code_does_not_link_a_member_removed_meanwhile(
        world: World, smtp: MailServer) -> None:
    """Ada asked for a code; Contoso's owner removed her before she typed it: the code proves
    her address, not the organization's consent to take her back."""
    create_user(world.runtime, "owner@contoso.com", organization="Contoso", role=Role.OWNER)
    ada = create_user(world.runtime, "ada@contoso.com", organization="Contoso")
    offer = world.sign_in()
    ask_for_code(world, offer)
    [code] = mailed_codes(world, smtp, "ada@contoso.com")
    with world.runtime.session_factory() as db:
        org_id = db.scalar(select(Organization.id).where(Organization.name == "Contoso"))
    owner = signed_in_as(world.app, "owner@contoso.com")
    assert post(owner, f"/organizations/{org_id}/members/{ada.id}/remove").status_code == 303
    refused = enter(world, code)
    assert refused.status_code == 400
    assert "removed your account from it" in refused.get_data(as_text=True)
    assert count(world.runtime, FederatedIdentity) == 0 and not signed_in(world)


def test_five_wrong_codes_end_the_confirmation(world: World, smtp: MailServer) -> None:
    page = world.sign_in(GRACE, email="grace@contoso.com")
    ask_for_code(world, page)
    [code] = mailed_codes(world, smtp, "grace@contoso.com")
    wrong = [c for c in (f"{n:06d}" for n in range(10)) if c != code][:5]
    for guess in wrong[:4]:
        assert enter(world, guess).status_code == 400
    last = enter(world, wrong[4])
    assert last.status_code == 400 and EXPIRED in last.get_data(as_text=True)
    # even the right code is refused now, and nothing was created
    refused = world.client.post("/login/sso/link/code", data={
        "csrf_token": csrf_token(world.client.get("/login").get_data(as_text=True)),
        "code": code})
    assert refused.status_code == 400 and EXPIRED in refused.get_data(as_text=True)
    assert count(world.runtime, User) == 0 and not signed_in(world)


def test_the_code_belongs_to_the_browser_and_works_once(world: World,
                                                        smtp: MailServer) -> None:
    page = world.sign_in(GRACE, email="grace@contoso.com")
    ask_for_code(world, page)
    [code] = mailed_codes(world, smtp, "grace@contoso.com")
    first = world.client
    world.new_browser()  # another browser with the code but not the pending identity
    login = world.client.get("/login").get_data(as_text=True)
    stolen = world.client.post("/login/sso/link/code",
                               data={"csrf_token": csrf_token(login), "code": code})
    assert stolen.status_code == 400 and count(world.runtime, User) == 0
    world.client = first
    assert enter(world, code).status_code == 303
    account = world.client.get("/account").get_data(as_text=True)
    again = world.client.post("/login/sso/link/code",
                              data={"csrf_token": csrf_token(account), "code": code})
    assert again.status_code == 400
    assert count(world.runtime, User) == 1


def test_codes_are_capped_per_confirmation(world: World, smtp: MailServer) -> None:
    page = world.sign_in(GRACE, email="grace@contoso.com")
    for _ in range(3):
        ask_for_code(world, page)
    fourth = world.client.post("/login/sso/link/code/send",
                               data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert fourth.status_code == 400 and EXPIRED in fourth.get_data(as_text=True)
    codes = mailed_codes(world, smtp, "grace@contoso.com")
    assert len(codes) == 3
    # only the newest code works
    assert enter(world, codes[0]).status_code == 400 or codes[0] == codes[2]
    assert enter(world, codes[2]).status_code == 303


def test_the_password_proof_cannot_complete_a_jit_confirmation(world: World) -> None:
    assert world.sign_in(GRACE, email="grace@contoso.com").status_code == 200  # "create" offer
    # an account with that address appears meanwhile; proving its password in this browser
    # must not link the identity that was offered for creation (only the code may)
    create_user(world.runtime, "grace@contoso.com")
    page = world.client.get("/login").get_data(as_text=True)
    assert world.client.post("/login", data={"csrf_token": csrf_token(page),
                                             "email": "grace@contoso.com",
                                             "password": PASSWORD}).status_code == 303
    account = world.client.get("/account").get_data(as_text=True)
    world.client.post("/login/sso/link", data={"csrf_token": csrf_token(account)})
    assert count(world.runtime, FederatedIdentity) == 0
    assert events(world.runtime, "account:sso:link") == []
