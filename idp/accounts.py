"""Organizations and user accounts: creation, lookup and the rules their data obeys."""

from __future__ import annotations

import re
import unicodedata

from sqlalchemy import func, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, contains_eager
from sqlalchemy.orm.attributes import set_committed_value

from idp.events import EventTag, by_operator, record_event
from idp.models import Membership, Organization, Role, User
from idp.names import PERSON_NAME_MAX, UnusableName, clean_name, name_key
from idp.security.passwords import PasswordService

# Pragmatic address check (RFC 5321 limits): one @, no spaces, a dotted domain, and none of
# RFC 5322's specials in the local part (a quoted local part is not accepted): an address
# with a comma, an angle bracket or a quote would be refused by the mail queue, or read as
# more than one address by a mail program.
_EMAIL = re.compile(
    r'^[^@\s\x00-\x1f\x7f(),:;<>\[\\\]"]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?'
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)


class AccountError(ValueError):
    """A request about accounts that cannot be carried out; the message is for its author."""


def load_memberships(db: Session, user: User) -> list[Membership]:
    """All of ``user``'s memberships with their organizations, oldest first, in one query, kept
    as the user's ``memberships`` collection unless that was loaded already.

    A sign-in reads the memberships twice (the organizations' lockout floor, then the
    organization its events are filed under) and the account page twice (the header's current
    organization, then the list of organizations); with the collection kept on the user, the
    second read and the organization of each membership cost no query."""
    memberships = list(
        db.scalars(
            select(Membership)
            .join(Membership.organization)
            .options(contains_eager(Membership.organization))
            .where(Membership.user_id == user.id)
            .order_by(Membership.created_at, Membership.id)
        )
    )
    if "memberships" in inspect(user).unloaded:
        set_committed_value(user, "memberships", memberships)
    return memberships


def memberships_of(db: Session, user: User) -> list[Membership]:
    """``user``'s memberships, oldest first: the collection already loaded on the user (what
    ``user.memberships`` shows in this request), else :func:`load_memberships`."""
    if "memberships" in inspect(user).unloaded:
        return load_memberships(db, user)
    return sorted(user.memberships, key=lambda m: m.created_at)


def normalize_email(email: str) -> str:
    """The form addresses are compared in: trimmed, in Unicode NFC (the same letters typed
    on another system, "ö" as o + combining diaeresis, are one address), in lower case."""
    return unicodedata.normalize("NFC", email.strip()).lower()


def validate_email(email: str) -> str:
    """``email`` trimmed and in NFC, as it is stored and mailed; AccountError if malformed."""
    email = unicodedata.normalize("NFC", email.strip())
    if len(email) > 254 or not _EMAIL.match(email) or _has_invisible(email):
        raise AccountError(f"not a valid email address: {email!r}")
    return email


def _has_invisible(email: str) -> bool:
    """Whether ``email`` holds a character that draws nothing or is no character at all
    (Unicode Cc, Cf, Co, Cs, Cn: C1 controls, zero-width space, bidirectional overrides, byte
    order mark, lone surrogates ...): such an address looks like another account's in every
    list and mail, and no mail system delivers to it."""
    return any(unicodedata.category(c).startswith("C") for c in email)


def _validate_name(label: str, value: str) -> str:
    try:
        return clean_name(value, PERSON_NAME_MAX)
    except UnusableName as exc:
        if exc.problem == "unshowable":
            raise AccountError(
                f"{label} contains characters that cannot be shown "
                "(control, invisible formatting or private-use characters)"
            ) from None
        raise AccountError(f"{label} must be at most {PERSON_NAME_MAX} characters") from None


class AccountService:
    def __init__(self, db: Session, passwords: PasswordService) -> None:
        self.db = db
        self.passwords = passwords

    def find_user_by_email(self, email: str) -> User | None:
        return self.db.scalar(select(User).where(User.email_normalized == normalize_email(email)))

    def find_organization(self, name: str) -> Organization | None:
        return self.db.scalar(
            select(Organization).where(func.lower(Organization.name) == name_key(name))
        )

    def create_organization(self, name: str) -> Organization:
        """Create an organization for the ``idp`` command (no owner yet): its name normalized
        as the web form does (:func:`idp.organizations.service.clean_name`)."""
        from idp.organizations.service import NameRefused, clean_name  # it imports this module

        try:
            name = clean_name(name)
        except NameRefused:
            raise AccountError("organization name must be 1 to 200 printable characters") from None
        if self.find_organization(name) is not None:
            raise AccountError(f"an organization named {name!r} already exists")
        org = Organization(name=name)
        self.db.add(org)
        self.db.flush()
        record_event(
            self.db,
            EventTag.ORGANIZATION_CREATED,
            organization_id=org.id,
            details=by_operator({"name": name}),
        )
        self._commit(f"an organization named {name!r} already exists")
        return org

    def create_user(
        self,
        email: str,
        password: str,
        *,
        first_name: str = "",
        last_name: str = "",
        organization: str | None = None,
        role: Role = Role.MEMBER,
        email_verified: bool = True,
        commit: bool = True,
    ) -> User:
        """Create a user (and membership); nothing is written when any part is refused.
        ``commit=False`` only flushes: the caller commits (or rolls back) the whole change."""
        email = validate_email(email)
        first_name = _validate_name("first name", first_name)
        last_name = _validate_name("last name", last_name)
        org = None
        if organization is not None:
            org = self.find_organization(organization)
            if org is None:
                raise AccountError(f"no organization named {organization!r}")
        if self.find_user_by_email(email) is not None:
            raise AccountError(f"a user with email {email} already exists")
        self.passwords.check_policy(password, email=email)
        user = User(
            email=email,
            email_normalized=normalize_email(email),
            email_verified=email_verified,
            first_name=first_name,
            last_name=last_name,
            password_hash=self.passwords.hash(password),
        )
        self.db.add(user)
        conflict = f"a user with email {email} already exists"
        self._commit(conflict, flush_only=True)  # the user's id, or a concurrent creation's
        if org is not None:
            self.db.add(Membership(user_id=user.id, organization_id=org.id, role=role))
        record_event(
            self.db,
            EventTag.USER_CREATED,
            user_id=user.id,
            organization_id=org.id if org else None,
            details={"role": role.value} if org else {},
        )
        self._commit(conflict, flush_only=not commit)
        return user

    def primary_organization_id(self, user_id: str) -> str | None:
        """The organization a user's events are filed under: their oldest membership."""
        return self.db.scalar(
            select(Membership.organization_id)
            .where(Membership.user_id == user_id)
            .order_by(Membership.created_at)
            .limit(1)
        )

    def primary_organization_of(self, user: User) -> str | None:
        """:meth:`primary_organization_id` for a loaded user, from its memberships (no query
        when a sign-in's lockout check has read them already)."""
        memberships = memberships_of(self.db, user)
        return memberships[0].organization_id if memberships else None

    def _commit(self, conflict_message: str, *, flush_only: bool = False) -> None:
        try:
            if flush_only:
                self.db.flush()
            else:
                self.db.commit()
        except IntegrityError:  # a concurrent creation won the race
            self.db.rollback()
            raise AccountError(conflict_message) from None
