"""What each activity-log event means, in plain language, and the types of action it belongs to.

Every :class:`~idp.events.EventTag` has an entry here (a unit test checks it): a short action
label, a sentence for the user it is about ("You signed in") and one for an organization admin
reading a member's log ("Alice Liddell signed in"), and its type of action for the filter.
A tag the catalog does not know (an event written by a newer version) gets a generic sentence.

Some events read differently depending on ``details["reason"]`` (a failed sign-in on a locked
account is not "a wrong password"); those variants are part of the entry, and the free-text
search matches them exactly (see :func:`idp.activity.query.sentence_condition`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from idp.events import ACCOUNT_PRODUCT, EventTag

WHO = "{who}"


class Perspective(enum.Enum):
    """Who reads the log: the user it is about, or an admin of the user's organization."""

    SELF = "self"
    ADMIN = "admin"


class ActionGroup(enum.StrEnum):
    """The types of action the log can be filtered by (the ``type`` query parameter)."""

    SIGN_INS = "sign-ins"
    SESSIONS = "sessions"
    LOCKOUTS = "lockouts"
    SECURITY = "security"
    APPLICATIONS = "applications"
    SETTINGS = "settings"

    @property
    def label(self) -> str:
        return _GROUP_LABELS[self]


_GROUP_LABELS = {
    ActionGroup.SIGN_INS: "Sign-ins",
    ActionGroup.SESSIONS: "Sign-outs and sessions",
    ActionGroup.LOCKOUTS: "Lockouts",
    ActionGroup.SECURITY: "Password, two-factor and profile",
    ActionGroup.APPLICATIONS: "Consents and tokens",
    ActionGroup.SETTINGS: "Settings",
}


@dataclass(frozen=True)
class Wording:
    """One sentence in both perspectives; ``admin`` contains ``{who}`` (the member's name)."""

    self_: str
    admin: str

    def text(self, perspective: Perspective, who: str = "") -> str:
        if perspective is Perspective.SELF:
            return self.self_
        return self.admin.replace(WHO, who)

    def searchable(self, perspective: Perspective) -> str:
        """The sentence as the search sees it: the member's name is matched separately."""
        return " ".join(self.text(perspective).split())


@dataclass(frozen=True)
class Entry:
    """The catalog entry of one event tag."""

    label: str
    group: ActionGroup
    wording: Wording
    # details["reason"] -> a more precise sentence for that reason.
    by_reason: Mapping[str, Wording] = field(default_factory=dict)

    def wording_for(self, details: Mapping[str, Any] | None) -> Wording:
        reason = (details or {}).get("reason")
        if isinstance(reason, str) and reason in self.by_reason:
            return self.by_reason[reason]
        return self.wording


def _w(self_: str, admin: str) -> Wording:
    return Wording(self_, admin)


