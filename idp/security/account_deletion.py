"""Deleting one's own account (GDPR art. 17), immediately, after the password once more.

Refused, with the reason, while the account holds an organization together:

- the only member of an organization: "delete the organization or appoint someone else
  first" (an organization without members would be orphaned);
- its only owner while others remain: "appoint another owner first" (an organization always
  has a legal representative).

Otherwise, in one transaction: every live session ends through
:meth:`~idp.security.sessions.SessionService.end` (which revokes the session's tokens and
queues back-channel logouts to relying services), then the user row is deleted, and with it,
by ``ON DELETE CASCADE``, devices, sessions, second factor and recovery codes, one-time links,
federated (Entra) identities, consents, token families with their refresh and access tokens,
memberships and pending email changes; the profile picture is deleted too. The invitations
the account sent and that are still pending are withdrawn (without its rights, nobody may
accept them), one ``organization:invitation:revoke`` event each, without user or IP.

The activity log keeps the account's events, de-identified: ``user_id``, IP address, device,
session and details (which can hold addresses) are cleared. What remains says that something
happened, and when. One ``account:user:delete`` event per former organization (without user
or IP) records that a member's account was deleted, without saying whose; the activity pages,
which list events by user, do not show it: it is for operators reading the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from flask_babel import gettext
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from idp.events import Actor, EventTag, record_event
from idp.media.store import ImageStore
from idp.models import Event, Membership, Organization, Role, User, UserSession
from idp.organizations.service import lock_organizations, withdraw_invitations
from idp.security.reauth import PasswordConfirmation
from idp.security.sessions import SessionService

ACCOUNT_DELETED = "account_deleted"  # the end reason of the account's sessions


@dataclass(frozen=True)
class Blocker:
    """An organization that keeps the account from being deleted, and what to do."""

    organization_id: str
    organization: str
    reason: str  # "only_member" or "only_owner"

    @property
    def message(self) -> str:
        if self.reason == "only_member":
            return str(
                gettext(
                    "You are the only member of %(organization)s: "
                    "delete the organization or appoint someone else first.",
                    organization=self.organization,
                )
            )
        return str(
            gettext(
                "You are the only owner of %(organization)s: appoint another owner first.",
                organization=self.organization,
            )
        )


class DeletionBlocked(Exception):
    def __init__(self, blockers: list[Blocker]) -> None:
        super().__init__("; ".join(b.message for b in blockers))
        self.blockers = blockers


class AccountGone(Exception):
    """The account was deleted meanwhile (a second "Delete my account" at the same time):
    nothing was done; the request is as from a signed-out browser."""


class AccountDeletionService:
    def __init__(
        self,
        db: Session,
        confirmation: PasswordConfirmation,
        sessions: SessionService,
        images: ImageStore,
        *,
        actor: Actor | None = None,
    ) -> None:
        self.db = db
        self.confirmation = confirmation
        self.sessions = sessions
        self.images = images
        self.actor = actor

    def blockers(self, user: User) -> list[Blocker]:
        """The organizations that must be dealt with before the account can go."""
        found: list[Blocker] = []
        rows = self.db.execute(
            select(Organization, Membership.role)
            .join(Membership, Membership.organization_id == Organization.id)
            .where(Membership.user_id == user.id)
            .order_by(Organization.name)
        ).all()
        for org, role in rows:
            members = self._count(org.id)
            if members <= 1:
                found.append(Blocker(org.id, org.name, "only_member"))
            elif role is Role.OWNER and self._count(org.id, Role.OWNER) <= 1:
                found.append(Blocker(org.id, org.name, "only_owner"))
        return found

    def delete(self, user: User, password: str) -> None:
        """Delete ``user`` for good. Raises :class:`DeletionBlocked`,
        :class:`~idp.security.reauth.WrongPassword` or
        :class:`~idp.security.ratelimit.RateLimited`, or :class:`AccountGone` when another
        request deleted the account meanwhile (nothing is done then); commits."""
        # Lock the user's organizations, as every membership change does, so nobody leaves
        # or is demoted between the check below and the deletion.
        lock_organizations(
            self.db,
            Organization.id.in_(
                select(Membership.organization_id).where(Membership.user_id == user.id)
            ),
        )
        # Then the account's own row, read again: a second deletion at the same time waits
        # here for the first, then finds the row gone instead of recording a second deletion;
        # a picture uploaded meanwhile is the one deleted below.
        if self.db.get(User, user.id, with_for_update=True, populate_existing=True) is None:
            self._gone()
        blockers = self.blockers(user)
        if blockers:
            raise DeletionBlocked(blockers)
        self.confirmation.check(user, password)
        user_id = user.id
        organizations = list(
            self.db.scalars(select(Membership.organization_id).where(Membership.user_id == user_id))
        )
        live = self.db.scalars(
            select(UserSession.id).where(
                UserSession.user_id == user_id, UserSession.ended_at.is_(None)
            )
        ).all()
        for session_id in live:
            self.sessions.end(session_id, ACCOUNT_DELETED, commit=False)
        self.sessions.end_tokens_of_others(user_id, ACCOUNT_DELETED, None)
        for org_id in organizations:
            withdraw_invitations(self.db, org_id, user_id, None, by=None, actor=None)
        self.db.flush()
        self.db.execute(
            update(Event)
            .where(Event.user_id == user_id)
            .values(user_id=None, ip="", device_id=None, session_id=None, details={})
        )
        self.images.discard(user.avatar_id)
        deleted = self.db.execute(delete(User).where(User.id == user_id))
        # Cannot happen under the row lock above; checked so a deletion is never recorded twice.
        if deleted.rowcount != 1:  # type: ignore[attr-defined]
            self._gone()
        self.db.expunge_all()
        for org_id in organizations:
            record_event(self.db, EventTag.USER_DELETED, organization_id=org_id)
        if not organizations:
            record_event(self.db, EventTag.USER_DELETED)
        self.db.commit()

    def _gone(self) -> NoReturn:
        self.db.rollback()
        raise AccountGone

    def _count(self, org_id: str, role: Role | None = None) -> int:
        query = select(func.count()).select_from(Membership)
        query = query.where(Membership.organization_id == org_id)
        if role is not None:
            query = query.where(Membership.role == role)
        return self.db.scalar(query) or 0
