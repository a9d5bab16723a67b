"""Inviting people into an organization by email.

An invitation is bound to one organization, one email address and one role. Its link carries
a random 256-bit token (``secrets.token_urlsafe(32)``); only the token's SHA-256 is stored, so
a copy of the database cannot be turned into working links, and a token is unguessable, which
is what a signature would provide, while staying revocable. The link works once, expires after
``IDP_INVITATION_DAYS`` (7), and a managing member can withdraw it before.

Accepting needs an account with the invited address: either the one signed in (a different
account is told which address the invitation is for), or a new one made through the link —
receiving the link proves control of the mailbox, so that account's email counts as verified.
Inviting someone as an owner is for owners only, as granting the role is.

An invitation grants its role with its author's rights at the moment it is *accepted*: the
author must still be a member allowed to invite with that role (:func:`~.policy.may_invite`),
otherwise the link is refused (and demoting or removing a member withdraws their invitations,
:func:`~.service.withdraw_invitations`). Accepting locks the organization's memberships first,
as every membership change does, so a demotion cannot slip in between check and join.

Sending is rate limited (fixed windows in the store): per organization, so one organization
cannot be used to mail the world, and per invited address, so re-sending cannot flood a mailbox
(whatever the organizations sending).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask_babel import gettext, lazy_gettext
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from idp.accounts import AccountError, AccountService, normalize_email, validate_email
from idp.events import Actor, EventTag, record_event
from idp.mail import messages, queue_mail
from idp.models import (
    Invitation,
    Membership,
    Organization,
    RemovedMember,
    Role,
    User,
    utcnow,
)
from idp.names import UnusableName, clean_person_name
from idp.organizations.policy import Action, may_invite
from idp.organizations.service import NotAllowed, OrganizationError, OrganizationService
from idp.security.passwords import PasswordPolicyError, PasswordService
from idp.security.ratelimit import RateLimited, RateLimiter
from idp.store import Store

INVITATIONS_PER_ORGANIZATION = 50
INVITATIONS_PER_ORGANIZATION_WINDOW = 3600
INVITATIONS_PER_ADDRESS = 5
INVITATIONS_PER_ADDRESS_WINDOW = 24 * 3600

WITHDRAW_OWNER_INVITATION = lazy_gettext("Only an owner can withdraw an invitation as an owner.")


class InvitationError(OrganizationError):
    """The invitation cannot be used, or not by this account."""


class InvitationInvalid(InvitationError):
    message = lazy_gettext(
        "This invitation link is not valid: it was already used, withdrawn, or it expired. "
        "Ask for a new invitation."
    )
    status = 404


class WrongAccount(InvitationError):
    """Signed in as another account than the invited address."""

    status = 403


class InviterLostRights(InvitationError):
    """The invitation's author may no longer invite with its role."""

    status = 403


class TooManyInvitations(InvitationError):
    """A sending limit is reached; ``retry_after`` seconds until the window ends."""

    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AccountExists(InvitationError):
    message = lazy_gettext(
        "There is already an account with this email address: sign in to accept."
    )
    status = 409


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class SentInvitation:
    invitation: Invitation
    link: str


