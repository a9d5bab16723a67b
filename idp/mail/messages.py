"""Security mails: one small function each, returning only the template and its context.

Each function names a template directory ``templates/email/<template>/`` (``subject.txt``,
``body.txt``, ``body.html``) and builds a JSON-safe context: the context is stored in the
outbox and rendered by the worker at delivery. Nothing here may carry a password or a secret;
the unlock link of :func:`account_locked` is the one deliberate exception (it is the purpose of
that mail) and is never logged. The renderer adds ``account_url`` (``<issuer>/account``, where
devices and sessions are managed) and ``issuer`` to every context.

Repeat windows live with the callers that can be driven by someone else: failed sign-in alerts
are coalesced per account (:mod:`idp.security.alerts`), successful sign-in alerts are capped per
hour; the other mails follow an action of the account owner or an administrator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from idp.i18n import DEFAULT, supported
from idp.models import User

ContextValue = str | int | bool | list[str]
Context = dict[str, ContextValue]


@dataclass(frozen=True)
class Message:
    """A mail to render: ``template`` names ``templates/email/<template>/``."""

    template: str
    context: Context = field(default_factory=dict)
    # The language to render in; None: the recipient account's language (English otherwise).
    language: str | None = None


def format_time(when: datetime) -> str:
    """A timestamp as mails show it: ``2025-03-01 14:05 UTC``."""
    if when.tzinfo is None:
        raise ValueError("naive datetime given to a mail")
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def account_language(user: User) -> str:
    """The language mails to ``user``'s own address are written in (English by default)."""
    return supported(user.locale) or DEFAULT


def _greeting(user: User) -> Context:
    return {"name": user.first_name or user.display_name, "email": user.email}


def login_alert_success(
    user: User,
    device: tuple[str, str],
    ip: str,
    when: datetime,
    application: str,
    *,
    new_device: bool = False,
    via_sso: bool = False,
) -> Message:
    """Someone signed in to the account (every time, or from a new device: the user chooses).
    ``via_sso``: through the organization's Entra ID (the mail then does not say that someone
    knows the password: the account may have none).

    ``device`` is (browser, OS), either possibly empty: the template names the device in the
    recipient's language ("Firefox 128 on Windows 10", "Unknown device"), as it says "unknown"
    for an empty ``ip``. Mails queued before carry a ready-made English ``device`` instead."""
    browser, os_name = device
    return Message(
        "login_alert_success",
        {
            **_greeting(user),
            "browser": browser,
            "os": os_name,
            "ip": ip,
            "when": format_time(when),
            "application": application,
            "new_device": new_device,
            "via_sso": via_sso,
        },
        # The account's own language, known here: queue_mail need not look the address up
        # (a query on the sign-in's path, and the hottest mail there is).
        language=account_language(user),
    )


def login_alert_failures(
    user: User,
    count: int,
    first_at: datetime,
    last_at: datetime,
    ips: Sequence[str],
    wrong_codes: int = 0,
) -> Message:
    """Failed sign-ins to the account, ``count`` of them in one coalescing window (an empty
    IP address is said "unknown" by the template, in the recipient's language);
    ``wrong_codes`` of them had the right password and a wrong second-factor code, which the
    mail says plainly: someone else knows the password."""
    return Message(
        "login_alert_failures",
        {
            **_greeting(user),
            "count": count,
            "first_at": format_time(first_at),
            "last_at": format_time(last_at),
            "ips": list(ips),
            "wrong_codes": wrong_codes,
        },
        language=account_language(user),  # sent by the worker, not through queue_mail
    )


def account_locked(user: User, unlock_url: str) -> Message:
    """The account locked after too many failed sign-ins; the link unlocks it once."""
    return Message("account_locked", {**_greeting(user), "unlock_url": unlock_url})


UNLOCKED_BY_SELF = "self"
UNLOCKED_BY_ADMIN = "admin"


def account_unlocked(user: User, unlocked_by: str, organization: str = "") -> Message:
    """The account was unlocked: by its owner with the mailed link (``unlocked_by`` "self"),
    or by an administrator ("admin") of ``organization`` ("" for an operator with the ``idp``
    command). The template says who in whole sentences of the recipient's language; mails
    queued before carry an English ``by_whom`` phrase instead."""
    if unlocked_by not in (UNLOCKED_BY_SELF, UNLOCKED_BY_ADMIN):
        raise ValueError(f"unknown unlocker {unlocked_by!r}")
    return Message(
        "account_unlocked",
        {**_greeting(user), "unlocked_by": unlocked_by, "organization": organization},
    )


