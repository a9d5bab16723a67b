"""Login alerts: mail the account owner about sign-ins, as they chose on /account/alerts.

Successful sign-ins alert "always", only from a "new_device" (the default: a browser that had
not signed in to the account before), or "never"; failed sign-ins alert when
``alert_on_failure`` is on (the default). The sign-in service calls :class:`AlertService`
inside the transaction that records the sign-in event, and all an alert does there is add an
outbox row: the alert exists exactly when the event does, and SMTP never slows a sign-in.

Failed sign-ins can be caused by anyone, so they are coalesced (a repeat window, as in
pypi/warehouse): the first failure of a window sets a store key (``SET NX EX``) and queues ONE
delayed row of kind ``login_failure_alert`` due at the end of the window. The worker then
counts the account's failed sign-ins of that window in the activity log, the durable truth
(wrong passwords and wrong second-factor codes: :func:`alerted_failure`), and sends one mail
with the count (:class:`FailureAlertSender`). It sends the mail itself rather than queueing a
second row, so one row is one mail: a retry after an SMTP error re-counts the same closed
window and sends the same mail, with the same Message-ID.

If the store loses the key, the next failure opens an overlapping window: the worst case is
one extra mail, never a missing one. The key expires a few seconds before the counted window
ends, so clock skew at the boundary can only count a failure twice, never drop it. (A database
failure between setting the key and the commit would leave a window without a row; the
sign-in attempt itself then fails with 503 and records nothing.)

Successful sign-ins need the password, but are still capped at ``success_alerts_per_hour``
mails per account so that nobody can flood a mailbox with them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from flask_babel import gettext
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from idp.events import Actor, EventTag, record_event
from idp.mail.delivery import Postman
from idp.mail.messages import login_alert_failures, login_alert_success
from idp.mail.queue import queue_mail
from idp.models import Device, Event, User, utcnow
from idp.outbox import ITEM_ID, enqueue
from idp.settings import Settings
from idp.store import Store

log = logging.getLogger("idp.alerts")

LOGIN_FAILURE_ALERT = "login_failure_alert"
ALWAYS, NEW_DEVICE, NEVER = "always", "new_device", "never"
SUCCESS_CHOICES = (ALWAYS, NEW_DEVICE, NEVER)
SUCCESS_ALERTS_PER_HOUR = 20
KEY_MARGIN_SECONDS = 5
MAX_LISTED_IPS = 10


# The events of the sign-in attempts that alert (idp.security.authentication): a wrong
# password (or any refused password step), and a wrong code after the right password.
ALERTED_FAILURES = (str(EventTag.LOGIN_FAILURE), str(EventTag.SECOND_FACTOR_FAILURE))


def alerted_failure(event: Event) -> bool:
    """Whether ``event`` is a failed sign-in the owner's failure alert counts: not the right
    password of an address still unverified (no alert: the owner did nothing wrong), and not
    a wrong code on an unlock or password-reset link page (``during``), which are not sign-ins
    and alert nobody."""
    details = event.details or {}
    if event.action == str(EventTag.LOGIN_FAILURE):
        return details.get("reason") != "email_unverified"
    return "during" not in details


class InvalidAlertPreference(ValueError):
    """A preference outside the allowed values; the message is shown to the user."""


class AlertService:
    """Queues login alerts in the caller's transaction and saves the user's preferences."""

    def __init__(
        self,
        db: Session,
        store: Store,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
        *,
        success_alerts_per_hour: int = SUCCESS_ALERTS_PER_HOUR,
    ) -> None:
        self.db = db
        self.store = store
        self.window = timedelta(minutes=settings.alert_failure_window_minutes)
        self.clock = clock
        self.success_alerts_per_hour = success_alerts_per_hour

    # Sign-in hooks (called by the sign-in service, which commits) ---------------------------
    def on_sign_in_success(
        self,
        user: User,
        device: Device,
        new_device: bool,
        ip: str,
        application: str,
        *,
        via_sso: bool = False,
    ) -> None:
        """Queue the success alert the user asked for. ``via_sso``: the sign-in went through
        the organization's Entra ID, so the mail does not say the password is known."""
        wanted = user.alert_on_success
        if wanted == NEVER or (wanted != ALWAYS and not new_device):
            return
        if not self._take_success_slot(user.id):
            log.info("sign-in alert for user %s skipped: hourly cap reached", user.id)
            return
        message = login_alert_success(
            user,
            (device.browser, device.os),
            ip,
            self.clock(),
            application,
            new_device=new_device,
            via_sso=via_sso,
        )
        queue_mail(self.db, user.email, message)

    def on_sign_in_failure(self, user: User, ip: str) -> Callable[[], None] | None:
        """Open the account's failure window and queue its alert, unless one is open. Returns
        how to close the window again should the caller's transaction (the queued alert)
        not commit: a window left open without its alert would swallow every failure in it."""
        if not user.alert_on_failure:
            return None
        start = self.clock()
        key = self.store.alert_failure_window_key(user.id)
        opened = self.store.client.set(
            key,
            start.isoformat(),
            nx=True,
            ex=max(1, int(self.window.total_seconds()) - KEY_MARGIN_SECONDS),
        )
        if not opened:
            return None  # this window's alert is already queued
        end = start + self.window
        enqueue(
            self.db,
            LOGIN_FAILURE_ALERT,
            {
                "user_id": user.id,
                "window_start": start.isoformat(),
                "window_end": end.isoformat(),
                "first_ip": ip,
            },
            not_before=end,
        )

        def close_window() -> None:
            self.store.client.delete(key)

        return close_window

    def _take_success_slot(self, user_id: str) -> bool:
        key = self.store.alert_success_count_key(user_id)
        pipe = self.store.client.pipeline(transaction=True)
        pipe.set(key, 0, nx=True, ex=3600)
        pipe.incr(key)
        _, used = pipe.execute()
        return int(used) <= self.success_alerts_per_hour

    # Preferences -----------------------------------------------------------------------------
    def set_preferences(self, user: User, on_success: str, on_failure: bool, actor: Actor) -> bool:
        """Save the user's choices and record them; True when something changed. Commits."""
        if on_success not in SUCCESS_CHOICES:
            raise InvalidAlertPreference(
                gettext(
                    "Choose when to be alerted about successful sign-ins: always, from a new "
                    "device only, or never."
                )
            )
        if (user.alert_on_success, user.alert_on_failure) == (on_success, on_failure):
            return False
        user.alert_on_success = on_success
        user.alert_on_failure = on_failure
        record_event(
            self.db,
            EventTag.ALERTS_CHANGED,
            user_id=user.id,
            actor=actor,
            details={"alert_on_success": on_success, "alert_on_failure": on_failure},
        )
        self.db.commit()
        return True


