"""``idp client ...`` and ``idp keys rotate``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from idp.db import make_engine
from idp.models import Base, Client, SigningKey
from tests.services import idp_env, run_idp


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> Iterator[dict[str, str]]:
    yield idp_env(database_url=database_url, data_dir=str(tmp_path / "var"))
    engine = make_engine(database_url)
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))
    engine.dispose()


def _ok(*args: str, env: dict[str, str]) -> str:
    result = run_idp(*args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _fails(*args: str, env: dict[str, str], text: str) -> None:
    result = run_idp(*args, env=env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("idp: ") and text in lines[0], result.stderr


def test_confidential_client_secret_is_shown_once_and_stored_hashed(
    env: dict[str, str], database_url: str
) -> None:
    made = json.loads(_ok("client", "create", "Shop", "--redirect-uri", "https://shop.example/cb",
                          "--redirect-uri", "http://127.0.0.1:9000/cb", "--json", env=env))
    assert set(made) == {"client_id", "client_secret"}
    assert len(made["client_secret"]) >= 43  # 256 random bits
    shown = json.loads(_ok("client", "show", made["client_id"], "--json", env=env))
    assert made["client_secret"] not in json.dumps(shown)
    assert shown["redirect_uris"] == ["https://shop.example/cb", "http://127.0.0.1:9000/cb"]
    engine = make_engine(database_url)
    with engine.connect() as conn:
        stored = conn.scalar(select(Client.secret_hash))
    engine.dispose()
    assert stored is not None and made["client_secret"] not in stored
    rotated = json.loads(_ok("client", "rotate-secret", made["client_id"], "--json", env=env))
    assert rotated["client_secret"] != made["client_secret"]
    listed = json.loads(_ok("client", "list", "--json", env=env))
    assert [c["client_id"] for c in listed["clients"]] == [made["client_id"]]
    assert _ok("client", "delete", made["client_id"], env=env).strip().startswith("deleted")
    assert json.loads(_ok("client", "list", "--json", env=env)) == {"clients": []}


def test_public_client_has_no_secret(env: dict[str, str]) -> None:
    made = json.loads(_ok("client", "create", "App", "--public", "--redirect-uri",
                          "http://localhost:8765/cb", "--json", env=env))
    assert set(made) == {"client_id"}
    _fails("client", "rotate-secret", made["client_id"], env=env, text="public client")


@pytest.mark.parametrize(
    ("uri", "text"),
    [
        ("http://shop.example/cb", "https unless the host is loopback"),
        ("https://shop.example/cb#frag", "fragment"),
        ("shop.example/cb", "absolute https URL"),
        ("javascript:alert(1)", "absolute https URL"),
    ],
)
def test_bad_redirect_uris_are_refused(env: dict[str, str], database_url: str, uri: str,
                                       text: str) -> None:
    _fails("client", "create", "Shop", "--redirect-uri", uri, env=env, text=text)
    engine = make_engine(database_url)
    with engine.connect() as conn:
        assert conn.scalar(select(Client.id)) is None
    engine.dispose()


def test_unknown_client_and_missing_redirect_uri(env: dict[str, str]) -> None:
    _fails("client", "show", "nope", env=env, text="no client with id 'nope'")
    _fails("client", "delete", "nope", env=env, text="no client with id 'nope'")
    _fails("client", "create", "Shop", env=env, text="--redirect-uri")
    _fails("client", "create", "Shop", "--redirect-uri", "https://a.example/cb", "--scope",
           "openid admin", env=env, text="unsupported scope 'admin'")
    _fails("client", "create", "Shop", "--redirect-uri", "https://a.example/cb",
           "--id-token-alg", "HS256", env=env, text="'HS256' is not one of")


def test_keys_rotate_makes_new_current_keys_and_keeps_old_ones(
    env: dict[str, str], database_url: str
) -> None:
    _ok("db", "upgrade", env=env)  # creates the first keys
    first = json.loads(_ok("keys", "rotate", "--json", env=env))["current"]
    second = json.loads(_ok("keys", "rotate", "--json", env=env))["current"]
    assert len(first) == len(second) == 2 and not set(first) & set(second)
    engine = make_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(select(SigningKey.kid, SigningKey.retired_at)).all()
    engine.dispose()
    current = {kid for kid, retired in rows if retired is None}
    assert current == set(second)
    assert len(rows) == 6  # the retired ones stay until their tokens have expired
