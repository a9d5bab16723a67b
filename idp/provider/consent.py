"""Remembered consent per user, client and scopes (OIDC Core §3.1.2.4); revocable."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from idp.events import Actor, EventTag, record_event
from idp.models import utcnow
from idp.models.clients import Client, Consent
from idp.models.tokens import TokenFamily


class ConsentService:
    def __init__(self, db: Session) -> None:
        self.db = db

    def _row(self, user_id: str, client_id: str, *, lock: bool = False) -> Consent | None:
        query = select(Consent).where(Consent.user_id == user_id, Consent.client_id == client_id)
        if lock:
            query = query.with_for_update(read=True).execution_options(populate_existing=True)
        return self.db.scalar(query)

    def covers(self, user_id: str, client_id: str, scope: str, *, lock: bool = False) -> bool:
        """Whether the user consented to every scope of ``scope`` for the client. ``lock``: a
        share lock on the consent until the caller commits, so that a withdrawal waits."""
        row = self._row(user_id, client_id, lock=lock)
        return row is not None and set(scope.split()) <= set(row.scopes.split())

    def grant(self, user_id: str, client_id: str, scope: str, actor: Actor) -> None:
        row = self._row(user_id, client_id)
        if row is None:
            row = Consent(user_id=user_id, client_id=client_id, scopes="")
            self.db.add(row)
        row.scopes = " ".join(sorted(set(row.scopes.split()) | set(scope.split())))
        row.granted_at = utcnow()
        record_event(
            self.db,
            EventTag.CONSENT_GRANTED,
            user_id=user_id,
            product=client_id,
            actor=actor,
            details={"scope": row.scopes},
        )
        self.db.commit()

    def list_for_user(self, user_id: str) -> list[tuple[Consent, str]]:
        """The user's consents with each client's name, newest first."""
        rows = self.db.execute(
            select(Consent, Client.name)
            .join(Client, Client.client_id == Consent.client_id)
            .where(Consent.user_id == user_id)
            .order_by(Consent.granted_at.desc())
        ).all()
        return [(consent, name) for consent, name in rows]

    def revoke(self, user_id: str, client_id: str, actor: Actor) -> bool:
        """Forget the consent and revoke the client's tokens for this user."""
        row = self._row(user_id, client_id)
        if row is None:
            return False
        self.db.delete(row)
        self.db.execute(
            update(TokenFamily)
            .where(
                TokenFamily.user_id == user_id,
                TokenFamily.client_id == client_id,
                TokenFamily.revoked_at.is_(None),
            )
            .values(revoked_at=utcnow(), revoked_reason="consent_revoked")
        )
        record_event(
            self.db, EventTag.CONSENT_REVOKED, user_id=user_id, product=client_id, actor=actor
        )
        self.db.commit()
        return True
