"""A one-time code mailed to the address an Entra ID token claims (issue 6, rule 7): the proof
that the person signing in controls that mailbox, when the directory did not vouch for it
(no ``xms_edov``) or when a local account already has that address.

The code has six digits, lives ten minutes, is stored only as a digest bound to the pending
identity it confirms, allows five guesses (then the pending identity is dropped and sign-in
starts again) and three mails per pending identity. Comparison is constant-time; the
successful check deletes the code, so it works once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from enum import Enum

from sqlalchemy.orm import Session

from idp.mail import messages
from idp.mail.queue import queue_mail
from idp.store import Store

CODE_SECONDS = 600
MAX_GUESSES = 5
MAX_SENDS = 3


class CodeCheck(Enum):
    OK = "ok"
    WRONG = "wrong"
    EXHAUSTED = "exhausted"  # too many guesses, or no code was sent / it expired


class EmailCodeConfirmation:
    def __init__(self, db: Session, store: Store) -> None:
        self.db = db
        self.store = store

    def _digest(self, token_digest: str, code: str) -> str:
        return hashlib.sha256(f"{token_digest}:{code}".encode()).hexdigest()

    def send(self, token_digest: str, email: str, organization: str) -> bool:
        """Mail a new code to ``email`` (queued in the outbox and committed); False when this
        pending identity already had its share of mails."""
        client = self.store.client
        sends_key = self.store.sso_code_key(token_digest, "sends")
        sends = int(client.incr(sends_key))
        client.expire(sends_key, CODE_SECONDS)
        if sends > MAX_SENDS:
            return False
        code = f"{secrets.randbelow(10**6):06d}"
        client.set(
            self.store.sso_code_key(token_digest, "code"),
            self._digest(token_digest, code),
            ex=CODE_SECONDS,
        )
        client.delete(self.store.sso_code_key(token_digest, "attempts"))
        queue_mail(
            self.db,
            email,
            messages.sso_confirmation_code(email, code, organization, CODE_SECONDS // 60),
        )
        self.db.commit()
        return True

    def check(self, token_digest: str, code: str) -> CodeCheck:
        client = self.store.client
        attempts_key = self.store.sso_code_key(token_digest, "attempts")
        attempts = int(client.incr(attempts_key))
        client.expire(attempts_key, CODE_SECONDS)
        code_key = self.store.sso_code_key(token_digest, "code")
        stored = client.get(code_key)
        if stored is None or attempts > MAX_GUESSES:
            client.delete(code_key)
            return CodeCheck.EXHAUSTED
        expected = stored.decode() if isinstance(stored, bytes) else str(stored)
        given = "".join(code.split())[:12]
        if not hmac.compare_digest(expected, self._digest(token_digest, given)):
            return CodeCheck.EXHAUSTED if attempts >= MAX_GUESSES else CodeCheck.WRONG
        # single use: only the request that deletes the code succeeds
        return CodeCheck.OK if client.delete(code_key) else CodeCheck.EXHAUSTED

    def forget(self, token_digest: str) -> None:
        self.store.client.delete(
            *(self.store.sso_code_key(token_digest, p) for p in ("code", "attempts", "sends"))
        )
