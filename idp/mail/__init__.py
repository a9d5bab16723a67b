"""Mail: security messages, queued through the transactional outbox, sent over SMTP.

- :mod:`idp.mail.messages`: one function per mail, returning a :class:`Message` (template name
  and JSON-safe context);
- :mod:`idp.mail.queue`: :func:`queue_mail` adds an outbox row in the caller's transaction;
- :mod:`idp.mail.compose`: renders ``templates/email/<name>/`` into a multipart message with
  a Message-ID stable across retries;
- :mod:`idp.mail.delivery`: SMTP transport and the outbox handler that sends queued mail.
"""

from idp.mail.messages import Message
from idp.mail.queue import MAIL, queue_mail

__all__ = ["MAIL", "Message", "queue_mail"]
