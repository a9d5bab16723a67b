"""Sending mail over SMTP (RFC 5321) and the outbox handler for rows of kind ``mail``.

``IDP_SMTP_URL`` is ``smtp://[user:pass@]host[:port]`` (port 25 by default; STARTTLS, RFC 3207,
whenever the server offers it) or ``smtps://[user:pass@]host[:port]`` (implicit TLS, RFC 8314,
port 465 by default). Credentials in the URL are percent-decoded and used to log in, only over
an encrypted connection unless the server is on a loopback address. Certificates are verified.
Every failure raises :class:`~idp.outbox.DeliveryError`, so the outbox worker retries with
backoff; errors name the server, never the credentials or the mail's content.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from idp.mail.compose import MailComposer
from idp.mail.messages import Message
from idp.net import is_loopback
from idp.observability.metrics import mail_outcome
from idp.outbox import ITEM_ID, DeliveryError
from idp.settings import Settings

SMTP_TIMEOUT_SECONDS = 10.0


class Transport(Protocol):
    def send(self, mail: EmailMessage, sender: str, recipient: str) -> None: ...


@dataclass(frozen=True)
class SmtpTransport:
    """One SMTP connection per mail: the worker sends little, and rarely."""

    host: str
    port: int
    implicit_tls: bool
    username: str = ""
    password: str = ""
    timeout: float = SMTP_TIMEOUT_SECONDS

    @classmethod
    def from_url(cls, url: str, timeout: float = SMTP_TIMEOUT_SECONDS) -> SmtpTransport:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("the SMTP URL must be smtp://[user:pass@]host:port or smtps://...")
        implicit_tls = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if implicit_tls else 25),
            implicit_tls=implicit_tls,
            username=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            timeout=timeout,
        )

    def __repr__(self) -> str:  # never show the password
        scheme = "smtps" if self.implicit_tls else "smtp"
        return f"SmtpTransport({scheme}://{self.host}:{self.port})"

    def _connect(self) -> smtplib.SMTP:
        # The host goes to the constructor: smtplib verifies the certificate against it.
        if self.implicit_tls:
            return smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
            )
        return smtplib.SMTP(self.host, self.port, timeout=self.timeout)

    def _secure(self, smtp: smtplib.SMTP) -> bool:
        """Greet; upgrade with STARTTLS when offered. True when the channel is encrypted."""
        smtp.ehlo()
        if self.implicit_tls:
            return True
        if smtp.has_extn("starttls"):
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
            return True
        return False

    def send(self, mail: EmailMessage, sender: str, recipient: str) -> None:
        try:
            with self._connect() as smtp:
                encrypted = self._secure(smtp)
                if self.username:
                    if not encrypted and not is_loopback(self.host):
                        raise DeliveryError(
                            f"SMTP {self.host}:{self.port}: the server offers no STARTTLS; "
                            "credentials are only sent encrypted"
                        )
                    smtp.login(self.username, self.password)
                smtp.send_message(mail, from_addr=sender, to_addrs=[recipient])
        except (OSError, smtplib.SMTPException) as exc:  # socket, TLS and SMTP errors
            raise DeliveryError(
                f"SMTP {self.host}:{self.port}: {type(exc).__name__}: {exc}"
            ) from None


class Postman:
    """Renders and sends mail; as an outbox handler it delivers rows of kind ``mail``."""

    def __init__(self, settings: Settings, transport: Transport) -> None:
        self.sender = settings.mail_from
        self.composer = MailComposer(settings)
        self.transport = transport

    @classmethod
    def from_settings(cls, settings: Settings) -> Postman:
        return cls(settings, SmtpTransport.from_url(settings.smtp_url))

    def deliver(self, to: str, message: Message, item_id: int) -> None:
        """Send ``message`` to ``to`` with the Message-ID of outbox row ``item_id``."""
        self.transport.send(self.composer.compose(to, message, item_id), self.sender, to)

    def __call__(self, payload: dict[str, Any]) -> None:
        message = Message(payload["template"], payload["context"], payload.get("language"))
        try:
            self.deliver(payload["to"], message, payload[ITEM_ID])
        except Exception:
            mail_outcome(message.template, "retry")  # the outbox retries, or gives up
            raise
        mail_outcome(message.template, "sent")
