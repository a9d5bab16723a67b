"""Creating, renaming, deleting organizations and managing their members.

Every method takes the acting user and checks the action against :mod:`.policy` for that
user's role in *that* organization before touching anything: a refusal raises
:class:`NotAllowed` whatever the page offered. Changes to an organization's memberships lock
the organization row first, so two owners demoting each other at once cannot leave it without
an owner. Each change records one event with the acting user and the request's origin, and
commits.

A member who is demoted, removed or leaves loses the right to grant roles by invitation: their
pending invitations for a role they can no longer grant are withdrawn in the same transaction
(one ``organization:invitation:revoke`` event each), so a link sent earlier cannot hand out
the rights its author lost. A member who is removed (not one who leaves) is also remembered
(:class:`~idp.models.RemovedMember`) until an invitation brings them back: they may not link
the organization's Entra ID tenant to their account again by themselves.

Deleting an organization (owners only, with their password) deletes its memberships,
invitations, SSO connection (with its domains and linked Entra identities) and logos; the
members' accounts survive. Its events are kept for the members' own logs, with the
organization id cleared (nobody can open the organization's log any more).
"""

from __future__ import annotations

from dataclasses import dataclass

from flask_babel import gettext, lazy_gettext
from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp import names
from idp.accounts import AccountService, load_memberships
from idp.events import Actor, EventTag, record_event
from idp.models import (
    Event,
    Invitation,
    Membership,
    Organization,
    RemovedMember,
    Role,
    StoredImage,
    User,
    utcnow,
)
from idp.models.federation import FederatedIdentity
from idp.organizations.policy import Action, allows, may_invite, needs_owner
from idp.security.reauth import PasswordConfirmation

MAX_NAME = 200


class OrganizationError(Exception):
    """A refused request; ``message`` is for the person who made it, ``status`` its HTTP code
    (and ``retry_after``, in seconds, when it is 429)."""

    message = lazy_gettext("That cannot be done.")
    status = 400
    retry_after: int | None = None

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)


class NotAllowed(OrganizationError):
    message = lazy_gettext("Your role in this organization does not allow that.")
    status = 403


class NotFound(OrganizationError):
    message = lazy_gettext("There is no such member in this organization.")
    status = 404


class LastOwner(OrganizationError):
    message = lazy_gettext(
        "An organization needs an owner: appoint another owner first, or delete the organization."
    )


class NameRefused(OrganizationError):
    """The organization name is empty, too long, or taken."""


@dataclass(frozen=True)
class MemberRow:
    """One member as the members page lists them."""

    user: User
    role: Role


def withdraw_invitations(
    db: Session,
    org_id: str,
    inviter_id: str,
    role: Role | None,
    *,
    by: str | None,
    actor: Actor | None,
) -> None:
    """Withdraw the pending invitations that ``inviter_id`` sent for ``org_id`` and that
    someone with ``role`` (None: no longer a member) may not send, in the caller's
    transaction; each records ``organization:invitation:revoke`` as done by ``by`` (None: the
    inviter's account is being deleted, so the event names neither them nor anyone)."""
    now = utcnow()
    pending = db.scalars(
        select(Invitation).where(
            Invitation.organization_id == org_id,
            Invitation.invited_by == inviter_id,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
            Invitation.expires_at > now,
        )
    ).all()
    for invitation in pending:
        if may_invite(role, invitation.role):
            continue
        invitation.revoked_at = now
        record_event(
            db,
            EventTag.INVITATION_REVOKED,
            user_id=by,
            organization_id=org_id,
            actor=actor,
            details={
                "email": invitation.email,
                "invitation_id": invitation.id,
                **({"invited_by": inviter_id} if by is not None else {}),
            },
        )


def lock_organizations(db: Session, which: ColumnElement[bool]) -> None:
    """Lock the organizations matching ``which`` until ``db``'s transaction ends: membership
    changes (roles, removals, leaving, account deletion) read the roles after this.

    PostgreSQL: row locks. SQLite has one writer, but its driver begins a transaction only at
    the first write, so reads before it are not protected: a write to the organizations' rows
    (changing nothing) takes the writer's lock here, and a concurrent change waits for this
    one to end before it reads anything."""
    if db.get_bind().dialect.name == "sqlite":
        db.execute(
            update(Organization)
            .where(which)
            .values(name=Organization.name)
            .execution_options(synchronize_session=False)
        )
        return
    db.execute(select(Organization.id).where(which).with_for_update())


def clean_name(name: str) -> str:
    """The organization name as stored; :class:`NameRefused` when unusable."""
    try:
        name = names.clean_name(name, MAX_NAME)
    except names.UnusableName as exc:
        if exc.problem == "unshowable":
            raise NameRefused(
                gettext("The organization name contains characters that cannot be shown.")
            ) from None
        name = ""
    if not name:
        raise NameRefused(
            gettext(
                "Give the organization a name of 1 to %(MAX_NAME)s characters.", MAX_NAME=MAX_NAME
            )
        )
    return name