class InvitationService:
    def __init__(
        self,
        db: Session,
        organizations: OrganizationService,
        accounts: AccountService,
        passwords: PasswordService,
        limiter: RateLimiter,
        store: Store,
        *,
        issuer: str,
        valid_days: int,
        actor: Actor | None = None,
    ) -> None:
        self.db = db
        self.organizations = organizations
        self.accounts = accounts
        self.passwords = passwords
        self.limiter = limiter
        self.store = store
        self.issuer = issuer.rstrip("/")
        self.valid = timedelta(days=valid_days)
        self.actor = actor

    def link(self, token: str) -> str:
        return f"{self.issuer}/invitations/{token}"

    # Managing ----------------------------------------------------------------------------
    def invite(self, user: User, org_id: str, email: str, role: Role) -> SentInvitation:
        """Mail an invitation; an earlier pending one to the same address is replaced."""
        org, my_role = self.organizations.authorize(user, org_id, Action.INVITE)
        if not may_invite(my_role, role):
            raise NotAllowed(gettext("Only an owner can invite someone as an owner."))
        try:
            email = validate_email(email)
        except AccountError:
            raise InvitationError(
                gettext("Enter the email address of the person to invite.")
            ) from None
        normalized = normalize_email(email)
        existing = self.accounts.find_user_by_email(email)
        if existing is not None and self.organizations.role_of(existing.id, org.id) is not None:
            raise InvitationError(
                gettext(
                    "%(email)s is already a member of %(organization)s.",
                    email=email,
                    organization=org.name,
                )
            )
        self._count_sending(org, normalized, email)
        now = utcnow()
        self.db.execute(
            update(Invitation)
            .where(
                Invitation.organization_id == org.id,
                Invitation.email_normalized == normalized,
                Invitation.accepted_at.is_(None),
                Invitation.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )
        token = secrets.token_urlsafe(32)
        invitation = Invitation(
            organization_id=org.id,
            email=email,
            email_normalized=normalized,
            role=role,
            token_hash=hash_token(token),
            invited_by=user.id,
            created_at=now,
            expires_at=now + self.valid,
        )
        self.db.add(invitation)
        self.db.flush()
        link = self.link(token)
        queue_mail(
            self.db,
            email,
            messages.invitation(
                email=email,
                organization=org.name,
                inviter=user.display_name,
                role=role.value,
                link=link,
                expires_at=invitation.expires_at,
            ),
        )
        record_event(
            self.db,
            EventTag.MEMBER_INVITED,
            user_id=user.id,
            organization_id=org.id,
            actor=self.actor,
            details={"email": email, "role": role.value, "invitation_id": invitation.id},
        )
        self.db.commit()
        return SentInvitation(invitation, link)

    def _count_sending(self, org: Organization, normalized: str, email: str) -> None:
        """Count one invitation against the organization's and the address's limits; raise
        :class:`TooManyInvitations` past either. The address is keyed by its SHA-256, so the
        store never holds it."""
        try:
            self.limiter.check(
                self.store.key("rl", "invite", "org", org.id),
                INVITATIONS_PER_ORGANIZATION,
                INVITATIONS_PER_ORGANIZATION_WINDOW,
            )
        except RateLimited as limited:
            raise TooManyInvitations(
                gettext(
                    "%(organization)s has sent too many invitations recently (at most %(n)s "
                    "an hour). Try again later.",
                    organization=org.name,
                    n=INVITATIONS_PER_ORGANIZATION,
                ),
                limited.retry_after,
            ) from None
        digest = hashlib.sha256(normalized.encode()).hexdigest()
        try:
            self.limiter.check(
                self.store.key("rl", "invite", "address", digest),
                INVITATIONS_PER_ADDRESS,
                INVITATIONS_PER_ADDRESS_WINDOW,
            )
        except RateLimited as limited:
            raise TooManyInvitations(
                gettext(
                    "%(email)s has been invited too many times recently (at most %(n)s times "
                    "a day). Try again later.",
                    email=email,
                    n=INVITATIONS_PER_ADDRESS,
                ),
                limited.retry_after,
            ) from None

    def pending(self, org_id: str) -> list[Invitation]:
        return list(
            self.db.scalars(
                select(Invitation)
                .where(
                    Invitation.organization_id == org_id,
                    Invitation.accepted_at.is_(None),
                    Invitation.revoked_at.is_(None),
                    Invitation.expires_at > utcnow(),
                )
                .order_by(Invitation.created_at.desc())
            )
        )

    def revoke(self, user: User, org_id: str, invitation_id: str) -> None:
        """Withdraw a pending invitation: whoever may send it may withdraw it (an admin may not
        withdraw an invitation to become an owner, which only an owner may send)."""
        org, my_role = self.organizations.authorize(user, org_id, Action.INVITE)
        invitation = self.db.get(Invitation, invitation_id)
        if invitation is None or invitation.organization_id != org.id or not invitation.pending:
            raise InvitationInvalid(gettext("There is no such pending invitation."))
        if not may_invite(my_role, invitation.role):
            raise NotAllowed(WITHDRAW_OWNER_INVITATION)
        invitation.revoked_at = utcnow()
        record_event(
            self.db,
            EventTag.INVITATION_REVOKED,
            user_id=user.id,
            organization_id=org.id,
            actor=self.actor,
            details={"email": invitation.email, "invitation_id": invitation.id},
        )
        self.db.commit()

    # Accepting ---------------------------------------------------------------------------
    def find(self, token: str) -> tuple[Invitation, Organization]:
        """The pending invitation of a link; :class:`InvitationInvalid` when there is none,
        :class:`InviterLostRights` when its author may no longer invite with its role."""
        if not token or len(token) > 100:
            raise InvitationInvalid
        invitation = self.db.scalar(
            select(Invitation).where(Invitation.token_hash == hash_token(token))
        )
        if invitation is None or not invitation.pending:
            raise InvitationInvalid
        org = self.db.get(Organization, invitation.organization_id)
        if org is None:
            raise InvitationInvalid
        self._check_inviter(invitation, org)
        return invitation, org

    def _check_inviter(self, invitation: Invitation, org: Organization) -> None:
        """Refuse an invitation whose author is no longer a member allowed to grant its role."""
        inviter = invitation.invited_by
        role = self.organizations.role_of(inviter, org.id) if inviter else None
        if not may_invite(role, invitation.role):
            raise InviterLostRights(
                gettext(
                    "This invitation can no longer be accepted: the person who sent it is no "
                    "longer allowed to grant the role it offers. Ask an owner or admin of "
                    "%(organization)s for a new invitation.",
                    organization=org.name,
                )
            )

    def _lock_and_recheck(self, invitation: Invitation, org: Organization) -> None:
        """Lock the organization's memberships, then check the author's rights again: a
        demotion committed since :meth:`find` read them is seen, a later one waits."""
        self.organizations.lock(org.id)
        try:
            self._check_inviter(invitation, org)
        except InviterLostRights:
            self.db.rollback()  # releases the lock
            raise

    def accept(self, user: User, token: str) -> Organization:
        """Join as ``user``, who must have the invited address."""
        invitation, org = self.find(token)
        if user.email_normalized != invitation.email_normalized:
            raise WrongAccount(
                gettext(
                    "This invitation is for %(email)s, but you are signed in as %(email2)s. "
                    "Sign out, then open the link again and sign in (or create an account) "
                    "with %(email)s.",
                    email=invitation.email,
                    email2=user.email,
                )
            )
        self._lock_and_recheck(invitation, org)
        self._claim(invitation, user)
        if self.organizations.role_of(user.id, org.id) is None:
            self.db.add(Membership(user_id=user.id, organization_id=org.id, role=invitation.role))
        user.current_organization_id = org.id
        # Whoever reads the link read the mailbox: the address is proven.
        user.email_verified = True
        self._joined(user, org, invitation)
        self.db.commit()
        return org

    def register(
        self, token: str, first_name: str, last_name: str, password: str, again: str
    ) -> tuple[User, Organization]:
        """Create the invited account (its email verified by the link) and join, in one
        transaction: nothing is written (the invitation stays usable) when any part fails."""
        invitation, org = self.find(token)
        if self.accounts.find_user_by_email(invitation.email) is not None:
            raise AccountExists
        try:
            first_name = clean_person_name("first", first_name)
            last_name = clean_person_name("last", last_name)
        except UnusableName as exc:
            raise InvitationError(exc.message) from None
        if not password or password != again:
            raise InvitationError(gettext("Type the same password twice."))
        try:
            self.passwords.check_policy(password, email=invitation.email)
        except PasswordPolicyError as exc:
            raise InvitationError(str(exc)) from None
        try:  # hashes the password: before taking the organization's lock
            user = self.accounts.create_user(
                invitation.email,
                password,
                first_name=first_name,
                last_name=last_name,
                email_verified=True,
                commit=False,
            )
        except AccountError:
            self.db.rollback()
            if self.accounts.find_user_by_email(invitation.email) is not None:
                raise AccountExists from None  # a concurrent sign-up won the race
            raise InvitationError(
                gettext(
                    "The first name and the last name must each be at most %(n)s characters.",
                    n=100,
                )
            ) from None
        self._lock_and_recheck(invitation, org)
        self._claim(invitation, user)
        self.db.add(Membership(user_id=user.id, organization_id=org.id, role=invitation.role))
        user.current_organization_id = org.id
        self._joined(user, org, invitation)
        self.db.commit()
        return user, org

    def _claim(self, invitation: Invitation, user: User | None) -> None:
        """Mark the invitation used, once: a concurrent acceptance loses."""
        claimed = self.db.execute(
            update(Invitation)
            .where(
                Invitation.id == invitation.id,
                Invitation.accepted_at.is_(None),
                Invitation.revoked_at.is_(None),
            )
            .values(accepted_at=utcnow(), accepted_by=user.id if user else None)
        )
        if getattr(claimed, "rowcount", 0) != 1:
            self.db.rollback()
            raise InvitationInvalid

    def _joined(self, user: User, org: Organization, invitation: Invitation) -> None:
        """Record the joining; the organization took the person back, so a removal by its
        admin no longer keeps them from linking its Entra ID tenant."""
        self.db.execute(
            delete(RemovedMember).where(
                RemovedMember.organization_id == org.id, RemovedMember.user_id == user.id
            )
        )
        record_event(
            self.db,
            EventTag.MEMBER_JOINED,
            user_id=user.id,
            organization_id=org.id,
            actor=self.actor,
            details={
                "role": invitation.role.value,
                "invitation_id": invitation.id,
                "invited_by": invitation.invited_by or "",
            },
        )