CATALOG: dict[str, Entry] = {
    EventTag.LOGIN_SUCCESS: Entry(
        "Sign-in", ActionGroup.SIGN_INS, _w("You signed in", "{who} signed in")
    ),
    EventTag.LOGIN_SSO: Entry(
        "Sign-in with SSO",
        ActionGroup.SIGN_INS,
        _w("You signed in with your organization's SSO", "{who} signed in with SSO"),
    ),
    EventTag.SSO_LINKED: Entry(
        "SSO linked",
        ActionGroup.SECURITY,
        _w(
            "You linked your organization's sign-in to your account",
            "{who} linked their organization's sign-in to their account",
        ),
    ),
    EventTag.LOGIN_FAILURE: Entry(
        "Failed sign-in",
        ActionGroup.SIGN_INS,
        _w(
            "Someone tried to sign in with a wrong password",
            "Someone tried to sign in to {who}'s account with a wrong password",
        ),
        by_reason={
            "locked": _w(
                "Someone tried to sign in while your account was locked",
                "Someone tried to sign in to {who}'s account while it was locked",
            ),
            "email_unverified": _w(
                "Someone entered your password before your email address was verified",
                "Someone entered {who}'s password before their email address was verified",
            ),
        },
    ),
    EventTag.SECOND_FACTOR_FAILURE: Entry(
        "Wrong two-factor code",
        ActionGroup.SIGN_INS,
        _w(
            "Someone entered your password but a wrong two-factor code",
            "Someone entered {who}'s password but a wrong two-factor code",
        ),
    ),
    EventTag.LOGOUT: Entry(
        "Sign-out", ActionGroup.SESSIONS, _w("You signed out", "{who} signed out")
    ),
    EventTag.SESSION_ENDED: Entry(
        "Session ended",
        ActionGroup.SESSIONS,
        _w("One of your sessions was ended", "One of {who}'s sessions was ended"),
        by_reason={
            "ended_by_user": _w(
                "You ended one of your sessions", "{who} ended one of their sessions"
            ),
            "password_changed": _w(
                "One of your sessions was signed out because your password was changed",
                "One of {who}'s sessions was signed out because their password was changed",
            ),
            "password_reset": _w(
                "One of your sessions was signed out because your password was reset",
                "One of {who}'s sessions was signed out because their password was reset",
            ),
        },
    ),
    EventTag.PASSWORD_CHANGED: Entry(
        "Password changed",
        ActionGroup.SECURITY,
        _w("You changed your password", "{who} changed their password"),
    ),
    EventTag.PASSWORD_RESET_REQUESTED: Entry(
        "Password reset requested",
        ActionGroup.SECURITY,
        _w(
            "Someone asked for a link to reset your password",
            "Someone asked for a link to reset {who}'s password",
        ),
    ),
    EventTag.PASSWORD_RESET: Entry(
        "Password reset",
        ActionGroup.SECURITY,
        _w(
            "Your password was reset with a link sent to your email address",
            "{who}'s password was reset with a link sent to their email address",
        ),
    ),
    EventTag.EMAIL_VERIFIED: Entry(
        "Email verified",
        ActionGroup.SECURITY,
        _w("You verified your email address", "{who} verified their email address"),
    ),
    EventTag.SIGNUP_EXISTING_ADDRESS: Entry(
        "Sign-up with your address",
        ActionGroup.SECURITY,
        _w(
            "Someone tried to create a new account with your email address",
            "Someone tried to create a new account with {who}'s email address",
        ),
    ),
    EventTag.ACCOUNT_LOCKED: Entry(
        "Account locked",
        ActionGroup.LOCKOUTS,
        _w(
            "Your account was locked after too many failed attempts",
            "{who}'s account was locked after too many failed attempts",
        ),
    ),
    EventTag.ACCOUNT_UNLOCKED: Entry(
        "Account unlocked",
        ActionGroup.LOCKOUTS,
        _w("Your account was unlocked", "{who}'s account was unlocked"),
    ),
    EventTag.LOCKOUT_THRESHOLD_CHANGED: Entry(
        "Lockout setting",
        ActionGroup.SETTINGS,
        _w(
            "You changed after how many failed attempts accounts lock",
            "{who} changed after how many failed attempts accounts lock",
        ),
    ),
    EventTag.ALERTS_CHANGED: Entry(
        "Login alerts",
        ActionGroup.SETTINGS,
        _w("You changed your login alerts", "{who} changed their login alerts"),
    ),
    EventTag.TWO_FACTOR_ENABLED: Entry(
        "Two-factor on",
        ActionGroup.SECURITY,
        _w(
            "You turned on two-factor authentication",
            "{who} turned on two-factor authentication",
        ),
    ),
    EventTag.TWO_FACTOR_DISABLED: Entry(
        "Two-factor off",
        ActionGroup.SECURITY,
        _w(
            "You turned off two-factor authentication",
            "{who} turned off two-factor authentication",
        ),
    ),
    EventTag.RECOVERY_CODES_REGENERATED: Entry(
        "New recovery codes",
        ActionGroup.SECURITY,
        _w("You made new recovery codes", "{who} made new recovery codes"),
    ),
    EventTag.RECOVERY_CODE_USED: Entry(
        "Recovery code used",
        ActionGroup.SECURITY,
        _w(
            "A recovery code was used to sign in to your account",
            "A recovery code was used to sign in to {who}'s account",
        ),
    ),
    EventTag.TOKEN_GRANTED: Entry(
        "Token granted",
        ActionGroup.APPLICATIONS,
        _w(
            "An application received access to your account",
            "An application received access to {who}'s account",
        ),
    ),
    EventTag.TOKEN_REVOKED: Entry(
        "Token revoked",
        ActionGroup.APPLICATIONS,
        _w(
            "An application's access to your account was revoked",
            "An application's access to {who}'s account was revoked",
        ),
    ),
    EventTag.CONSENT_GRANTED: Entry(
        "Consent given",
        ActionGroup.APPLICATIONS,
        _w(
            "You allowed an application to use your account",
            "{who} allowed an application to use their account",
        ),
    ),
    EventTag.CONSENT_REVOKED: Entry(
        "Consent withdrawn",
        ActionGroup.APPLICATIONS,
        _w(
            "You removed an application's access to your account",
            "{who} removed an application's access to their account",
        ),
    ),
    EventTag.ORGANIZATION_CREATED: Entry(
        "Organization created",
        ActionGroup.SETTINGS,
        _w("An organization was created", "An organization was created"),
    ),
    EventTag.SSO_CONNECTION_SAVED: Entry(
        "SSO connection saved",
        ActionGroup.SETTINGS,
        _w(
            "You linked your organization to its Entra ID tenant (connection tested)",
            "{who} linked the organization to its Entra ID tenant (connection tested)",
        ),
    ),
    EventTag.SSO_CONNECTION_REMOVED: Entry(
        "SSO connection removed",
        ActionGroup.SETTINGS,
        _w(
            "You removed your organization's Entra ID connection",
            "{who} removed the organization's Entra ID connection",
        ),
    ),
    EventTag.USER_CREATED: Entry(
        "Account created",
        ActionGroup.SECURITY,
        _w("Your account was created", "{who}'s account was created"),
    ),
    EventTag.USER_DELETED: Entry(
        "Account deleted",
        ActionGroup.SECURITY,
        _w("The account was deleted", "A member's account was deleted"),
    ),
    EventTag.PROFILE_UPDATED: Entry(
        "Name changed",
        ActionGroup.SECURITY,
        _w("You changed your name", "{who} changed their name"),
    ),
    EventTag.PICTURE_CHANGED: Entry(
        "Profile picture",
        ActionGroup.SECURITY,
        _w("You changed your profile picture", "{who} changed their profile picture"),
        by_reason={
            "removed": _w(
                "You removed your profile picture", "{who} removed their profile picture"
            ),
        },
    ),
    EventTag.EMAIL_CHANGE_REQUESTED: Entry(
        "Email change requested",
        ActionGroup.SECURITY,
        _w(
            "You asked to change your email address",
            "{who} asked to change their email address",
        ),
    ),
    EventTag.EMAIL_CHANGED: Entry(
        "Email changed",
        ActionGroup.SECURITY,
        _w("Your email address was changed", "{who}'s email address was changed"),
    ),
    EventTag.ORGANIZATION_RENAMED: Entry(
        "Organization renamed",
        ActionGroup.SETTINGS,
        _w("You renamed an organization", "{who} renamed the organization"),
    ),
    EventTag.ORGANIZATION_DELETED: Entry(
        "Organization deleted",
        ActionGroup.SETTINGS,
        _w("You deleted an organization", "{who} deleted the organization"),
    ),
    EventTag.ORGANIZATION_BRANDING: Entry(
        "Branding changed",
        ActionGroup.SETTINGS,
        _w(
            "You changed an organization's logo",
            "{who} changed the organization's logo",
        ),
    ),
    EventTag.ORGANIZATION_SWITCHED: Entry(
        "Organization switched",
        ActionGroup.SETTINGS,
        _w(
            "You switched to another organization",
            "{who} switched to this organization",
        ),
    ),
    EventTag.MEMBER_INVITED: Entry(
        "Member invited",
        ActionGroup.SETTINGS,
        _w(
            "You invited someone to an organization",
            "{who} invited someone to the organization",
        ),
    ),
    EventTag.INVITATION_REVOKED: Entry(
        "Invitation withdrawn",
        ActionGroup.SETTINGS,
        _w("You withdrew an invitation", "{who} withdrew an invitation"),
    ),
    EventTag.MEMBER_JOINED: Entry(
        "Joined an organization",
        ActionGroup.SETTINGS,
        _w("You joined an organization", "{who} joined the organization"),
    ),
    EventTag.MEMBER_ROLE_CHANGED: Entry(
        "Role changed",
        ActionGroup.SETTINGS,
        _w(
            "You changed a member's role in an organization",
            "{who} changed a member's role",
        ),
    ),
    EventTag.MEMBER_REMOVED: Entry(
        "Member removed",
        ActionGroup.SETTINGS,
        _w(
            "You removed a member from an organization",
            "{who} removed a member from the organization",
        ),
    ),
    EventTag.MEMBER_LEFT: Entry(
        "Left an organization",
        ActionGroup.SETTINGS,
        _w("You left an organization", "{who} left the organization"),
    ),
}

