"""Flask's client-side cookie session is off: no data ever goes into a cookie (idp keeps its
sessions server-side), on SQLite and PostgreSQL with real Redis."""

from __future__ import annotations

import pytest
from flask import Flask, session
from flask.testing import FlaskClient

from idp.runtime import Runtime
from tests.helpers import create_user, sign_in


def test_a_whole_sign_in_sets_no_flask_session_cookie(
    app: Flask, client: FlaskClient, runtime: Runtime
) -> None:
    create_user(runtime)
    responses = [client.get("/login"), sign_in(client), client.get("/account")]
    assert [r.status_code for r in responses[1:]] == [303, 200]
    names = {c.split("=", 1)[0] for r in responses for c in r.headers.getlist("Set-Cookie")}
    assert "idp_session" in names  # the server-side session's random identifier
    assert app.config["SESSION_COOKIE_NAME"] not in names


def test_nothing_can_be_written_to_the_cookie_session(app: Flask) -> None:
    with app.test_request_context("/account"):
        assert dict(session) == {}  # reading is allowed, and always empty
        with pytest.raises(RuntimeError, match="session is unavailable"):
            session["user_id"] = "someone"


def test_a_forged_session_cookie_is_ignored(client: FlaskClient) -> None:
    client.set_cookie("session", "eyJ1c2VyX2lkIjoiYWRtaW4ifQ.forged.signature")
    page = client.get("/account")
    assert page.status_code == 303  # still not signed in
    assert page.headers["Location"].startswith("/login")
    assert not any(c.startswith("session=") for c in page.headers.getlist("Set-Cookie"))
