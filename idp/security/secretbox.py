"""Encryption at rest for small secrets (signing keys, TOTP seeds): AES-256-GCM under a key
derived from IDP_SECRET_KEY with HKDF-SHA256 (RFC 5869), one derived key per purpose.

Sealed values look like ``v1:<base64url(nonce || ciphertext || tag)>``; the associated data
binds a value to its row (a kid, a user id), so it cannot be copied onto another row.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FORMAT = "v1"
NONCE_BYTES = 12
TAG_BYTES = 16


class SecretBoxError(Exception):
    """A sealed value cannot be opened: wrong secret key, tampering, or a malformed value."""


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SecretBox:
    def __init__(self, secret_key: str, purpose: bytes) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
            secret_key.encode()
        )
        self._aead = AESGCM(key)
        self.purpose = purpose
        # Names the derived key (e.g. in a cache) without revealing it.
        self.tag = hashlib.sha256(purpose + b" cache " + key).hexdigest()[:32]

    def seal(self, associated: str, plaintext: bytes) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext, associated.encode())
        return f"{FORMAT}:{b64encode(nonce + sealed)}"

    def open(self, associated: str, stored: str) -> bytes:
        version, sep, body = stored.partition(":")
        if not sep or version != FORMAT:
            raise SecretBoxError("stored in an unknown format")
        try:
            raw = b64decode(body)
        except (binascii.Error, ValueError):
            raise SecretBoxError("ciphertext is not base64url") from None
        if len(raw) < NONCE_BYTES + TAG_BYTES:
            raise SecretBoxError("ciphertext is truncated")
        try:
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], associated.encode())
        except InvalidTag:
            raise SecretBoxError("cannot be decrypted with this IDP_SECRET_KEY") from None
