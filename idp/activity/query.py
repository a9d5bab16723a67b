"""Reading the activity log: one user's events, or an organization's members' events.

The log is append-only: this module only reads (and :mod:`idp.activity.retention` deletes
what is past the retention period). A page is a keyset page: rows ordered by
``(occurred_at desc, id desc)``, the next page being the rows strictly before the last one
(``(occurred_at, id) < (t, i)``, a row-value comparison that PostgreSQL answers from the
index ``(user_id, occurred_at, id)`` without counting past rows; no OFFSET).

Free-text search works the same on SQLite and PostgreSQL. The sentence is not stored, it is
derived from the tag (and ``details["reason"]``), so a search for text in sentences becomes
the set of tags (and reasons) whose sentence contains the text, computed here in Python from
the catalog, then ``action IN (...)`` in SQL. Stored values are matched with a portable
case-insensitive ``LIKE`` (SQLAlchemy's ``icontains``: ``lower(x) LIKE lower(pattern)`` with
``%`` and ``_`` escaped): the details as JSON text (also in the text's JSON-escaped
forms, see :func:`as_stored_in_json`), the IP address, the tag itself, and the
product's name. The organization view also matches the member's name and email address.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask_babel import gettext
from sqlalchemy import (
    ColumnElement,
    Select,
    Text,
    and_,
    cast,
    exists,
    false,
    literal,
    or_,
    select,
    tuple_,
)
from sqlalchemy.orm import Session

from idp.activity.filters import ActivityFilters, Cursor
from idp.activity.sentences import (
    CATALOG,
    GENERIC,
    Perspective,
    entry_for,
    product_label,
    tags_in,
)
from idp.events import ACCOUNT_PRODUCT, OPERATOR, EventTag
from idp.i18n import device_label
from idp.models import Client, Device, Event, Membership, Role, User, UserSession
from idp.models.base import BigIntId, UTCDateTime
from idp.security.devices import describe_user_agent

PAGE_SIZE = 50
EXPORT_BATCH = 1000


@dataclass(frozen=True)
class UserScope:
    """One user's own log."""

    user_id: str

    perspective = Perspective.SELF


@dataclass(frozen=True)
class OrganizationScope:
    """The log of every member of an organization (for its owners and admins)."""

    organization_id: str

    perspective = Perspective.ADMIN


Scope = UserScope | OrganizationScope


@dataclass(frozen=True)
class ActivityRow:
    """One event as the page and the CSV export show it."""

    id: int
    occurred_at: datetime  # UTC
    local_time: datetime  # in the view's time zone
    action: str
    action_label: str
    sentence: str
    product: str
    product_label: str
    device: str
    ip: str
    details: dict[str, Any]
    member_id: str | None
    member_name: str
    member_email: str


@dataclass(frozen=True)
class ActivityPage:
    rows: list[ActivityRow]
    next_cursor: Cursor | None


@dataclass(frozen=True)
class Member:
    id: str
    name: str
    email: str
    role: Role


