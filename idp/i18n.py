"""Languages: English, French, German and Italian (Flask-Babel, catalogs in idp/translations).

The language of a page is, in this order:

1. the signed-in account's setting (``users.locale``, chosen on the profile page);
2. an explicit choice made with the switcher on the sign-in page (cookie ``idp_lang``);
3. the browser's ``Accept-Language``;
4. ``ui_locales`` of the relying service's authorization request (OpenID Connect Core
   §3.1.2.1), read from the request itself or from the ``next`` URL that carries it to the
   sign-in pages;
5. English.

Mails are rendered by the worker, outside a request, in the recipient's language (see
:func:`mail_language` and :mod:`idp.mail.compose`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from babel import dates as babel_dates
from flask import Flask, g, request
from flask_babel import Babel, format_date, format_datetime, format_time, get_locale, gettext
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from idp.settings import PROJECT_ROOT

DEFAULT = "en"
# Each language named in itself, for the switcher and the profile page.
LANGUAGES: dict[str, str] = {
    "en": "English",
    "fr": "Français",
    "de": "Deutsch",
    "it": "Italiano",
}
COOKIE = "idp_lang"
COOKIE_MAX_AGE = 365 * 24 * 3600
TRANSLATIONS = PROJECT_ROOT / "idp" / "translations"


def supported(tag: str | None) -> str | None:
    """The supported language of a BCP 47 tag (``fr-CH`` -> ``fr``), or None."""
    if not tag:
        return None
    primary = tag.strip().replace("_", "-").split("-")[0].lower()
    return primary if primary in LANGUAGES else None


def from_ui_locales(value: str | None) -> str | None:
    """The first supported language of a space-separated ``ui_locales`` list."""
    for tag in (value or "").split()[:20]:
        found = supported(tag)
        if found:
            return found
    return None


def _param(name: str) -> str:
    """A query or form field; never fails: this runs while error pages render, also for a
    request whose body could not be read (too large), which then counts as having none."""
    value = request.args.get(name)
    if value is None and request.method == "POST":
        try:
            value = request.form.get(name)
        except HTTPException:
            return ""
    return value or ""


def _ui_locales() -> str | None:
    found = from_ui_locales(_param("ui_locales"))
    if found:
        return found
    nxt = _param("next")
    if nxt.startswith("/") and "ui_locales" in nxt:
        values = parse_qs(urlsplit(nxt).query).get("ui_locales", [])
        return from_ui_locales(values[0] if values else None)
    return None


def _accept_language() -> str | None:
    """The browser's most preferred supported language (``fr-CH`` counts as ``fr``)."""
    for tag, quality in request.accept_languages:  # best first
        found = supported(tag)
        if found and quality > 0:
            return found
    return None


def _account_locale() -> str | None:
    from idp.services import signed_in_user

    try:
        found = signed_in_user()
    except Exception:  # no database (e.g. a static file, an error page): no account setting
        return None
    return supported(found[1].locale) if found else None


def select_locale() -> str:
    """The language of the current request (see the module's docstring for the order)."""
    cached: str | None = g.get("idp_locale")
    if cached:
        return cached
    chosen = (
        _account_locale()
        or supported(request.cookies.get(COOKIE))
        or _accept_language()
        or _ui_locales()
        or DEFAULT
    )
    g.idp_locale = chosen
    return chosen


def current_language() -> str:
    """The language of the page being rendered (for ``<html lang>``)."""
    return str(get_locale() or DEFAULT)


def localized_datetime(value: datetime | None, fmt: str = "medium") -> str:
    """A date and time in the page's language (the zone shown is the value's, UTC when
    naive)."""
    if value is None:
        return ""
    return str(format_datetime(value, fmt))


def set_language_cookie(response: Response, language: str, secure: bool) -> Response:
    response.set_cookie(
        COOKIE, language, max_age=COOKIE_MAX_AGE, samesite="Lax", secure=secure, httponly=True
    )
    return response


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT)
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS))
    Babel(app, locale_selector=select_locale)
    globals_: dict[str, Any] = {
        "current_language": current_language,
        "local_datetime": localized_local,
        "role_name": role_name,
        "device_label": device_label,
        "languages": LANGUAGES,
    }
    app.jinja_env.globals.update(globals_)


def localized_utc(value: datetime) -> str:
    """A UTC moment in the page's language, minutes precision, the zone shown."""
    return f"{format_date(value, 'medium')} {format_time(value, 'HH:mm')} UTC"


_MAIL_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d) UTC")


def mail_time(value: str, language: str) -> str:
    """A time as queued in a mail's context (``2025-03-01 14:05 UTC``) in ``language``,
    keeping the zone shown; anything else is returned as it is."""
    match = _MAIL_TIME.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        return value
    year, month, day, hour, minute = (int(part) for part in match.groups())
    when = datetime(year, month, day, hour, minute, tzinfo=UTC)
    date = babel_dates.format_date(when, "medium", locale=language)
    clock = babel_dates.format_time(when, "HH:mm", tzinfo=UTC, locale=language)
    return f"{date} {clock} UTC"


def N_(message: str) -> str:
    """Mark ``message`` for the catalogs without translating it here (it is translated where
    it is shown)."""
    return message


def localized_local(value: datetime) -> str:
    """A moment in its own time zone (the activity log's chosen zone), in the page's language,
    to the second. English keeps the sortable ``2026-03-10 13:00:00`` of the log's CSV."""
    if current_language() == DEFAULT:
        return value.strftime("%Y-%m-%d %H:%M:%S")
    date = format_date(value, "medium", rebase=False)
    return f"{date} {format_time(value, 'HH:mm:ss', rebase=False)}"


# The organization roles as shown in sentences and tags (the stored values are English).
ROLE_NAMES = {"owner": N_("owner"), "admin": N_("admin"), "member": N_("member")}


def role_name(role: object) -> str:
    """A role (``Role`` or its value) in the page's language."""
    value = str(getattr(role, "value", role))
    return str(gettext(ROLE_NAMES[value])) if value in ROLE_NAMES else value


def name_device(browser: str, os_name: str, translate: Callable[[str], str]) -> str:
    """A device as people are shown it: "Firefox 128 on Windows 10", the browser or the
    system alone when only one is known, "Unknown device" otherwise, in the language of
    ``translate`` (a page's, or a mail's). Plain text: HTML escapes it like any value."""
    if browser and os_name:
        return translate(N_("%(browser)s on %(os)s")) % {"browser": browser, "os": os_name}
    return browser or os_name or translate(N_("Unknown device"))


def device_label(browser: str, os_name: str) -> str:
    """A device as a page names it, in the page's language (:func:`name_device`)."""
    return name_device(browser, os_name, lambda message: str(gettext(message)))


class LocalizedError(Exception):
    """An error whose text is a catalog message (marked with :func:`N_`) and its parameters.

    ``str()`` is the English text (logs and the ``idp`` command stay English);
    :meth:`translated` is the text in the language of the page being rendered. A parameter
    that is itself a :class:`LocalizedError` is translated too."""

    def __init__(self, message: str, **params: object) -> None:
        self.message = message
        self.params = params
        super().__init__(message % params if params else message)

    @classmethod
    def wrapping(cls, error: LocalizedError) -> Self:
        """The same text as ``error``, raised as this class."""
        return cls(error.message, **error.params)

    def translated(self) -> str:
        params = {
            k: v.translated() if isinstance(v, LocalizedError) else v
            for k, v in self.params.items()
        }
        return str(gettext(self.message, **params)) if params else str(gettext(self.message))
