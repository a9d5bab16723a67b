"""Sign-up: people create their own account (when ``IDP_SIGNUP_ENABLED``), then verify it.

OWASP Authentication Cheat Sheet ("Authentication and Error Messages": account creation must
not reveal whether an account exists) and NIST SP 800-63A §5.3.1 (address confirmation):

- the form asks for email, name and password (the policy of everywhere, typed twice);
- every refusal is about what was typed (an invalid address, a weak password), never about
  other accounts; the same page answers "check your inbox" for a new and an existing address;
- the request costs the same for both, as the password reset request does: it checks the
  form, hashes the password (argon2id) and only adds one outbox row (``signup_request``: the
  address, the names, the *hash* — never the password — and where to return afterwards) and
  commits. The address is not even looked up on the request path;
- the worker (:class:`SignupRequestHandler`) then gives a new address an unverified account
  and a verification link (:mod:`idp.security.email_verification`; the account cannot sign in
  until the link is used), or mails the owner of the existing account a notice (with the way
  to sign in or reset the password) and files the attempt in the owner's activity log. Two
  sign-ups racing for one address meet at the unique address constraint: the loser is treated
  as "the address exists". The hash is then removed from the outbox row;
- an account made by sign-up whose address is never verified is deleted after
  ``IDP_UNVERIFIED_ACCOUNT_DAYS`` (:func:`purge_unverified_accounts`), by the worker every hour
  and by ``idp accounts purge-unverified``.

SSO-enforced domains never get here: the view sends them to their organization's Entra ID
first, as the sign-in page does. The form is rate limited per address and per IP by the view
(:mod:`idp.security.mail_requests`).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from flask_babel import gettext
from sqlalchemy import and_, delete, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from idp.accounts import AccountError, AccountService, normalize_email, validate_email
from idp.events import Actor, EventTag, record_event
from idp.mail import messages, queue_mail
from idp.models import (
    Event,
    FederatedIdentity,
    Membership,
    OneTimeToken,
    OutboxItem,
    Role,
    User,
    utcnow,
)
from idp.models.credentials import RETURN_TO_MAX
from idp.names import PERSON_NAME_MAX, UnusableName, clean_person_name
from idp.outbox import ITEM_ID, enqueue
from idp.security.email_verification import EmailVerificationService, VerificationPurpose
from idp.security.passwords import PasswordPolicyError, PasswordService
from idp.settings import Settings

log = logging.getLogger("idp.signup")

NAME_MAX = PERSON_NAME_MAX
SIGNUP_REQUEST = "signup_request"  # the outbox kind of a sign-up
PASSWORD_HASH = "password_hash"  # the payload key removed once the request is handled
PURGE_BATCH = 500


class SignupError(Exception):
    """The form was refused; ``message`` says what to correct (never about other accounts)
    and ``field`` names the form field it is about (the page ties the message to it)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class SignupForm:
    email: str
    first_name: str
    last_name: str
    password: str
    confirmation: str


def _name(which: Literal["first", "last"], value: str, *, required: bool) -> str:
    try:
        value = clean_person_name(which, value)
    except UnusableName as exc:
        raise SignupError(exc.message, f"{which}_name") from None
    if required and not value:
        raise SignupError(
            gettext("Enter your first name.")
            if which == "first"
            else gettext("Enter your last name."),
            f"{which}_name",
        )
    return value


