"""Self-service unlock requests, handled by the worker (OWASP Forgot Password Cheat Sheet:
"ensure that the time taken for the user response message is uniform").

The form at ``/unlock`` only queues the address (one outbox row, whatever the address), so its
answer takes the same time for a locked account, an unlocked one and an unknown address. The
worker then issues a link bound to the current lock, and queues its mail, for a locked account
only.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from idp.accounts import AccountService
from idp.outbox import enqueue, handled_once
from idp.security.lockout import LockoutService
from idp.security.notifications import AccountNotifier
from idp.security.passwords import PasswordService
from idp.settings import Settings
from idp.store import Store

UNLOCK_REQUEST = "unlock_request"  # the outbox kind of a request


def queue_unlock_request(db: Session, email: str) -> None:
    """Add the request to ``db``'s transaction (the caller commits)."""
    enqueue(db, UNLOCK_REQUEST, {"email": email})


class UnlockLinkIssuer:
    """Outbox handler of ``unlock_request``: a link and its mail for a locked account with the
    address; nothing for any other address."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        settings: Settings,
        store: Store,
        passwords: PasswordService,
    ) -> None:
        self.session_factory = session_factory
        self.settings = settings
        self.store = store
        self.passwords = passwords

    def __call__(self, payload: dict[str, Any]) -> None:
        email = str(payload.get("email", ""))
        with self.session_factory() as db:
            if not handled_once(db, payload):
                return
            user = AccountService(db, self.passwords).find_user_by_email(email)
            if user is None or user.locked_at is None:
                return
            token = LockoutService(db, self.store, self.settings).issue_unlock_token(user)
            AccountNotifier(self.settings.issuer).account_locked(db, user, token)
            db.commit()
