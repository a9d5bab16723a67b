"""Typed SQLAlchemy models, grouped by concern."""

from idp.models.accounts import Membership, Organization, Role, User
from idp.models.base import Base, utcnow
from idp.models.clients import Client, Consent
from idp.models.credentials import OneTimeToken, RecoveryCode
from idp.models.events import Event
from idp.models.federation import FederatedIdentity, SsoConnection, SsoDomain
from idp.models.keys import SigningKey
from idp.models.organizations import (
    EmailChange,
    ImageKind,
    Invitation,
    RemovedMember,
    StoredImage,
)
from idp.models.outbox import OutboxItem
from idp.models.sessions import Device, UserSession
from idp.models.tokens import AccessToken, RefreshToken, TokenFamily

__all__ = [
    "AccessToken",
    "Base",
    "Client",
    "Consent",
    "Device",
    "EmailChange",
    "Event",
    "FederatedIdentity",
    "ImageKind",
    "Invitation",
    "Membership",
    "OneTimeToken",
    "Organization",
    "OutboxItem",
    "RecoveryCode",
    "RefreshToken",
    "RemovedMember",
    "Role",
    "SigningKey",
    "SsoConnection",
    "SsoDomain",
    "StoredImage",
    "TokenFamily",
    "User",
    "UserSession",
    "utcnow",
]
