"""Three idp nodes behind nginx (issue 9, item 1): sign-in, tokens, refresh rotation, session
ending, logout and key rotation cross nodes on every request (round-robin) and give the same
results as one node, because nothing lives only in one process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.account_pages import read_devices
from tests.cluster import Cluster, running_cluster
from tests.helpers import csrf_token
from tests.integration.test_account_access import (
    FIREFOX_WINDOWS,
    SAFARI_IPHONE,
    live_browser,
    open_account,
)
from tests.integration.test_oidc_keys import kid_of, published_kids
from tests.oidc import RelyingParty, register_client

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


def test_a_relying_service_sees_one_provider(cluster: Cluster) -> None:
    base = cluster.base
    rp = RelyingParty(base, register_client(cluster.runtime, "Shop"))
    assert rp.metadata["issuer"] == base
    assert rp.metadata["token_endpoint"] == base + "/token"  # the public address, via nginx
    laptop = live_browser(base, FIREFOX_WINDOWS)
    tokens, nonce = rp.sign_in(laptop)  # authorize, login, consent-free redirect, token
    rp.validate_id_token(tokens["id_token"], nonce)
    rp.validate_access_token(tokens["access_token"])
    for _ in range(6):  # every node answers alike
        assert rp.userinfo(tokens["access_token"]).json()["sub"]
        assert rp.introspect(tokens["access_token"]).json()["active"] is True
    refreshed = rp.refresh(tokens["refresh_token"])
    assert refreshed.status_code == 200
    for _ in range(3):  # the rotated refresh token is spent everywhere
        replay = rp.refresh(tokens["refresh_token"])
        assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert all(node.requests_served() > 0 for node in cluster.nodes)

    # ending the laptop's session from the phone, through whichever node answers
    phone = live_browser(base, SAFARI_IPHONE)
    open_account(phone)
    [_, laptop_device] = read_devices(phone.http.get(base + "/account/sessions", timeout=10).text)
    end_url = f"{base}/account/sessions/{laptop_device.sessions[0].session_id}/end"
    confirm = phone.http.get(end_url, timeout=10)
    done = phone.http.post(end_url, data={"csrf_token": csrf_token(confirm.text)},
                           allow_redirects=False, timeout=10)
    assert done.status_code == 303
    for _ in range(3):
        after = laptop.http.get(base + "/account", allow_redirects=False, timeout=10)
        assert after.status_code == 303 and "/login" in after.headers["Location"]
        assert rp.introspect(tokens["access_token"]).json() == {"active": False}
    assert rp.refresh(refreshed.json()["refresh_token"]).status_code == 400
    assert phone.http.get(base + "/account", allow_redirects=False, timeout=10).status_code == 200


def test_key_rotation_reaches_every_node_without_restart(cluster: Cluster) -> None:
    base = cluster.base
    rp = RelyingParty(base, register_client(cluster.runtime, "Wiki"))
    before, _ = rp.sign_in(live_browser(base, FIREFOX_WINDOWS))
    old_kid = kid_of(before["access_token"])
    rotated = cluster.idp("keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    seen = [published_kids(base) for _ in range(6)]
    assert all(kids == seen[0] for kids in seen) and old_kid in seen[0]
    for _ in range(3):  # each node signs with the new key at once
        after, nonce = rp.sign_in(live_browser(base, FIREFOX_WINDOWS))
        assert kid_of(after["access_token"]) != old_kid
        assert kid_of(after["access_token"]) in seen[0]
        rp.validate_id_token(after["id_token"], nonce)
    rp.validate_access_token(before["access_token"])  # older tokens still validate


def test_rp_initiated_logout_ends_the_session_on_every_node(cluster: Cluster) -> None:
    base = cluster.base
    rp = RelyingParty(base, register_client(cluster.runtime, "Mail"))
    browser = live_browser(base, FIREFOX_WINDOWS)
    tokens, _ = rp.sign_in(browser)
    logout = browser.http.get(rp.metadata["end_session_endpoint"], params={
        "id_token_hint": tokens["id_token"]}, timeout=10)
    # a valid hint for the browser's own session: signed out at once, no confirmation page
    assert logout.status_code == 200 and 'name="password"' in logout.text  # the sign-in page
    for _ in range(3):
        assert browser.http.get(base + "/account", allow_redirects=False,
                                timeout=10).status_code == 303
        assert rp.introspect(tokens["access_token"]).json() == {"active": False}
    assert requests.get(base + "/readyz", timeout=10).json()["status"] == "ready"
