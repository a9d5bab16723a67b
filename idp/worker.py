"""The background worker: delivers the outbox (back-channel logouts; mail later).

``idp worker`` runs it as its own process; embedded ``idp serve`` runs it in a thread.
"""

from __future__ import annotations

import threading

from sqlalchemy.orm import Session

from idp.outbox import OutboxWorker
from idp.provider.keys import KeyService
from idp.provider.logout import BACKCHANNEL_LOGOUT, BackchannelLogoutSender
from idp.runtime import Runtime


def build_worker(runtime: Runtime) -> OutboxWorker:
    from idp.services import key_service_for

    settings = runtime.settings

    def keys(db: Session) -> KeyService:
        return key_service_for(db, settings)

    sender = BackchannelLogoutSender(runtime.session_factory, keys, settings.issuer)
    return OutboxWorker(runtime.session_factory, {BACKCHANNEL_LOGOUT: sender})


def start_in_thread(runtime: Runtime) -> threading.Event:
    """Run the worker in a daemon thread; set the returned event to stop it."""
    stop = threading.Event()
    thread = threading.Thread(
        target=build_worker(runtime).run_forever, args=(stop,), name="idp-outbox", daemon=True
    )
    thread.start()
    return stop
