"""Mail: queued in the caller's transaction, rendered and sent over real SMTP by the worker."""

from __future__ import annotations

import datetime as dt
import logging
import re
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from idp import create_app
from idp.mail import Message, messages, queue_mail
from idp.mail.compose import message_id
from idp.mail.delivery import SmtpTransport
from idp.models import OutboxItem, User, utcnow
from idp.outbox import DeliveryError
from idp.runtime import Runtime
from idp.worker import build_worker
from tests.conftest import empty_tables, make_settings
from tests.helpers import PASSWORD, create_user, sign_in
from tests.mailserver import MailServer, running_mail_server

UNLOCK_URL = "http://127.0.0.1:8000/unlock/secret-unlock-token-0123456789"


@pytest.fixture
def smtp() -> Iterator[MailServer]:
    with running_mail_server() as server:
        yield server


def _runtime(tmp_path: Path, database_url: str, redis_url: str, **settings: str) -> Runtime:
    app = create_app(
        make_settings(tmp_path, database_url=database_url, redis_url=redis_url, **settings)
    )
    app.config["TESTING"] = True
    rt: Runtime = app.extensions["idp"]
    rt.app = app  # type: ignore[attr-defined]
    return rt


@pytest.fixture
def mail_rt(
    tmp_path: Path, database_url: str, redis_url: str, smtp: MailServer
) -> Iterator[Runtime]:
    rt = _runtime(tmp_path, database_url, redis_url, smtp_url=smtp.url,
                  mail_from="Accounts <accounts@idp.example>")
    try:
        yield rt
    finally:
        empty_tables(rt)
        rt.store.delete_prefix()
        rt.close()


def _queue(rt: Runtime, *mails: Message, to: str = "alice@example.com") -> list[int]:
    with rt.session_factory() as db:
        items = [queue_mail(db, to, mail) for mail in mails]
        db.commit()
        return [item.id for item in items]


def _user(rt: Runtime) -> User:
    with rt.session_factory() as db:
        user = db.scalars(select(User)).one()
        db.expunge(user)
        return user


def _parts(mail: EmailMessage) -> tuple[str, str]:
    text = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def _outbox(rt: Runtime) -> list[OutboxItem]:
    with rt.session_factory() as db:
        return list(db.scalars(select(OutboxItem).order_by(OutboxItem.id)))


def test_a_queued_mail_arrives_with_text_and_html_parts(
    mail_rt: Runtime, smtp: MailServer
) -> None:
    create_user(mail_rt, first_name="<script>alert(1)</script>", last_name="Liddell")
    [item_id] = _queue(mail_rt, messages.account_locked(_user(mail_rt), UNLOCK_URL))
    assert smtp.messages == []  # nothing is sent on the caller's path

    assert build_worker(mail_rt).run_once() == 1

    [received] = smtp.received
    assert received.rcpt_tos == ["alice@example.com"]
    assert received.mail_from == "accounts@idp.example"
    mail = received.message
    assert mail["To"] == "alice@example.com"
    assert mail["From"] == "Accounts <accounts@idp.example>"
    assert mail["Subject"] == "Your account has been locked"
    assert mail.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in mail.iter_parts()] == ["text/plain", "text/html"]
    text, html = _parts(mail)
    assert UNLOCK_URL in text and f'href="{UNLOCK_URL}"' in html
    assert "http://127.0.0.1:8000/account" in text and "http://127.0.0.1:8000/account" in html
    assert "change your password" in text.lower()
    # The HTML part escapes what users typed; the text part is plain text.
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Hello <script>alert(1)</script>," in text
    settings = mail_rt.settings
    assert mail["Message-ID"] == message_id(item_id, settings)
    assert re.fullmatch(rf"<outbox-{item_id}\.[0-9a-f]{{16}}@127\.0\.0\.1>", mail["Message-ID"])
    assert build_worker(mail_rt).run_once() == 0  # sent once
    assert len(smtp.messages) == 1