class SignupService:
    """The request path of sign-up: check the form, hash the password, queue the request."""

    def __init__(
        self,
        db: Session,
        passwords: PasswordService,
        *,
        actor: Actor | None = None,
    ) -> None:
        self.db = db
        self.passwords = passwords
        self.actor = actor

    def check(self, form: SignupForm) -> SignupForm:
        """The form with its values cleaned, or :class:`SignupError`."""
        try:
            email = validate_email(form.email)
        except AccountError:
            raise SignupError(gettext("Enter a valid email address."), "email") from None
        first = _name("first", form.first_name, required=True)
        last = _name("last", form.last_name, required=False)
        if not form.password or not form.confirmation:
            raise SignupError(
                gettext("Type your password twice."),
                "password" if not form.password else "password_again",
            )
        if not hmac.compare_digest(form.password.encode(), form.confirmation.encode()):
            raise SignupError(
                gettext("The two passwords are not the same. Type the password twice."),
                "password_again",
            )
        try:
            self.passwords.check_policy(form.password, email=email)
        except PasswordPolicyError as exc:
            raise SignupError(str(exc), "password") from None
        return SignupForm(email, first, last, form.password, form.confirmation)

    def sign_up(self, form: SignupForm, return_to: str = "") -> None:
        """Queue the sign-up for the worker (:class:`SignupRequestHandler`): the same work for
        every address, known or not. ``return_to`` is a same-origin path the caller checked
        (``safe_next``); too long, it is dropped. Raises :class:`SignupError`. Commits."""
        form = self.check(form)
        enqueue(
            self.db,
            SIGNUP_REQUEST,
            {
                "email": form.email,
                "first_name": form.first_name,
                "last_name": form.last_name,
                PASSWORD_HASH: self.passwords.hash(form.password),
                "return_to": return_to if len(return_to) <= RETURN_TO_MAX else "",
                "ip": self.actor.ip if self.actor else "",
                "user_agent": (self.actor.user_agent if self.actor else "")[:200],
            },
        )
        self.db.commit()


@dataclass(frozen=True)
class SignupRequest:
    """A queued sign-up as the worker reads it back."""

    email: str
    first_name: str
    last_name: str
    password_hash: str
    return_to: str
    actor: Actor
    item_id: int | None = None

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> SignupRequest:
        item_id = payload.get(ITEM_ID)
        return cls(
            email=str(payload["email"]),
            first_name=str(payload.get("first_name", "")),
            last_name=str(payload.get("last_name", "")),
            password_hash=str(payload.get(PASSWORD_HASH, "")),
            return_to=str(payload.get("return_to", "")),
            actor=Actor(
                ip=str(payload.get("ip", "")), user_agent=str(payload.get("user_agent", ""))
            ),
            item_id=item_id if isinstance(item_id, int) else None,
        )


