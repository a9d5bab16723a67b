"""Security headers on every response (OWASP Secure Headers Project)."""

from __future__ import annotations

from flask import Flask, Response

# form-action is deliberately absent: Chromium applies it to the redirects that follow a form
# POST, which would block the redirect from the sign-in form to a relying service.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def init_app(app: Flask, *, https: bool) -> None:
    @app.after_request
    def _security_headers(response: Response) -> Response:
        h = response.headers
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("X-Frame-Options", "DENY")
        h["X-Content-Type-Options"] = "nosniff"
        h.setdefault("Referrer-Policy", "no-referrer")
        h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if https:
            h.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        # Pages and API answers can carry personal data or credentials: never cache them.
        # Only static assets may be cached.
        if not response.cache_control.public:
            h["Cache-Control"] = "no-store"
            h["Pragma"] = "no-cache"
        return response
