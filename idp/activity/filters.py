"""The activity log's filters, parsed from a query string, and its keyset cursor.

Every filter is a GET parameter, so a filtered view is a link (bookmarkable, and the CSV
export of the same view is the same parameters on another path):

``tz``       IANA time zone (``Europe/Zurich``) in which times are shown and days are counted;
             default ``UTC``. There is no per-user zone yet; browsers send none, so the page
             offers the zone as a choice and carries it in links.
``from``     first day shown (``YYYY-MM-DD``, from 00:00:00 in ``tz``);
``to``       last day shown (``YYYY-MM-DD``, through 23:59:59.999999 in ``tz``);
``product``  ``account`` or a client_id;
``type``     a type of action (:class:`~idp.activity.sentences.ActionGroup`);
``q``        free text (sentence, details, IP, product name; member name in the org view);
             control characters are refused;
``member``   (organization view) one member's user id;
``cursor``   where the previous page ended (opaque; see :class:`Cursor`).

Bad input raises :class:`ActivityFilterError` with a message for the person who typed it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import unicodedata
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta

from flask_babel import gettext, lazy_gettext

from idp.activity.sentences import ActionGroup
from idp.numbers import parse_whole

MAX_TEXT = 200
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PRODUCT = re.compile(r"[A-Za-z0-9._:-]{1,200}")
_MEMBER = re.compile(r"[0-9a-fA-F-]{1,36}")
_CURSOR_VERSION = "1"
_MAX_ROW_ID = 2**63 - 1  # event ids are BIGINT
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
UTC_ZONE = zoneinfo.ZoneInfo("UTC")
# Dates outside these years are refused: nothing happened then, and the bounds keep every
# day (and the day after it) inside what datetime can express in any time zone.
_FIRST_YEAR, _LAST_YEAR = 1970, 9998


class ActivityFilterError(ValueError):
    """A filter value that cannot be used; ``param`` names the query parameter."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


@functools.cache
def time_zones() -> tuple[str, ...]:
    """The IANA time zones this machine knows (from the system database or tzdata), sorted."""
    return tuple(sorted(zoneinfo.available_timezones() | {"UTC"}))


def parse_time_zone(value: str | None) -> zoneinfo.ZoneInfo:
    """The zone named ``value`` (default UTC). Only names from :func:`time_zones` are accepted,
    so a path-like value never reaches the zoneinfo loader."""
    name = (value or "").strip() or "UTC"
    if name not in time_zones():
        raise ActivityFilterError(
            "tz",
            gettext(
                "Unknown time zone %(zone)s: choose one such as Europe/Zurich or UTC.",
                zone=repr(name[:60]),
            ),
        )
    return zoneinfo.ZoneInfo(name)


def parse_day(param: str, value: str | None) -> date | None:
    text = (value or "").strip()
    if not text:
        return None
    try:
        if not _DATE.fullmatch(text):
            raise ValueError(text)
        day = date.fromisoformat(text)
    except ValueError:
        raise ActivityFilterError(
            param,
            str(_BAD_DATE[param]),
        ) from None
    if not _FIRST_YEAR <= day.year <= _LAST_YEAR:
        raise ActivityFilterError(
            param,
            str(_DATE_OUT_OF_RANGE[param]) % {"first": _FIRST_YEAR, "last": _LAST_YEAR},
        )
    return day


_BAD_DATE = {
    "from": lazy_gettext("Enter the start date as YYYY-MM-DD, for example 2026-03-01."),
    "to": lazy_gettext("Enter the end date as YYYY-MM-DD, for example 2026-03-01."),
}
_DATE_OUT_OF_RANGE = {
    "from": lazy_gettext("The start date must lie between %(first)s and %(last)s."),
    "to": lazy_gettext("The end date must lie between %(first)s and %(last)s."),
}