class ActivityService:
    """Queries over the activity log for one reader's scope."""

    def __init__(self, db: Session) -> None:
        self.db = db

    # Who and what can be chosen --------------------------------------------------------
    def members(self, organization_id: str) -> list[Member]:
        rows = self.db.execute(
            select(User, Membership.role)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.organization_id == organization_id)
            .order_by(User.email_normalized)
        ).all()
        return [Member(u.id, u.display_name, u.email, role) for u, role in rows]

    def is_member(self, organization_id: str, user_id: str) -> bool:
        return (
            self.db.scalar(
                select(Membership.id).where(
                    Membership.organization_id == organization_id, Membership.user_id == user_id
                )
            )
            is not None
        )

    def products(self, perspective: Perspective) -> list[tuple[str, str]]:
        """(value, label) of every product: the account itself, then each application."""
        clients = self.db.execute(select(Client.client_id, Client.name).order_by(Client.name))
        return [(ACCOUNT_PRODUCT, product_label(ACCOUNT_PRODUCT, None, perspective))] + [
            (client_id, name) for client_id, name in clients
        ]

    # Reading ---------------------------------------------------------------------------
    def page(self, scope: Scope, filters: ActivityFilters, limit: int = PAGE_SIZE) -> ActivityPage:
        """Up to ``limit`` rows after ``filters.cursor``, and the cursor of the next page."""
        events = list(self.db.scalars(select_events(scope, filters, limit + 1)))
        more = len(events) > limit
        events = events[:limit]
        rows = self._present(events, scope, filters)
        last = events[-1] if more else None
        return ActivityPage(rows, Cursor(last.occurred_at, last.id) if last else None)

    def iter_rows(
        self, scope: Scope, filters: ActivityFilters, batch: int = EXPORT_BATCH
    ) -> Iterator[ActivityRow]:
        """Every matching row, newest first, fetched ``batch`` at a time by keyset."""
        current = filters
        while True:
            page = self.page(scope, current, batch)
            yield from page.rows
            if page.next_cursor is None:
                return
            current = current.after(page.next_cursor)

    # Presentation ----------------------------------------------------------------------
    def _present(
        self, events: Sequence[Event], scope: Scope, filters: ActivityFilters
    ) -> list[ActivityRow]:
        perspective = scope.perspective
        devices = self._device_labels(events)
        names = self._product_names(events)
        members = self._members_of(events) if perspective is Perspective.ADMIN else {}
        rows = []
        for e in events:
            member = members.get(e.user_id or "")
            who = member.display_name if member else _without_member(e)
            entry = entry_for(e.action)
            rows.append(
                ActivityRow(
                    id=e.id,
                    occurred_at=e.occurred_at,
                    local_time=e.occurred_at.astimezone(filters.tz),
                    action=e.action,
                    action_label=gettext(entry.label) if entry is not GENERIC else e.action,
                    sentence=entry.wording_for(e.details).text(perspective, who),
                    product=e.product,
                    product_label=product_label(e.product, names.get(e.product), perspective),
                    device=devices.get(e.id, ""),
                    ip=e.ip,
                    details=dict(e.details or {}),
                    member_id=e.user_id,
                    member_name=who if perspective is Perspective.ADMIN else "",
                    member_email=member.email if member else "",
                )
            )
        return rows

    def _device_labels(self, events: Sequence[Event]) -> dict[int, str]:
        """Event id -> "Firefox 128 on Windows 10": from the event's device, else its session's
        device, else the User-Agent kept in the details (failed sign-ins)."""
        device_ids = {e.device_id for e in events if e.device_id}
        session_ids = {e.session_id for e in events if e.session_id and not e.device_id}
        by_session: dict[str, str] = {}
        if session_ids:
            by_session = {
                sid: did
                for sid, did in self.db.execute(
                    select(UserSession.id, UserSession.device_id).where(
                        UserSession.id.in_(session_ids)
                    )
                )
            }
            device_ids |= set(by_session.values())
        labels: dict[str, str] = {}
        if device_ids:
            labels = {
                d.id: device_label(d.browser, d.os)
                for d in self.db.scalars(select(Device).where(Device.id.in_(device_ids)))
            }
        result: dict[int, str] = {}
        for e in events:
            device_id = e.device_id or by_session.get(e.session_id or "")
            if device_id and device_id in labels:
                result[e.id] = labels[device_id]
            elif isinstance(ua := (e.details or {}).get("user_agent"), str) and ua:
                result[e.id] = _user_agent_label(ua)
        return result

    def _product_names(self, events: Sequence[Event]) -> dict[str, str]:
        products = {e.product for e in events if e.product != ACCOUNT_PRODUCT}
        if not products:
            return {}
        return {
            client_id: name
            for client_id, name in self.db.execute(
                select(Client.client_id, Client.name).where(Client.client_id.in_(products))
            )
        }

    def _members_of(self, events: Sequence[Event]) -> dict[str, User]:
        user_ids = {e.user_id for e in events if e.user_id}
        if not user_ids:
            return {}
        return {u.id: u for u in self.db.scalars(select(User).where(User.id.in_(user_ids)))}


