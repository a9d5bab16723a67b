"""Typed SQLAlchemy models, grouped by concern."""

from idp.models.accounts import Membership, Organization, Role, User
from idp.models.base import Base, utcnow
from idp.models.events import Event
from idp.models.sessions import Device, UserSession

__all__ = [
    "Base",
    "Device",
    "Event",
    "Membership",
    "Organization",
    "Role",
    "User",
    "UserSession",
    "utcnow",
]
