"""Signing in with an organization's Entra ID tenant ("Log in with SSO"), end to end against
the fake Entra: the request, every callback rejection rule, identity linking (JIT, sub change,
nOAuth, guests), identifier-first login and key rotation."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import delete, select

from idp.accounts import AccountService
from idp.mail.compose import MailComposer
from idp.mail.messages import Message
from idp.models import (
    Event,
    FederatedIdentity,
    Membership,
    Organization,
    OutboxItem,
    Role,
    SsoConnection,
    User,
    UserSession,
)
from idp.worker import build_worker
from tests.fake_entra import REMOVE
from tests.helpers import PASSWORD, count, create_user, csrf_token, events
from tests.oidc import register_client
from tests.organizations import post
from tests.organizations import signed_in as signed_in_as
from tests.sso import (
    ADA,
    ATTACKER_CLIENT,
    ATTACKER_TID,
    CLIENT_ID,
    GRACE,
    GUEST,
    MALLORY,
    REDIRECT,
    SECRET,
    TID,
    World,
    make_world,
    query,
)

GENERIC = "Signing in with your organization did not work"
MANAGED = "Your organization signs you in with SSO"


@pytest.fixture
def world(tmp_path: Path, database_url: str, redis_url: str,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with make_world(tmp_path, database_url, redis_url, monkeypatch) as w:
        yield w


def signed_in(w: World) -> bool:
    return w.client.get("/account").status_code == 200


def refused(w: World, response: Any, text: str = GENERIC, earlier_sign_ins: int = 0) -> None:
    assert response.status_code == 400
    assert text in response.get_data(as_text=True)
    assert not signed_in(w)
    assert len(events(w.runtime, "account:login:sso")) == earlier_sign_ins


# --- the happy path -----------------------------------------------------------------------

def test_the_authorization_request_is_pinned(world: World) -> None:
    url = world.start("Ada@Contoso.com")
    assert url.startswith(world.fake.authorization_endpoint(TID) + "?")
    params = query(url)
    assert params["client_id"] == CLIENT_ID
    assert params["redirect_uri"] == REDIRECT
    assert params["response_type"] == "code"
    assert params["response_mode"] == "form_post"
    assert params["scope"] == "openid profile email"
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert params["login_hint"] == "Ada@Contoso.com"
    assert len(params["state"]) >= 32 and len(params["nonce"]) >= 32
    again = query(world.start())
    assert again["state"] != params["state"] and again["nonce"] != params["nonce"]


def test_member_signs_in_and_gets_an_account_just_in_time(world: World) -> None:
    response = world.sign_in(next_url="/account/activity")
    assert response.status_code == 303, response.get_data(as_text=True)
    assert response.headers["Location"].endswith("/account/activity")
    assert signed_in(world)
    with world.runtime.session_factory() as db:
        user = db.scalar(select(User).where(User.email_normalized == "ada@contoso.com"))
        assert user is not None and user.password_hash is None and user.email_verified
        assert (user.first_name, user.last_name) == ("Ada", "Lovelace")
        assert db.scalar(select(Membership.role).where(Membership.user_id == user.id)) == "member"
        identity = db.scalar(select(FederatedIdentity))
        assert identity is not None and identity.user_id == user.id
        assert (identity.tenant_id, identity.object_id) == (TID, ADA)
        session = db.scalar(select(UserSession).where(UserSession.user_id == user.id))
        assert session is not None and session.amr == "fed"
    [event] = events(world.runtime, "account:login:sso")
    assert event.details["amr"] == ["fed"] and event.details["oid"] == ADA
    assert events(world.runtime, "account:login:success") == []


def test_the_sign_in_alert_of_an_sso_sign_in_names_the_application(world: World) -> None:
    shop = register_client(world.runtime, "Example Shop")
    authorize = "/authorize?" + urlencode(
        {"client_id": shop.client_id, "response_type": "code", "scope": "openid",
         "redirect_uri": shop.redirect_uri, "state": "s"})
    assert world.sign_in(next_url=authorize).status_code == 303
    with world.runtime.session_factory() as db:
        [alert] = [i for i in db.scalars(select(OutboxItem).where(OutboxItem.kind == "mail"))
                   if i.payload["template"] == "login_alert_success"]
    assert alert.payload["context"]["application"] == "Example Shop"
    # Through Entra, not a password: the mail does not claim someone knows the password.
    context = alert.payload["context"]
    _, text, html = MailComposer(world.runtime.settings).render(
        Message("login_alert_success", context)
    )
    assert "organization account" in text and "organization account" in html
    assert "knows your password" not in text + html
    password = MailComposer(world.runtime.settings).render(
        Message("login_alert_success", {**context, "via_sso": False})
    )
    assert "knows your password" in password[1] and "organization account" not in password[1]
    [login] = events(world.runtime, "account:login:sso")
    assert login.product == shop.client_id  # the activity log files it under the shop


def test_two_first_sign_ins_at_once_make_one_account_and_both_sign_in(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ada's first sign-in, from two tabs at once (or a form_post sent twice): both find no
    account, one creates it; the other is signed in to it too, not asked to link an account
    that is already hers."""
    urls = []
    for _ in range(2):
        world.new_browser()
        world.fake.next_login(TID, ADA)
        urls.append((world.client, world.entra(world.start())))
    both_looked = threading.Barrier(2)
    looked_up = AccountService.find_user_by_email

    def in_step(self: AccountService, email: str) -> User | None:
        found = looked_up(self, email)
        if threading.current_thread().name.startswith("tab-"):
            both_looked.wait(timeout=10)  # both saw no account before either creates it
        return found

    monkeypatch.setattr(AccountService, "find_user_by_email", in_step)
    answers: dict[int, Any] = {}

    def callback(tab: int) -> None:
        client, fields = urls[tab]
        answers[tab] = client.post("/login/sso/callback", data=fields)

    tabs = [threading.Thread(target=callback, args=(i,), name=f"tab-{i}") for i in range(2)]
    for tab in tabs:
        tab.start()
    for tab in tabs:
        tab.join(timeout=30)
    assert [answers[i].status_code for i in range(2)] == [303, 303], [
        answers[i].get_data(as_text=True)[:300] for i in range(2)]
    assert count(world.runtime, User) == 1 and count(world.runtime, FederatedIdentity) == 1
    signed_in_users = {e.user_id for e in events(world.runtime, "account:login:sso")}
    assert len(signed_in_users) == 1 and len(events(world.runtime, "account:login:sso")) == 2


