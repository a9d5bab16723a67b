"""Trusted-device tokens (OWASP "Slow Down Online Guessing Attacks with Device Cookies").

After a successful sign-in the browser gets a signed token naming the user and the device. A
sign-in attempt carrying a valid token for the account counts its failures in that device's
own bucket, so an attacker elsewhere who locks the account does not lock its owner out of a
browser they have used before.

The token is bound to the account's password (a digest of its stored hash): a password change
or reset, typically after a compromise, withdraws the trust of every browser that signed in
before, an intruder's included; each regains it at its next successful sign-in.
"""

from __future__ import annotations

import hashlib
import hmac

from itsdangerous import BadSignature, URLSafeTimedSerializer

TRUST_COOKIE = "idp_trust"
TRUST_MAX_AGE = 400 * 24 * 3600


class DeviceTrust:
    def __init__(self, secret_key: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret_key, salt="idp device trust")

    def issue(self, user_id: str, device_id: str, password_hash: str | None) -> str:
        return self._serializer.dumps(
            {"u": user_id, "d": device_id, "p": _password_stamp(password_hash)}
        )

    def trusted_device(
        self, token: str | None, user_id: str, password_hash: str | None
    ) -> str | None:
        """The device id the token vouches for, if it was issued to ``user_id`` while the
        account had the password it has now."""
        if not token or len(token) > 500:
            return None
        try:
            data = self._serializer.loads(token, max_age=TRUST_MAX_AGE)
        except BadSignature:
            return None
        if not isinstance(data, dict) or data.get("u") != user_id:
            return None
        stamp = data.get("p")
        if not isinstance(stamp, str) or not hmac.compare_digest(
            stamp, _password_stamp(password_hash)
        ):
            return None
        device = data.get("d")
        return device if isinstance(device, str) else None


def _password_stamp(password_hash: str | None) -> str:
    """A short digest of the stored password hash (which changes with every new password)."""
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:32]
