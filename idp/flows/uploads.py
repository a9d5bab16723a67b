"""Picture uploads: a larger request body for the few views that take one.

The application caps every request at 1 MiB (``MAX_CONTENT_LENGTH``). Pictures may be up to
5 MB (:data:`idp.media.images.MAX_BYTES`); the cap is raised for the upload views only, from a
URL value preprocessor because those run before every ``before_request`` function, which is
where the CSRF check reads the form (and so the body).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request
from werkzeug.datastructures import FileStorage

from idp.media.images import MAX_BYTES

# Room over the picture limit for the form's other fields and the multipart framing, so an
# oversized picture is refused with its reason rather than a bare 413 up to this size.
UPLOAD_BODY_LIMIT = MAX_BYTES + 3 * 1024 * 1024


def allow_uploads(bp: Blueprint, *endpoints: str) -> None:
    """Raise the body limit for ``endpoints`` (``"blueprint.view"`` names) of ``bp``."""
    names = frozenset(endpoints)

    @bp.url_value_preprocessor
    def _raise_limit(endpoint: str | None, _values: dict[str, Any] | None) -> None:
        if endpoint in names:
            request.max_content_length = UPLOAD_BODY_LIMIT


def uploaded_bytes(field: str) -> bytes:
    """The bytes of the uploaded file ``field`` (empty when none), read up to one byte over
    the picture limit so an oversized file is recognised without reading all of it."""
    upload: FileStorage | None = request.files.get(field)
    if upload is None:
        return b""
    return upload.stream.read(MAX_BYTES + 1)