def test_a_client_id_typed_in_capitals_still_signs_members_in(world: World) -> None:
    """Entra reads the application (client) ID as a GUID whatever its case, so a connection
    saved with it in capitals passes its test; its ID tokens name it in lower case."""
    world.link("Contoso", TID, CLIENT_ID.upper(), ["contoso.com"])
    response = world.sign_in()
    assert response.status_code == 303, response.get_data(as_text=True)
    assert signed_in(world)
    # a connection saved in capitals before they were kept in lower case signs in too
    with world.runtime.session_factory() as db:
        row = db.scalar(select(SsoConnection))
        assert row is not None and row.client_id == CLIENT_ID
        row.client_id = CLIENT_ID.upper()
        db.commit()
    world.new_browser()
    assert world.sign_in().status_code == 303


def test_a_changed_sub_maps_to_the_same_user(world: World) -> None:
    assert world.sign_in().status_code == 303
    world.client.post("/logout", data={"csrf_token": csrf_token(
        world.client.get("/account").get_data(as_text=True))})
    world.fake.tamper_next_id_token(sub="a-brand-new-pairwise-sub")
    assert world.sign_in().status_code == 303
    assert count(world.runtime, User) == 1
    with world.runtime.session_factory() as db:
        identity = db.scalar(select(FederatedIdentity))
        assert identity is not None and identity.last_sub == "a-brand-new-pairwise-sub"
    assert len(events(world.runtime, "account:login:sso")) == 2


def test_signing_keys_rotate_without_restart(world: World) -> None:
    assert world.sign_in().status_code == 303
    world.fake.rotate_keys(drop_old=True)
    world.new_browser()
    assert world.sign_in().status_code == 303
    assert world.fake.count_requests("/discovery/v2.0/keys") == 2


# --- state --------------------------------------------------------------------------------

def test_state_missing_unknown_or_replayed_is_refused(world: World) -> None:
    world.fake.next_login(TID, ADA)
    fields = world.entra(world.start())
    refused(world, world.callback({k: v for k, v in fields.items() if k != "state"}))
    refused(world, world.callback({**fields, "state": "not-a-state-we-issued"}))
    # the real state was not consumed by those, but works only once
    assert world.callback(fields).status_code == 303
    world.new_browser()
    refused(world, world.callback(fields), earlier_sign_ins=1)


def test_state_of_one_request_cannot_finish_another(world: World) -> None:
    world.fake.next_login(TID, ADA)
    first = world.entra(world.start())
    world.fake.next_login(TID, ADA)
    second = world.entra(world.start())
    # the code of the second flow with the state of the first: nonce and PKCE do not match
    refused(world, world.callback({**second, "state": first["state"]}))


# --- the ID token -------------------------------------------------------------------------

