"""Sign-up: people create their own account (when ``IDP_SIGNUP_ENABLED``), then verify it.

OWASP Authentication Cheat Sheet ("Authentication and Error Messages": account creation must
not reveal whether an account exists) and NIST SP 800-63A §5.3.1 (address confirmation):

- the form asks for email, name and password (the policy of everywhere, typed twice);
- every refusal is about what was typed (an invalid address, a weak password), never about
  other accounts; the same page answers "check your inbox" for a new and an existing address;
- a new address gets an unverified account and a verification link
  (:mod:`idp.security.email_verification`); the account cannot sign in until the link is used;
- an address that already has an account gets nothing new: its owner is mailed a notice (with
  the way to sign in or reset the password), and the attempt is in the owner's activity log.
  The password is hashed in both cases, so both cost the same.

SSO-enforced domains never get here: the view sends them to their organization's Entra ID
first, as the sign-in page does. The form is rate limited per address and per IP by the view
(:mod:`idp.security.mail_requests`).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from sqlalchemy.orm import Session

from idp.accounts import AccountError, AccountService, validate_email
from idp.events import Actor, EventTag, record_event
from idp.mail import messages, queue_mail
from idp.security.email_verification import EmailVerificationService
from idp.security.passwords import PasswordPolicyError, PasswordService
from idp.settings import Settings

NAME_MAX = 100


class SignupError(Exception):
    """The form was refused; ``message`` says what to correct (never about other accounts)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class SignupForm:
    email: str
    first_name: str
    last_name: str
    password: str
    confirmation: str


def _name(label: str, value: str, *, required: bool) -> str:
    value = value.strip()
    if required and not value:
        raise SignupError(f"Enter your {label}.")
    if len(value) > NAME_MAX or any(ord(c) < 0x20 for c in value):
        raise SignupError(f"Your {label} must be at most {NAME_MAX} printable characters.")
    return value


class SignupService:
    def __init__(
        self,
        db: Session,
        accounts: AccountService,
        passwords: PasswordService,
        verification: EmailVerificationService,
        settings: Settings,
        *,
        actor: Actor | None = None,
    ) -> None:
        self.db = db
        self.accounts = accounts
        self.passwords = passwords
        self.verification = verification
        self.settings = settings
        self.actor = actor

    def check(self, form: SignupForm) -> SignupForm:
        """The form with its values cleaned, or :class:`SignupError`."""
        try:
            email = validate_email(form.email)
        except AccountError:
            raise SignupError("Enter a valid email address.") from None
        first = _name("first name", form.first_name, required=True)
        last = _name("last name", form.last_name, required=False)
        if not form.password or not form.confirmation:
            raise SignupError("Type your password twice.")
        if not hmac.compare_digest(form.password.encode(), form.confirmation.encode()):
            raise SignupError("The two passwords are not the same. Type the password twice.")
        try:
            self.passwords.check_policy(form.password, email=email)
        except PasswordPolicyError as exc:
            raise SignupError(str(exc)) from None
        return SignupForm(email, first, last, form.password, form.confirmation)

    def sign_up(self, form: SignupForm) -> None:
        """Create an unverified account and mail its verification link, or mail the owner of
        the existing account with this address. Raises :class:`SignupError`. Commits."""
        form = self.check(form)
        existing = self.accounts.find_user_by_email(form.email)
        if existing is None:
            try:
                user = self.accounts.create_user(
                    form.email,
                    form.password,
                    first_name=form.first_name,
                    last_name=form.last_name,
                    email_verified=False,
                )
            except AccountError:
                existing = self.accounts.find_user_by_email(form.email)  # a concurrent sign-up
            else:
                self.verification.start_email_verification(user)
                self.db.commit()
                return
        self.passwords.hash(form.password)  # the cost of creating an account
        if existing is None:
            return
        issuer = self.settings.issuer
        queue_mail(
            self.db,
            existing.email,
            messages.signup_existing_address(
                existing, f"{issuer}/login", f"{issuer}/password/forgot"
            ),
        )
        record_event(
            self.db,
            EventTag.SIGNUP_EXISTING_ADDRESS,
            user_id=existing.id,
            organization_id=self.accounts.primary_organization_id(existing.id),
            actor=self.actor,
        )
        self.db.commit()
