"""Security event tags and :func:`record_event`, which appends one row to the activity log.

Tags are shaped ``area:subject:action`` (as in pypi/warehouse). The row is added to the caller's
database transaction, so an event exists exactly when the change it describes was committed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from idp.models import Event
from idp.observability.logs import request_id
from idp.observability.metrics import note_event

ACCOUNT_PRODUCT = "account"


@dataclass(frozen=True)
class Application:
    """What a sign-in continues to: a relying application (``product`` its client id, ``name``
    its registered name) or the account itself (both ``"account"``). Its sign-in event is
    that product's, and its login alert names it."""

    product: str = ACCOUNT_PRODUCT
    name: str = ACCOUNT_PRODUCT


ACCOUNT = Application()


class EventTag(enum.StrEnum):
    LOGIN_SUCCESS = "account:login:success"
    LOGIN_FAILURE = "account:login:failure"
    LOGIN_SSO = "account:login:sso"
    SSO_LINKED = "account:sso:link"
    LOGOUT = "account:logout"
    SESSION_ENDED = "account:session:end"
    PASSWORD_CHANGED = "account:password:change"
    PASSWORD_RESET_REQUESTED = "account:password:reset_request"
    PASSWORD_RESET = "account:password:reset"
    EMAIL_VERIFIED = "account:email:verify"
    SIGNUP_EXISTING_ADDRESS = "account:user:signup_existing"
    SECOND_FACTOR_FAILURE = "account:login:second_factor_failure"
    ACCOUNT_LOCKED = "account:lockout:lock"
    ACCOUNT_UNLOCKED = "account:lockout:unlock"
    LOCKOUT_THRESHOLD_CHANGED = "account:lockout:threshold"
    ALERTS_CHANGED = "account:alerts:update"
    TWO_FACTOR_ENABLED = "account:2fa:enable"
    TWO_FACTOR_DISABLED = "account:2fa:disable"
    RECOVERY_CODES_REGENERATED = "account:2fa:recovery_codes"
    RECOVERY_CODE_USED = "account:2fa:recovery_code_used"
    TOKEN_GRANTED = "oauth:token:grant"
    TOKEN_REVOKED = "oauth:token:revoke"
    CONSENT_GRANTED = "oauth:consent:grant"
    CONSENT_REVOKED = "oauth:consent:revoke"
    CLIENT_CREATED = "oauth:client:create"
    CLIENT_DELETED = "oauth:client:delete"
    CLIENT_SECRET_ROTATED = "oauth:client:rotate_secret"
    SIGNING_KEYS_ROTATED = "oauth:keys:rotate"
    ORGANIZATION_CREATED = "organization:create"
    SSO_CONNECTION_SAVED = "organization:sso:save"
    SSO_CONNECTION_REMOVED = "organization:sso:remove"
    USER_CREATED = "account:user:create"
    USER_DELETED = "account:user:delete"
    PROFILE_UPDATED = "account:profile:update"
    PICTURE_CHANGED = "account:profile:picture"
    LANGUAGE_CHANGED = "account:profile:language"
    EMAIL_CHANGE_REQUESTED = "account:email:change_request"
    EMAIL_CHANGED = "account:email:change"
    ORGANIZATION_RENAMED = "organization:rename"
    ORGANIZATION_DELETED = "organization:delete"
    ORGANIZATION_BRANDING = "organization:branding"
    ORGANIZATION_SWITCHED = "organization:switch"
    MEMBER_INVITED = "organization:member:invite"
    INVITATION_REVOKED = "organization:invitation:revoke"
    MEMBER_JOINED = "organization:member:join"
    MEMBER_ROLE_CHANGED = "organization:member:role"
    MEMBER_REMOVED = "organization:member:remove"
    MEMBER_LEFT = "organization:member:leave"


@dataclass(frozen=True)
class Actor:
    """Where a request came from: what the activity log records besides the event itself."""

    ip: str = ""
    user_agent: str = ""


# Who did it, in an event's details (``"by"``): an operator with the ``idp`` command.
OPERATOR = "operator"
COMMAND_ACTOR = Actor(user_agent="idp command")


def by_operator(details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The details of an event caused by the ``idp`` command: ``details`` with
    ``"by": "operator"`` (what the activity log shows as the actor when there is no user)."""
    return {**(details or {}), "by": OPERATOR}


def record_event(
    db: Session,
    tag: EventTag,
    *,
    user_id: str | None = None,
    organization_id: str | None = None,
    product: str = ACCOUNT_PRODUCT,
    actor: Actor | None = None,
    device_id: str | None = None,
    session_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> Event:
    """Add an activity-log row to ``db``'s transaction (the caller commits)."""
    details = details or {}
    event = Event(
        action=str(tag),
        user_id=user_id,
        organization_id=organization_id,
        product=product,
        ip=(actor.ip if actor else "")[:45],
        device_id=device_id,
        session_id=session_id,
        details=details,
        request_id=request_id.get(),
    )
    db.add(event)
    note_event(db, str(tag), details)
    return event


_INSERT_EVENT = insert(cast(Table, Event.__table__))


def event_values(
    tag: EventTag,
    *,
    user_id: str | None = None,
    product: str = ACCOUNT_PRODUCT,
    actor: Actor | None = None,
    session_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The columns of :func:`record_event`'s row, for a Core insert (``occurred_at`` and the id
    come from the table's own defaults)."""
    return {
        "action": str(tag),
        "user_id": user_id,
        "organization_id": None,
        "product": product,
        "ip": (actor.ip if actor else "")[:45],
        "device_id": None,
        "session_id": session_id,
        "details": details or {},
        "request_id": request_id.get(),
    }


def insert_event(db: Session, values: dict[str, Any]) -> None:
    """:func:`record_event`'s row (made by :func:`event_values`), inserted at once with Core
    on ``db``'s connection (its transaction: the caller commits, and the event is counted when
    that commits).

    Why: every token grant records one event; as an ORM object it cost a unit-of-work flush
    at commit, about a sixth of a client-credentials grant's CPU."""
    db.connection().execute(_INSERT_EVENT, values)
    note_event(db, values["action"], values["details"])
