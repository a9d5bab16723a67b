"""The login alerts page: which sign-ins the user is told about by email."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from flask_babel import lazy_gettext
from werkzeug.wrappers import Response

from idp.models import User
from idp.runtime import request_db, runtime
from idp.security.alerts import SUCCESS_CHOICES, AlertService, InvalidAlertPreference
from idp.services import client_actor, current_session

bp = Blueprint("alerts", __name__)

PATH = "/account/alerts"
FAILURE_CHECKBOX_ON = "on"  # what a browser sends for a checked checkbox without a value
BAD_FAILURE_VALUE = lazy_gettext(
    "The choice about failed sign-in alerts is not valid. Reload the page and try again."
)


def _user() -> User | None:
    active = current_session()
    return request_db().get(User, active.user_id) if active else None


def _page(
    user: User,
    *,
    on_success: str | None = None,
    on_failure: bool | None = None,
    error: str | None = None,
    saved: bool = False,
    status: int = 200,
) -> tuple[str, int]:
    return render_template(
        "account/alerts.html",
        on_success=user.alert_on_success if on_success is None else on_success,
        on_failure=user.alert_on_failure if on_failure is None else on_failure,
        choices=SUCCESS_CHOICES,
        failure_window=runtime().settings.alert_failure_window_minutes,
        error=error,
        saved=saved,
    ), status


def _alerts() -> AlertService:
    rt = runtime()
    return AlertService(request_db(), rt.store, rt.settings)


@bp.get(PATH)
def alerts_page() -> Response | tuple[str, int]:
    user = _user()
    if user is None:
        return redirect(url_for("login.login_form", next=PATH), 303)
    return _page(user, saved="saved" in request.args)


@bp.post(PATH)
def alerts_save() -> Response | tuple[str, int]:
    user = _user()
    if user is None:
        return redirect(url_for("login.login_form", next=PATH), 303)
    on_success = request.form.get("alert_on_success", "")
    on_failure_raw = request.form.get("alert_on_failure")
    if on_failure_raw not in (None, FAILURE_CHECKBOX_ON):
        return _page(user, error=BAD_FAILURE_VALUE, status=400)
    try:
        _alerts().set_preferences(
            user, on_success, on_failure_raw == FAILURE_CHECKBOX_ON, client_actor()
        )
    except InvalidAlertPreference as exc:
        request_db().rollback()
        return _page(user, error=str(exc), status=400)
    return redirect(url_for("alerts.alerts_page", saved=1), 303)
