"""A user's own profile: first and last name, and the profile picture.

Both flow into the ``name``, ``given_name``, ``family_name`` and ``picture`` claims (see
:mod:`idp.provider.claims`). Pictures are checked and re-encoded by :mod:`idp.media.images`;
a new picture gets a new id, so its URL changes and caches never show the old one.
"""

from __future__ import annotations

from typing import Literal

from flask_babel import gettext
from sqlalchemy.orm import Session

from idp.events import Actor, EventTag, record_event
from idp.i18n import LANGUAGES
from idp.media.store import ImageStore
from idp.models import ImageKind, User
from idp.names import PERSON_NAME_MAX, UnusableName, clean_person_name

MAX_NAME = PERSON_NAME_MAX


class ProfileError(ValueError):
    """A refused change; the message is for the account's owner."""


def _clean(which: Literal["first", "last"], value: str) -> str:
    try:
        return clean_person_name(which, value)
    except UnusableName as exc:
        raise ProfileError(exc.message) from None


class ProfileService:
    def __init__(self, db: Session, images: ImageStore, *, actor: Actor | None = None) -> None:
        self.db = db
        self.images = images
        self.actor = actor

    def rename(self, user: User, first_name: str, last_name: str) -> None:
        """Set the user's name; raises :class:`ProfileError`. Commits."""
        first, last = _clean("first", first_name), _clean("last", last_name)
        if not first and not last:
            raise ProfileError(gettext("Enter a first or a last name."))
        changed = [
            field
            for field, old, new in (
                ("first_name", user.first_name, first),
                ("last_name", user.last_name, last),
            )
            if old != new
        ]
        if not changed:
            return
        user.first_name, user.last_name = first, last
        self._event(user, EventTag.PROFILE_UPDATED, {"changed": changed})
        self.db.commit()

    def set_picture(self, user: User, data: bytes) -> str:
        """Replace the profile picture; returns the new image id. Raises
        :class:`~idp.media.images.ImageRefused` with the reason. Commits."""
        stored = self.images.save(data, ImageKind.AVATAR)
        self._lock(user)
        self.images.discard(user.avatar_id)
        user.avatar_id = stored.id
        self._event(user, EventTag.PICTURE_CHANGED, {"reason": "set"})
        self.db.commit()
        return stored.id

    def remove_picture(self, user: User) -> None:
        """Remove the profile picture (nothing to do without one). Commits."""
        self._lock(user)
        if user.avatar_id is None:
            self.db.commit()  # ends the lock
            return
        self.images.discard(user.avatar_id)
        user.avatar_id = None
        self._event(user, EventTag.PICTURE_CHANGED, {"reason": "removed"})
        self.db.commit()

    def set_language(self, user: User, locale: str) -> bool:
        """The account's language: one of :data:`~idp.i18n.LANGUAGES`, or ``""`` to follow
        the browser's. Recorded with the new value (``details["locale"]``) in the same
        transaction; True when it changed. Raises :class:`ProfileError` for another value.
        Commits."""
        if locale and locale not in LANGUAGES:
            raise ProfileError(gettext("Choose one of the languages offered."))
        if (user.locale or "") == locale:
            return False
        user.locale = locale or None
        self._event(user, EventTag.LANGUAGE_CHANGED, {"locale": locale})
        self.db.commit()
        return True

    def _lock(self, user: User) -> None:
        """Lock the user's row and read ``avatar_id`` again under the lock (SELECT ... FOR
        UPDATE on PostgreSQL; SQLite has one writer at a time), so that of two changes at once
        the second sees the first one's picture and discards it: none is left behind."""
        self.db.get(User, user.id, with_for_update=True, populate_existing=True)

    def _event(self, user: User, tag: EventTag, details: dict[str, object]) -> None:
        record_event(self.db, tag, user_id=user.id, actor=self.actor, details=details)
