"""Pictures made on the fly for the upload tests."""

from __future__ import annotations

import io

from PIL import Image


def picture(width: int = 400, height: int = 300, fmt: str = "PNG", **save: object) -> bytes:
    """A ``width`` x ``height`` picture in ``fmt`` (two colours, so cropping is visible)."""
    image = Image.new("RGB", (width, height), (200, 30, 30))
    image.paste((30, 30, 200), (0, 0, width // 2, height))
    out = io.BytesIO()
    image.save(out, format=fmt, **save)
    return out.getvalue()


def jpeg_with_exif(width: int = 400, height: int = 400) -> bytes:
    """A JPEG carrying EXIF metadata (a camera model and a GPS tag)."""
    exif = Image.Exif()
    exif[0x0110] = "Secret Camera 3000"  # Model
    exif[0x8825] = {1: "N", 2: (46.0, 57.0, 0.0)}  # GPSInfo
    return picture(width, height, "JPEG", exif=exif.tobytes())