def _without_member(event: Event) -> str:
    """Who did what an event without a (current) member records: an operator with the ``idp``
    command, or a member since gone."""
    if event.user_id is None and (event.details or {}).get("by") == OPERATOR:
        return str(gettext("An operator"))
    return str(gettext("A former member"))


def _user_agent_label(user_agent: str) -> str:
    """The device of a User-Agent, in the page's language ("" when nothing is recognised)."""
    browser, os_name = _describe(user_agent)
    return device_label(browser, os_name) if browser or os_name else ""


@functools.lru_cache(maxsize=1024)
def _describe(user_agent: str) -> tuple[str, str]:
    # Parsing is cached; the label is not (it is in the language of each page).
    return describe_user_agent(user_agent)


# The query --------------------------------------------------------------------------------


def select_events(scope: Scope, filters: ActivityFilters, limit: int) -> Select[Event]:
    """The page query: the scope, every filter, the keyset position, newest first."""
    stmt = select(Event).where(*scope_conditions(scope, filters))
    since, until = filters.since, filters.until
    if since is not None:
        stmt = stmt.where(Event.occurred_at >= since)
    if until is not None:
        stmt = stmt.where(Event.occurred_at < until)
    if filters.product:
        stmt = stmt.where(Event.product == filters.product)
    if filters.group is not None:
        stmt = stmt.where(Event.action.in_(tags_in(filters.group)))
    if filters.text:
        stmt = stmt.where(text_condition(filters.text, scope))
    if filters.cursor is not None:
        position = tuple_(
            literal(filters.cursor.occurred_at, UTCDateTime()), literal(filters.cursor.id, BigIntId)
        )
        stmt = stmt.where(tuple_(Event.occurred_at, Event.id) < position)
    return stmt.order_by(Event.occurred_at.desc(), Event.id.desc()).limit(limit)


def scope_conditions(scope: Scope, filters: ActivityFilters) -> list[ColumnElement[bool]]:
    if isinstance(scope, UserScope):
        return [Event.user_id == scope.user_id]
    ours = not_another_organizations(scope.organization_id)
    if filters.member_id is not None:  # the caller checked it is a member
        return [Event.user_id == filters.member_id, since_joining(scope.organization_id), ours]
    members = select(Membership.user_id).where(Membership.organization_id == scope.organization_id)
    as_members = and_(Event.user_id.in_(members), since_joining(scope.organization_id))
    return [or_(as_members, about_the_organization(scope.organization_id)), ours]


def since_joining(organization_id: str) -> ColumnElement[bool]:
    """Events from the moment their user joined the organization: what someone did before
    (their sign-ins, password changes, tokens ...) is not the business of an organization
    that invited them later. A member who left and came back is shown from the return."""
    return exists(
        select(Membership.id).where(
            Membership.organization_id == organization_id,
            Membership.user_id == Event.user_id,
            Membership.created_at <= Event.occurred_at,
        )
    )


def organization_business() -> ColumnElement[bool]:
    """Events that are the business of the organization they name: ``organization:*``, and
    an organization's lockout floor set by its owners or admins (``account:lockout:threshold``
    with an organization; a user's own threshold is recorded without one)."""
    return or_(
        Event.action.startswith("organization:"),
        and_(
            Event.action == str(EventTag.LOCKOUT_THRESHOLD_CHANGED),
            Event.organization_id.is_not(None),
        ),
    )


