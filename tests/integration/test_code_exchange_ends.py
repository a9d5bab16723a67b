"""A code redeemed while its session ends, or after its consent was withdrawn (RFC 6749 §4.1.3,
§10.5): no live tokens may come out of it.

A code is valid for a minute. Signing out, or withdrawing an application's access, revokes
the tokens that exist at that moment; a code redeemed afterwards, or at the same instant,
must not mint new ones that nothing will ever revoke.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import requests
from sqlalchemy import delete, select, update

from idp.models import User, UserSession
from idp.models.clients import Consent
from idp.runtime import Runtime
from tests.helpers import create_user
from tests.locks import waits_for
from tests.oidc import Browser, RelyingParty, redirect_params, register_client

Live = tuple[str, Runtime]


def code_for(rp: RelyingParty, browser: Browser) -> tuple[str, str | None]:
    """Sign in (and consent) up to the code, without redeeming it: (code, PKCE verifier)."""
    url, state, _, verifier = rp.authorization_url()
    got = redirect_params(browser.follow(url))
    assert got["state"] == state and "code" in got
    return got["code"], verifier


def redeem(rp: RelyingParty, code: str, verifier: str | None) -> requests.Response:
    """The token request of RFC 6749 §4.1.3 (client_secret_basic), answer as it comes."""
    assert rp.rp.client_secret is not None
    return requests.post(
        rp.metadata["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": rp.rp.redirect_uri,
            "code_verifier": verifier or "",
        },
        auth=(rp.rp.client_id, rp.rp.client_secret),
        timeout=30,
    )


def refused(response: requests.Response) -> bool:
    return response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_a_code_issued_before_consent_was_withdrawn_is_refused(live: Live) -> None:
    base, rt = live
    create_user(rt)
    partner = RelyingParty(base, register_client(rt, "Photo Print", first_party=False))
    browser = Browser(base)
    partner.sign_in(browser)  # consented once, remembered
    code, verifier = code_for(partner, browser)  # a second code, not redeemed yet
    page = browser.http.get(base + "/account", timeout=10).text
    form = re.search(
        r'action="(/account/applications/[^"]+/revoke)".*?name="csrf_token" value="([^"]+)"',
        page,
        re.S,
    )
    assert form is not None
    withdrawn = browser.http.post(
        base + form.group(1),
        data={"csrf_token": form.group(2)},
        allow_redirects=False,
        timeout=10,
    )
    assert withdrawn.status_code == 303

    assert refused(redeem(partner, code, verifier))


def test_a_first_party_code_needs_no_consent_row(live: Live) -> None:
    base, rt = live
    create_user(rt)
    own = RelyingParty(base, register_client(rt, "Own"))
    code, verifier = code_for(own, Browser(base))

    assert redeem(own, code, verifier).status_code == 200


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_code_redeemed_while_its_session_is_being_signed_out_waits_and_is_refused(
    live: Live,
) -> None:
    base, rt = live
    create_user(rt)
    rp = RelyingParty(base, register_client(rt))
    code, verifier = code_for(rp, Browser(base))
    ending = rt.session_factory()  # a sign-out that has marked the session, not committed yet
    ending.execute(update(UserSession).values(ended_at=datetime.now(UTC), end_reason="logout"))

    assert refused(waits_for(ending, lambda: redeem(rp, code, verifier)))


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_code_redeemed_while_its_consent_is_being_withdrawn_waits_and_is_refused(
    live: Live,
) -> None:
    base, rt = live
    create_user(rt)
    partner = RelyingParty(base, register_client(rt, "Partner", first_party=False))
    browser = Browser(base)
    partner.sign_in(browser)
    code, verifier = code_for(partner, browser)
    withdrawing = rt.session_factory()  # a withdrawal that has deleted the consent, uncommitted
    withdrawing.execute(delete(Consent))

    assert refused(waits_for(withdrawing, lambda: redeem(partner, code, verifier)))


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_code_redeemed_while_the_account_is_being_deleted_waits_without_deadlock(
    live: Live,
) -> None:
    """Account deletion locks the user, then ends its sessions; the exchange takes its locks
    in the same order, so the two wait for each other instead of deadlocking (a 500 and a
    consumed code, or a failed deletion)."""
    base, rt = live
    user = create_user(rt)
    rp = RelyingParty(base, register_client(rt))
    code, verifier = code_for(rp, Browser(base))
    deleting = rt.session_factory()  # a deletion past its password check, not committed yet
    deleting.execute(select(User.id).where(User.id == user.id).with_for_update())

    def ends_the_sessions_and_deletes() -> None:
        deleting.execute(
            update(UserSession).values(ended_at=datetime.now(UTC), end_reason="account_deleted")
        )
        deleting.execute(delete(User).where(User.id == user.id))

    answer = waits_for(deleting, lambda: redeem(rp, code, verifier), ends_the_sessions_and_deletes)

    assert refused(answer)
