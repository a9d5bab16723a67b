"""An organization's logos: a square one (else its initials in the square) and an optional
rectangular one, which relying services can show too (``/organizations/<id>/logo`` and the
``org_logo`` claim), and on the organization's SSO sign-in page. Owners and admins change
them (:data:`~.policy.Action.BRANDING`)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.events import Actor, EventTag, record_event
from idp.federation.connections import email_domain
from idp.media.store import ImageStore
from idp.models import ImageKind, Organization, SsoConnection, SsoDomain, User
from idp.organizations.policy import Action
from idp.organizations.service import OrganizationService

LOGO_KINDS = {"square": ImageKind.SQUARE_LOGO, "wide": ImageKind.WIDE_LOGO}


class BrandingService:
    def __init__(
        self,
        db: Session,
        organizations: OrganizationService,
        images: ImageStore,
        *,
        actor: Actor | None = None,
    ) -> None:
        self.db = db
        self.organizations = organizations
        self.images = images
        self.actor = actor

    def for_sso_page(self, org_id: str, email: str) -> Organization | None:
        """The organization whose branding the SSO sign-in page shows: the one named by
        ``org_id`` (a link an organization hands its staff) or serving ``email``'s domain,
        and only when it signs in with SSO, so the page cannot be dressed as any organization."""
        connection = None
        if org_id and len(org_id) <= 36:
            connection = self.db.scalar(
                select(SsoConnection).where(SsoConnection.organization_id == org_id)
            )
        if connection is None and email:
            domain = email_domain(email)
            row = self.db.get(SsoDomain, domain) if domain else None
            connection = row.connection if row is not None else None
        return self.db.get(Organization, connection.organization_id) if connection else None

    def set_logo(self, user: User, org_id: str, which: str, data: bytes) -> Organization:
        """Replace the square or wide logo with the uploaded picture. Raises
        :class:`~idp.organizations.service.NotAllowed`, :class:`KeyError` for an unknown
        ``which`` or :class:`~idp.media.images.ImageRefused` with the reason."""
        org, _ = self.organizations.authorize(user, org_id, Action.BRANDING)
        kind = LOGO_KINDS[which]
        stored = self.images.save(data, kind)
        self._lock(org)
        if kind is ImageKind.SQUARE_LOGO:
            self.images.discard(org.square_logo_id)
            org.square_logo_id = stored.id
        else:
            self.images.discard(org.wide_logo_id)
            org.wide_logo_id = stored.id
        self._event(user, org, which, "set")
        self.db.commit()
        return org

    def remove_logo(self, user: User, org_id: str, which: str) -> Organization:
        org, _ = self.organizations.authorize(user, org_id, Action.BRANDING)
        kind = LOGO_KINDS[which]  # an unknown kind raises KeyError
        self._lock(org)
        if kind is ImageKind.SQUARE_LOGO:
            self.images.discard(org.square_logo_id)
            org.square_logo_id = None
        else:
            self.images.discard(org.wide_logo_id)
            org.wide_logo_id = None
        self._event(user, org, which, "removed")
        self.db.commit()
        return org

    def _lock(self, org: Organization) -> None:
        """Lock the organization's row and read its logo ids again under the lock (SELECT ...
        FOR UPDATE on PostgreSQL), so that of two uploads at once the second discards the
        first one's logo: no picture is left behind, served and never deleted."""
        self.db.get(Organization, org.id, with_for_update=True, populate_existing=True)

    def _event(self, user: User, org: Organization, which: str, change: str) -> None:
        record_event(
            self.db,
            EventTag.ORGANIZATION_BRANDING,
            user_id=user.id,
            organization_id=org.id,
            actor=self.actor,
            details={"logo": which, "change": change},
        )
