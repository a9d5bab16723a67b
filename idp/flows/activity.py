"""The activity log pages: a user's own (/account/activity) and, for an organization's owners and
admins, its members' (/organizations/<id>/activity); each with a CSV export of the same view.

Read-only by design: the log is append-only, so these paths answer GET (and HEAD) only; any
other method is 405. Filters are query parameters (see :mod:`idp.activity.filters`); bad ones
give the page again with a message and status 400.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, redirect, render_template, request, stream_with_context, url_for
from flask_babel import gettext
from werkzeug.wrappers import Response

from idp.activity import (
    ActionGroup,
    ActivityFilterError,
    ActivityFilters,
    ActivityService,
    OrganizationScope,
    Perspective,
    Scope,
    UserScope,
    csv_lines,
    parse_filters,
)
from idp.activity.filters import time_zones
from idp.flows.admin import managed_org
from idp.models import Organization
from idp.runtime import release_request_db, request_db, runtime
from idp.services import current_session

bp = Blueprint("activity", __name__)


def activity_service() -> ActivityService:
    return ActivityService(request_db())


def _sign_in_first() -> Response:
    return redirect(url_for("login.login_form", next=request.full_path.rstrip("?")), 303)


# Pages ------------------------------------------------------------------------------------


@bp.get("/account/activity")
def account_activity() -> Response | tuple[str, int]:
    active = current_session()
    if active is None:
        return _sign_in_first()
    return _page(UserScope(active.user_id), None)


@bp.get("/account/activity.csv")
def account_activity_csv() -> Response | tuple[str, int]:
    active = current_session()
    if active is None:
        return _sign_in_first()
    return _export(UserScope(active.user_id), None)


@bp.get("/organizations/<org_id>/activity")
def organization_activity(org_id: str) -> Response | tuple[str, int]:
    if current_session() is None:
        return _sign_in_first()
    org, _ = managed_org(org_id)  # 403 unless an owner or admin of this organization
    return _page(OrganizationScope(org.id), org)


@bp.get("/organizations/<org_id>/activity.csv")
def organization_activity_csv(org_id: str) -> Response | tuple[str, int]:
    if current_session() is None:
        return _sign_in_first()
    org, _ = managed_org(org_id)
    return _export(OrganizationScope(org.id), org)


# Shared -----------------------------------------------------------------------------------


def _filters(service: ActivityService, scope: Scope) -> ActivityFilters:
    filters = parse_filters(request.args, with_member=isinstance(scope, OrganizationScope))
    if (
        isinstance(scope, OrganizationScope)
        and filters.member_id is not None
        and not service.is_member(scope.organization_id, filters.member_id)
    ):
        raise ActivityFilterError("member", gettext("Unknown member: choose one from the list."))
    return filters


def _endpoints(org: Organization | None) -> tuple[str, str]:
    if org is None:
        return "activity.account_activity", "activity.account_activity_csv"
    return "activity.organization_activity", "activity.organization_activity_csv"


def _page(scope: Scope, org: Organization | None) -> tuple[str, int]:
    service = activity_service()
    page_endpoint, csv_endpoint = _endpoints(org)
    route: dict[str, Any] = {"org_id": org.id} if org else {}
    context: dict[str, Any] = {
        "org": org,
        "form": request.args,
        "groups": list(ActionGroup),
        "products": service.products(scope.perspective),
        "zones": time_zones(),
        "members": service.members(org.id) if org else [],
        "page_url": url_for(page_endpoint, **route),
        "admin_view": scope.perspective is Perspective.ADMIN,
    }
    template = "admin/activity.html" if org else "account/activity.html"
    try:
        filters = _filters(service, scope)
    except ActivityFilterError as exc:
        return render_template(
            template, **context, error=exc.message, error_param=exc.param, rows=[], zone="UTC"
        ), 400
    page = service.page(scope, filters)
    args: dict[str, Any] = filters.query_args()
    next_url = (
        url_for(page_endpoint, **route, **args, cursor=page.next_cursor.encode())
        if page.next_cursor
        else None
    )
    return render_template(
        template,
        **context,
        error=None,
        error_param=None,
        rows=page.rows,
        zone=filters.tz.key,
        filtered=bool(args.keys() - {"tz"}),
        next_url=next_url,
        newest_url=url_for(page_endpoint, **route, **args) if filters.cursor else None,
        export_url=url_for(csv_endpoint, **route, **args),
    ), 200


def _export(scope: Scope, org: Organization | None) -> Response | tuple[str, int]:
    """Every row of the filtered view as CSV, streamed (from the newest; no cursor)."""
    try:
        filters = _filters(activity_service(), scope).after(None)
    except ActivityFilterError:
        return _page(scope, org)
    session_factory = runtime().session_factory
    with_member = org is not None

    def generate() -> Iterator[str]:
        # Its own database session, for as long as the file takes to send; the request's
        # connections go back to the pool at once (released below).
        with session_factory() as db:
            rows = ActivityService(db).iter_rows(scope, filters)
            yield from csv_lines(rows, with_member=with_member)

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    release_request_db()
    return Response(
        # In the request's context: sentences and labels in the reader's language.
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="activity-{stamp}.csv"'},
    )
