"""Time-based one-time passwords: RFC 6238 (TOTP) over RFC 4226 (HOTP), through pyotp.

Pure functions only: no database, no clock of their own. Parameters are the ones every
authenticator app understands (SHA-1, 6 digits, 30-second steps, RFC 6238 §4 and §5.2) and a
160-bit seed (RFC 4226 §4 R6 recommends 160 bits). :func:`verify` accepts the current step and
one step either side (RFC 6238 §5.2, allowed clock drift), compares in constant time, and
refuses any step at or before the last one accepted, so a code works once (RFC 6238 §5.2:
"the verifier MUST NOT accept the second attempt of the OTP after the successful validation
has been issued for the first OTP").
"""

from __future__ import annotations

import base64
import hmac
import io
import re
import secrets
from datetime import datetime

import pyotp
import segno

DIGITS = 6
STEP_SECONDS = 30
VALID_WINDOW = 1
SEED_BYTES = 20  # 160 bits: 32 base32 characters, no padding
DEFAULT_ISSUER = "idp"

_SECRET = re.compile(r"[A-Z2-7]{32}")
_CODE = re.compile(r"[0-9]{6}")
_SPACES = re.compile(r"\s+")


def new_secret() -> str:
    """A fresh random 160-bit seed, base32 without padding (RFC 4648 §6)."""
    return base64.b32encode(secrets.token_bytes(SEED_BYTES)).decode("ascii")


def is_secret(secret: str) -> bool:
    """True for a seed in the shape :func:`new_secret` makes."""
    return _SECRET.fullmatch(secret) is not None


def group(secret: str, size: int = 4) -> str:
    """The seed in groups of ``size`` characters, for typing it into an app by hand."""
    return " ".join(secret[i : i + size] for i in range(0, len(secret), size))


def provisioning_uri(secret: str, account_name: str, issuer_name: str = DEFAULT_ISSUER) -> str:
    """The ``otpauth://totp/...`` URI of the Key URI Format that authenticator apps scan."""
    return _totp(secret).provisioning_uri(name=account_name, issuer_name=issuer_name)


def qr_svg(uri: str) -> str:
    """``uri`` as a QR code (ISO/IEC 18004), drawn locally as an SVG document.

    The document holds a single path (no script, no style, no external reference), black on
    an opaque white background so it stays scannable on a dark page; it is safe to embed in a
    page as an ``<img>`` data URI under the content security policy (``img-src data:``).
    """
    out = io.BytesIO()
    segno.make(uri, error="m", micro=False).save(
        out,
        kind="svg",
        xmldecl=False,
        svgns=True,
        nl=False,
        scale=4,
        border=4,
        dark="#000",
        light="#fff",
        svgclass=None,
        lineclass=None,
    )
    return out.getvalue().decode("utf-8")


def qr_data_uri(uri: str) -> str:
    """:func:`qr_svg` as a ``data:image/svg+xml;base64,...`` URI for an ``<img src>``."""
    return "data:image/svg+xml;base64," + base64.b64encode(qr_svg(uri).encode()).decode("ascii")


def normalize_code(code: str) -> str | None:
    """The six digits of ``code`` (spaces allowed, as apps show ``123 456``), or None."""
    digits = _SPACES.sub("", code)
    return digits if _CODE.fullmatch(digits) else None


def time_step(now: datetime) -> int:
    """The RFC 6238 §4.2 counter T = floor((Unix time - T0) / X) with T0 = 0, X = 30."""
    return int(now.timestamp()) // STEP_SECONDS


def code_at(secret: str, step: int) -> str:
    """The code for one time step (RFC 4226 §5.3 HOTP value of the step counter)."""
    return _totp(secret).generate_otp(step)


def verify(secret: str, code: str, last_step: int | None, now: datetime) -> int | None:
    """The time step ``code`` belongs to, or None when it is wrong, malformed, or replayed.

    Steps ``now - 1`` to ``now + 1`` are tried, each with a constant-time comparison and all
    of them whatever matches; a step ``<= last_step`` (the last accepted one) is refused.
    Callers persist the returned step atomically (see ``TwoFactorService``) so two requests
    racing with the same code cannot both succeed.
    """
    digits = normalize_code(code)
    if digits is None:
        return None
    current = time_step(now)
    matched: int | None = None
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        equal = hmac.compare_digest(code_at(secret, step).encode(), digits.encode())
        fresh = last_step is None or step > last_step
        if equal and fresh and matched is None:
            matched = step
    return matched


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
