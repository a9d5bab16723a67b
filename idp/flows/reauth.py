"""Template helpers for "confirm it is you" before a sensitive change (see
:mod:`idp.security.reauth`): the password, or a fresh sign-in with the organization for an
account that has no password here."""

from __future__ import annotations

from flask import Flask, request, url_for

from idp.services import signed_in_user


def reauth_by_password() -> bool:
    """Whether the signed-in account confirms with its password (else with a new sign-in)."""
    found = signed_in_user()
    return found is None or found[1].password_hash is not None


def reauth_sso_url() -> str:
    """Sign in again with the organization (Entra ``prompt=login``), then back to this page."""
    found = signed_in_user()
    email = found[1].email if found else ""
    return url_for("sso.sso_form", login_hint=email, prompt="login", next=request.path)


def init_app(app: Flask) -> None:
    app.jinja_env.globals["reauth_by_password"] = reauth_by_password
    app.jinja_env.globals["reauth_sso_url"] = reauth_sso_url
