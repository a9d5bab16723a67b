"""Flask's client-side cookie session, switched off.

idp keeps every session server-side (:mod:`idp.security.sessions`): its cookies hold only
random identifiers, never data. Flask's own session would keep data in a signed cookie on the
client, readable by whoever holds the cookie, and nothing in idp uses it. Left in place it was
still opened on every request (a signing serializer built, the cookie looked for): about a
seventh of a ``/healthz``. :class:`NoCookieSession` never opens it: every request gets Flask's
read-only ``NullSession``, whose writes raise, so nothing can start storing data on the client
by accident, and no ``session`` cookie is ever set.
"""

from __future__ import annotations

from flask import Flask, Request, Response
from flask.sessions import NullSession, SessionInterface, SessionMixin


class NoCookieSession(SessionInterface):
    def open_session(self, app: Flask, request: Request) -> NullSession:
        return self.make_null_session(app)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        return None


def init_app(app: Flask) -> None:
    app.session_interface = NoCookieSession()
