"""Certificate credentials for an SSO connection (issue 6, item 1): the private key signs a
``client_assertion`` (PS256, ``x5t#S256``) for the Graph test at linking (msal) and for the
code redemption at sign-in; a pair that does not fit is refused before anything is saved."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy import select

from idp.federation.credentials import ClientCertificate, CredentialError
from idp.models import SsoConnection
from tests.fake_entra import FakeEntra
from tests.fake_entra import jose as fake_jose
from tests.fake_entra.client import ClientCertificate as FakeCertificate
from tests.services import idp_env, run_idp
from tests.sso import CLIENT_ID, SECRET, TID, World, make_world, unsupported_curve_pair


@pytest.fixture
def world(tmp_path: Path, database_url: str, redis_url: str,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with make_world(tmp_path, database_url, redis_url, monkeypatch) as w:
        yield w


def _certificate_only(fake: FakeEntra) -> FakeCertificate:
    """The app registration trusts a new certificate and no longer has a secret."""
    cert = FakeCertificate.generate()
    fake.add_certificate(CLIENT_ID, cert.certificate_pem)
    fake.remove_client_secret(CLIENT_ID, SECRET)
    return cert


def _pair(cert: FakeCertificate) -> ClientCertificate:
    return ClientCertificate.parse(cert.private_key_pem, cert.certificate_pem)


def test_a_certificate_connection_links_and_signs_members_in(world: World) -> None:
    cert = _certificate_only(world.fake)
    world.link("Contoso", TID, CLIENT_ID, ["contoso.com"], secret=_pair(cert))
    with world.runtime.session_factory() as db:
        row = db.scalar(select(SsoConnection))
        assert row is not None
        assert row.certificate.strip() == cert.certificate_pem.strip()
        assert "PRIVATE KEY" not in row.client_secret  # the key is sealed
    response = world.sign_in()
    assert response.status_code == 303, response.get_data(as_text=True)
    assert world.client.get("/account").status_code == 200


def test_the_assertion_is_ps256_with_a_sha256_thumbprint(world: World) -> None:
    cert = FakeCertificate.generate()
    pair = _pair(cert)
    token = pair.assertion(CLIENT_ID, "https://login.example/tid/oauth2/v2.0/token")
    header = json.loads(fake_jose.b64url_decode(token.split(".")[0]))
    assert header == {"alg": "PS256", "typ": "JWT", "x5t#S256": cert.x5t_s256}
    claims = json.loads(fake_jose.b64url_decode(token.split(".")[1]))
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert claims["aud"] == "https://login.example/tid/oauth2/v2.0/token"
    assert claims["exp"] - claims["iat"] == 600 and claims["jti"]
    fake_jose.verify_rsa(fake_jose.parse(token), cert.private_key.public_key())  # PS256
    assert pair.assertion(CLIENT_ID, "x") != pair.assertion(CLIENT_ID, "x")  # fresh jti


def test_an_unregistered_certificate_fails_the_connection_test(world: World) -> None:
    _certificate_only(world.fake)
    stranger = FakeCertificate.generate("not registered")
    from idp.federation.connections import SsoConnectionError

    with pytest.raises(SsoConnectionError, match="invalid_client"):
        world.link("Contoso", TID, CLIENT_ID, ["contoso.com"], secret=_pair(stranger))
    # nothing was saved: the connection keeps its client secret
    with world.runtime.session_factory() as db:
        row = db.scalar(select(SsoConnection))
        assert row is not None and row.certificate == ""


def _expired(cert: FakeCertificate) -> str:
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "old")])
    now = dt.datetime.now(dt.UTC)
    old = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
           .public_key(cert.private_key.public_key()).serial_number(x509.random_serial_number())
           .not_valid_before(now - dt.timedelta(days=400))
           .not_valid_after(now - dt.timedelta(days=35))
           .sign(cert.private_key, hashes.SHA256()))
    return old.public_bytes(serialization.Encoding.PEM).decode()


def test_pairs_that_cannot_work_are_refused_with_the_reason() -> None:
    cert, other = FakeCertificate.generate(), FakeCertificate.generate()
    with pytest.raises(CredentialError, match="does not belong to the certificate"):
        ClientCertificate.parse(other.private_key_pem, cert.certificate_pem)
    with pytest.raises(CredentialError, match="not valid now"):
        ClientCertificate.parse(cert.private_key_pem, _expired(cert))
    with pytest.raises(CredentialError, match=r"not a PEM X\.509 certificate"):
        ClientCertificate.parse(cert.private_key_pem, "hello")
    with pytest.raises(CredentialError, match="not a PEM private key"):
        ClientCertificate.parse("hello", cert.certificate_pem)
    encrypted = cert.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")).decode()
    with pytest.raises(CredentialError, match="encrypted"):
        ClientCertificate.parse(encrypted, cert.certificate_pem)


def test_an_algorithm_the_library_does_not_support_is_refused_with_the_reason() -> None:
    cert = FakeCertificate.generate()
    odd_key, odd_certificate = unsupported_curve_pair()
    with pytest.raises(CredentialError, match="public key uses an unsupported algorithm"):
        ClientCertificate.parse(cert.private_key_pem, odd_certificate)
    with pytest.raises(CredentialError, match="must be RSA"):
        ClientCertificate.parse(odd_key, cert.certificate_pem)


# --- the command --------------------------------------------------------------------------

@pytest.fixture
def env(tmp_path: Path, database_url: str, world: World) -> dict[str, str]:
    values = idp_env(database_url=database_url, data_dir=str(tmp_path / "var"),
                     secret_key=world.runtime.settings.secret_key)
    values.update(world.fake.env())
    return values


def test_cli_links_with_a_certificate(env: dict[str, str], world: World,
                                      tmp_path: Path) -> None:
    cert = _certificate_only(world.fake)
    (tmp_path / "app.crt").write_text(cert.certificate_pem)
    (tmp_path / "app.key").write_text(cert.private_key_pem)
    done = run_idp("sso", "link", "Contoso", "--tenant-id", TID, "--client-id", CLIENT_ID,
                   "--certificate", str(tmp_path / "app.crt"),
                   "--private-key", str(tmp_path / "app.key"),
                   "--domain", "contoso.com", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["credential"] == "certificate"
    assert "PRIVATE KEY" not in done.stdout + done.stderr
    world.new_browser()
    assert world.sign_in().status_code == 303


@pytest.mark.parametrize(("args", "stdin", "message"), [
    ([], "", "either --client-secret-stdin or --certificate"),
    (["--client-secret-stdin", "--certificate", "CRT", "--private-key", "KEY"], SECRET,
     "either --client-secret-stdin or --certificate"),
    (["--certificate", "CRT"], "", "--certificate and --private-key go together"),
    (["--certificate", "CRT", "--private-key", "MISSING"], "", "cannot read"),
    (["--certificate", "KEY", "--private-key", "KEY"], "", "not a PEM X.509 certificate"),
])
def test_cli_credential_mistakes_are_one_line(env: dict[str, str], world: World,
                                              tmp_path: Path, args: list[str], stdin: str,
                                              message: str) -> None:
    cert = FakeCertificate.generate()
    files = {"CRT": tmp_path / "app.crt", "KEY": tmp_path / "app.key",
             "MISSING": tmp_path / "missing.key"}
    files["CRT"].write_text(cert.certificate_pem)
    files["KEY"].write_text(cert.private_key_pem)
    args = [str(files[a]) if a in files else a for a in args]
    done = run_idp("sso", "link", "Contoso", "--tenant-id", TID, "--client-id", CLIENT_ID,
                   *args, "--domain", "contoso.com", env=env, stdin=stdin)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("idp: ") and message in lines[0], done.stderr
