"""Serving stored pictures (avatars, organization logos) and an organization's public logo URL.

Pictures are public, as a ``picture`` claim must be fetchable by relying services: their URL
holds a random id, so it cannot be enumerated, and changes with every new upload, so each
answer may be cached for a year (``immutable``).
"""

from __future__ import annotations

from flask import Blueprint, abort, redirect, url_for
from werkzeug.wrappers import Response

from idp.media.store import ImageStore
from idp.models import Organization
from idp.runtime import request_db

bp = Blueprint("media", __name__)
YEAR = 365 * 24 * 3600


@bp.get("/media/<image_id>.png")
def image(image_id: str) -> Response:
    row = ImageStore(request_db()).get(image_id)
    if row is None:
        abort(404)
    response = Response(row.data, mimetype=row.content_type)
    response.cache_control.public = True
    response.cache_control.max_age = YEAR
    response.cache_control.immutable = True
    response.headers["Content-Disposition"] = "inline"
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response


@bp.get("/organizations/<org_id>/logo")
def organization_logo(org_id: str) -> Response:
    """The organization's rectangular logo (its square one when it has none), for relying
    services: a redirect to the current picture, itself cacheable for ever; 404 without."""
    org = request_db().get(Organization, org_id)
    logo = (org.wide_logo_id or org.square_logo_id) if org else None
    if logo is None:
        abort(404)
    response = redirect(url_for("media.image", image_id=logo), 302)
    response.cache_control.public = True
    response.cache_control.max_age = 300
    return response
