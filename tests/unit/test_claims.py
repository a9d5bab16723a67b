"""Standard claims by scope (OIDC Core §5.1, §5.4): ``email_verified`` is the account's own."""

from __future__ import annotations

import pytest

from idp.models import User
from idp.provider.claims import user_claims


@pytest.mark.parametrize("verified", [True, False])
def test_email_verified_is_the_accounts_value(verified: bool) -> None:
    user = User(id="u1", email="a@example.com", email_normalized="a@example.com",
                email_verified=verified, first_name="A", last_name="B")
    claims = user_claims(user, "openid email")
    assert claims["email_verified"] is verified and claims["email"] == "a@example.com"
    assert "email_verified" not in user_claims(user, "openid profile")