class FailureAlertSender:
    """Outbox handler for ``login_failure_alert``: count the window's failures, send one mail.

    Nothing is sent when the user is gone, turned failure alerts off since, or the window has
    no failure in the activity log.
    """

    def __init__(self, session_factory: sessionmaker[Session], postman: Postman) -> None:
        self.session_factory = session_factory
        self.postman = postman

    def __call__(self, payload: dict[str, Any]) -> None:
        start = datetime.fromisoformat(payload["window_start"])
        end = datetime.fromisoformat(payload["window_end"])
        with self.session_factory() as db:
            user = db.get(User, payload["user_id"])
            if user is None or not user.alert_on_failure:
                return
            failures = [
                e
                for e in db.scalars(
                    select(Event)
                    .where(
                        Event.user_id == user.id,
                        Event.action.in_(ALERTED_FAILURES),
                        Event.occurred_at >= start,
                        Event.occurred_at <= end,
                    )
                    .order_by(Event.occurred_at, Event.id)
                )
                if alerted_failure(e)
            ]
            if not failures:
                return
            ips = list(dict.fromkeys(e.ip for e in failures if e.ip))[:MAX_LISTED_IPS]
            message = login_alert_failures(
                user,
                len(failures),
                failures[0].occurred_at,
                failures[-1].occurred_at,
                ips or [payload.get("first_ip", "")],
                wrong_codes=sum(e.action == str(EventTag.SECOND_FACTOR_FAILURE) for e in failures),
            )
            to = user.email
        self.postman.deliver(to, message, payload[ITEM_ID])