def day_start(day: date, zone: zoneinfo.ZoneInfo) -> datetime:
    """The instant (UTC) at which ``day`` begins in ``zone``.

    Where midnight does not exist (a daylight-saving jump at 00:00), the day begins at the
    jump; where it happens twice, at the first.
    """
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True)
class Cursor:
    """The position after the last row of a page: that row's (occurred_at, id).

    Rows are ordered by (occurred_at desc, id desc), so the next page is every row strictly
    before this pair; rows inserted meanwhile (newer) never shift it, so pages never repeat or
    skip a row. Encoded as base64url of ``1:<microseconds since 1970 UTC>:<id>``: opaque to the
    browser but not secret or signed, because it only narrows a query that is already limited
    to what the reader may see — a forged cursor is just another starting point in the same log.
    """

    occurred_at: datetime
    id: int

    def encode(self) -> str:
        micros = (self.occurred_at - _EPOCH) // timedelta(microseconds=1)
        raw = f"{_CURSOR_VERSION}:{micros}:{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str) -> Cursor:
        problem = ActivityFilterError(
            "cursor",
            gettext(
                "This page link is not valid (or too old): start again from the newest activity."
            ),
        )
        if not value or len(value) > 64:
            raise problem
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
            version, micros, row_id = raw.split(":")
            at, row = parse_whole(micros, 19), parse_whole(row_id, 19)
            if version != _CURSOR_VERSION or at is None or row is None or row > _MAX_ROW_ID:
                raise ValueError(raw)
            return cls(_EPOCH + timedelta(microseconds=at), row)
        except (ValueError, UnicodeDecodeError, binascii.Error, OverflowError):
            raise problem from None


@dataclass(frozen=True)
class ActivityFilters:
    """One view of the log: which rows, and in which time zone they are shown."""

    tz: zoneinfo.ZoneInfo = UTC_ZONE
    start: date | None = None
    end: date | None = None
    product: str | None = None
    group: ActionGroup | None = None
    text: str = ""
    member_id: str | None = None
    cursor: Cursor | None = None

    @property
    def since(self) -> datetime | None:
        """First instant included (UTC), from ``start``."""
        return day_start(self.start, self.tz) if self.start else None

    @property
    def until(self) -> datetime | None:
        """First instant excluded (UTC): the start of the day after ``end``."""
        return day_start(self.end + timedelta(days=1), self.tz) if self.end else None

    def after(self, cursor: Cursor | None) -> ActivityFilters:
        return replace(self, cursor=cursor)

    def query_args(self, *, with_cursor: bool = False) -> dict[str, str]:
        """The query parameters that reproduce this view (empty ones left out)."""
        args = {
            "tz": self.tz.key if self.tz.key != "UTC" else "",
            "from": self.start.isoformat() if self.start else "",
            "to": self.end.isoformat() if self.end else "",
            "product": self.product or "",
            "type": str(self.group) if self.group else "",
            "q": self.text,
            "member": self.member_id or "",
            "cursor": self.cursor.encode() if with_cursor and self.cursor else "",
        }
        return {k: v for k, v in args.items() if v}


def parse_filters(args: Mapping[str, str], *, with_member: bool = False) -> ActivityFilters:
    """Read the filters from query parameters; raise :class:`ActivityFilterError`."""
    tz = parse_time_zone(args.get("tz"))
    start = parse_day("from", args.get("from"))
    end = parse_day("to", args.get("to"))
    if start and end and start > end:
        raise ActivityFilterError("from", gettext("The start date is after the end date."))

    product = (args.get("product") or "").strip() or None
    if product is not None and not _PRODUCT.fullmatch(product):
        raise ActivityFilterError("product", gettext("Unknown product: choose one from the list."))

    group_name = (args.get("type") or "").strip()
    group = None
    if group_name:
        try:
            group = ActionGroup(group_name)
        except ValueError:
            choices = ", ".join(g.value for g in ActionGroup)
            raise ActivityFilterError(
                "type",
                gettext(
                    "Unknown type of action %(type)s: choose one of %(choices)s.",
                    type=repr(group_name[:40]),
                    choices=choices,
                ),
            ) from None

    text = " ".join((args.get("q") or "").split())
    if any(unicodedata.category(c) == "Cc" for c in text):
        # Nothing stored contains one (the details are JSON, which escapes them), and
        # PostgreSQL refuses a NUL in a query: refused here, for the page and the export alike.
        raise ActivityFilterError(
            "q", gettext("The search contains characters that cannot be shown.")
        )
    if len(text) > MAX_TEXT:
        raise ActivityFilterError("q", gettext("Search at most %(n)s characters.", n=MAX_TEXT))

    member = (args.get("member") or "").strip() or None
    if not with_member:
        member = None
    elif member is not None and not _MEMBER.fullmatch(member):
        raise ActivityFilterError("member", gettext("Unknown member: choose one from the list."))

    raw_cursor = (args.get("cursor") or "").strip()
    cursor = Cursor.decode(raw_cursor) if raw_cursor else None
    return ActivityFilters(
        tz=tz,
        start=start,
        end=end,
        product=product,
        group=group,
        text=text,
        member_id=member,
        cursor=cursor,
    )