@pytest.mark.parametrize(("tamper", "reason"), [
    ({"nonce": "not-our-nonce"}, "nonce mismatch"),
    ({"nonce": REMOVE}, "nonce mismatch"),
    ({"signing": "bad_signature"}, "signature: BadSignatureError"),
    ({"signing": "hs256"}, "alg 'HS256' is not RS256"),
    ({"signing": "none"}, "alg 'none' is not RS256"),
    ({"header": {"alg": "RS384"}}, "alg 'RS384' is not RS256"),
    ({"header": {"kid": REMOVE}}, "no kid"),
    ({"signing": "unknown_key"}, "unknown kid"),
    ({"aud": "00000000-0000-4000-8000-000000000bad"}, "aud is not our client id"),
    ({"aud": [CLIENT_ID, "other"]}, "aud is not our client id"),
    ({"iss": "https://sts.windows.net/0c0a0b0d-1111-4222-8333-444455556666/"},
     "iss is not the tenant's issuer"),
    ({"iss": "ISSUER/v2.0/"}, "iss is not the tenant's issuer"),
    ({"tid": "fabf0000-2222-4333-8444-555566667777"}, "tid is not the connection's tenant"),
    ({"exp": "NOW-200"}, "expired"),
    ({"nbf": "NOW+200"}, "not yet valid"),
    ({"oid": REMOVE}, "no oid"),
], ids=lambda t: ",".join(f"{k}={v}" for k, v in t.items()) if isinstance(t, dict) else "")
def test_an_id_token_failing_a_check_is_refused(world: World, tamper: dict[str, Any],
                                                reason: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    now = int(time.time())
    values = {}
    for name, value in tamper.items():
        if value == "NOW-200":
            value = now - 200
        elif value == "NOW+200":
            value = now + 200
        elif value == "ISSUER/v2.0/":
            value = world.fake.issuer(TID) + "/"
        values[name] = value
    world.fake.tamper_next_id_token(**values)
    with caplog.at_level(logging.WARNING, logger="idp.federation"):
        response = world.sign_in()
    refused(world, response)
    assert "AADSTS" not in response.get_data(as_text=True)
    assert f"id token rejected: {reason}" in caplog.text
    assert reason not in response.get_data(as_text=True)


def test_clock_skew_of_a_minute_is_tolerated(world: World) -> None:
    now = int(time.time())
    world.fake.tamper_next_id_token(exp=now - 60, nbf=now + 60)
    assert world.sign_in().status_code == 303


def test_an_unknown_kid_causes_one_rate_limited_refetch(world: World) -> None:
    assert world.sign_in().status_code == 303  # the tenant's keys are now cached
    world.new_browser()
    fetched = world.fake.count_requests("/discovery/v2.0/keys")
    world.fake.tamper_next_id_token(signing="unknown_key")
    refused(world, world.sign_in(), earlier_sign_ins=1)
    assert world.fake.count_requests("/discovery/v2.0/keys") == fetched + 1
    world.fake.tamper_next_id_token(signing="unknown_key")
    refused(world, world.sign_in(), earlier_sign_ins=1)
    assert world.fake.count_requests("/discovery/v2.0/keys") == fetched + 1


@pytest.mark.parametrize(("error", "text"), [
    ("access_denied", "cancelled"),
    ("interaction_required", "complete sign-in again"),
    ("invalid_grant", GENERIC),
    ("temporarily_unavailable", GENERIC),
])
def test_entra_errors_are_handled_by_their_code(world: World, error: str, text: str) -> None:
    world.fake.next_error(error, "AADSTS50105: secret directory detail")
    response = world.callback(world.entra(world.start()))
    refused(world, response, text)
    assert "AADSTS" not in response.get_data(as_text=True)


def test_a_code_the_token_endpoint_refuses_is_refused(world: World) -> None:
    world.fake.next_login(TID, ADA)
    fields = world.entra(world.start())
    fields["code"] = fields["code"] + "x"
    refused(world, world.callback(fields))


def test_the_log_names_entras_error_code_and_the_ids_to_look_it_up(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    """Ada is not assigned to the app (AADSTS50105): she sees a plain message; the log gives
    her administrator the code and the trace and correlation ids (Entra's sign-in logs,
    Microsoft support), never the description, which names her."""
    world.fake.next_error("access_denied", "The signed in user 'ada@contoso.com' is not "
                          "assigned to a role for the application.", code=50105)
    with caplog.at_level(logging.INFO, logger="idp.federation"):
        response = world.callback(world.entra(world.start()))
    refused(world, response, "cancelled")
    assert "50105" not in response.get_data(as_text=True)
    [line] = [r.getMessage() for r in caplog.records if "entra error" in r.getMessage()]
    assert re.search(r"entra error access_denied \(AADSTS50105, trace [0-9a-f-]{36}, "
                     r"correlation [0-9a-f-]{36}\)$", line), line
    assert "not assigned" not in caplog.text
    # the token endpoint's refusals too (its JSON has error_codes, trace_id, correlation_id)
    caplog.clear()
    world.new_browser()
    world.fake.next_login(TID, ADA)
    fields = world.entra(world.start())
    fields["code"] = fields["code"] + "x"
    with caplog.at_level(logging.INFO, logger="idp.federation"):
        refused(world, world.callback(fields))
    assert re.search(r"token endpoint refused: invalid_grant \(AADSTS\d+, trace [0-9a-f-]{36}, "
                     r"correlation [0-9a-f-]{36}\)", caplog.text), caplog.text


# --- identity linking ---------------------------------------------------------------------

def test_noauth_attacker_tenant_email_does_not_reach_the_victim(world: World) -> None:
    victim = create_user(world.runtime, "ada@contoso.com")
    world.fake.add_tenant(ATTACKER_TID, ["fabrikam.com"])
    world.fake.register_app(ATTACKER_TID, ATTACKER_CLIENT, client_secret="attacker-secret",
                            redirect_uris=[REDIRECT])
    world.fake.add_user(ATTACKER_TID, MALLORY, "ada@contoso.com", "mallory@fabrikam.com",
                        "Mallory", email_verified_domain_owner=True)
    world.link("Fabrikam", ATTACKER_TID, ATTACKER_CLIENT, ["fabrikam.com"],
               secret="attacker-secret")
    response = world.sign_in(MALLORY, ATTACKER_TID, email="mallory@fabrikam.com")
    refused(world, response, "no account for you here")
    with world.runtime.session_factory() as db:
        assert db.scalar(select(UserSession).where(UserSession.user_id == victim.id)) is None
        assert db.scalar(select(FederatedIdentity)) is None
    # Without the local account the answer is the same page: the attacker's tenant learns
    # nothing about which addresses have an account here; a foreign domain's email is never
    # provisioned.
    with world.runtime.session_factory() as db:
        db.delete(db.get(User, victim.id))
        db.commit()
    again = world.sign_in(MALLORY, ATTACKER_TID, email="mallory@fabrikam.com")
    refused(world, again, "no account for you here")
    strip = re.compile(r'value="[^"]*"|nonce-[A-Za-z0-9_-]+')
    assert strip.sub("", again.get_data(as_text=True)) == strip.sub(
        "", response.get_data(as_text=True))
    assert count(world.runtime, User) == 0


def test_an_existing_local_account_is_not_linked_by_email(world: World) -> None:
    create_user(world.runtime, "ada@contoso.com")
    refused(world, world.sign_in(), "not linked")
    assert count(world.runtime, FederatedIdentity) == 0


def test_jit_needs_the_email_verified_by_the_domain_owner(world: World) -> None:
    # Grace has no xms_edov claim: a mailed code must confirm it first (test_sso_confirmation)
    for response in (world.sign_in(GRACE, email="grace@contoso.com"),
                     (world.fake.tamper_next_id_token(xms_edov=False), world.sign_in())[1]):
        assert response.status_code == 200
        assert "Confirm your email address" in response.get_data(as_text=True)
        assert not signed_in(world)
    assert count(world.runtime, User) == 0
    assert events(world.runtime, "account:login:sso") == []


def test_leaving_the_organization_unlinks_the_entra_identity(world: World) -> None:
    """A former member's account is no longer theirs to the tenant: its admin (who can reset
    the Entra user's password) must not sign into the account with it any more."""
    assert world.sign_in().status_code == 303  # just-in-time account, member of Contoso
    with world.runtime.session_factory() as db:
        ada = db.scalar(select(User).where(User.email_normalized == "ada@contoso.com"))
        membership = db.scalar(select(Membership))
        assert ada is not None and membership is not None
        org_id = membership.organization_id
    token = csrf_token(world.client.get("/organizations").get_data(as_text=True))
    left = world.client.post(f"/organizations/{org_id}/members/{ada.id}/remove",
                             data={"csrf_token": token})
    assert left.status_code == 303, left.get_data(as_text=True)
    assert count(world.runtime, FederatedIdentity) == 0

    world.new_browser()
    # The same Entra user: the account exists with its address, so linking needs proof again.
    refused(world, world.sign_in(), "not linked", earlier_sign_ins=1)


def test_jit_off_only_signs_in_linked_identities(world: World) -> None:
    world.link("Contoso", TID, CLIENT_ID, ["contoso.com"], jit=False)
    refused(world, world.sign_in(), "no account for you here")
    assert count(world.runtime, User) == 0


def test_guests_are_refused_unless_allowed(world: World) -> None:
    refused(world, world.sign_in(GUEST, email="bob@contoso.com"), "Guest accounts")
    world.fake.tamper_next_id_token(idp="https://sts.windows.net/someone-else/")
    refused(world, world.sign_in(), "Guest accounts")
    world.link("Contoso", TID, CLIENT_ID, ["contoso.com"], allow_guests=True)
    # allowed now, but a guest's email is not one of ours: still no account from it
    refused(world, world.sign_in(GUEST, email="bob@contoso.com"), "no account for you here")


# --- the login page -----------------------------------------------------------------------

def test_login_page_offers_sso(world: World) -> None:
    page = world.client.get("/login").get_data(as_text=True)
    assert 'href="/login/sso"' in page and "Log in with SSO" in page


def test_an_email_without_a_connection_is_told_so(world: World) -> None:
    page = world.client.get("/login/sso").get_data(as_text=True)
    response = world.client.post("/login/sso", data={
        "csrf_token": csrf_token(page), "email": "someone@elsewhere.com"})
    assert response.status_code == 400
    assert "does not sign in with SSO" in response.get_data(as_text=True)


def test_identifier_first_goes_to_entra_when_the_domain_enforces_sso(world: World) -> None:
    create_user(world.runtime, "grace@contoso.com")
    page = world.client.get("/login").get_data(as_text=True)
    # not enforced: the password form works as before
    response = world.client.post("/login", data={
        "csrf_token": csrf_token(page), "email": "grace@contoso.com", "password": PASSWORD})
    assert response.status_code == 303 and "/login/sso" not in response.headers["Location"]
    world.new_browser()
    world.link("Contoso", TID, CLIENT_ID, ["contoso.com"], enforce_sso=True)
    before = count(world.runtime, Event, Event.action == "account:login:success")
    page = world.client.get("/login").get_data(as_text=True)
    for password in ("", PASSWORD, "wrong"):
        response = world.client.post("/login", data={
            "csrf_token": csrf_token(page), "email": "Grace@contoso.com", "password": password})
        assert response.status_code == 303
        assert response.headers["Location"].startswith(world.fake.authorization_endpoint(TID))
        assert query(response.headers["Location"])["login_hint"] == "Grace@contoso.com"
    assert count(world.runtime, Event, Event.action == "account:login:success") == before
    assert count(world.runtime, Event, Event.action == "account:login:failure") == 0


def test_starts_of_sso_sign_ins_are_rate_limited_per_address(
    tmp_path: Path, database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every start keeps its state in the store for ten minutes, and a plain GET of
    /login?login_hint=<an SSO address> starts one: without a limit one client could fill the
    store (where the sessions live). Starts count per IP address like sign-in attempts, on
    counters of their own; past the limit a 429 page with Retry-After, and nothing stored."""
    with make_world(tmp_path, database_url, redis_url, monkeypatch,
                    idp_settings={"login_attempts_per_ip_per_minute": 3}) as w:
        w.link("Contoso", TID, CLIENT_ID, ["contoso.com"], enforce_sso=True)
        create_user(w.runtime, "someone@example.com")
        store = w.runtime.store

        def states() -> int:
            return len(list(store.client.scan_iter(match=store.sso_state_key("*"))))

        w.start("ada@contoso.com")
        hinted = w.client.get("/login", query_string={"login_hint": "grace@contoso.com"})
        assert hinted.status_code == 303
        page = w.client.get("/login").get_data(as_text=True)
        enforced = w.client.post("/login", data={
            "csrf_token": csrf_token(page), "email": "grace@contoso.com", "password": ""})
        assert enforced.status_code == 303
        assert states() == 3
        for response in (
            w.client.get("/login", query_string={"login_hint": "grace@contoso.com"}),
            w.client.post("/login/sso", data={
                "csrf_token": csrf_token(w.client.get("/login/sso").get_data(as_text=True)),
                "email": "ada@contoso.com"}),
        ):
            assert response.status_code == 429
            assert int(response.headers["Retry-After"]) >= 1
            assert "Too many attempts" in response.get_data(as_text=True)
        assert states() == 3
        # Password sign-ins from the same address are counted apart.
        page = w.client.get("/login").get_data(as_text=True)
        password = w.client.post("/login", data={
            "csrf_token": csrf_token(page), "email": "someone@example.com", "password": PASSWORD})
        assert password.status_code == 303 and password.headers["Location"] == "/account"


def test_an_invitation_to_an_enforced_address_is_accepted_through_sso(world: World) -> None:
    """Acme invites ada@contoso.com, whose organization signs in only with SSO: as at sign-up,
    no password is set for her (the form is not offered, and posting it goes to Entra without
    making an account); she signs in at Entra, comes back to the invitation and accepts."""
    world.link("Contoso", TID, CLIENT_ID, ["contoso.com"], enforce_sso=True)
    create_user(world.runtime, "owner@acme.example", organization="Acme", role=Role.OWNER)
    with world.runtime.session_factory() as db:
        acme = db.scalar(select(Organization.id).where(Organization.name == "Acme"))
    owner = signed_in_as(world.app, "owner@acme.example")
    assert post(owner, f"/organizations/{acme}/invitations", email="ada@contoso.com",
                role="member").status_code == 303
    with world.runtime.session_factory() as db:
        [mail] = [i for i in db.scalars(select(OutboxItem)).all()
                  if i.payload.get("template") == "invitation"]
    path = "/" + str(mail.payload["context"]["link"]).split("://", 1)[1].split("/", 1)[1]

    page = world.client.get(path).get_data(as_text=True)
    assert 'name="password"' not in page
    assert "no password is set here" in page
    sso_link = re.search(r'<a class="button" href="([^"]+)">Sign in with your organization', page)
    assert sso_link is not None

    login_page = world.client.get("/login").get_data(as_text=True)
    refused = world.client.post(f"{path}/register", data={
        "csrf_token": csrf_token(login_page), "first_name": "Ada", "last_name": "L",
        "password": PASSWORD, "password_again": PASSWORD})
    assert refused.status_code == 303
    assert refused.headers["Location"].startswith(world.fake.authorization_endpoint(TID))
    assert count(world.runtime, User, User.email_normalized == "ada@contoso.com") == 0

    to_entra = world.client.get(sso_link.group(1).replace("&amp;", "&"))
    assert to_entra.headers["Location"].startswith(world.fake.authorization_endpoint(TID))
    world.fake.next_login(TID, ADA)
    back = world.callback(world.entra(to_entra.headers["Location"]))
    assert back.status_code == 303 and back.headers["Location"] == path
    accept_page = world.client.get(path).get_data(as_text=True)
    assert world.client.post(f"{path}/accept", data={
        "csrf_token": csrf_token(accept_page)}).status_code == 303
    with world.runtime.session_factory() as db:
        ada = db.scalar(select(User).where(User.email_normalized == "ada@contoso.com"))
        assert ada is not None and ada.password_hash is None
        assert db.scalar(select(Membership.role).where(
            Membership.user_id == ada.id, Membership.organization_id == acme)) == Role.MEMBER


def test_a_reset_link_from_before_the_enforcement_sets_no_password(world: World) -> None:
    """Grace asked for a reset link; then Contoso made its domain sign in only with SSO. As
    a request now goes to Entra, the earlier link no longer sets a password: the page says
    her organization signs her in."""
    grace = create_user(world.runtime, "grace@contoso.com")
    page = world.client.get("/password/forgot").get_data(as_text=True)
    world.client.post("/password/forgot", data={"csrf_token": csrf_token(page),
                                                 "email": "grace@contoso.com"})
    worker = build_worker(world.runtime)
    while worker.run_once():
        pass
    with world.runtime.session_factory() as db:
        [item] = [i for i in db.scalars(select(OutboxItem)).all()
                  if i.payload.get("template") == "password_reset"]
    path = "/" + str(item.payload["context"]["reset_url"]).split("://", 1)[1].split("/", 1)[1]
    world.link("Contoso", TID, CLIENT_ID, ["contoso.com"], enforce_sso=True)
    shown = world.client.get(path)
    assert shown.status_code == 403
    assert MANAGED in shown.get_data(as_text=True)
    assert 'name="new_password"' not in shown.get_data(as_text=True)
    posted = world.client.post(path, data={
        "csrf_token": csrf_token(world.client.get("/password/forgot").get_data(as_text=True)),
        "new_password": "a brand new passphrase", "new_password_again": "a brand new passphrase"})
    assert posted.status_code == 403 and MANAGED in posted.get_data(as_text=True)
    with world.runtime.session_factory() as db:
        after = db.get(User, grace.id)
        assert after is not None and after.password_hash == grace.password_hash


def test_secret_never_appears_in_pages(world: World) -> None:
    response = world.sign_in()
    assert SECRET not in response.get_data(as_text=True)


# --- linking an existing account by proving its password ----------------------------------

def _prove_password(w: World, email: str = "ada@contoso.com") -> Any:
    page = w.client.get("/login?prompt=login&next=/login/sso/link").get_data(as_text=True)
    return w.client.post("/login", data={"csrf_token": csrf_token(page), "email": email,
                                         "password": PASSWORD, "next": "/login/sso/link"})


def test_an_existing_account_is_linked_after_proving_its_password(world: World) -> None:
    local = create_user(world.runtime, "ada@contoso.com")
    offer = world.sign_in()
    assert offer.status_code == 400
    assert "Sign in with your password to link" in offer.get_data(as_text=True)
    # the only ways: no administrator can link an account (idp has no such function)
    assert "administrator must link" not in offer.get_data(as_text=True)
    assert count(world.runtime, FederatedIdentity) == 0
    proved = _prove_password(world)
    assert proved.status_code == 303 and proved.headers["Location"].endswith("/login/sso/link")
    page = world.client.get("/login/sso/link")
    assert page.status_code == 200 and "ada@contoso.com" in page.get_data(as_text=True)
    done = world.client.post("/login/sso/link",
                             data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert done.status_code == 303
    with world.runtime.session_factory() as db:
        identity = db.scalar(select(FederatedIdentity))
        assert identity is not None and identity.user_id == local.id
    assert len(events(world.runtime, "account:sso:link")) == 1
    world.new_browser()
    assert world.sign_in().status_code == 303
    [sso] = events(world.runtime, "account:login:sso")
    assert sso.user_id == local.id


def test_on_an_enforced_domain_the_link_offer_asks_only_for_the_mailed_code(
        world: World) -> None:
    """Contoso enforces SSO and Ada has a local account from before: signing in with its
    password would only send her to Entra again (and back to this offer), so the offer
    proposes the way that works."""
    create_user(world.runtime, "ada@contoso.com")
    world.link("Contoso", TID, CLIENT_ID, ["contoso.com"], enforce_sso=True)
    offer = world.sign_in()
    text = offer.get_data(as_text=True)
    assert offer.status_code == 400
    assert "Sign in with your password to link" not in text and "sso-link-prove" not in text
    assert "Email me a code" in text and "/login/sso/link/code/send" in text
    # what the password way did: the sign-in form sends the address to Entra
    page = world.client.get("/login?prompt=login&next=/login/sso/link").get_data(as_text=True)
    went = world.client.post("/login", data={"csrf_token": csrf_token(page), "password": PASSWORD,
                                             "email": "ada@contoso.com", "next": "/login/sso/link"})
    assert went.headers["Location"].startswith(world.fake.authorization_endpoint(TID))


def test_the_link_offer_belongs_to_the_browser_and_the_account(world: World) -> None:
    create_user(world.runtime, "ada@contoso.com")
    create_user(world.runtime, "other@contoso.com")
    assert world.sign_in().status_code == 400
    # the same browser signed in as another account cannot take the offer
    assert _prove_password(world, "other@contoso.com").status_code == 303
    assert world.client.get("/login/sso/link").status_code == 303
    page = world.client.get("/account").get_data(as_text=True)
    world.client.post("/login/sso/link", data={"csrf_token": csrf_token(page)})
    assert count(world.runtime, FederatedIdentity) == 0
    # another browser (no offer cookie), signed in as the right account, cannot either
    world.new_browser()
    assert _prove_password(world).status_code == 303
    assert world.client.get("/login/sso/link").status_code == 303
    page = world.client.get("/account").get_data(as_text=True)
    world.client.post("/login/sso/link", data={"csrf_token": csrf_token(page)})
    assert count(world.runtime, FederatedIdentity) == 0


REMOVED = "An administrator of this organization removed your account from it"


def _remove_from_contoso(w: World, user_id: str) -> None:
    """Contoso's owner removes the member (the organization's members page)."""
    with w.runtime.session_factory() as db:
        org_id = db.scalar(select(Organization.id).where(Organization.name == "Contoso"))
    owner = signed_in_as(w.app, "owner@contoso.com")
    assert post(owner, f"/organizations/{org_id}/members/{user_id}/remove").status_code == 303


def _link_by_password(w: World) -> None:
    assert w.sign_in().status_code == 400
    assert _prove_password(w).status_code == 303
    page = w.client.get("/login/sso/link")
    assert page.status_code == 200
    w.client.post("/login/sso/link", data={"csrf_token": csrf_token(page.get_data(as_text=True))})


def test_a_member_removed_by_an_admin_cannot_link_the_tenant_again(world: World) -> None:
    """Removal unlinked Ada's account from Contoso's tenant; her password must not link it
    again behind the organization's back (only an invitation takes her back)."""
    create_user(world.runtime, "owner@contoso.com", organization="Contoso", role=Role.OWNER)
    ada = create_user(world.runtime, "ada@contoso.com", organization="Contoso")
    _link_by_password(world)
    assert count(world.runtime, FederatedIdentity) == 1
    _remove_from_contoso(world, ada.id)
    assert count(world.runtime, FederatedIdentity) == 0

    world.new_browser()
    response = world.sign_in()
    refused(world, response, REMOVED, earlier_sign_ins=0)
    assert "Sign in with your password to link" not in response.get_data(as_text=True)
    assert "idp_sso_link" not in response.headers.get("Set-Cookie", "")
    assert count(world.runtime, FederatedIdentity) == 0


def test_an_offer_made_before_the_removal_cannot_link(world: World) -> None:
    create_user(world.runtime, "owner@contoso.com", organization="Contoso", role=Role.OWNER)
    ada = create_user(world.runtime, "ada@contoso.com", organization="Contoso")
    assert world.sign_in().status_code == 400
    assert _prove_password(world).status_code == 303
    page = world.client.get("/login/sso/link")
    assert page.status_code == 200
    _remove_from_contoso(world, ada.id)
    refused_link = world.client.post(
        "/login/sso/link", data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert refused_link.status_code == 400 and REMOVED in refused_link.get_data(as_text=True)
    assert count(world.runtime, FederatedIdentity) == 0
    assert events(world.runtime, "account:sso:link") == []


def test_an_invitation_lets_a_removed_member_link_again(world: World) -> None:
    create_user(world.runtime, "owner@contoso.com", organization="Contoso", role=Role.OWNER)
    ada = create_user(world.runtime, "ada@contoso.com", organization="Contoso")
    _remove_from_contoso(world, ada.id)
    refused(world, world.sign_in(), REMOVED)
    with world.runtime.session_factory() as db:
        org_id = db.scalar(select(Organization.id).where(Organization.name == "Contoso"))
    owner = signed_in_as(world.app, "owner@contoso.com")
    invited = post(owner, f"/organizations/{org_id}/invitations", email="ada@contoso.com",
                   role="member")
    assert invited.status_code == 303
    with world.runtime.session_factory() as db:
        [item] = [i for i in db.scalars(select(OutboxItem)).all()
                  if i.payload.get("template") == "invitation"]
    link = str(item.payload["context"]["link"]).removeprefix(world.issuer)
    ada_browser = signed_in_as(world.app, "ada@contoso.com")
    accepted = ada_browser.post(f"{link}/accept", data={"csrf_token": csrf_token(
        ada_browser.get("/organizations").get_data(as_text=True))})
    assert accepted.status_code == 303
    world.new_browser()
    _link_by_password(world)
    assert count(world.runtime, FederatedIdentity) == 1


CHANGED = "Your organization changed its sign-in settings after you started"
OTHER_TID = "0c0a0b0d-9999-4222-8333-444455556666"
OTHER_CLIENT = "6f1d6c4e-9999-4888-9999-aaaabbbbcccc"


def _change_connection(w: World, change: str) -> None:
    """What Contoso's admin does while a link offer waits."""
    if change == "removed":
        with w.runtime.session_factory() as db:
            db.execute(delete(SsoConnection))
            db.commit()
    elif change == "tenant":  # contoso.com moved to another tenant, linked in its place
        w.fake.remove_domain(TID, "contoso.com")
        w.fake.add_tenant(OTHER_TID, ["contoso.com"])
        w.fake.register_app(OTHER_TID, OTHER_CLIENT, client_secret=SECRET,
                            redirect_uris=[REDIRECT])
        w.link("Contoso", OTHER_TID, OTHER_CLIENT, ["contoso.com"])
    else:
        w.link("Contoso", TID, CLIENT_ID, ["contoso.com"], enforce_sso=True)


@pytest.mark.parametrize("change", ["removed", "tenant", "enforcement"])
def test_a_link_offer_is_void_once_the_connection_changed(world: World, change: str) -> None:
    """The offer was made under the connection as it was; the organization's admin removed
    or changed it within the offer's ten minutes: the link is refused and said why."""
    create_user(world.runtime, "ada@contoso.com")
    assert world.sign_in().status_code == 400
    assert _prove_password(world).status_code == 303
    _change_connection(world, change)
    token = csrf_token(world.client.get("/account").get_data(as_text=True))
    refused = world.client.post("/login/sso/link", data={"csrf_token": token})
    assert refused.status_code == 400 and CHANGED in refused.get_data(as_text=True)
    assert count(world.runtime, FederatedIdentity) == 0
    assert events(world.runtime, "account:sso:link") == []
    # the offer is gone: the link page no longer offers it
    assert world.client.get("/login/sso/link").status_code == 303


def test_a_link_offer_survives_saving_the_connection_unchanged(world: World) -> None:
    create_user(world.runtime, "ada@contoso.com")
    assert world.sign_in().status_code == 400
    assert _prove_password(world).status_code == 303
    world.link("Contoso", TID, CLIENT_ID, ["contoso.com"])  # "Test and save", same values
    page = world.client.get("/login/sso/link")
    assert page.status_code == 200
    world.client.post("/login/sso/link",
                      data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert count(world.runtime, FederatedIdentity) == 1


def test_no_link_is_offered_for_an_email_outside_the_connection_domains(world: World) -> None:
    create_user(world.runtime, "ada@fabrikam.com")
    world.fake.tamper_next_id_token(email="ada@fabrikam.com")
    response = world.sign_in()
    # The same answer as for an address without an account: nothing to link, nothing told.
    refused(world, response, "no account for you here")
    assert "Sign in with your password to link" not in response.get_data(as_text=True)
    assert "idp_sso_link" not in response.headers.get("Set-Cookie", "")


def test_lockout_does_not_apply_to_sso(world: World) -> None:
    assert world.sign_in().status_code == 303
    with world.runtime.session_factory() as db:
        user = db.scalar(select(User))
        assert user is not None
        user.locked_at = user.created_at
        db.commit()
    world.new_browser()
    assert world.sign_in().status_code == 303


def test_a_relying_service_login_hint_of_an_enforced_domain_goes_to_entra(
        world: World) -> None:
    world.link("Contoso", TID, CLIENT_ID, ["contoso.com"], enforce_sso=True)
    response = world.client.get("/login?login_hint=ada@contoso.com&next=/account/activity")
    assert response.status_code == 303
    assert query(response.headers["Location"])["login_hint"] == "ada@contoso.com"
    done = world.callback(world.entra(response.headers["Location"]))  # Entra picks the hint
    assert done.status_code == 303 and done.headers["Location"].endswith("/account/activity")
    # other hints keep the password form
    assert world.client.get("/login?login_hint=x@example.com&prompt=login").status_code == 200


def test_on_https_the_callback_must_come_from_the_browser_that_started_it(
        tmp_path: Path, database_url: str, redis_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with make_world(tmp_path, database_url, redis_url, monkeypatch,
                    issuer="https://idp.test") as w:
        page = w.client.get("/login/sso")
        started = w.client.post("/login/sso", data={
            "csrf_token": csrf_token(page.get_data(as_text=True)), "email": "ada@contoso.com"})
        cookie = started.headers["Set-Cookie"]
        assert cookie.startswith("__Host-idp_sso_flow=")
        assert "Secure" in cookie and "SameSite=None" in cookie and "HttpOnly" in cookie
        w.fake.next_login(TID, ADA)
        fields = w.entra(started.headers["Location"])
        # login CSRF: another browser made to post this state and code is refused
        attacker_made = w.app.test_client()
        attacker_made.environ_base["wsgi.url_scheme"] = "https"
        response = attacker_made.post("/login/sso/callback", data=fields)
        assert response.status_code == 400 and GENERIC in response.get_data(as_text=True)
        # the browser that started the sign-in completes it
        assert w.sign_in().status_code == 303
        assert w.client.get("/account").status_code == 200


# --- home-realm hints from relying services -----------------------------------------------

def test_a_relying_services_domain_hint_goes_straight_to_the_tenant(world: World) -> None:
    rp = register_client(world.runtime)
    authorize = world.client.get("/authorize", query_string={
        "client_id": rp.client_id, "redirect_uri": rp.redirect_uri, "response_type": "code",
        "scope": "openid", "state": "s1", "nonce": "n1", "domain_hint": "contoso.com"})
    assert authorize.status_code in (302, 303)
    login = authorize.headers["Location"]
    assert query(login)["domain_hint"] == "contoso.com"
    to_entra = world.client.get(login)
    assert to_entra.status_code == 303
    url = to_entra.headers["Location"]
    assert url.startswith(world.fake.authorization_endpoint(TID) + "?")
    assert query(url)["domain_hint"] == "contoso.com" and "login_hint" not in query(url)
    world.fake.next_login(TID, ADA)
    back = world.callback(world.entra(url))
    assert back.status_code == 303 and "/authorize?" in back.headers["Location"]
    issued = world.client.get(back.headers["Location"])
    assert issued.headers["Location"].startswith(rp.redirect_uri + "?code=")


def test_a_relying_services_prompt_login_needs_an_authentication_at_entra(
        world: World) -> None:
    """A relying service asks Ada, signed in with SSO, to authenticate again (prompt=login,
    OIDC Core §3.1.2.1): idp asks Entra for it too, and a sign-in Entra completed from its own
    session (its auth_time an hour old: prompt=login dropped on the way) gets no code."""
    rp = register_client(world.runtime)
    assert world.sign_in().status_code == 303
    authorize = world.client.get("/authorize", query_string={
        "client_id": rp.client_id, "redirect_uri": rp.redirect_uri, "response_type": "code",
        "scope": "openid", "state": "s1", "nonce": "n1", "prompt": "login",
        "domain_hint": "contoso.com"})
    to_entra = world.client.get(authorize.headers["Location"])
    assert to_entra.status_code == 303
    url = to_entra.headers["Location"]
    assert url.startswith(world.fake.authorization_endpoint(TID))
    assert query(url)["prompt"] == "login"
    dropped = url.split("?", 1)[0] + "?" + urlencode(
        {k: v for k, v in query(url).items() if k != "prompt"})
    world.fake.next_login(TID, ADA)
    world.fake.tamper_next_id_token(auth_time=int(time.time()) - 3600)
    back = world.callback(world.entra(dropped))
    assert back.status_code == 303 and "/authorize?" in back.headers["Location"]
    again = world.client.get(back.headers["Location"])
    assert not again.headers["Location"].startswith(rp.redirect_uri), "a code without sign-in"
    # Entra authenticates her: the code is issued
    to_entra = world.client.get(again.headers["Location"])
    assert query(to_entra.headers["Location"])["prompt"] == "login"
    world.fake.next_login(TID, ADA)
    back = world.callback(world.entra(to_entra.headers["Location"]))
    issued = world.client.get(back.headers["Location"])
    assert issued.headers["Location"].startswith(rp.redirect_uri + "?code=")


def test_entras_clock_a_minute_behind_still_answers_a_prompt_login(world: World) -> None:
    """Entra authenticated Ada as asked, but its clock is a minute behind idp's: its
    auth_time reads earlier than the request; within the clock skew it still counts (the
    relying service gets its code instead of sending her round again)."""
    rp = register_client(world.runtime)
    assert world.sign_in().status_code == 303
    authorize = world.client.get("/authorize", query_string={
        "client_id": rp.client_id, "redirect_uri": rp.redirect_uri, "response_type": "code",
        "scope": "openid", "state": "s1", "nonce": "n1", "prompt": "login",
        "domain_hint": "contoso.com"})
    to_entra = world.client.get(authorize.headers["Location"])
    world.fake.next_login(TID, ADA)
    world.fake.tamper_next_id_token(auth_time=int(time.time()) - 60)
    back = world.callback(world.entra(to_entra.headers["Location"]))
    issued = world.client.get(back.headers["Location"])
    assert issued.headers["Location"].startswith(rp.redirect_uri + "?code=")


def test_domain_hint_with_login_hint_and_unknown_domains(world: World) -> None:
    both = world.client.get("/login", query_string={"domain_hint": "Contoso.com",
                                                    "login_hint": "ada@contoso.com"})
    assert both.status_code == 303
    params = query(both.headers["Location"])
    assert params["domain_hint"] == "contoso.com" and params["login_hint"] == "ada@contoso.com"
    for domain in ("elsewhere.example", "not a domain", "x" * 300):
        page = world.client.get("/login", query_string={"domain_hint": domain})
        assert page.status_code == 200 and 'name="password"' in page.get_data(as_text=True)
