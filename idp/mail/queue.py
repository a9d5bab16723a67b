"""Queueing mail: one outbox row of kind ``mail`` in the caller's transaction.

The row holds the recipient, the template name, the JSON-safe context and the language; the
worker renders and sends it after the caller committed (:mod:`idp.mail.delivery`). Without
``IDP_SMTP_URL`` no worker sends mail: rows stay queued, never dropped, and each queued mail
is logged here (recipient and template only: contexts may hold links that must not be logged).
"""

from __future__ import annotations

import json
import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.i18n import DEFAULT, supported
from idp.mail.compose import template_exists
from idp.mail.messages import Message
from idp.models import OutboxItem, User
from idp.observability.metrics import mail_outcome
from idp.outbox import enqueue

log = logging.getLogger("idp.mail")

MAIL = "mail"


def recipient_language(db: Session, to: str) -> str:
    """The language of the account with address ``to``, English for anyone else."""
    locale = db.scalar(select(User.locale).where(User.email_normalized == to.strip().lower()))
    return supported(locale) or DEFAULT


def queue_mail(db: Session, to: str, message: Message) -> OutboxItem:
    """Add ``message`` for ``to`` to ``db``'s transaction; it is sent once the caller commits.

    Raises ValueError for an unusable address, an unknown template or a context that is not
    JSON-safe, so a mistake fails where it was made rather than in the worker.
    """
    if "@" not in to or any(c in to for c in "\r\n,;<>") or len(to) > 320:
        raise ValueError("not a single email address")
    if not template_exists(message.template):
        raise ValueError(f"no mail template {message.template!r}")
    try:  # a copy, and proof that the outbox can store it
        context = json.loads(json.dumps(message.context))
    except (TypeError, ValueError):
        raise ValueError(f"the context of mail {message.template!r} is not JSON-safe") from None
    language = message.language or recipient_language(db, to)
    item = enqueue(
        db,
        MAIL,
        {"to": to, "template": message.template, "context": context, "language": language},
    )
    log.info("mail %s to %s queued", message.template, to)
    mail_outcome(message.template, "queued")
    return item
