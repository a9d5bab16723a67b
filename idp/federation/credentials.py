"""How idp proves itself to Entra ID as a confidential client: a client secret, or a
certificate whose private key signs a ``client_assertion``.

The assertion follows Microsoft identity platform "certificate credentials" (RFC 7523 §2.2
client authentication with a JWT): header ``alg`` PS256 and ``x5t#S256`` (base64url SHA-256
thumbprint of the DER certificate), claims ``aud`` (the token endpoint), ``iss`` = ``sub`` =
the client id, a unique ``jti``, ``nbf``/``iat`` now and ``exp`` ten minutes later. msal
builds the same assertion (PS256 + ``x5t#S256``) when it is given the public certificate.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import RSAKey

from idp.i18n import N_, LocalizedError

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_SECONDS = 600
MIN_RSA_BITS = 2048


class CredentialError(LocalizedError):
    """The credential is unusable; the message (one line) is for the administrator
    (:meth:`translated` on a page)."""


@dataclass(frozen=True)
class ClientSecret:
    value: str

    kind = "secret"

    def for_msal(self) -> str | dict[str, str]:
        return self.value

    def token_fields(self, client_id: str, token_endpoint: str) -> dict[str, str]:
        """Client authentication fields of a token request (``client_secret_post``)."""
        return {"client_secret": self.value}

    def sealed_parts(self) -> tuple[str, str]:
        """(secret or private key, certificate) to store; the first is sealed."""
        return self.value, ""


@dataclass(frozen=True)
class ClientCertificate:
    """An RSA private key and the certificate registered in the app registration."""

    private_key_pem: str
    certificate_pem: str

    kind = "certificate"

    @classmethod
    def parse(cls, private_key_pem: str, certificate_pem: str) -> ClientCertificate:
        """Check that the pair is usable: PEM, RSA >= 2048 bits, unencrypted, matching, and
        the certificate currently valid."""
        certificate = _load_certificate(certificate_pem)
        try:
            key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        except TypeError:
            raise CredentialError(
                N_("the private key is encrypted; give it without a passphrase")
            ) from None
        except ValueError:
            raise CredentialError(N_("the private key is not a PEM private key")) from None
        except UnsupportedAlgorithm:  # e.g. an elliptic curve the library does not know
            raise _not_rsa() from None
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < MIN_RSA_BITS:
            raise _not_rsa()
        try:
            certificate_key = certificate.public_key()
        except UnsupportedAlgorithm:
            raise CredentialError(
                N_("the certificate's public key uses an unsupported algorithm; use RSA")
            ) from None
        if certificate_key != key.public_key():
            raise CredentialError(N_("the private key does not belong to the certificate"))
        now = datetime.now(UTC)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise CredentialError(
                N_("the certificate is not valid now (valid %(start)s to %(end)s)"),
                start=f"{certificate.not_valid_before_utc:%Y-%m-%d}",
                end=f"{certificate.not_valid_after_utc:%Y-%m-%d}",
            )
        return cls(private_key_pem.strip() + "\n", certificate_pem.strip() + "\n")

    @property
    def certificate(self) -> x509.Certificate:
        return _load_certificate(self.certificate_pem)

    @property
    def thumbprint_s256(self) -> str:
        """``x5t#S256``: base64url (unpadded) SHA-256 of the DER certificate (RFC 7517 §4.9)."""
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()

    @property
    def expires(self) -> datetime:
        return self.certificate.not_valid_after_utc

    def for_msal(self) -> str | dict[str, str]:
        # With the public certificate msal signs PS256 and sends x5t#S256.
        return {"private_key": self.private_key_pem, "public_certificate": self.certificate_pem}

    def assertion(self, client_id: str, audience: str) -> str:
        now = int(time.time())
        header = {"alg": "PS256", "typ": "JWT", "x5t#S256": self.thumbprint_s256}
        claims = {
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": str(uuid.uuid4()),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_SECONDS,
        }
        key = RSAKey.import_key(self.private_key_pem)
        return jwt.encode(header, claims, key, algorithms=["PS256"])

    def token_fields(self, client_id: str, token_endpoint: str) -> dict[str, str]:
        """Client authentication fields of a token request (``private_key_jwt``)."""
        return {
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(client_id, token_endpoint),
        }

    def sealed_parts(self) -> tuple[str, str]:
        return self.private_key_pem, self.certificate_pem


Credential = ClientSecret | ClientCertificate

# A stored certificate this close to its end is announced on the organization's SSO page.
EXPIRY_WARNING_DAYS = 30


@dataclass(frozen=True)
class CertificateValidity:
    """Until when a connection's certificate is valid, as its administrator needs to know:
    Entra refuses an assertion signed for an expired certificate, and every SSO sign-in then
    fails for the organization's members."""

    not_after: datetime
    expired: bool
    expiring: bool  # within EXPIRY_WARNING_DAYS


def certificate_validity(
    certificate_pem: str, now: datetime | None = None
) -> CertificateValidity | None:
    """The validity of a stored (public) certificate; None for a client secret or a
    certificate that cannot be read."""
    if not certificate_pem.strip():
        return None
    try:
        not_after = _load_certificate(certificate_pem).not_valid_after_utc
    except CredentialError:
        return None
    now = now or datetime.now(UTC)
    left = not_after - now
    return CertificateValidity(
        not_after=not_after,
        expired=left.total_seconds() <= 0,
        expiring=left.days < EXPIRY_WARNING_DAYS,
    )


def _not_rsa() -> CredentialError:
    return CredentialError(
        N_("the private key must be RSA with at least %(bits)s bits"), bits=MIN_RSA_BITS
    )


def _load_certificate(pem: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.strip().encode())
    except ValueError:
        raise CredentialError(N_("the certificate is not a PEM X.509 certificate")) from None
