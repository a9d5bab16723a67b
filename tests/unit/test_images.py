"""Uploaded pictures: what is refused (with the reason) and what is kept (re-encoded pixels,
no metadata, square for avatars)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from idp.media.images import MAX_BYTES, MAX_PIXELS, MAX_SIDE, ImageRefused, process
from idp.models import ImageKind
from tests.images import (
    jpeg_turned,
    jpeg_with_exif,
    picture,
    png_with_bad_exif,
    png_with_bad_raw_exif_text,
    webp_with_bad_exif,
)


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_an_avatar_is_center_cropped_square_and_re_encoded_as_png() -> None:
    kept = process(picture(600, 300), ImageKind.AVATAR)
    image = _open(kept.data)
    assert (image.format, image.size, kept.content_type) == ("PNG", (256, 256), "image/png")
    # Center crop: the left half of the 600 x 300 picture is blue, the right red; the middle
    # square shows both halves equally.
    assert image.getpixel((10, 128))[:3] == (30, 30, 200)
    assert image.getpixel((245, 128))[:3] == (200, 30, 30)


def test_metadata_is_stripped() -> None:
    original = _open(jpeg_with_exif())
    assert original.getexif()  # the upload carries EXIF (camera, GPS)
    kept = _open(process(jpeg_with_exif(), ImageKind.AVATAR).data)
    assert not kept.getexif()
    assert "icc_profile" not in kept.info and "exif" not in kept.info
    assert b"Secret Camera" not in process(jpeg_with_exif(), ImageKind.AVATAR).data


def test_a_too_small_picture_is_refused_with_the_reason() -> None:
    with pytest.raises(ImageRefused, match=r"is 200 x 300 pixels; it must be at least 210 x 210"):
        process(picture(200, 300), ImageKind.AVATAR)


@pytest.mark.parametrize(
    "data",
    [b"", b"GIF89a not really", b"<svg xmlns='http://www.w3.org/2000/svg'/>",
     b"%PDF-1.4\n", picture(400, 400)[:200]],
    ids=["empty", "fake-gif", "svg", "pdf", "truncated-png"],
)
def test_what_is_not_a_picture_is_refused(data: bytes) -> None:
    with pytest.raises(ImageRefused):
        process(data, ImageKind.AVATAR)


def test_a_file_over_5_mb_is_refused() -> None:
    with pytest.raises(ImageRefused, match="larger than 5 MB"):
        process(b"\x89PNG" + b"\0" * MAX_BYTES, ImageKind.AVATAR)


def test_a_decompression_bomb_is_refused() -> None:
    bomb = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(bomb, format="PNG")
    assert len(bomb.getvalue()) < 100_000  # tiny file, 100 million pixels
    with pytest.raises(ImageRefused, match="too many pixels"):
        process(bomb.getvalue(), ImageKind.AVATAR)


def test_a_wide_logo_keeps_its_proportions() -> None:
    kept = _open(process(picture(1200, 300), ImageKind.WIDE_LOGO).data)
    assert kept.size == (600, 150)


@pytest.mark.parametrize(
    "data",
    [png_with_bad_exif(), png_with_bad_raw_exif_text(), webp_with_bad_exif()],
    ids=["png-exif-chunk", "png-raw-profile-text", "webp-exif-chunk"],
)
def test_a_broken_exif_block_keeps_the_pixels_unrotated(data: bytes) -> None:
    """Pillow raises while parsing such EXIF (SyntaxError, ValueError); the upload is not an
    error for that: the orientation cannot be read, so the pixels are kept as they are."""
    kept = _open(process(data, ImageKind.AVATAR).data)
    assert kept.size == (256, 256) and not kept.getexif()
    assert kept.getpixel((10, 128))[:3] == (30, 30, 200)  # the left half stays on the left
    assert _open(process(data, ImageKind.WIDE_LOGO).data).size == (200, 200)


def test_the_exif_orientation_turns_the_picture_upright() -> None:
    # 400 x 300 stored, "rotate 90° clockwise to view" (6): upright it is 300 x 400, which
    # fits the 600 x 200 box of a wide logo as 150 x 200 (unturned it would be 267 x 200).
    assert _open(process(jpeg_turned(400, 300, 6), ImageKind.WIDE_LOGO).data).size == (150, 200)
    assert _open(process(jpeg_turned(400, 300, 1), ImageKind.WIDE_LOGO).data).size == (267, 200)


def test_more_pixels_than_a_4096_square_are_refused_with_the_size() -> None:
    big = io.BytesIO()
    Image.new("RGB", (MAX_SIDE + 1, MAX_SIDE), (10, 20, 30)).save(big, format="PNG")
    assert len(big.getvalue()) < 100_000  # a small file, 16.8 million pixels
    with pytest.raises(
        ImageRefused,
        match=r"too many pixels \(4097 x 4096\): at most 16,?777,?216 are accepted "
        r"\(4096 x 4096\)",
    ):
        process(big.getvalue(), ImageKind.AVATAR)
    assert MAX_PIXELS == 4096 * 4096
