"""The provider's token-signing keys (JWKs, RFC 7517), rotated per OIDC Core §10.1.1.

Each row is one key pair. ``kid`` is the RFC 7638 thumbprint of the public key, so a kid names
exactly one key and can be cached forever. The private half is stored only encrypted (see
:mod:`idp.provider.keys`); the public half is kept as the JWK published at ``jwks_uri``.

At most one key per algorithm is *current* (``retired_at IS NULL``): a partial unique index
enforces it, which is also what makes concurrent ``ensure_keys``/``rotate`` from several
processes safe, and it serves the per-request "which key signs now" lookup.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from idp.models.base import Base, UTCDateTime, utcnow


class SigningKey(Base):
    """One signing key pair: current for its ``alg`` until a newer one retires it."""

    __tablename__ = "signing_keys"
    __table_args__ = (
        Index(
            "uq_signing_keys_current_alg",
            "alg",
            unique=True,
            sqlite_where=text("retired_at IS NULL"),
            postgresql_where=text("retired_at IS NULL"),
        ),
    )

    # RFC 7638 thumbprint (base64url SHA-256: 43 characters).
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    # RFC 7518 §3.1 "alg": RS256 or ES256.
    alg: Mapped[str] = mapped_column(String(10))
    # "v1:" + base64url(nonce || AES-256-GCM ciphertext of the private JWK). Never plaintext.
    private_key: Mapped[str] = mapped_column(Text)
    # The public JWK as published: kty, key members, kid, alg, use="sig". No private members.
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # When it became the current key of its alg.
    activated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # When a newer key of the same alg became current; published until its tokens expired.
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
