"""Rendering a queued mail into an RFC 5322 message (``email.message.EmailMessage``).

Templates live in ``templates/email/<name>/``: ``subject.txt`` (one line), ``body.txt`` and
``body.html`` (autoescaped), sent together as ``multipart/alternative`` (RFC 2046 §5.1.4, plain
text first). Rendering is strict: a variable missing from the context is an error, so a broken
mail is retried and finally reported by the worker instead of being sent half empty.

The Message-ID (RFC 5322 §3.6.4) is derived from the outbox row, ``<outbox-<id>.<install>@<issuer
host>>``, where ``<install>`` is an HMAC of the secret key: every attempt to deliver one row
carries the same id, so a mail delivered twice after a crash is recognisably the same mail, and
two installations never produce the same ids.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit

from babel.support import NullTranslations, Translations
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from idp.i18n import DEFAULT, N_, ROLE_NAMES, TRANSLATIONS, mail_time, name_device, supported
from idp.mail.messages import Message
from idp.settings import PROJECT_ROOT, Settings

EMAIL_TEMPLATES = PROJECT_ROOT / "templates" / "email"
PARTS = ("subject.txt", "body.txt", "body.html")


@functools.cache
def template_exists(name: str) -> bool:
    """Whether ``templates/email/<name>/`` has every part of a mail (templates ship with the
    code, so the answer is kept for the life of the process)."""
    if not name or "/" in name or "\\" in name or name.startswith((".", "_")):
        return False
    return all((EMAIL_TEMPLATES / name / part).is_file() for part in PARTS)


def message_id(item_id: int, settings: Settings) -> str:
    """The stable Message-ID of the mail of outbox row ``item_id``."""
    install = hmac.new(
        settings.secret_key.encode(), b"idp mail message-id", hashlib.sha256
    ).hexdigest()[:16]
    host = urlsplit(settings.issuer).hostname or "localhost"
    if ":" in host:  # an IPv6 literal is written in brackets (RFC 5322 no-fold-literal)
        host = f"[{host}]"
    return f"<outbox-{item_id}.{install}@{host}>"


def _role_name(translations: NullTranslations, role: str) -> str:
    """An organization role in the mail's language."""
    return translations.gettext(ROLE_NAMES[role]) if role in ROLE_NAMES else role


# What mails name in the recipient's language from the plain values their context carries
# (devices: idp.i18n.name_device). Python, not template macros: a macro's output counts as
# safe HTML where an HTML part calls it, so a browser name taken from a User-Agent header
# (anyone's text) would go into the HTML unescaped. These return plain text, which the HTML
# parts escape like any value.
def _ip_address(translations: NullTranslations, ip: str) -> str:
    """The address, or "unknown" (also what mails queued by older versions carry)."""
    return ip if ip and ip != "unknown" else translations.gettext(N_("unknown"))


def _ip_list(translations: NullTranslations, ips: list[str]) -> str:
    return ", ".join(_ip_address(translations, ip) for ip in ips)


class MailComposer:
    """Turns a :class:`Message` into a complete mail, From ``IDP_MAIL_FROM``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.envs: dict[str, Environment] = {}

    def env(self, language: str | None) -> Environment:
        """The template environment of ``language`` (English when unsupported)."""
        lang = supported(language) or DEFAULT
        if lang not in self.envs:
            env = Environment(
                loader=FileSystemLoader(str(EMAIL_TEMPLATES)),
                autoescape=select_autoescape(enabled_extensions=("html",), default=False),
                undefined=StrictUndefined,
                extensions=["jinja2.ext.i18n"],
            )
            translations = Translations.load(str(TRANSLATIONS), [lang])
            env.install_gettext_translations(  # type: ignore[attr-defined]
                translations, newstyle=True
            )
            env.filters["localtime"] = functools.partial(mail_time, language=lang)
            env.globals["language"] = lang
            env.globals["role_name"] = functools.partial(_role_name, translations)
            env.globals["device_name"] = functools.partial(
                name_device, translate=translations.gettext
            )
            env.globals["ip_address"] = functools.partial(_ip_address, translations)
            env.globals["ip_list"] = functools.partial(_ip_list, translations)
            self.envs[lang] = env
        return self.envs[lang]

    def render(self, message: Message) -> tuple[str, str, str]:
        """(subject, text, html) of ``message``."""
        if not template_exists(message.template):
            raise ValueError(f"no mail template {message.template!r}")
        context: dict[str, Any] = {
            **message.context,
            "issuer": self.settings.issuer,
            "account_url": f"{self.settings.issuer}/account",
        }
        env = self.env(message.language)
        subject, text, html = (
            env.get_template(f"{message.template}/{part}").render(context) for part in PARTS
        )
        return " ".join(subject.split()), text, html

    def compose(self, to: str, message: Message, item_id: int) -> EmailMessage:
        subject, text, html = self.render(message)
        mail = EmailMessage()
        mail["From"] = self.settings.mail_from
        mail["To"] = to
        mail["Subject"] = subject
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        mail["Message-ID"] = message_id(item_id, self.settings)
        mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
        mail.set_content(text)
        mail.add_alternative(html, subtype="html")
        return mail
