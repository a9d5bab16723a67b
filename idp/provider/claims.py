"""Standard claims about a user, by scope (OIDC Core §5.1, §5.4).

``email_verified`` is the account's own flag, read when the ID token or the userinfo answer is
made: true only once idp took the steps of §5.1 (an operator vouched for the address, the
address was confirmed with a mailed link, or the domain owner verified it at Entra ID).
"""

from __future__ import annotations

from typing import Any

from idp.models import User


def user_claims(user: User, scope: str) -> dict[str, Any]:
    scopes = set(scope.split())
    claims: dict[str, Any] = {"sub": user.id}
    if "profile" in scopes:
        claims["name"] = f"{user.first_name} {user.last_name}".strip()
        claims["given_name"] = user.first_name
        claims["family_name"] = user.last_name
    if "email" in scopes:
        claims["email"] = user.email
        claims["email_verified"] = user.email_verified
    return claims
