"""Linking an organization to its Entra ID tenant (`idp sso link`), against the fake Entra."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from idp.db import make_engine, make_session_factory
from idp.federation.connections import (
    ConnectionService,
    LinkOptions,
    SsoConnectionError,
    secret_box,
)
from idp.federation.credentials import ClientSecret
from idp.federation.entra import EntraDirectory
from idp.models import Base, Event, Organization, SsoConnection
from idp.runtime import Runtime
from tests.fake_entra import FakeEntra, run_fake_entra
from tests.services import idp_env, run_idp

SECRET = "app-secret-value-1234"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEntra]:
    with run_fake_entra() as entra:
        for name, value in entra.env().items():
            monkeypatch.setenv(name, value)
        yield entra


def _tenant(fake: FakeEntra, *domains: str, graph_roles: tuple[str, ...] = (
        "Organization.Read.All",)) -> tuple[str, str]:
    tid, client_id = str(uuid.uuid4()), str(uuid.uuid4())
    fake.add_tenant(tid, list(domains))
    fake.register_app(tid, client_id, client_secret=SECRET, graph_roles=graph_roles)
    return tid, client_id


def _service(runtime: Runtime, fake: FakeEntra, db: object) -> ConnectionService:
    return ConnectionService(db,  # type: ignore[arg-type]
                             EntraDirectory(fake.authority, fake.graph_url),
                             secret_box(runtime.settings.secret_key))


def _org(runtime: Runtime, name: str) -> str:
    with runtime.session_factory() as db:
        org = Organization(name=name)
        db.add(org)
        db.commit()
        return org.id


def test_link_tests_the_connection_and_seals_the_secret(runtime: Runtime,
                                                         fake: FakeEntra) -> None:
    tid, client_id = _tenant(fake, "contoso.com", "contoso.co.uk")
    org_id = _org(runtime, "Contoso")
    with runtime.session_factory() as db:
        service = _service(runtime, fake, db)
        made = service.link("Contoso", tid, client_id, SECRET, ["Contoso.com", "contoso.co.uk"],
                            LinkOptions(jit=False, enforce_sso=True))
        assert made.organization_id == org_id
        assert made.domain_names == ["contoso.co.uk", "contoso.com"]
        assert SECRET not in made.client_secret
        assert service.credential(made) == ClientSecret(SECRET)
        assert (made.jit, made.enforce_sso, made.allow_guests) == (False, True, False)
        assert service.for_email("ada@CONTOSO.com") is made
        assert service.for_email("ada@fabrikam.com") is None
    # Graph was asked with an app-only token
    assert fake.count_requests("/v1.0/organization", service="graph") == 1


def test_a_domain_given_as_tenant_is_resolved_to_the_guid(runtime: Runtime,
                                                          fake: FakeEntra) -> None:
    tid, client_id = _tenant(fake, "contoso.com")
    _org(runtime, "Contoso")
    with runtime.session_factory() as db:
        made = _service(runtime, fake, db).link("Contoso", "contoso.com", client_id, SECRET,
                                                ["contoso.com"])
        assert made.tenant_id == tid


@pytest.mark.parametrize("alias", ["common", "organizations", "consumers", "Common"])
def test_multi_tenant_aliases_are_refused(runtime: Runtime, fake: FakeEntra,
                                          alias: str) -> None:
    _, client_id = _tenant(fake, "contoso.com")
    _org(runtime, "Contoso")
    with runtime.session_factory() as db, pytest.raises(SsoConnectionError,
                                                        match="multi-tenant"):
        _service(runtime, fake, db).link("Contoso", alias, client_id, SECRET, ["contoso.com"])


def test_a_domain_the_tenant_has_not_verified_is_refused(runtime: Runtime,
                                                         fake: FakeEntra) -> None:
    tid, client_id = _tenant(fake, "contoso.com")
    fake.add_tenant(str(uuid.uuid4()), ["fabrikam.com"])
    _org(runtime, "Contoso")
    with runtime.session_factory() as db:
        with pytest.raises(SsoConnectionError, match=r"fabrikam\.com is not verified"):
            _service(runtime, fake, db).link("Contoso", tid, client_id, SECRET,
                                             ["contoso.com", "fabrikam.com"])
        assert db.scalar(select(SsoConnection)) is None


def test_wrong_secret_and_missing_graph_permission_fail_the_test(runtime: Runtime,
                                                                 fake: FakeEntra) -> None:
    tid, client_id = _tenant(fake, "contoso.com")
    tid2, client_id2 = _tenant(fake, "fabrikam.com", graph_roles=())
    _org(runtime, "Contoso")
    _org(runtime, "Fabrikam")
    with runtime.session_factory() as db:
        service = _service(runtime, fake, db)
        with pytest.raises(SsoConnectionError, match="invalid_client"):
            service.link("Contoso", tid, client_id, "wrong", ["contoso.com"])
        with pytest.raises(SsoConnectionError, match=r"Organization\.Read\.All"):
            service.link("Fabrikam", tid2, client_id2, SECRET, ["fabrikam.com"])
        with pytest.raises(SsoConnectionError, match="does not know the tenant"):
            service.link("Contoso", "nowhere.example", client_id, SECRET, ["contoso.com"])
        assert db.scalar(select(SsoConnection)) is None


def test_a_domain_belongs_to_one_organization(runtime: Runtime, fake: FakeEntra) -> None:
    tid, client_id = _tenant(fake, "contoso.com", "shared.com")
    _org(runtime, "Contoso")
    _org(runtime, "Other")
    with runtime.session_factory() as db:
        service = _service(runtime, fake, db)
        service.link("Contoso", tid, client_id, SECRET, ["contoso.com", "shared.com"])
        with pytest.raises(SsoConnectionError, match="another organization"):
            service.link("Other", tid, client_id, SECRET, ["shared.com"])
        # relinking the same organization replaces its connection and domains
        again = service.link("Contoso", tid, client_id, SECRET, ["shared.com"])
        assert again.domain_names == ["shared.com"]
        assert service.for_domain("contoso.com") is None
        assert len(list(db.scalars(select(SsoConnection)))) == 1


# --- the command --------------------------------------------------------------------------

@pytest.fixture
def env(tmp_path: Path, database_url: str, fake: FakeEntra) -> Iterator[dict[str, str]]:
    values = idp_env(database_url=database_url, data_dir=str(tmp_path / "var"),
                     secret_key="k" * 48)
    values.update(fake.env())
    yield values
    engine = make_engine(database_url)
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))
    engine.dispose()


def test_cli_links_and_never_prints_the_secret(env: dict[str, str], fake: FakeEntra,
                                               database_url: str) -> None:
    tid, client_id = _tenant(fake, "contoso.com")
    assert run_idp("org", "create", "Contoso", env=env).returncode == 0
    done = run_idp("sso", "link", "Contoso", "--tenant-id", "contoso.com", "--client-id",
                   client_id, "--client-secret-stdin", "--domain", "contoso.com",
                   "--enforce-sso", "--json", env=env, stdin=SECRET + "\n")
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert data["tenant_id"] == tid and data["domains"] == ["contoso.com"]
    assert data["enforce_sso"] is True and data["jit"] is True
    engine = make_engine(database_url)
    with make_session_factory(engine)() as db:
        row = db.scalar(select(SsoConnection))
        assert row is not None and SECRET not in row.client_secret
        assert secret_box("k" * 48).open(row.id, row.client_secret).decode() == SECRET
    engine.dispose()


@pytest.mark.parametrize(("args", "message"), [
    (["--tenant-id", "organizations"], "multi-tenant alias"),
    (["--tenant-id", "TID", "--domain", "fabrikam.com"], "not verified"),
])
def test_cli_refusals_are_one_line(env: dict[str, str], fake: FakeEntra, args: list[str],
                                   message: str) -> None:
    tid, client_id = _tenant(fake, "contoso.com")
    fake.add_tenant(str(uuid.uuid4()), ["fabrikam.com"])
    assert run_idp("org", "create", "Contoso", env=env).returncode == 0
    args = [tid if a == "TID" else a for a in args]
    if "--domain" not in args:
        args += ["--domain", "contoso.com"]
    done = run_idp("sso", "link", "Contoso", "--client-id", client_id,
                   "--client-secret-stdin", *args, env=env, stdin=SECRET + "\n")
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("idp: ") and message in lines[0], done.stderr
    assert SECRET not in done.stderr


def test_cli_link_is_in_the_organizations_activity_log(env: dict[str, str], fake: FakeEntra,
                                                       database_url: str) -> None:
    tid, client_id = _tenant(fake, "contoso.com")
    org_id = run_idp("org", "create", "Contoso", env=env).stdout.strip()
    done = run_idp("sso", "link", "Contoso", "--tenant-id", tid, "--client-id", client_id,
                   "--client-secret-stdin", "--domain", "contoso.com", env=env,
                   stdin=SECRET + "\n")
    assert done.returncode == 0, done.stderr
    engine = make_engine(database_url)
    with make_session_factory(engine)() as db:
        (saved,) = db.scalars(select(Event).where(Event.action == "organization:sso:save"))
        assert (saved.organization_id, saved.user_id) == (org_id, None)
        assert saved.details == {"tenant_id": tid, "client_id": client_id,
                                 "domains": ["contoso.com"], "credential": "secret",
                                 "by": "operator"}
        created = db.scalar(select(Event).where(Event.action == "organization:create"))
        assert created is not None and created.details["by"] == "operator"
    engine.dispose()


def test_cli_link_with_another_secret_key_than_the_servers_saves_nothing(
        env: dict[str, str], fake: FakeEntra, database_url: str) -> None:
    """The SSO secret would be sealed under a key the servers do not have."""
    tid, client_id = _tenant(fake, "contoso.com")
    assert run_idp("db", "upgrade", env=env).returncode == 0  # the servers' signing keys
    assert run_idp("org", "create", "Contoso", env=env).returncode == 0
    wrong = {**env, "IDP_SECRET_KEY": "w" * 48}
    done = run_idp("sso", "link", "Contoso", "--tenant-id", tid, "--client-id", client_id,
                   "--client-secret-stdin", "--domain", "contoso.com", env=wrong,
                   stdin=SECRET + "\n")
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "IDP_SECRET_KEY cannot open the current signing key" in lines[0]
    engine = make_engine(database_url)
    with make_session_factory(engine)() as db:
        assert db.scalar(select(SsoConnection)) is None
        assert db.scalar(select(Event).where(Event.action == "organization:sso:save")) is None
    engine.dispose()
