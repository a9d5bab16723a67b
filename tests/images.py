"""Pictures made on the fly for the upload tests."""

from __future__ import annotations

import io

from PIL import Image, PngImagePlugin


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


def png_with_bad_exif() -> bytes:
    """A 300 x 300 PNG whose eXIf chunk is not a TIFF structure (Pillow: SyntaxError)."""
    return picture(300, 300, "PNG", exif=b"garbage!")


def png_with_bad_raw_exif_text() -> bytes:
    """A 300 x 300 PNG whose "Raw profile type exif" text is not hex (Pillow: ValueError)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Raw profile type exif", "\nexif\n      10\nnot hex at all\n")
    return picture(300, 300, "PNG", pnginfo=info)


def webp_with_bad_exif() -> bytes:
    """A 300 x 300 WebP whose EXIF chunk is not a TIFF structure (Pillow: SyntaxError)."""
    return picture(300, 300, "WEBP", exif=b"garbage!", lossless=True)


def jpeg_turned(width: int, height: int, orientation: int) -> bytes:
    """A JPEG whose EXIF says how to turn it upright (``orientation``, 1-8)."""
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    return picture(width, height, "JPEG", exif=exif.tobytes())
