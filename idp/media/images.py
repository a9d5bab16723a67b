"""Checking and re-encoding uploaded pictures with Pillow (OWASP File Upload Cheat Sheet).

An upload is refused, with a reason its author can act on, when it is larger than
:data:`MAX_BYTES`, is not an image Pillow can fully decode (``verify()``, then a real load of
a fresh copy), is a decompression bomb (more than :data:`MAX_PIXELS`), or is smaller than the
kind of picture needs. A broken EXIF block does not refuse the picture: its pixels are kept,
unrotated (the orientation cannot be read). What is kept is never the uploaded file: the
decoded pixels are re-encoded as PNG, so EXIF (with its GPS position), ICC profiles, comments
and any payload hidden in the file are gone. Avatars and square logos are center-cropped
square and scaled to :data:`SQUARE_SIZE`; rectangular logos keep their proportions within
:data:`WIDE_BOX`.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

from flask_babel import format_number, gettext
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from idp.models import ImageKind

MAX_BYTES = 5 * 1024 * 1024
# 4096 x 4096: above a 12-megapixel phone photo (4032 x 3024), far above what is kept (at most
# 600 x 200). Decoding holds a few RGBA copies of 4 bytes a pixel, so this bounds the memory one
# upload takes to a few hundred MB at most, whatever a small compressed file claims.
MAX_SIDE = 4096
MAX_PIXELS = MAX_SIDE * MAX_SIDE
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
                        gettext(
                            "This picture has too many pixels (%(width)s x %(height)s): "
                            "at most %(limit)s are accepted (%(side)s x %(side)s). "
                            "Upload a smaller one.",
                            width=probe.width,
                            height=probe.height,
                            limit=format_number(MAX_PIXELS),
                            side=MAX_SIDE,
                        )
                    )
                probe.verify()
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            image.load()
    except ImageRefused:
        raise  # a ValueError too: not to be taken for "not a picture" below
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRefused(
            gettext("This picture has too many pixels. Upload a smaller one.")
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise not_image from None
    return image


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# What Pillow raises while parsing a malformed EXIF block: a bad TIFF header (SyntaxError), a
# "Raw profile type exif" PNG text that is not hex (ValueError), truncated or corrupt
# directories (struct.error, OSError, EOFError).
_BROKEN_EXIF = (SyntaxError, ValueError, struct.error, OSError, EOFError)


def _orientation(image: Image.Image) -> Image.Transpose | None:
    """How to turn the pixels upright per the EXIF orientation; ``None`` when they already are,
    or when the EXIF block is broken (the picture is kept as it is rather than refused)."""
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation)
    except _BROKEN_EXIF:
        return None
    return _TRANSPOSE.get(orientation) if isinstance(orientation, int) else None


def _rgba(image: Image.Image) -> Image.Image:
    """The pixels only, upright (EXIF orientation applied), in RGBA: no metadata survives.
    No copy is made beyond what turning and converting need (memory, see :data:`MAX_PIXELS`)."""
    method = _orientation(image)
    upright = image.transpose(method) if method is not None else image
    if upright is not image:
        image.close()
    rgba = upright.convert("RGBA")
    if rgba is not upright:
        upright.close()
    return rgba


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