def about_the_organization(organization_id: str) -> ColumnElement[bool]:
    """The organization's own record (:func:`organization_business` events in it), whoever
    caused them: an operator with ``idp org create`` or ``idp sso link`` (no user), and what
    members did in it, also after they left or were removed (a former admin's invitations,
    role changes, removals, their leaving). Only those: a former member's other events
    (sign-ins, password ...) are their own business once they are gone, and de-identified
    events of deleted accounts are kept for operators and shown to nobody."""
    return and_(Event.organization_id == organization_id, organization_business())


def not_another_organizations(organization_id: str) -> ColumnElement[bool]:
    """A member may belong to other organizations too: their own events (sign-ins, password,
    tokens) show in each, but what they did as a member of another organization (its
    invitations, renames, role changes, lockout floor ...) is that organization's business
    only, also once it is deleted (its events then name no organization, and the deletion
    itself names none)."""
    return or_(~organization_business(), Event.organization_id == organization_id)


def sentence_condition(text: str, scope: Scope) -> ColumnElement[bool]:
    """Rows whose sentence (in this scope's perspective) contains ``text``, case-insensitively.

    Exact, also for entries whose sentence depends on ``details["reason"]``: the tag matches
    only with the reasons whose sentence matches (the default sentence stands for every other
    reason, and for none).
    """
    needle = text.casefold()
    perspective = scope.perspective
    whole: list[str] = []
    partial: list[ColumnElement[bool]] = []
    for tag, entry in CATALOG.items():
        default = needle in entry.wording.searchable(perspective).casefold()
        matching = {
            r for r, w in entry.by_reason.items() if needle in w.searchable(perspective).casefold()
        }
        others = set(entry.by_reason) - matching
        if default and not others:
            whole.append(str(tag))
            continue
        reason = Event.details["reason"].as_string()
        if default:  # every reason but those whose own sentence does not match
            partial.append(
                and_(Event.action == str(tag), or_(reason.is_(None), reason.not_in(others)))
            )
        elif matching:
            partial.append(and_(Event.action == str(tag), reason.in_(matching)))
    conditions: list[ColumnElement[bool]] = list(partial)
    if whole:
        conditions.append(Event.action.in_(whole))
    if needle in GENERIC.wording.searchable(perspective).casefold():
        conditions.append(Event.action.not_in([str(tag) for tag in CATALOG]))
    return or_(false(), *conditions)


def as_stored_in_json(text: str) -> list[str]:
    """The forms ``text`` takes inside the stored details: JSON text, in which non-ASCII
    letters are ``\\uXXXX`` escapes and quotes and backslashes are escaped. The escapes are
    ASCII, so the database's ``lower()`` cannot fold their case: the lower- and upper-case
    spellings are searched too ("müller" finds "MÜLLER")."""
    forms = [text] + [json.dumps(t)[1:-1] for t in (text, text.lower(), text.upper())]
    return list(dict.fromkeys(forms))


def text_condition(text: str, scope: Scope) -> ColumnElement[bool]:
    """Free text: sentence, details, IP, tag, product name (and member, for organizations)."""
    details = cast(Event.details, Text)
    conditions: list[ColumnElement[bool]] = [
        sentence_condition(text, scope),
        *(details.icontains(form, autoescape=True) for form in as_stored_in_json(text)),
        Event.ip.icontains(text, autoescape=True),
        Event.action.icontains(text, autoescape=True),
        Event.product.in_(
            select(Client.client_id).where(Client.name.icontains(text, autoescape=True))
        ),
    ]
    if text.casefold() in product_label(ACCOUNT_PRODUCT, None, scope.perspective).casefold():
        conditions.append(Event.product == ACCOUNT_PRODUCT)
    if isinstance(scope, OrganizationScope):
        full_name = User.first_name + " " + User.last_name
        conditions.append(
            Event.user_id.in_(
                select(User.id).where(
                    or_(
                        full_name.icontains(text, autoescape=True),
                        User.email.icontains(text, autoescape=True),
                    )
                )
            )
        )
    return or_(*conditions)
