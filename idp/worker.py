"""The background worker: delivers the outbox (back-channel logouts, mail, login alerts,
password reset requests, sign-ups) and does the hourly chores (deleting sign-up accounts never
verified).

``idp worker`` runs it as its own process; embedded ``idp serve`` runs it in a thread. Without
``IDP_SMTP_URL`` the mail handlers are not registered: mail rows stay queued, never dropped,
and are sent once a worker with SMTP settings runs.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy.orm import Session

from idp.mail.delivery import Postman
from idp.mail.queue import MAIL
from idp.outbox import Chore, Handler, OutboxWorker
from idp.provider.keys import KeyService
from idp.provider.logout import BACKCHANNEL_LOGOUT, BackchannelLogoutSender
from idp.runtime import Runtime
from idp.security.alerts import LOGIN_FAILURE_ALERT, FailureAlertSender
from idp.security.password_reset import RESET_REQUEST, ResetLinkIssuer
from idp.security.unlock_requests import UNLOCK_REQUEST, UnlockLinkIssuer
from idp.signup import SIGNUP_REQUEST, SignupRequestHandler, purge_unverified_accounts

log = logging.getLogger("idp.worker")


def build_worker(runtime: Runtime) -> OutboxWorker:
    from idp.services import key_service_for

    settings = runtime.settings

    def keys(db: Session) -> KeyService:
        return key_service_for(db, settings)

    sender = BackchannelLogoutSender(runtime.session_factory, keys, settings.issuer)
    handlers: dict[str, Handler] = {
        BACKCHANNEL_LOGOUT: sender,
        # Issues reset links and queues their mail (which waits for SMTP like any mail).
        RESET_REQUEST: ResetLinkIssuer(runtime.session_factory, settings, runtime.passwords),
        # Creates the account or mails the existing owner; its mail waits for SMTP too.
        SIGNUP_REQUEST: SignupRequestHandler(runtime.session_factory, settings, runtime.passwords),
        # Issues unlock links for locked accounts; the mail waits for SMTP too.
        UNLOCK_REQUEST: UnlockLinkIssuer(
            runtime.session_factory, settings, runtime.store, runtime.passwords
        ),
    }
    if settings.smtp_url:
        postman = Postman.from_settings(settings)
        handlers[MAIL] = postman
        handlers[LOGIN_FAILURE_ALERT] = FailureAlertSender(runtime.session_factory, postman)
    else:
        log.warning("IDP_SMTP_URL is unset: mail stays queued in the outbox until it is set")

    def purge_unverified() -> None:
        with runtime.session_factory() as db:
            purge_unverified_accounts(db, settings.unverified_account_days)

    return OutboxWorker(
        runtime.session_factory,
        handlers,
        lease_seconds=settings.outbox_lease_seconds,
        chores=[Chore("purge unverified sign-ups", timedelta(hours=1), purge_unverified)],
    )


def start_in_thread(runtime: Runtime) -> tuple[threading.Event, threading.Thread]:
    """Run the worker in a daemon thread; set the returned event to stop it (after the
    delivery under way) and join the thread to wait for that."""
    stop = threading.Event()
    thread = threading.Thread(
        target=build_worker(runtime).run_forever, args=(stop,), name="idp-outbox", daemon=True
    )
    thread.start()
    return stop, thread