def test_a_device_name_from_a_user_agent_cannot_put_a_link_into_an_alert(
    mail_rt: Runtime, smtp: MailServer
) -> None:
    """The browser's name comes from the User-Agent header, which anyone who signs in writes:
    the owner's genuine alert must not carry their link."""
    create_user(mail_rt)
    planted = '<a href="https://evil.example/secure">Review this sign-in</a>'
    _queue(mail_rt,
           messages.login_alert_success(_user(mail_rt), (planted, "Mac OS X"), "<b>1.2.3.4</b>",
                                        utcnow(), "Wiki", new_device=True),
           messages.login_alert_failures(_user(mail_rt), 2, utcnow(), utcnow(),
                                         ["<i>x</i>", ""]))
    assert build_worker(mail_rt).run_once() == 2
    for mail in smtp.messages:
        html = _parts(mail)[1]
        assert "<a href=\"https://evil.example" not in html
        assert "<b>1.2.3.4</b>" not in html and "<i>x</i>" not in html
    success_text, success_html = _parts(smtp.messages[0])
    assert f"{planted} on Mac OS X" in success_text  # plain text stays as typed
    assert "&lt;a href=&#34;https://evil.example/secure&#34;&gt;" in success_html
    assert "unknown" in _parts(smtp.messages[1])[0]


def test_every_security_mail_renders_and_links_to_the_account_page(
    mail_rt: Runtime, smtp: MailServer
) -> None:
    create_user(mail_rt)
    user = _user(mail_rt)
    now = utcnow()
    mails = [
        messages.login_alert_success(user, ("Firefox 128", "Linux"), "192.0.2.7", now, "Wiki",
                                     new_device=True),
        messages.login_alert_failures(user, 3, now, now, ["192.0.2.8", "198.51.100.1"]),
        messages.account_locked(user, UNLOCK_URL),
        messages.account_unlocked(user, "admin", "Acme"),
        messages.two_factor_disabled(user),
        messages.recovery_codes_regenerated(user),
        messages.password_changed(user),
    ]
    _queue(mail_rt, *mails)
    assert build_worker(mail_rt).run_once() == len(mails)

    received = smtp.messages
    assert len(received) == len(mails)
    assert len({m["Subject"] for m in received}) == len(mails)
    assert len({m["Message-ID"] for m in received}) == len(mails)
    for mail in received:
        text, html = _parts(mail)
        assert "Hello Alice," in text
        assert "http://127.0.0.1:8000/account" in text, mail["Subject"]
        assert 'href="http://127.0.0.1:8000/account"' in html, mail["Subject"]
        assert "password" in text.lower(), mail["Subject"]  # says how to change it
        assert PASSWORD not in text and PASSWORD not in html
        assert "{{" not in text and "{{" not in html
    by_subject = {m["Subject"]: _parts(m)[0] for m in received}
    success = by_subject["New device signed in to your account"]
    assert "Firefox 128 on Linux" in success and "192.0.2.7" in success and "Wiki" in success
    failures = by_subject["3 failed sign-in attempts on your account"]
    assert "3 times" in failures and "192.0.2.8, 198.51.100.1" in failures
    assert "an administrator of Acme" in by_subject["Your account has been unlocked"]


