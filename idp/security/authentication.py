"""Password sign-in: one generic failure for every reason, equal cost for unknown accounts."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from idp.accounts import AccountService
from idp.events import Actor, EventTag, record_event
from idp.security.devices import ClientInfo
from idp.security.passwords import PasswordService
from idp.security.sessions import SessionService, StartedSession

GENERIC_FAILURE = "Incorrect email or password."


class InvalidCredentials(Exception):
    """Sign-in refused. The reason is logged in the activity log, never shown."""


@dataclass(frozen=True)
class SignInResult:
    started: StartedSession
    user_id: str


class AuthenticationService:
    def __init__(
        self,
        db: Session,
        accounts: AccountService,
        passwords: PasswordService,
        sessions: SessionService,
    ) -> None:
        self.db = db
        self.accounts = accounts
        self.passwords = passwords
        self.sessions = sessions

    def sign_in(self, email: str, password: str, client: ClientInfo) -> SignInResult:
        actor = Actor(ip=client.ip, user_agent=client.user_agent)
        user = self.accounts.find_user_by_email(email) if len(email) <= 320 else None
        result = self.passwords.verify(user.password_hash if user else None, password)
        if user is None or not result.ok:
            record_event(
                self.db,
                EventTag.LOGIN_FAILURE,
                user_id=user.id if user else None,
                organization_id=self.accounts.primary_organization_id(user.id) if user else None,
                actor=actor,
                details={
                    "reason": "bad_password" if user else "unknown_account",
                    "user_agent": client.user_agent[:200],
                },
            )
            self.db.commit()
            raise InvalidCredentials
        if result.needs_rehash:
            user.password_hash = self.passwords.hash(password)
        started = self.sessions.start(user, client)
        record_event(
            self.db,
            EventTag.LOGIN_SUCCESS,
            user_id=user.id,
            organization_id=self.accounts.primary_organization_id(user.id),
            actor=actor,
            device_id=started.session.device_id,
            session_id=started.session.id,
            details={"method": "password", "rehashed": result.needs_rehash},
        )
        self.db.commit()
        self.sessions.cache(started.token, started.session)
        return SignInResult(started=started, user_id=user.id)

    def sign_out(self, session_id: str, user_id: str, client: ClientInfo) -> None:
        if self.sessions.end(session_id, "logout"):
            record_event(
                self.db,
                EventTag.LOGOUT,
                user_id=user_id,
                organization_id=self.accounts.primary_organization_id(user_id),
                actor=Actor(ip=client.ip, user_agent=client.user_agent),
                session_id=session_id,
            )
            self.db.commit()
