"""Just enough JOSE for the fake: compact JWS signing and verification with ``cryptography``.

Hand-rolled on purpose: the fake must be able to produce tokens no well-behaved library would
(``alg: none``, HS256 keyed with the RSA public key, a signature over different bytes), and it
verifies client assertions the way Entra does, without depending on the code under test.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

JsonDict = dict[str, Any]


class JoseError(ValueError):
    """A token could not be parsed or verified."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise JoseError("bad base64url") from exc


def _json_segment(data: JsonDict) -> str:
    return b64url(json.dumps(data, separators=(",", ":")).encode())


def _uint_b64(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def sign_rs256(key: rsa.RSAPrivateKey, signing_input: bytes) -> bytes:
    return key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())


def sign_ps256(key: rsa.RSAPrivateKey, signing_input: bytes) -> bytes:
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    return key.sign(signing_input, pss, hashes.SHA256())


def encode(header: JsonDict, claims: JsonDict, key: rsa.RSAPrivateKey | bytes | None,
           alg: str | None = None) -> str:
    """Sign ``claims`` with ``alg`` (RS256, PS256, HS256, none), by default the header's
    ``alg``; a different ``alg`` forges a header that lies about the signature."""
    signing_input = f"{_json_segment(header)}.{_json_segment(claims)}".encode("ascii")
    alg = alg or header.get("alg")
    if alg == "none":
        signature = b""
    elif alg == "HS256":
        if not isinstance(key, bytes):
            raise JoseError("HS256 needs a byte secret")
        signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    elif alg in ("RS256", "PS256"):
        if not isinstance(key, rsa.RSAPrivateKey):
            raise JoseError(f"{alg} needs an RSA private key")
        signature = (sign_rs256 if alg == "RS256" else sign_ps256)(key, signing_input)
    else:
        raise JoseError(f"unsupported alg {alg!r}")
    return f"{signing_input.decode('ascii')}.{b64url(signature)}"


@dataclass(frozen=True)
class ParsedJws:
    header: JsonDict
    claims: JsonDict
    signing_input: bytes
    signature: bytes


def parse(token: str) -> ParsedJws:
    """Split a compact JWS without verifying it."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JoseError("not a compact JWS")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise JoseError("segments are not JSON") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JoseError("segments are not JSON objects")
    return ParsedJws(
        header=cast(JsonDict, header),
        claims=cast(JsonDict, claims),
        signing_input=f"{parts[0]}.{parts[1]}".encode("ascii"),
        signature=b64url_decode(parts[2]),
    )


def verify_rsa(parsed: ParsedJws, public_key: rsa.RSAPublicKey) -> None:
    """Check an RS256 or PS256 signature; raise :class:`JoseError` otherwise."""
    alg = parsed.header.get("alg")
    try:
        if alg == "RS256":
            public_key.verify(
                parsed.signature, parsed.signing_input, padding.PKCS1v15(), hashes.SHA256()
            )
        elif alg == "PS256":
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
            public_key.verify(parsed.signature, parsed.signing_input, pss, hashes.SHA256())
        else:
            raise JoseError(f"unsupported alg {alg!r}")
    except InvalidSignature as exc:
        raise JoseError("bad signature") from exc


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def self_signed_certificate(key: rsa.RSAPrivateKey, common_name: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )


def x5t(cert: x509.Certificate) -> str:
    """base64url SHA-1 thumbprint of the DER certificate (header ``x5t``; Entra's ``kid``)."""
    return b64url(cert.fingerprint(hashes.SHA1()))


def x5t_s256(cert: x509.Certificate) -> str:
    """base64url SHA-256 thumbprint of the DER certificate (header ``x5t#S256``)."""
    return b64url(cert.fingerprint(hashes.SHA256()))


@dataclass
class SigningKey:
    """An RSA key with a self-signed certificate, published like Entra's: ``kid == x5t``."""

    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    kid: str = field(init=False)

    def __post_init__(self) -> None:
        self.kid = x5t(self.certificate)

    @classmethod
    def generate(cls, common_name: str = "accounts.accesscontrol.windows.net") -> SigningKey:
        key = new_rsa_key()
        return cls(key, self_signed_certificate(key, common_name))

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.private_key.public_key()

    def public_pem(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwk(self, issuer: str | None = None) -> JsonDict:
        numbers = self.public_key.public_numbers()
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        jwk: JsonDict = {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": _uint_b64(numbers.n),
            "e": _uint_b64(numbers.e),
            "x5c": [base64.b64encode(der).decode("ascii")],
            "cloud_instance_name": "microsoftonline.com",
        }
        if issuer is not None:
            jwk["issuer"] = issuer
        return jwk
