"""A real SMTP server for tests: aiosmtpd's Controller on a free loopback port.

:class:`MailServer` keeps every message it accepted (parsed, with its envelope); ``stop()`` and
``start()`` simulate an outage, the second start listening on the same port again, so a worker
configured with ``url`` reaches it. Use :func:`running_mail_server` from a fixture.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.services import free_port


@dataclass(frozen=True)
class Received:
    """One accepted mail: the SMTP envelope and the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class MailServer:
    port: int
    host: str = "127.0.0.1"
    # When set, the server requires AUTH (over plain SMTP: it is a loopback test server).
    credentials: tuple[str, str] | None = None
    logins: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    _controller: Controller | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stall_armed: bool = False
    _stalled: threading.Event = field(default_factory=threading.Event)
    _released: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        if self.credentials is None:
            return f"smtp://{self.host}:{self.port}"
        user, password = (quote(part, safe="") for part in self.credentials)
        return f"smtp://{user}:{password}@{self.host}:{self.port}"

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self.credentials is None:
            return AuthResult(success=False, handled=False)
        given = (auth_data.login.decode(), auth_data.password.decode())
        if given != self.credentials:
            return AuthResult(success=False, handled=False)
        self.logins.append(given[0])
        return AuthResult(success=True)

    @property
    def messages(self) -> list[EmailMessage]:
        with self._lock:
            return [r.message for r in self.received]

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [r.message for r in self.received if address in r.rcpt_tos]

    def stall_next_data(self) -> None:
        """Hold the next message at the end of DATA, before accepting it, until
        :meth:`release`; it is then refused (451), as when the sender died before the
        server took responsibility for it."""
        self._stall_armed = True
        self._stalled.clear()
        self._released.clear()

    def wait_for_stalled(self, timeout: float) -> bool:
        return self._stalled.wait(timeout)

    def release(self) -> None:
        self._released.set()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self._stall_armed:
            self._stall_armed = False
            self._stalled.set()
            while not self._released.is_set():
                await asyncio.sleep(0.05)
            return "451 Requested action aborted: the sender went away"
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def start(self) -> None:
        assert self._controller is None, "already running"
        auth: dict[str, Any] = {}
        if self.credentials is not None:
            auth = {
                "authenticator": self._authenticate,
                "auth_required": True,
                "auth_require_tls": False,
            }
        controller = Controller(self, hostname=self.host, port=self.port, **auth)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@contextmanager
def running_mail_server(credentials: tuple[str, str] | None = None) -> Iterator[MailServer]:
    server = MailServer(port=free_port(), credentials=credentials)
    server.start()
    try:
        yield server
    finally:
        server.stop()
