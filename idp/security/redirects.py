"""Safe post-sign-in redirects: only paths on this origin (OWASP Unvalidated Redirects)."""

from __future__ import annotations

from urllib.parse import urlsplit


def safe_next(target: str | None, default: str = "/account") -> str:
    """Return ``target`` when it is a same-origin path, else ``default``.

    Browsers treat ``//host``, ``/\\host`` and control characters as a way to another origin,
    so only an absolute path without scheme or host, free of backslashes and control characters,
    is accepted.
    """
    if not target or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target
