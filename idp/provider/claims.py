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

from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, or_, select

from idp.media.store import image_path
from idp.models import Membership, Organization, User


@dataclass(frozen=True)
class ClaimValues:
    """What the claims are made of: the user's columns, and the id of the organization whose
    logo is the ``org_logo`` claim (None when there is none)."""

    user_id: str
    first_name: str
    last_name: str
    email: str
    email_verified: bool
    avatar_id: str | None
    logo_organization_id: str | None


def _logo_organization_id(user: User) -> str | None:
    """The user's current organization (else the oldest membership's), if it has a logo."""
    memberships = sorted(user.memberships, key=lambda m: m.created_at)
    current = next(
        (m for m in memberships if m.organization_id == user.current_organization_id),
        memberships[0] if memberships else None,
    )
    if current is None:
        return None
    org = current.organization
    return org.id if org.wide_logo_id or org.square_logo_id else None


def logo_organization_id_column() -> Any:
    """:func:`_logo_organization_id` as a scalar subquery correlated to ``users``, so that
    userinfo reads the logo in the same round trip as the user (instead of lazy-loading the
    memberships, then each organization). Same choice: the membership of the current
    organization if there is one, else the oldest; its id only if that organization has a
    logo. (Outer columns appear only in WHERE clauses: SQLite refuses them in ORDER BY.)"""
    logo_id = case(
        (
            or_(Organization.wide_logo_id.is_not(None), Organization.square_logo_id.is_not(None)),
            Organization.id,
        ),
        else_=None,
    )
    of_user = Membership.user_id == User.id
    in_current = Membership.organization_id == User.current_organization_id
    current = (
        select(logo_id)
        .join(Membership, Membership.organization_id == Organization.id)
        .where(of_user, in_current)
        .limit(1)
        .correlate(User)
        .scalar_subquery()
    )
    oldest = (
        select(logo_id)
        .join(Membership, Membership.organization_id == Organization.id)
        .where(of_user)
        .order_by(Membership.created_at)
        .limit(1)
        .correlate(User)
        .scalar_subquery()
    )
    has_current = select(Membership.user_id).where(of_user, in_current).correlate(User).exists()
    return case((has_current, current), else_=oldest)


def claim_values(user: User) -> ClaimValues:
    return ClaimValues(
        user_id=user.id,
        first_name=user.first_name,
        last_name=user.last_name,
        email=user.email,
        email_verified=user.email_verified,
        avatar_id=user.avatar_id,
        logo_organization_id=_logo_organization_id(user),
    )


def claims_of(values: ClaimValues, scope: str, issuer: str = "") -> dict[str, Any]:
    scopes = set(scope.split())
    claims: dict[str, Any] = {"sub": values.user_id}
    if "profile" in scopes:
        # OIDC Core §5.3.2: a claim without a value is omitted, not sent empty.
        name = f"{values.first_name} {values.last_name}".strip()
        for claim, value in (
            ("name", name),
            ("given_name", values.first_name),
            ("family_name", values.last_name),
        ):
            if value:
                claims[claim] = value
        if issuer and values.avatar_id:
            claims["picture"] = issuer.rstrip("/") + image_path(values.avatar_id)
        if issuer and values.logo_organization_id:
            org_id = values.logo_organization_id
            claims["org_logo"] = f"{issuer.rstrip('/')}/organizations/{org_id}/logo"
    if "email" in scopes:
        claims["email"] = values.email
        claims["email_verified"] = values.email_verified
    return claims


def user_claims(user: User, scope: str, issuer: str = "") -> dict[str, Any]:
    scopes = set(scope.split())
    if not (issuer and "profile" in scopes):  # the memberships are not needed: not loaded
        values = ClaimValues(
            user.id,
            user.first_name,
            user.last_name,
            user.email,
            user.email_verified,
            user.avatar_id,
            None,
        )
        return claims_of(values, scope, issuer)
    return claims_of(claim_values(user), scope, issuer)