def test_mail_stays_queued_without_smtp_url_and_is_logged_without_links(
    tmp_path: Path, database_url: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    rt = _runtime(tmp_path, database_url, redis_url)  # IDP_SMTP_URL unset
    logger = logging.getLogger("idp")
    logger.addHandler(caplog.handler)
    try:
        create_user(rt)
        assert sign_in(rt.app.test_client()).status_code == 303  # type: ignore[attr-defined]
        _queue(rt, messages.account_locked(_user(rt), UNLOCK_URL))
        for _ in range(2):
            assert build_worker(rt).run_once() == 0
        items = _outbox(rt)
        assert [i.payload["template"] for i in items] == ["login_alert_success", "account_locked"]
        assert all(i.done_at is None and i.failed_at is None and i.attempts == 0 for i in items)
        lines = [r.getMessage() for r in caplog.records if r.name == "idp.mail"]
        assert lines == [
            "mail login_alert_success to alice@example.com queued",
            "mail account_locked to alice@example.com queued",
        ]
        assert "unlock" not in caplog.text.replace("account_locked", "")
        assert "IDP_SMTP_URL is unset" in caplog.text
    finally:
        logger.removeHandler(caplog.handler)
        empty_tables(rt)
        rt.store.delete_prefix()
        rt.close()


def test_a_failed_delivery_is_retried_later_as_the_same_mail(
    mail_rt: Runtime, smtp: MailServer
) -> None:
    create_user(mail_rt)
    [item_id] = _queue(mail_rt, messages.password_changed(_user(mail_rt)))
    smtp.stop()
    assert build_worker(mail_rt).run_once() == 0
    [item] = _outbox(mail_rt)
    assert item.attempts == 1 and item.done_at is None and item.failed_at is None
    assert item.last_error and "SMTP 127.0.0.1" in item.last_error
    assert item.next_attempt_at > utcnow()
    smtp.start()  # back on the same port
    assert build_worker(mail_rt).run_once() == 0  # not due yet: no hammering
    later = build_worker(mail_rt)
    later.clock = lambda: utcnow() + dt.timedelta(minutes=5)
    assert later.run_once() == 1
    [mail] = smtp.messages
    assert mail["Message-ID"] == message_id(item_id, mail_rt.settings)
    assert later.run_once() == 0
    assert len(smtp.messages) == 1


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtp_credentials_from_the_url_are_used(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with running_mail_server(credentials=("mailer", "p@ss:w/rd 1")) as server:
        rt = _runtime(tmp_path, database_url, redis_url, smtp_url=server.url)
        try:
            create_user(rt)
            _queue(rt, messages.password_changed(_user(rt)))
            assert build_worker(rt).run_once() == 1
            assert server.logins == ["mailer"]
            assert len(server.messages) == 1
        finally:
            empty_tables(rt)
            rt.store.delete_prefix()
            rt.close()


def test_queue_mail_refuses_mistakes_where_they_are_made(mail_rt: Runtime) -> None:
    with mail_rt.session_factory() as db:
        with pytest.raises(ValueError, match="no mail template"):
            queue_mail(db, "alice@example.com", Message("no_such_mail", {}))
        with pytest.raises(ValueError, match="no mail template"):
            queue_mail(db, "alice@example.com", Message("../account", {}))
        with pytest.raises(ValueError, match="single email address"):
            queue_mail(db, "alice@example.com\r\nBcc: eve@example.com",
                       Message("password_changed", {"name": "A", "email": "a@example.com"}))
        with pytest.raises(ValueError, match="JSON-safe"):
            queue_mail(db, "alice@example.com",
                       Message("password_changed", {"when": utcnow()}))  # type: ignore[dict-item]
        db.commit()
    assert _outbox(mail_rt) == []


def test_smtp_urls_are_parsed_and_never_show_the_password() -> None:
    plain = SmtpTransport.from_url("smtp://mail.example:2525")
    assert (plain.host, plain.port, plain.implicit_tls, plain.username) == (
        "mail.example", 2525, False, "")
    tls = SmtpTransport.from_url("smtps://user%40example:s%3Acret@mail.example")
    assert (tls.port, tls.implicit_tls, tls.username, tls.password) == (
        465, True, "user@example", "s:cret")
    assert SmtpTransport.from_url("smtp://mail.example").port == 25
    assert "s:cret" not in repr(tls) and "cret" not in str(tls)


def test_starttls_is_used_when_offered_and_the_certificate_is_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiosmtpd.controller import Controller

    from tests.services import free_port

    cert, key = _self_signed(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    received = MailServer(port=free_port())
    controller = Controller(received, hostname="127.0.0.1", port=received.port,
                            tls_context=server_tls, require_starttls=True)
    controller.start()
    try:
        mail = EmailMessage()
        mail["Subject"], mail["From"], mail["To"] = "hi", "idp@localhost", "bob@example.com"
        mail.set_content("hello")
        transport = SmtpTransport.from_url(f"smtp://127.0.0.1:{received.port}")
        # An untrusted certificate: nothing is sent (in particular not in the clear).
        with pytest.raises(DeliveryError, match=r"SSL|certificate"):
            transport.send(mail, "idp@localhost", "bob@example.com")
        assert received.messages == []
        # Trusted: the mail goes through the encrypted channel the server requires.
        trusting = ssl.create_default_context(cafile=str(cert))
        monkeypatch.setattr(ssl, "create_default_context", lambda: trusting)
        transport.send(mail, "idp@localhost", "bob@example.com")
        assert len(received.messages) == 1
    finally:
        controller.stop()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp.crt", directory / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
