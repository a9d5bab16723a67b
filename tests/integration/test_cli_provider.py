"""``idp client ...`` and ``idp keys rotate``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from idp.db import make_engine
from idp.models import Base, Client, Event, SigningKey
from tests.services import idp_env, run_idp

SECRET_KEY = "the-servers-secret-key-0123456789-abcdefghijklmnop"


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> Iterator[dict[str, str]]:
    yield idp_env(database_url=database_url, data_dir=str(tmp_path / "var"), secret_key=SECRET_KEY)
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
    assert _ok("client", "list", env=env) == ""  # not one empty line: no client, no line


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


def _events(database_url: str) -> list[tuple[str, str, dict[str, object]]]:
    engine = make_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(select(Event.action, Event.product, Event.details).order_by(Event.id))
        found = [(action, product, dict(details)) for action, product, details in rows]
    engine.dispose()
    return found


def test_registering_rotating_and_deleting_a_client_are_in_the_activity_log(
    env: dict[str, str], database_url: str
) -> None:
    made = json.loads(_ok("client", "create", "Shop", "--redirect-uri", "https://shop.example/cb",
                          "--json", env=env))
    client_id = made["client_id"]
    _ok("client", "rotate-secret", client_id, env=env)
    _ok("client", "delete", client_id, env=env)
    logged = _events(database_url)
    assert [(action, product) for action, product, _ in logged] == [
        ("oauth:client:create", client_id),
        ("oauth:client:rotate_secret", client_id),
        ("oauth:client:delete", client_id),
    ]
    assert all(d["by"] == "operator" and d["name"] == "Shop" for _, _, d in logged)
    assert logged[0][2]["redirect_uris"] == ["https://shop.example/cb"]
    assert made["client_secret"] not in json.dumps([d for _, _, d in logged])


@pytest.mark.parametrize("name", ["Shop\tAdmin", "Shop\nclient2\tEvil", "Shop\u2028Two"])
def test_client_names_with_control_characters_or_line_breaks_are_refused(
    env: dict[str, str], database_url: str, name: str
) -> None:
    _fails("client", "create", name, "--redirect-uri", "https://shop.example/cb", env=env,
           text="control characters")
    assert json.loads(_ok("client", "list", "--json", env=env)) == {"clients": []}
    assert _events(database_url) == []


def _keys(database_url: str) -> set[tuple[str, object]]:
    engine = make_engine(database_url)
    with engine.connect() as conn:
        rows = {(kid, retired) for kid, retired in conn.execute(
            select(SigningKey.kid, SigningKey.retired_at))}
    engine.dispose()
    return rows


def test_keys_rotate_is_in_the_activity_log(env: dict[str, str], database_url: str) -> None:
    _ok("db", "upgrade", env=env)
    kids = json.loads(_ok("keys", "rotate", "--json", env=env))["current"]
    logged = _events(database_url)
    assert [action for action, _, _ in logged] == ["oauth:keys:rotate"] * 2
    assert [(d["alg"], d["kid"], d["by"]) for _, _, d in logged] == [
        ("RS256", kids[0], "operator"), ("ES256", kids[1], "operator")]


@pytest.mark.parametrize("args", [["keys", "rotate"], ["db", "upgrade"]])
def test_a_secret_key_that_cannot_open_the_current_keys_seals_nothing(
    env: dict[str, str], database_url: str, args: list[str]
) -> None:
    """Run with another IDP_SECRET_KEY than the servers', the command would make keys the
    servers cannot open: it refuses before writing anything."""
    _ok("db", "upgrade", env=env)
    engine = make_engine(database_url)
    with engine.begin() as conn:  # as a database from before ES256 keys: db upgrade adds one
        conn.execute(delete(SigningKey).where(SigningKey.alg == "ES256"))
    engine.dispose()
    before = _keys(database_url)
    wrong = {**env, "IDP_SECRET_KEY": "not-the-servers-key-0123456789-abcdefghijklmnop"}
    _fails(*args, env=wrong, text="IDP_SECRET_KEY cannot open the current signing key")
    assert _keys(database_url) == before
    assert _events(database_url) == []


def test_a_deliberately_replaced_secret_key_can_rotate_with_the_flag(
    env: dict[str, str], database_url: str
) -> None:
    _ok("db", "upgrade", env=env)
    replaced = {**env, "IDP_SECRET_KEY": "the-new-secret-key-0123456789-abcdefghijklmnop"}
    kids = json.loads(_ok("keys", "rotate", "--secret-key-changed", "--json", env=replaced))
    assert {kid for kid, retired in _keys(database_url) if retired is None} == set(kids["current"])
    assert all(d["secret_key_changed"] is True for _, _, d in _events(database_url))
    _ok("keys", "rotate", env=replaced)  # the new key opens the new keys
