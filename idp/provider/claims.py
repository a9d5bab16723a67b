"""Standard claims about a user, by scope (OIDC Core §5.1, §5.4), and the organization's logo.

``email_verified`` is the account's own flag, read when the ID token or the userinfo answer is
made: true only once idp took the steps of §5.1 (an operator vouched for the address, the
address was confirmed with a mailed link, or the domain owner verified it at Entra ID).

With ``profile``: ``name``, ``given_name``, ``family_name``, and ``picture`` (an absolute URL
under the issuer that changes whenever the picture does) when the user has one; also
``org_logo``, the public URL of the logo of the user's current organization
(``/organizations/<id>/logo``), when that organization has one. The logo is not a standard
claim: relying services that do not know it ignore it (OIDC Core §5.1.2).
"""

from __future__ import annotations

from typing import Any

from idp.media.store import image_path
from idp.models import User


def _org_logo(user: User, issuer: str) -> str | None:
    memberships = sorted(user.memberships, key=lambda m: m.created_at)
    current = next(
        (m for m in memberships if m.organization_id == user.current_organization_id),
        memberships[0] if memberships else None,
    )
    if current is None:
        return None
    org = current.organization
    if not (org.wide_logo_id or org.square_logo_id):
        return None
    return f"{issuer}/organizations/{org.id}/logo"


def user_claims(user: User, scope: str, issuer: str = "") -> dict[str, Any]:
    scopes = set(scope.split())
    claims: dict[str, Any] = {"sub": user.id}
    if "profile" in scopes:
        claims["name"] = f"{user.first_name} {user.last_name}".strip()
        claims["given_name"] = user.first_name
        claims["family_name"] = user.last_name
        if issuer and user.avatar_id:
            claims["picture"] = issuer.rstrip("/") + image_path(user.avatar_id)
        logo = _org_logo(user, issuer.rstrip("/")) if issuer else None
        if logo:
            claims["org_logo"] = logo
    if "email" in scopes:
        claims["email"] = user.email
        claims["email_verified"] = user.email_verified
    return claims
