"""Checking and re-encoding uploaded pictures with Pillow (OWASP File Upload Cheat Sheet).

An upload is refused, with a reason its author can act on, when it is larger than
:data:`MAX_BYTES`, is not an image Pillow can fully decode (``verify()``, then a real load of
a fresh copy), is a decompression bomb (more than :data:`MAX_PIXELS`), or is smaller than the
kind of picture needs. What is kept is never the uploaded file: the decoded pixels are
re-encoded as PNG, so EXIF (with its GPS position), ICC profiles, comments and any payload
hidden in the file are gone. Avatars and square logos are center-cropped square and scaled to
:data:`SQUARE_SIZE`; rectangular logos keep their proportions within :data:`WIDE_BOX`.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from flask_babel import gettext
from PIL import Image, ImageOps, UnidentifiedImageError

from idp.models import ImageKind

MAX_BYTES = 5 * 1024 * 1024
MAX_PIXELS = 40_000_000  # about 6300 x 6300: far above any camera picture worth a logo
MIN_SQUARE_SIDE = 210
SQUARE_SIZE = 256
WIDE_BOX = (600, 200)
MIN_WIDE = (120, 40)
FORMATS = ("PNG", "JPEG", "GIF", "WEBP")
CONTENT_TYPE = "image/png"


class ImageRefused(ValueError):
    """The upload cannot be used; the message says why, for the person who sent it."""


@dataclass(frozen=True)
class ProcessedImage:
    data: bytes
    content_type: str
    width: int
    height: int


def _open(data: bytes) -> Image.Image:
    if not data:
        raise ImageRefused(gettext("Choose a picture to upload."))
    if len(data) > MAX_BYTES:
        raise ImageRefused(gettext("This file is larger than 5 MB. Choose a smaller picture."))
    not_image = ImageRefused(
        gettext("This file is not a picture. Upload a PNG, JPEG, GIF or WebP image.")
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as probe:
                if probe.width * probe.height > MAX_PIXELS:
                    raise ImageRefused(
                        gettext("This picture has too many pixels. Upload a smaller one.")
                    )
                probe.verify()
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRefused(
            gettext("This picture has too many pixels. Upload a smaller one.")
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise not_image from None
    return image


def _rgba(image: Image.Image) -> Image.Image:
    """The pixels only, upright (EXIF orientation applied), in RGBA: no metadata survives."""
    upright = ImageOps.exif_transpose(image) or image
    return upright.convert("RGBA")


def _encode(image: Image.Image) -> ProcessedImage:
    clean = Image.new("RGBA", image.size)
    clean.paste(image)
    out = io.BytesIO()
    clean.save(out, format="PNG", optimize=True)
    return ProcessedImage(out.getvalue(), CONTENT_TYPE, clean.width, clean.height)


def process(data: bytes, kind: ImageKind) -> ProcessedImage:
    """Check ``data`` and return the picture to store; :class:`ImageRefused` with the reason."""
    image = _rgba(_open(data))
    if kind is ImageKind.WIDE_LOGO:
        min_w, min_h = MIN_WIDE
        if image.width < min_w or image.height < min_h:
            raise ImageRefused(
                gettext(
                    "This logo is %(width)s x %(height)s pixels; "
                    "it must be at least %(min_w)s x %(min_h)s.",
                    width=image.width,
                    height=image.height,
                    min_w=min_w,
                    min_h=min_h,
                )
            )
        image.thumbnail(WIDE_BOX, Image.Resampling.LANCZOS)
        return _encode(image)
    if image.width < MIN_SQUARE_SIDE or image.height < MIN_SQUARE_SIDE:
        raise ImageRefused(
            gettext(
                "This picture is %(width)s x %(height)s pixels; "
                "it must be at least %(side)s x %(side)s. Upload a larger one.",
                width=image.width,
                height=image.height,
                side=MIN_SQUARE_SIDE,
            )
        )
    square = ImageOps.fit(image, (SQUARE_SIZE, SQUARE_SIZE), Image.Resampling.LANCZOS)
    return _encode(square)