class OrganizationService:
    def __init__(
        self,
        db: Session,
        accounts: AccountService,
        confirmation: PasswordConfirmation,
        *,
        actor: Actor | None = None,
    ) -> None:
        self.db = db
        self.accounts = accounts
        self.confirmation = confirmation
        self.actor = actor

    # Reading -----------------------------------------------------------------------------
    def role_of(self, user_id: str, org_id: str) -> Role | None:
        return self.db.scalar(
            select(Membership.role).where(
                Membership.user_id == user_id, Membership.organization_id == org_id
            )
        )

    def authorize(self, user: User, org_id: str, action: Action) -> tuple[Organization, Role]:
        """The organization and the user's role in it, when the role allows ``action``;
        otherwise :class:`NotAllowed` (also for an organization that does not exist, so ids
        of other organizations cannot be probed)."""
        role = self.role_of(user.id, org_id)
        if not allows(role, action) or role is None:
            raise NotAllowed
        org = self.db.get(Organization, org_id)
        if org is None:
            raise NotAllowed
        return org, role

    def memberships(self, user: User) -> list[tuple[Organization, Role]]:
        """The user's organizations, by name."""
        rows = self.db.execute(
            select(Organization, Membership.role)
            .join(Membership, Membership.organization_id == Organization.id)
            .where(Membership.user_id == user.id)
            .order_by(func.lower(Organization.name))
        ).all()
        return [(org, role) for org, role in rows]

    def current(self, user: User) -> tuple[Organization, Role] | None:
        """The organization the user works in: the one chosen last, else the oldest."""
        # Read afresh (a membership may have been added in this request), and kept on the
        # user: the account page lists the same memberships below the header.
        memberships = load_memberships(self.db, user)
        for membership in memberships:
            if membership.organization_id == user.current_organization_id:
                return membership.organization, membership.role
        first = memberships[0] if memberships else None
        return (first.organization, first.role) if first else None

    def members(self, org_id: str) -> list[MemberRow]:
        """Every member, owners first, then admins, then members, each by name."""
        order = {Role.OWNER: 0, Role.ADMIN: 1, Role.MEMBER: 2}
        rows = self.db.execute(
            select(User, Membership.role)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.organization_id == org_id)
        ).all()
        members = [MemberRow(user, role) for user, role in rows]
        members.sort(key=lambda m: (order[m.role], m.user.display_name.lower(), m.user.email))
        return members

    # Organizations -----------------------------------------------------------------------
    def create(self, user: User, name: str) -> Organization:
        """A new organization with ``user`` as its owner, and the one the user now works in."""
        name = clean_name(name)
        if self.accounts.find_organization(name) is not None:
            raise NameRefused(
                gettext("An organization with that name already exists. Choose another.")
            )
        org = Organization(name=name)
        self.db.add(org)
        self.db.flush()
        self.db.add(Membership(user_id=user.id, organization_id=org.id, role=Role.OWNER))
        user.current_organization_id = org.id
        self._event(EventTag.ORGANIZATION_CREATED, user, org.id, {"name": name})
        self._commit(gettext("An organization with that name already exists. Choose another."))
        return org

    def rename(self, user: User, org_id: str, name: str) -> Organization:
        org, _ = self.authorize(user, org_id, Action.RENAME)
        name = clean_name(name)
        if name == org.name:
            return org
        other = self.accounts.find_organization(name)
        if other is not None and other.id != org.id:
            raise NameRefused(
                gettext("An organization with that name already exists. Choose another.")
            )
        previous, org.name = org.name, name
        self._event(EventTag.ORGANIZATION_RENAMED, user, org.id, {"from": previous, "to": name})
        self._commit(gettext("An organization with that name already exists. Choose another."))
        return org

    def delete(self, user: User, org_id: str, password: str) -> str:
        """Delete the organization (owners only, with their password); returns its name.
        Raises :class:`NotAllowed`, :class:`~idp.security.reauth.WrongPassword` or
        :class:`~idp.security.ratelimit.RateLimited`."""
        org, _ = self.authorize(user, org_id, Action.DELETE)
        self.confirmation.check(user, password)
        name = org.name
        logos = [i for i in (org.square_logo_id, org.wide_logo_id) if i]
        # The log outlives the organization; its rows no longer point at it.
        self.db.execute(
            update(Event).where(Event.organization_id == org.id).values(organization_id=None)
        )
        self.db.execute(
            update(User)
            .where(User.current_organization_id == org.id)
            .values(current_organization_id=None)
        )
        if logos:
            self.db.execute(delete(StoredImage).where(StoredImage.id.in_(logos)))
        # Memberships, invitations, the SSO connection, its domains and linked identities go
        # with it (ON DELETE CASCADE on every backend).
        self.db.execute(delete(Organization).where(Organization.id == org.id))
        self.db.expire_all()
        self._event(EventTag.ORGANIZATION_DELETED, user, None, {"name": name})
        self.db.commit()
        return name

    def switch(self, user: User, org_id: str) -> Organization:
        """Work in another of the user's organizations."""
        org, _ = self.authorize(user, org_id, Action.VIEW)
        if user.current_organization_id != org.id:
            user.current_organization_id = org.id
            self._event(EventTag.ORGANIZATION_SWITCHED, user, org.id, {"name": org.name})
            self.db.commit()
        return org

    # Members -----------------------------------------------------------------------------
    def change_role(self, user: User, org_id: str, member_id: str, new_role: Role) -> None:
        self.lock(org_id)  # first: the roles read below are then the current ones
        _, my_role = self.authorize(user, org_id, Action.CHANGE_ROLE)
        membership = self._membership(org_id, member_id)
        current = membership.role
        if current == new_role:
            return
        if needs_owner(current, new_role) and not allows(my_role, Action.MANAGE_OWNERS):
            raise NotAllowed(gettext("Only an owner can grant or take away the owner role."))
        if current is Role.OWNER and self._owners(org_id) <= 1:
            raise LastOwner(
                gettext("This is the organization's only owner: appoint another owner first.")
            )
        membership.role = new_role
        self._withdraw_invitations(user, membership, new_role)
        self._event(
            EventTag.MEMBER_ROLE_CHANGED,
            user,
            org_id,
            {"member_id": member_id, "from": current.value, "to": new_role.value},
        )
        self.db.commit()

    def remove_member(self, user: User, org_id: str, member_id: str) -> None:
        """Remove someone else from the organization (their account stays)."""
        if member_id == user.id:
            self.leave(user, org_id)
            return
        self.lock(org_id)
        _, my_role = self.authorize(user, org_id, Action.REMOVE_MEMBER)
        membership = self._membership(org_id, member_id)
        if needs_owner(membership.role, None) and not allows(my_role, Action.MANAGE_OWNERS):
            raise NotAllowed(gettext("Only an owner can remove an owner."))
        if membership.role is Role.OWNER and self._owners(org_id) <= 1:
            raise LastOwner  # unreachable while the remover is another owner; kept as a guard
        self._drop(user, membership)
        # Removed, not gone of their own accord: they may not link the organization's Entra
        # ID tenant to the account again by themselves (idp.federation.signin).
        self.db.merge(RemovedMember(organization_id=org_id, user_id=member_id, removed_by=user.id))
        self._event(
            EventTag.MEMBER_REMOVED,
            user,
            org_id,
            {"member_id": member_id, "role": membership.role.value},
        )
        self.db.commit()

    def leave(self, user: User, org_id: str) -> None:
        """Leave an organization; the last owner cannot."""
        self.lock(org_id)
        self.authorize(user, org_id, Action.LEAVE)
        membership = self._membership(org_id, user.id)
        if membership.role is Role.OWNER and self._owners(org_id) <= 1:
            raise LastOwner(
                gettext(
                    "You are this organization's only owner: appoint another owner first, "
                    "or delete the organization."
                )
            )
        self._drop(user, membership)
        self._event(EventTag.MEMBER_LEFT, user, org_id, {"role": membership.role.value})
        self.db.commit()

    # Helpers -----------------------------------------------------------------------------
    def lock(self, org_id: str) -> None:
        """Serialize membership changes of one organization until the transaction ends, so the
        roles read after this are the current ones (two owners demoting each other at once
        leave one owner)."""
        lock_organizations(self.db, Organization.id == org_id)

    def _membership(self, org_id: str, user_id: str) -> Membership:
        membership = self.db.scalar(
            select(Membership).where(
                Membership.organization_id == org_id, Membership.user_id == user_id
            )
        )
        if membership is None:
            raise NotFound
        return membership

    def _owners(self, org_id: str) -> int:
        return (
            self.db.scalar(
                select(func.count())
                .select_from(Membership)
                .where(Membership.organization_id == org_id, Membership.role == Role.OWNER)
            )
            or 0
        )

    def _withdraw_invitations(self, user: User, membership: Membership, role: Role | None) -> None:
        """Withdraw the member's pending invitations that ``role`` (None: gone) cannot grant;
        ``user`` is who changed the membership."""
        withdraw_invitations(
            self.db,
            membership.organization_id,
            membership.user_id,
            role,
            by=user.id,
            actor=self.actor,
        )

    def _drop(self, user: User, membership: Membership) -> None:
        """End a membership (``user`` ends it), and with it the member's pending invitations
        and the organization's Entra ID link to the account: its tenant must not go on
        signing a former member in (to their other organizations, say, after they changed the
        account's address to their own)."""
        self._withdraw_invitations(user, membership, None)
        member = self.db.get(User, membership.user_id)
        if member is not None and member.current_organization_id == membership.organization_id:
            member.current_organization_id = None
        self.db.execute(
            delete(FederatedIdentity).where(
                FederatedIdentity.organization_id == membership.organization_id,
                FederatedIdentity.user_id == membership.user_id,
            )
        )
        self.db.delete(membership)

    def _event(
        self, tag: EventTag, user: User, org_id: str | None, details: dict[str, str]
    ) -> None:
        record_event(
            self.db,
            tag,
            user_id=user.id,
            organization_id=org_id,
            actor=self.actor,
            details=details,
        )

    def _commit(self, conflict_message: str) -> None:
        try:
            self.db.commit()
        except IntegrityError:  # a concurrent creation or rename took the name
            self.db.rollback()
            raise NameRefused(conflict_message) from None
