"""The embedded server behind ``idp serve``: gunicorn, one process, several threads.

One process because the embedded default keeps hot state in-process; production runs
``gunicorn 'idp:create_app()'`` with Redis and as many workers as wanted.
"""

from __future__ import annotations

import threading
from typing import Any

from gunicorn.app.base import BaseApplication

from idp.settings import Settings

# How long a stopping server waits for the outbox delivery under way (an SMTP exchange, 10 s
# timeouts); below gunicorn's graceful timeout (30 s), after which the master kills.
OUTBOX_STOP_SECONDS = 20.0


class _EmbeddedServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = {**options, "worker_exit": self._stop_outbox}
        self.outbox: tuple[threading.Event, threading.Thread] | None = None
        super().__init__()

    def _stop_outbox(self, _arbiter: Any, _worker: Any) -> None:
        """gunicorn's worker_exit hook, in the worker process once it stopped serving
        (SIGTERM): let the outbox thread finish the delivery under way instead of dying with
        the process in the middle of it (its mail then waited for the lease and went out
        again: twice for the recipient when the server had taken it)."""
        if self.outbox is not None:
            stop, thread = self.outbox
            stop.set()
            thread.join(OUTBOX_STOP_SECONDS)

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)
        # gunicorn 24+ opens a control socket, by default ~/.gunicorn/gunicorn.ctl: one path
        # for every `idp serve` of the user (a second server took it over, and the first to
        # stop deleted the other's), written outside the data dir. The embedded server needs
        # none: Ctrl-C or SIGTERM stops it.
        if "control_socket_disable" in self.cfg.settings:
            self.cfg.set("control_socket_disable", True)

    def load(self) -> Any:
        from idp import create_app
        from idp.heap import freeze_startup_objects
        from idp.worker import start_in_thread

        app = create_app(self.settings)
        # Embedded: the outbox worker runs beside the server in the same process.
        self.outbox = start_in_thread(app.extensions["idp"])
        freeze_startup_objects()  # the process's one application, as under gunicorn
        return app


def serve(settings: Settings, host: str, port: int) -> None:
    _EmbeddedServer(
        settings,
        {
            "bind": f"{host}:{port}",
            "workers": 1,
            "worker_class": "gthread",
            "threads": 8,
            # No gunicorn access log: paths can hold one-time tokens (unlock links); idp logs
            # each request itself as idp.access with the route pattern instead.
            "errorlog": "-",
            "forwarded_allow_ips": "127.0.0.1,::1" if settings.proxy_hops else "",
        },
    ).run()