def two_factor_enabled(user: User) -> Message:
    """Two-step verification was turned on (someone with the password could have done it to
    lock the owner out)."""
    return Message("two_factor_enabled", _greeting(user))


def two_factor_disabled(user: User) -> Message:
    """Two-step verification was turned off."""
    return Message("two_factor_disabled", _greeting(user))


def recovery_codes_regenerated(user: User) -> Message:
    """New recovery codes were made; the old ones no longer work."""
    return Message("recovery_codes_regenerated", _greeting(user))


def password_changed(user: User) -> Message:
    """The password was changed."""
    return Message("password_changed", _greeting(user))


def sso_confirmation_code(email: str, code: str, organization: str, minutes: int) -> Message:
    """The one-time code that proves control of ``email`` for a sign-in with the
    organization's SSO (the code is the purpose of this mail and is never logged)."""
    return Message(
        "sso_confirmation_code",
        {
            "name": email,
            "email": email,
            "code": code,
            "organization": organization,
            "minutes": minutes,
        },
    )


def password_reset(user: User, reset_url: str, minutes: int, *, needs_code: bool) -> Message:
    """A link to choose a new password (asked for at ``/password/forgot``); single-use, valid
    ``minutes``. Like the unlock link, the link is the purpose of this mail and is never
    logged."""
    return Message(
        "password_reset",
        {**_greeting(user), "reset_url": reset_url, "minutes": minutes, "needs_code": needs_code},
    )


def password_reset_done(user: User) -> Message:
    """The password was reset with a mailed link; every session was signed out."""
    return Message("password_reset_done", _greeting(user))


def verify_email(user: User, address: str, verify_url: str, hours: int, *, change: bool) -> Message:
    """A link that proves ``address`` belongs to the account's owner: the account's own address
    (sign-up), or a new address before an email change takes effect (``change``). Sent to
    ``address``, which is therefore also the ``email`` the footer names. An account not
    verified yet is greeted by its address: its name was typed by whoever signed up, who
    need not be the address's owner (no stranger's words in our mail)."""
    greeting = _greeting(user) if user.email_verified else {"name": address}
    return Message(
        "verify_email",
        {
            **greeting,
            "email": address,
            "address": address,
            "verify_url": verify_url,
            "hours": hours,
            "change": change,
        },
    )


def signup_existing_address(user: User, signin_url: str, forgot_url: str) -> Message:
    """Someone tried to sign up with the address of this existing account. The sign-up page
    answers as for a new address; only the owner learns about it, here."""
    return Message(
        "signup_existing_address",
        {**_greeting(user), "signin_url": signin_url, "forgot_url": forgot_url},
    )


def invitation(
    *, email: str, organization: str, inviter: str, role: str, link: str, expires_at: datetime
) -> Message:
    """An invitation to join an organization; the link works once, until ``expires_at``."""
    return Message(
        "invitation",
        {
            "name": email,
            "email": email,
            "organization": organization,
            "inviter": inviter,
            "role": role,
            "link": link,
            "expires_at": format_time(expires_at),
        },
    )


def email_change_confirm(user: User, new_email: str, link: str, expires_at: datetime) -> Message:
    """To the new address: confirm that it is to be the account's email."""
    return Message(
        "email_change_confirm",
        {
            "name": user.first_name or user.display_name,
            "email": new_email,
            "new_email": new_email,
            "link": link,
            "expires_at": format_time(expires_at),
        },
        language=user.locale,
    )


def email_change_existing_address(owner: User) -> Message:
    """Someone signed in to another account asked to use the address of this one (``owner``)
    as theirs. The email change page answers as for a free address; only the owner learns
    about it, here, and nothing changed. No word of the other account (not even its name)."""
    return Message("email_change_existing_address", _greeting(owner))


def email_change_notice(user: User, new_email: str) -> Message:
    """To the old address: a change to ``new_email`` was asked for."""
    return Message("email_change_notice", {**_greeting(user), "new_email": new_email})
