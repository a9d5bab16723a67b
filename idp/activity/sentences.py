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

from flask_babel import gettext

from idp.events import ACCOUNT_PRODUCT, EventTag
from idp.i18n import N_

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
        return str(gettext(_GROUP_LABELS[self]))


_GROUP_LABELS = {
    ActionGroup.SIGN_INS: N_("Sign-ins"),
    ActionGroup.SESSIONS: N_("Sign-outs and sessions"),
    ActionGroup.LOCKOUTS: N_("Lockouts"),
    ActionGroup.SECURITY: N_("Password, two-factor and profile"),
    ActionGroup.APPLICATIONS: N_("Consents and tokens"),
    ActionGroup.SETTINGS: N_("Settings"),
}


@dataclass(frozen=True)
class Wording:
    """One sentence in both perspectives; ``admin`` contains ``{who}`` (the member's name)."""

    self_: str
    admin: str

    def text(self, perspective: Perspective, who: str = "") -> str:
        if perspective is Perspective.SELF:
            return str(gettext(self.self_))
        return str(gettext(self.admin)).replace(WHO, who)

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
        N_("Sign-in"), ActionGroup.SIGN_INS, _w(N_("You signed in"), N_("{who} signed in"))
    ),
    EventTag.LOGIN_SSO: Entry(
        N_("Sign-in with SSO"),
        ActionGroup.SIGN_INS,
        _w(N_("You signed in with your organization's SSO"), N_("{who} signed in with SSO")),
    ),
    EventTag.SSO_LINKED: Entry(
        N_("SSO linked"),
        ActionGroup.SECURITY,
        _w(
            N_("You linked your organization's sign-in to your account"),
            N_("{who} linked their organization's sign-in to their account"),
        ),
    ),
    EventTag.LOGIN_FAILURE: Entry(
        N_("Failed sign-in"),
        ActionGroup.SIGN_INS,
        _w(
            N_("Someone tried to sign in with a wrong password"),
            N_("Someone tried to sign in to {who}'s account with a wrong password"),
        ),
        by_reason={
            "locked": _w(
                N_("Someone tried to sign in while your account was locked"),
                N_("Someone tried to sign in to {who}'s account while it was locked"),
            ),
            "email_unverified": _w(
                N_("Someone entered your password before your email address was verified"),
                N_("Someone entered {who}'s password before their email address was verified"),
            ),
        },
    ),
    EventTag.SECOND_FACTOR_FAILURE: Entry(
        N_("Wrong two-factor code"),
        ActionGroup.SIGN_INS,
        _w(
            N_("Someone entered your password but a wrong two-factor code"),
            N_("Someone entered {who}'s password but a wrong two-factor code"),
        ),
    ),
    EventTag.LOGOUT: Entry(
        N_("Sign-out"), ActionGroup.SESSIONS, _w(N_("You signed out"), N_("{who} signed out"))
    ),
    EventTag.SESSION_ENDED: Entry(
        N_("Session ended"),
        ActionGroup.SESSIONS,
        _w(N_("One of your sessions was ended"), N_("One of {who}'s sessions was ended")),
        by_reason={
            "ended_by_user": _w(
                N_("You ended one of your sessions"), N_("{who} ended one of their sessions")
            ),
            "password_changed": _w(
                N_("One of your sessions was signed out because your password was changed"),
                N_("One of {who}'s sessions was signed out because their password was changed"),
            ),
            "password_reset": _w(
                N_("One of your sessions was signed out because your password was reset"),
                N_("One of {who}'s sessions was signed out because their password was reset"),
            ),
        },
    ),
    EventTag.PASSWORD_CHANGED: Entry(
        N_("Password changed"),
        ActionGroup.SECURITY,
        _w(N_("You changed your password"), N_("{who} changed their password")),
    ),
    EventTag.PASSWORD_RESET_REQUESTED: Entry(
        N_("Password reset requested"),
        ActionGroup.SECURITY,
        _w(
            N_("Someone asked for a link to reset your password"),
            N_("Someone asked for a link to reset {who}'s password"),
        ),
    ),
    EventTag.PASSWORD_RESET: Entry(
        N_("Password reset"),
        ActionGroup.SECURITY,
        _w(
            N_("Your password was reset with a link sent to your email address"),
            N_("{who}'s password was reset with a link sent to their email address"),
        ),
    ),
    EventTag.EMAIL_VERIFIED: Entry(
        N_("Email verified"),
        ActionGroup.SECURITY,
        _w(N_("You verified your email address"), N_("{who} verified their email address")),
    ),
    EventTag.SIGNUP_EXISTING_ADDRESS: Entry(
        N_("Sign-up with your address"),
        ActionGroup.SECURITY,
        _w(
            N_("Someone tried to create a new account with your email address"),
            N_("Someone tried to create a new account with {who}'s email address"),
        ),
    ),
    EventTag.ACCOUNT_LOCKED: Entry(
        N_("Account locked"),
        ActionGroup.LOCKOUTS,
        _w(
            N_("Your account was locked after too many failed attempts"),
            N_("{who}'s account was locked after too many failed attempts"),
        ),
    ),
    EventTag.ACCOUNT_UNLOCKED: Entry(
        N_("Account unlocked"),
        ActionGroup.LOCKOUTS,
        _w(N_("Your account was unlocked"), N_("{who}'s account was unlocked")),
    ),
    EventTag.LOCKOUT_THRESHOLD_CHANGED: Entry(
        N_("Lockout setting"),
        ActionGroup.SETTINGS,
        _w(
            N_("You changed after how many failed attempts accounts lock"),
            N_("{who} changed after how many failed attempts accounts lock"),
        ),
    ),
    EventTag.ALERTS_CHANGED: Entry(
        N_("Login alerts"),
        ActionGroup.SETTINGS,
        _w(N_("You changed your login alerts"), N_("{who} changed their login alerts")),
    ),
    EventTag.TWO_FACTOR_ENABLED: Entry(
        N_("Two-factor on"),
        ActionGroup.SECURITY,
        _w(
            N_("You turned on two-factor authentication"),
            N_("{who} turned on two-factor authentication"),
        ),
    ),
    EventTag.TWO_FACTOR_DISABLED: Entry(
        N_("Two-factor off"),
        ActionGroup.SECURITY,
        _w(
            N_("You turned off two-factor authentication"),
            N_("{who} turned off two-factor authentication"),
        ),
        by_reason={
            "operator": _w(
                N_("An operator turned off your two-factor authentication"),
                N_("An operator turned off {who}'s two-factor authentication"),
            )
        },
    ),
    EventTag.RECOVERY_CODES_REGENERATED: Entry(
        N_("New recovery codes"),
        ActionGroup.SECURITY,
        _w(N_("You made new recovery codes"), N_("{who} made new recovery codes")),
    ),
    EventTag.RECOVERY_CODE_USED: Entry(
        N_("Recovery code used"),
        ActionGroup.SECURITY,
        _w(
            N_("A recovery code was used to sign in to your account"),
            N_("A recovery code was used to sign in to {who}'s account"),
        ),
    ),
    EventTag.TOKEN_GRANTED: Entry(
        N_("Token granted"),
        ActionGroup.APPLICATIONS,
        _w(
            N_("An application received access to your account"),
            N_("An application received access to {who}'s account"),
        ),
    ),
    EventTag.TOKEN_REVOKED: Entry(
        N_("Token revoked"),
        ActionGroup.APPLICATIONS,
        _w(
            N_("An application's access to your account was revoked"),
            N_("An application's access to {who}'s account was revoked"),
        ),
    ),
    EventTag.CONSENT_GRANTED: Entry(
        N_("Consent given"),
        ActionGroup.APPLICATIONS,
        _w(
            N_("You allowed an application to use your account"),
            N_("{who} allowed an application to use their account"),
        ),
    ),
    EventTag.CONSENT_REVOKED: Entry(
        N_("Consent withdrawn"),
        ActionGroup.APPLICATIONS,
        _w(
            N_("You removed an application's access to your account"),
            N_("{who} removed an application's access to their account"),
        ),
    ),
    EventTag.CLIENT_CREATED: Entry(
        N_("Application registered"),
        ActionGroup.APPLICATIONS,
        _w(N_("An application was registered"), N_("An application was registered")),
    ),
    EventTag.CLIENT_DELETED: Entry(
        N_("Application deleted"),
        ActionGroup.APPLICATIONS,
        _w(N_("An application was deleted"), N_("An application was deleted")),
    ),
    EventTag.CLIENT_SECRET_ROTATED: Entry(
        N_("Application secret replaced"),
        ActionGroup.APPLICATIONS,
        _w(
            N_("An application's client secret was replaced"),
            N_("An application's client secret was replaced"),
        ),
    ),
    EventTag.SIGNING_KEYS_ROTATED: Entry(
        N_("Signing keys rotated"),
        ActionGroup.APPLICATIONS,
        _w(
            N_("New keys now sign the tokens applications receive"),
            N_("New keys now sign the tokens applications receive"),
        ),
    ),
    EventTag.ORGANIZATION_CREATED: Entry(
        N_("Organization created"),
        ActionGroup.SETTINGS,
        _w(N_("An organization was created"), N_("An organization was created")),
    ),
    EventTag.SSO_CONNECTION_SAVED: Entry(
        N_("SSO connection saved"),
        ActionGroup.SETTINGS,
        _w(
            N_("You linked your organization to its Entra ID tenant (connection tested)"),
            N_("{who} linked the organization to its Entra ID tenant (connection tested)"),
        ),
    ),
    EventTag.SSO_CONNECTION_REMOVED: Entry(
        N_("SSO connection removed"),
        ActionGroup.SETTINGS,
        _w(
            N_("You removed your organization's Entra ID connection"),
            N_("{who} removed the organization's Entra ID connection"),
        ),
    ),
    EventTag.USER_CREATED: Entry(
        N_("Account created"),
        ActionGroup.SECURITY,
        _w(N_("Your account was created"), N_("{who}'s account was created")),
    ),
    EventTag.USER_DELETED: Entry(
        N_("Account deleted"),
        ActionGroup.SECURITY,
        _w(N_("The account was deleted"), N_("A member's account was deleted")),
        by_reason={
            "unverified": _w(
                N_("An account was deleted because its email address was never verified"),
                N_("An account was deleted because its email address was never verified"),
            ),
        },
    ),
    EventTag.PROFILE_UPDATED: Entry(
        N_("Name changed"),
        ActionGroup.SECURITY,
        _w(N_("You changed your name"), N_("{who} changed their name")),
    ),
    EventTag.PICTURE_CHANGED: Entry(
        N_("Profile picture"),
        ActionGroup.SECURITY,
        _w(N_("You changed your profile picture"), N_("{who} changed their profile picture")),
        by_reason={
            "removed": _w(
                N_("You removed your profile picture"), N_("{who} removed their profile picture")
            ),
        },
    ),
    EventTag.LANGUAGE_CHANGED: Entry(
        N_("Language"),
        ActionGroup.SETTINGS,
        _w(N_("You changed your language"), N_("{who} changed their language")),
    ),
    EventTag.EMAIL_CHANGE_REQUESTED: Entry(
        N_("Email change requested"),
        ActionGroup.SECURITY,
        _w(
            N_("You asked to change your email address"),
            N_("{who} asked to change their email address"),
        ),
    ),
    EventTag.EMAIL_CHANGED: Entry(
        N_("Email changed"),
        ActionGroup.SECURITY,
        _w(N_("Your email address was changed"), N_("{who}'s email address was changed")),
    ),
    EventTag.ORGANIZATION_RENAMED: Entry(
        N_("Organization renamed"),
        ActionGroup.SETTINGS,
        _w(N_("You renamed an organization"), N_("{who} renamed the organization")),
    ),
    EventTag.ORGANIZATION_DELETED: Entry(
        N_("Organization deleted"),
        ActionGroup.SETTINGS,
        _w(N_("You deleted an organization"), N_("{who} deleted the organization")),
    ),
    EventTag.ORGANIZATION_BRANDING: Entry(
        N_("Branding changed"),
        ActionGroup.SETTINGS,
        _w(
            N_("You changed an organization's logo"),
            N_("{who} changed the organization's logo"),
        ),
    ),
    EventTag.ORGANIZATION_SWITCHED: Entry(
        N_("Organization switched"),
        ActionGroup.SETTINGS,
        _w(
            N_("You switched to another organization"),
            N_("{who} switched to this organization"),
        ),
    ),
    EventTag.MEMBER_INVITED: Entry(
        N_("Member invited"),
        ActionGroup.SETTINGS,
        _w(
            N_("You invited someone to an organization"),
            N_("{who} invited someone to the organization"),
        ),
    ),
    EventTag.INVITATION_REVOKED: Entry(
        N_("Invitation withdrawn"),
        ActionGroup.SETTINGS,
        _w(N_("You withdrew an invitation"), N_("{who} withdrew an invitation")),
    ),
    EventTag.MEMBER_JOINED: Entry(
        N_("Joined an organization"),
        ActionGroup.SETTINGS,
        _w(N_("You joined an organization"), N_("{who} joined the organization")),
    ),
    EventTag.MEMBER_ROLE_CHANGED: Entry(
        N_("Role changed"),
        ActionGroup.SETTINGS,
        _w(
            N_("You changed a member's role in an organization"),
            N_("{who} changed a member's role"),
        ),
    ),
    EventTag.MEMBER_REMOVED: Entry(
        N_("Member removed"),
        ActionGroup.SETTINGS,
        _w(
            N_("You removed a member from an organization"),
            N_("{who} removed a member from the organization"),
        ),
    ),
    EventTag.MEMBER_LEFT: Entry(
        N_("Left an organization"),
        ActionGroup.SETTINGS,
        _w(N_("You left an organization"), N_("{who} left the organization")),
    ),
}

GENERIC = Entry(
    N_("Other"),
    ActionGroup.SETTINGS,  # not used for filtering: unknown tags belong to no group
    _w(N_("Something happened on your account"), N_("Something happened on {who}'s account")),
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
        return str(
            gettext("Your account") if perspective is Perspective.SELF else gettext("Account")
        )
    return name or product