GENERIC = Entry(
    "Other",
    ActionGroup.SETTINGS,  # not used for filtering: unknown tags belong to no group
    _w("Something happened on your account", "Something happened on {who}'s account"),
)

# Tags without an entry (added after this catalog) still land in a group by their prefix.
_GROUP_PREFIXES: tuple[tuple[str, ActionGroup], ...] = (
    ("account:lockout:threshold", ActionGroup.SETTINGS),
    ("account:lockout:", ActionGroup.LOCKOUTS),
    ("account:login:", ActionGroup.SIGN_INS),
    ("account:logout", ActionGroup.SESSIONS),
    ("account:session", ActionGroup.SESSIONS),
    ("account:password", ActionGroup.SECURITY),
    ("account:2fa", ActionGroup.SECURITY),
    ("account:profile", ActionGroup.SECURITY),
    ("account:email", ActionGroup.SECURITY),
    ("account:user", ActionGroup.SECURITY),
    ("oauth:", ActionGroup.APPLICATIONS),
    ("account:alerts", ActionGroup.SETTINGS),
    ("organization:", ActionGroup.SETTINGS),
)


def entry_for(action: str) -> Entry:
    """The catalog entry of ``action``, or the generic one."""
    return CATALOG.get(action, GENERIC)


def group_of(action: str) -> ActionGroup | None:
    """The type of action of a tag; None for a tag that fits no group."""
    if action in CATALOG:
        return CATALOG[action].group
    return next((g for prefix, g in _GROUP_PREFIXES if action.startswith(prefix)), None)


def tags_in(group: ActionGroup) -> list[str]:
    """Every known tag of ``group`` (what the filter matches, with ``action IN (...)``)."""
    return sorted(str(tag) for tag in EventTag if group_of(tag) is group)


def sentence(
    action: str,
    details: Mapping[str, Any] | None,
    perspective: Perspective = Perspective.SELF,
    who: str = "",
) -> str:
    """The plain-language sentence of one event."""
    return entry_for(action).wording_for(details).text(perspective, who)


def product_label(product: str, name: str | None, perspective: Perspective) -> str:
    """What the Product column shows: the application's name, or the account itself."""
    if product == ACCOUNT_PRODUCT:
        return "Your account" if perspective is Perspective.SELF else "Account"
    return name or product