class SignupRequestHandler:
    """Outbox handler of ``signup_request``: create the unverified account and queue its
    verification mail, or mail the existing account's owner a notice; record the event."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        settings: Settings,
        passwords: PasswordService,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.session_factory = session_factory
        self.settings = settings
        self.passwords = passwords
        self.clock = clock

    def __call__(self, payload: dict[str, Any]) -> None:
        with self.session_factory() as db:
            self.handle(db, SignupRequest.from_payload(payload))

    def handle(self, db: Session, request: SignupRequest) -> User | None:
        """The new account, or None when the address already had one. Commits."""
        if not request.password_hash:
            # Handled already: the hash goes with the commit that handled it, and a worker that
            # died before marking the row done leaves it to be delivered again.
            return None
        accounts = AccountService(db, self.passwords)
        existing = accounts.find_user_by_email(request.email)
        if existing is None:
            user = self._create(db, request)
            if user is not None:
                verification = EmailVerificationService(
                    db, self.settings, accounts, actor=request.actor, clock=self.clock
                )
                verification.start_email_verification(user, return_to=request.return_to)
                self._forget_hash(db, request)
                db.commit()
                return user
            existing = accounts.find_user_by_email(request.email)  # a concurrent sign-up won
            if existing is None:  # it was deleted meanwhile: let the outbox try again
                raise RuntimeError("the sign-up lost a race to an account that is gone")
        self._notify_owner(db, accounts, existing, request.actor)
        self._forget_hash(db, request)
        db.commit()
        return None

    def _create(self, db: Session, request: SignupRequest) -> User | None:
        """Add the account (not committed); None when another one took the address first."""
        email = validate_email(request.email)
        user = User(
            email=email,
            email_normalized=normalize_email(email),
            email_verified=False,
            created_by_signup=True,
            first_name=request.first_name[:NAME_MAX],
            last_name=request.last_name[:NAME_MAX],
            password_hash=request.password_hash,
        )
        db.add(user)
        try:
            db.flush()  # the unique address constraint decides between concurrent sign-ups
        except IntegrityError:
            db.rollback()
            return None
        record_event(
            db,
            EventTag.USER_CREATED,
            user_id=user.id,
            actor=request.actor,
            details={"via": "signup"},
        )
        return user

    def _notify_owner(
        self, db: Session, accounts: AccountService, owner: User, actor: Actor
    ) -> None:
        issuer = self.settings.issuer
        queue_mail(
            db,
            owner.email,
            messages.signup_existing_address(owner, f"{issuer}/login", f"{issuer}/password/forgot"),
        )
        record_event(
            db,
            EventTag.SIGNUP_EXISTING_ADDRESS,
            user_id=owner.id,
            organization_id=accounts.primary_organization_id(owner.id),
            actor=actor,
        )

    @staticmethod
    def _forget_hash(db: Session, request: SignupRequest) -> None:
        """Remove the password hash from the handled outbox row (rows are kept), in the
        transaction that used it: a retried row still has it."""
        if request.item_id is None:
            return
        item = db.get(OutboxItem, request.item_id)
        if item is not None and PASSWORD_HASH in item.payload:
            payload = {k: v for k, v in item.payload.items() if k != PASSWORD_HASH}
            db.execute(
                update(OutboxItem)
                .where(OutboxItem.id == request.item_id)
                .values(payload=payload)
                .execution_options(synchronize_session=False)
            )


@dataclass(frozen=True)
class UnverifiedPurge:
    """What :func:`purge_unverified_accounts` did."""

    deleted: int
    before: datetime
    days: int


def purge_unverified_accounts(
    db: Session, days: int, *, now: datetime | None = None, batch: int = PURGE_BATCH
) -> UnverifiedPurge:
    """Delete the accounts made by sign-up more than ``days`` days before ``now`` whose address
    was never verified, unless they own an organization, have an SSO identity or a verification
    link that still works ("Send the link again" late on gets its full lifetime). Their
    sessions, links and other rows go with them (``ON DELETE CASCADE``). As when people delete
    their own account (:mod:`idp.security.account_deletion`), their events stay de-identified
    and each deletion is one ``account:user:delete`` event without user or IP (reason
    ``unverified``). Batches, each its own transaction."""
    now = now or utcnow()
    before = now - timedelta(days=days)
    # The conditions are part of the DELETE itself, so an account verified between the SELECT
    # and the DELETE is kept.
    purgeable = and_(
        User.created_by_signup.is_(True),
        User.email_verified.is_(False),
        User.created_at < before,
        ~exists().where(Membership.user_id == User.id, Membership.role == Role.OWNER),
        ~exists().where(FederatedIdentity.user_id == User.id),
        ~exists().where(
            OneTimeToken.user_id == User.id,
            OneTimeToken.purpose == str(VerificationPurpose.ACCOUNT),
            OneTimeToken.used_at.is_(None),
            OneTimeToken.expires_at > now,
        ),
    )
    deleted = 0
    while True:
        ids = db.scalars(select(User.id).where(purgeable).limit(batch)).all()
        if not ids:
            break
        gone = db.scalars(
            delete(User)
            .where(User.id.in_(ids), purgeable)
            .returning(User.id)
            .execution_options(synchronize_session=False)
        ).all()
        if gone:
            db.execute(
                update(Event)
                .where(Event.user_id.in_(gone))
                .values(user_id=None, ip="", device_id=None, session_id=None, details={})
                .execution_options(synchronize_session=False)
            )
        for _ in gone:
            record_event(db, EventTag.USER_DELETED, details={"reason": "unverified", "days": days})
        db.commit()
        deleted += len(gone)
        if len(ids) < batch:
            break
    if deleted:
        log.info("deleted %s sign-up accounts never verified in %s days", deleted, days)
    return UnverifiedPurge(deleted, before, days)
