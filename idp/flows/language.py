"""Choosing the language: the switcher of the sign-in page (``GET /language``, a cookie) and
the account's setting on the profile page (``POST /account/profile/language``)."""

from __future__ import annotations

from flask import Blueprint, abort, redirect, request, url_for
from werkzeug.wrappers import Response

from idp.i18n import LANGUAGES, set_language_cookie
from idp.profile import ProfileError
from idp.runtime import runtime
from idp.security.redirects import safe_next
from idp.services import profile_service, signed_in_user

bp = Blueprint("language", __name__)


@bp.get("/language")
def choose() -> Response:
    """Remember the language picked with the switcher, then go back to the page."""
    lang = request.args.get("lang", "")
    if lang not in LANGUAGES:
        abort(400)
    target = safe_next(request.args.get("next"), url_for("login.login_form"))
    response = redirect(target, 303)
    return set_language_cookie(response, lang, runtime().settings.secure_cookies)


@bp.post("/account/profile/language")
def save() -> Response:
    """The account's language (empty: follow the browser)."""
    signed_in = signed_in_user()
    if signed_in is None:
        return redirect(url_for("login.login_form", next=url_for("profile.page")), 303)
    lang = request.form.get("locale", "")
    try:
        profile_service().set_language(signed_in[1], lang)
    except ProfileError:
        abort(400)
    response = redirect(url_for("profile.page", language=1), 303)
    if lang:
        set_language_cookie(response, lang, runtime().settings.secure_cookies)
    return response
