"""Deleting one's own account (``/account/delete``): a page that explains what happens, or what
must be done first, then the password once more. See :mod:`idp.security.account_deletion`."""

from __future__ import annotations

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask_babel import lazy_gettext
from werkzeug.wrappers import Response

from idp.flows.cookies import clear_session_cookie
from idp.models import User
from idp.security import csrf
from idp.security.account_deletion import AccountGone, DeletionBlocked
from idp.security.ratelimit import RateLimited
from idp.security.reauth import WrongPassword
from idp.services import account_deletion_service, signed_in_user

bp = Blueprint("account_deletion", __name__)

TOO_MANY = lazy_gettext("Too many attempts. Wait a few minutes and try again.")


def _page(user: User, *, error: str | None = None, status: int = 200) -> Response:
    return make_response(
        render_template(
            "account/delete.html",
            user=user,
            blockers=account_deletion_service().blockers(user),
            error=error,
        ),
        status,
    )


@bp.get("/account/delete")
def confirm() -> Response:
    signed_in = signed_in_user()
    if signed_in is None:
        return redirect(url_for("login.login_form", next=request.path), 303)
    return _page(signed_in[1])


@bp.post("/account/delete")
def delete() -> Response:
    signed_in = signed_in_user()
    if signed_in is None:
        return redirect(url_for("login.login_form", next=request.path), 303)
    user = signed_in[1]
    try:
        account_deletion_service().delete(user, request.form.get("password", ""))
    except AccountGone:  # deleted by another request at the same time: signed out now
        response = redirect(url_for("login.login_form", next=request.path), 303)
        clear_session_cookie(response)
        return response
    except DeletionBlocked:
        return _page(user, status=409)
    except WrongPassword as exc:
        return _page(user, error=exc.message, status=400)
    except RateLimited as limited:
        response = _page(user, error=TOO_MANY, status=429)
        response.headers["Retry-After"] = str(limited.retry_after)
        return response
    csrf.rotate()
    response = redirect(url_for("account_deletion.deleted"), 303)
    clear_session_cookie(response)
    return response


@bp.get("/account/deleted")
def deleted() -> str:
    return render_template("account/deleted.html")
