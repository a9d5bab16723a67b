"""Account access: a user's live sessions grouped by device, and ending them.

OWASP ASVS 4.0 V3.3.4: users can view their active sessions and devices and log out of any or
all of them. What is listed is exactly what :meth:`SessionService.resolve` accepts now (not
ended, within the absolute lifetime, not idle), with the latest activity from the store.
Ending goes through :meth:`SessionService.end`, so on every process the cookie stops working
at its next request, and the session's tokens are revoked and its relying services told
(OpenID Connect Back-Channel Logout 1.0) by its hook.
Each ending is an ``account:session:end`` event in the same transaction.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.accounts import AccountService
from idp.events import Actor, EventTag, record_event
from idp.i18n import device_label
from idp.models import Client, Device, TokenFamily, UserSession
from idp.security.sessions import LiveSession, SessionService

ENDED_BY_USER = "ended_by_user"


class SessionNotFound(LookupError):
    """The user has no session with this id (unknown, or someone else's): answer 404."""


@dataclass(frozen=True)
class SessionEntry:
    """One live session as the account-access page shows it."""

    session_id: str
    ip: str
    started_at: datetime
    last_activity: datetime
    applications: tuple[str, ...]  # names of the clients it signed in to, sorted
    two_step: bool  # signed in with a second factor
    current: bool  # the session making this request


@dataclass(frozen=True)
class DeviceEntry:
    """A device (one browser, by its device cookie) with its live sessions."""

    device_id: str
    label: str  # "Firefox 128 on Windows 10"
    first_seen_at: datetime
    last_seen_at: datetime
    first_ip: str
    current: bool  # this browser
    sessions: tuple[SessionEntry, ...]

    def session(self, session_id: str) -> SessionEntry | None:
        return next((s for s in self.sessions if s.session_id == session_id), None)


class SessionListService:
    """Lists and ends the sessions of one user, on behalf of that user."""

    def __init__(
        self,
        db: Session,
        sessions: SessionService,
        accounts: AccountService,
        *,
        actor: Actor | None = None,
    ) -> None:
        self.db = db
        self.sessions = sessions
        self.accounts = accounts
        self.actor = actor

    # Reading -------------------------------------------------------------------------------
    def devices(self, user_id: str, current_session_id: str | None) -> list[DeviceEntry]:
        """The user's live sessions grouped by device: this browser first, then the most
        recently active. Devices without a live session are not listed (their history stays
        in the database for new-device detection)."""
        live = self.sessions.live_sessions(user_id)
        if not live:
            return []
        applications = self._applications([s.row.id for s in live])
        by_device: dict[str, list[SessionEntry]] = defaultdict(list)
        for s in live:
            by_device[s.row.device_id].append(
                _entry(s, applications.get(s.row.id, ()), s.row.id == current_session_id)
            )
        rows = self.db.scalars(select(Device).where(Device.id.in_(by_device)))
        devices = [_device(row, by_device[row.id]) for row in rows]
        devices.sort(key=lambda d: (not d.current, -d.last_seen_at.timestamp()))
        return devices

    def find(self, user_id: str, session_id: str, current_session_id: str | None) -> DeviceEntry:
        """The device of one live session of the user (for the confirmation page)."""
        for device in self.devices(user_id, current_session_id):
            if device.session(session_id) is not None:
                return device
        raise SessionNotFound(session_id)

    def _applications(self, session_ids: list[str]) -> dict[str, tuple[str, ...]]:
        """session id -> names of the clients it signed in to (any token family it started,
        revoked or not: the page tells where the session was used)."""
        pairs = self.db.execute(
            select(TokenFamily.session_id, Client.name)
            .join(Client, Client.client_id == TokenFamily.client_id)
            .where(TokenFamily.session_id.in_(session_ids))
            .distinct()
        )
        names: dict[str, set[str]] = defaultdict(set)
        for session_id, name in pairs:
            if session_id is not None:
                names[session_id].add(name)
        return {sid: tuple(sorted(n, key=str.casefold)) for sid, n in names.items()}

    # Ending --------------------------------------------------------------------------------
    def end(
        self,
        user_id: str,
        session_id: str,
        *,
        current_session_id: str | None = None,
        reason: str = ENDED_BY_USER,
    ) -> bool:
        """End one of the user's sessions; True when it was live. Raises
        :class:`SessionNotFound` for a session id that is not the user's. Commits."""
        row = self.db.get(UserSession, session_id) if len(session_id) <= 36 else None
        if row is None or row.user_id != user_id:
            raise SessionNotFound(session_id)
        ended = self._end(row, reason, by_session=current_session_id)
        self.db.commit()
        return ended

    def end_others(
        self,
        user_id: str,
        current_session_id: str,
        *,
        reason: str = ENDED_BY_USER,
        commit: bool = True,
    ) -> int:
        """End every session of the user but ``current_session_id``; how many were live.

        Sessions that idled out without anyone noticing yet are ended too, so their tokens
        are revoked as well, and so are the tokens that sessions which timed out earlier
        left. With ``commit`` false the caller commits (one transaction with what caused it,
        such as a password change)."""
        rows = self.db.scalars(
            select(UserSession)
            .where(
                UserSession.user_id == user_id,
                UserSession.ended_at.is_(None),
                UserSession.id != current_session_id,
            )
            .order_by(UserSession.created_at, UserSession.id)
        )
        count = sum(self._end(row, reason, by_session=current_session_id) for row in list(rows))
        self.sessions.end_tokens_of_others(user_id, reason, current_session_id or None)
        if commit:
            self.db.commit()
        return count

    def _end(self, row: UserSession, reason: str, *, by_session: str | None) -> bool:
        if not self.sessions.end(row.id, reason, commit=False):
            return False
        device = self.db.get(Device, row.device_id)
        record_event(
            self.db,
            EventTag.SESSION_ENDED,
            user_id=row.user_id,
            organization_id=self.accounts.primary_organization_id(row.user_id),
            actor=self.actor,
            device_id=row.device_id,
            session_id=row.id,
            details={
                "reason": reason,
                "device": device.record_label if device is not None else "",
                "ip": row.ip,
                **({"by_session": by_session} if by_session else {}),
            },
        )
        return True


def _entry(live: LiveSession, applications: tuple[str, ...], current: bool) -> SessionEntry:
    row = live.row
    return SessionEntry(
        session_id=row.id,
        ip=row.ip,
        started_at=row.created_at,
        last_activity=live.last_activity,
        applications=applications,
        two_step="mfa" in row.amr.split(),
        current=current,
    )


def _device(row: Device, sessions: list[SessionEntry]) -> DeviceEntry:
    sessions.sort(key=lambda s: (not s.current, -s.last_activity.timestamp()))
    return DeviceEntry(
        device_id=row.id,
        label=device_label(row.browser, row.os),
        first_seen_at=row.first_seen_at,
        # The row's copy is written at most once a minute; the sessions know better.
        last_seen_at=max([row.last_seen_at, *(s.last_activity for s in sessions)]),
        first_ip=row.first_ip,
        current=any(s.current for s in sessions),
        sessions=tuple(sessions),
    )
