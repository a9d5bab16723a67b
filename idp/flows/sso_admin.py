"""Enterprise SSO settings of an organization, for its owners and admins: link the Entra ID
tenant (saving always tests the connection first), test a saved connection, remove it.

Authorization is the same as every organization admin page (:func:`managed_org`): an owner or
admin of *that* organization, checked on the server for every request. Secrets and private keys
are write-only: the page never shows them, and leaving the field empty keeps the stored one.

A typed value longer than its field's limit is refused with the field's name, never cut: the
domains field holds :data:`~idp.federation.connections.MAX_DOMAINS` domains of the longest
length. Saving and testing call Entra ID and Graph (up to three calls of up to 10 s each), so
they share one rate limit per organization.
"""

from __future__ import annotations

import logging

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from flask_babel import gettext, lazy_gettext
from werkzeug.datastructures import FileStorage
from werkzeug.wrappers import Response

from idp.events import EventTag, record_event
from idp.federation.connections import (
    MAX_DOMAINS,
    LinkOptions,
    SsoConnectionError,
    saved_event_details,
)
from idp.federation.credentials import (
    ClientCertificate,
    ClientSecret,
    Credential,
    CredentialError,
    certificate_validity,
)
from idp.flows.admin import managed_org
from idp.flows.sign_out import post_logout_redirect_uri
from idp.i18n import N_
from idp.models import Organization
from idp.runtime import request_db, runtime
from idp.security.ratelimit import RateLimited
from idp.services import client_actor, connection_service, current_session, rate_limiter

bp = Blueprint("sso_admin", __name__)
log = logging.getLogger("idp.federation")
MAX_PEM = 20_000
# The typed fields, their labels on the page and their longest accepted values: a tenant is a
# GUID or a domain name (253); the domains field holds MAX_DOMAINS names of 253 characters
# with ", " between them, as the page shows the saved ones.
TEXT_FIELDS = {
    "tenant_id": (lazy_gettext("Directory (tenant) ID"), 253),
    "client_id": (lazy_gettext("Application (client) ID"), 100),
    "client_secret": (lazy_gettext("Client secret value"), 1_000),
    "domains": (lazy_gettext("Email domains"), MAX_DOMAINS * (253 + 2)),
}
OPTIONS = ("jit", "enforce_sso", "allow_guests")
# Saving and testing a connection (Entra ID and Graph calls), per organization.
REMOTE_CHECKS = 10
REMOTE_CHECKS_WINDOW = 600


