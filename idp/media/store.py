"""Stored pictures: rows of ``images`` with a random id and the re-encoded bytes.

A new upload always makes a new row (the old one is deleted), so a URL names one content for
ever: ``/media/<id>.png`` is served with ``Cache-Control: public, max-age=31536000,
immutable`` and changes whenever the picture does.
"""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.orm import Session

from idp.media.images import process
from idp.models import ImageKind, StoredImage


def image_path(image_id: str) -> str:
    """The path of a stored picture, relative to the issuer."""
    return f"/media/{image_id}.png"


class ImageStore:
    def __init__(self, db: Session) -> None:
        self.db = db

    def save(self, data: bytes, kind: ImageKind) -> StoredImage:
        """Check, re-encode and add a picture to the caller's transaction. Raises
        :class:`~idp.media.images.ImageRefused`."""
        processed = process(data, kind)
        row = StoredImage(
            kind=kind.value,
            content_type=processed.content_type,
            width=processed.width,
            height=processed.height,
            data=processed.data,
        )
        self.db.add(row)
        self.db.flush()
        return row

    def get(self, image_id: str) -> StoredImage | None:
        if len(image_id) > 36:
            return None
        return self.db.get(StoredImage, image_id)

    def discard(self, image_id: str | None) -> None:
        if image_id:
            self.db.execute(delete(StoredImage).where(StoredImage.id == image_id))