def _page(
    org: Organization,
    *,
    message: str | None = None,
    error: str | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> tuple[str, int]:
    connection = connection_service().for_organization(org.id)
    issuer = runtime().settings.issuer.rstrip("/")
    return render_template(
        "admin/sso.html",
        org=org,
        connection=connection,
        validity=certificate_validity(connection.certificate) if connection else None,
        message=message,
        error=error,
        form=form or {},
        submitted=form is not None,
        redirect_uri=f"{issuer}/login/sso/callback",
        logout_uri=post_logout_redirect_uri(),
        front_channel_uri=f"{issuer}/login/sso/front-logout",
    ), status


@bp.get("/organizations/<org_id>/sso")
def settings_page(org_id: str) -> tuple[str, int] | Response:
    if current_session() is None:
        return redirect(url_for("login.login_form", next=request.path), 303)
    org, _ = managed_org(org_id)
    notices = {
        "saved": gettext("Connection tested and saved."),
        "removed": gettext("Connection removed."),
    }
    return _page(org, message=next((v for k, v in notices.items() if k in request.args), None))


def _pem_file(name: str) -> str:
    """The text of an uploaded PEM file ("" when none was chosen)."""
    upload = request.files.get(f"{name}_file")
    if not isinstance(upload, FileStorage) or not upload.filename:
        return ""
    raw: bytes = upload.read(MAX_PEM + 1)
    certificate = name == "certificate"
    if len(raw) > MAX_PEM:
        raise CredentialError(
            N_("the certificate file is too large for a PEM file")
            if certificate
            else N_("the private key file is too large for a PEM file")
        )
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise CredentialError(
            N_("the certificate must be a PEM text file")
            if certificate
            else N_("the private key must be a PEM text file")
        ) from None


def _credential() -> Credential | None:
    """The credential typed in, or None to keep the stored one."""
    if request.form.get("credential") == "certificate":
        certificate, key = _pem_file("certificate"), _pem_file("private_key")
        if not certificate.strip() and not key.strip():
            return None
        if not certificate.strip() or not key.strip():
            raise CredentialError(N_("give both the certificate and its private key"))
        return ClientCertificate.parse(key, certificate)
    secret = request.form.get("client_secret", "")
    return ClientSecret(secret) if secret else None


def _too_long() -> str | None:
    """The error naming the first typed field longer than its limit, if one is."""
    for name, (label, limit) in TEXT_FIELDS.items():
        if len(request.form.get(name, "")) > limit:
            return str(
                gettext(
                    "The field “%(field)s” is too long: at most %(n)s characters.",
                    field=label,
                    n=limit,
                )
            )
    return None


def _form() -> dict[str, str]:
    """The submitted form to show again (the secret never is): typed values whole, the
    credential kind and the options as the page knows them."""
    form = {k: request.form.get(k, "") for k in TEXT_FIELDS if k != "client_secret"}
    certificate = request.form.get("credential") == "certificate"
    form["credential"] = "certificate" if certificate else "secret"
    form.update({k: "on" if request.form.get(k) else "" for k in OPTIONS})
    return form


def _count_remote_check(org: Organization) -> None:
    """Count one save or test of the organization's connection; raise
    :class:`~idp.security.ratelimit.RateLimited` past the limit."""
    key = runtime().store.key("rl", "sso-check", org.id)
    rate_limiter().check(key, REMOTE_CHECKS, REMOTE_CHECKS_WINDOW)


def _too_many(
    org: Organization, limited: RateLimited, form: dict[str, str] | None = None
) -> Response:
    error = gettext(
        "Too many connection tests and saves for this organization (at most %(n)s in "
        "%(minutes)s minutes). Try again in a few minutes.",
        n=REMOTE_CHECKS,
        minutes=REMOTE_CHECKS_WINDOW // 60,
    )
    response = make_response(*_page(org, error=error, form=form, status=429))
    response.headers["Retry-After"] = str(limited.retry_after)
    return response


@bp.post("/organizations/<org_id>/sso")
def save(org_id: str) -> tuple[str, int] | Response:
    org, admin = managed_org(org_id)
    form = _form()
    too_long = _too_long()
    if too_long is not None:
        return _page(org, error=too_long, form=form, status=400)
    domains = [d for d in form["domains"].replace(",", " ").split() if d]
    service = connection_service()
    try:
        credential = _credential()
        _count_remote_check(org)
        connection = service.link(
            org,
            form["tenant_id"],
            form["client_id"],
            credential,
            domains,
            LinkOptions(
                jit=bool(form["jit"]),
                enforce_sso=bool(form["enforce_sso"]),
                allow_guests=bool(form["allow_guests"]),
            ),
        )
    except RateLimited as limited:
        return _too_many(org, limited, form)
    except (SsoConnectionError, CredentialError) as exc:
        request_db().rollback()
        return _page(org, error=exc.translated(), form=form, status=400)
    record_event(
        request_db(),
        EventTag.SSO_CONNECTION_SAVED,
        user_id=admin.id,
        organization_id=org.id,
        actor=client_actor(),
        details=saved_event_details(connection),
    )
    request_db().commit()
    return redirect(url_for("sso_admin.settings_page", org_id=org.id, saved=1), 303)


@bp.post("/organizations/<org_id>/sso/test")
def test(org_id: str) -> tuple[str, int] | Response:
    org, _ = managed_org(org_id)
    service = connection_service()
    connection = service.for_organization(org.id)
    if connection is None:
        return _page(org, error=gettext("There is no connection to test yet."), status=400)
    try:
        _count_remote_check(org)
    except RateLimited as limited:
        return _too_many(org, limited)
    try:
        verified = service.test(connection)
    except SsoConnectionError as exc:
        return _page(org, error=gettext("Test failed: %(exc)s", exc=exc.translated()), status=400)
    return _page(
        org,
        message=gettext(
            "Test passed: idp signed in to the tenant and read its verified domains (%(domains)s).",
            domains=", ".join(sorted(verified)),
        ),
    )


@bp.get("/organizations/<org_id>/sso/remove")
def confirm_remove(org_id: str) -> tuple[str, int] | Response:
    org, _ = managed_org(org_id)
    if connection_service().for_organization(org.id) is None:
        return redirect(url_for("sso_admin.settings_page", org_id=org.id), 303)
    return render_template("admin/sso_remove.html", org=org), 200


@bp.post("/organizations/<org_id>/sso/remove")
def remove(org_id: str) -> Response:
    org, admin = managed_org(org_id)
    service = connection_service()
    connection = service.for_organization(org.id)
    if connection is not None:
        details = {"tenant_id": connection.tenant_id, "domains": connection.domain_names}
        service.unlink(connection)
        record_event(
            request_db(),
            EventTag.SSO_CONNECTION_REMOVED,
            user_id=admin.id,
            organization_id=org.id,
            actor=client_actor(),
            details=details,
        )
        request_db().commit()
    return redirect(url_for("sso_admin.settings_page", org_id=org.id, removed=1), 303)
