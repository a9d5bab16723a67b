"""The ``idp`` command: exit codes, one-line errors, nothing written on failure."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from select import select as wait_for_io

import pytest
from sqlalchemy import func, select

from idp.db import make_engine
from idp.models import Event, Membership, Organization, OutboxItem, Role, SigningKey, User
from tests.helpers import PASSWORD
from tests.services import COMMAND_SECRET_KEY, idp_env, run_idp

SECRET_KEY = COMMAND_SECRET_KEY


def _one_line_error(result: object, text: str) -> None:
    assert result.returncode != 0  # type: ignore[attr-defined]
    lines = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1, result.stderr  # type: ignore[attr-defined]
    assert lines[0].startswith("idp: ") and text in lines[0], lines[0]
    assert "Traceback" not in result.stderr  # type: ignore[attr-defined]


def _count(database_url: str, model: type) -> int:
    engine = make_engine(database_url)
    with engine.connect() as conn:
        n = conn.scalar(select(func.count()).select_from(model)) or 0
    engine.dispose()
    return n


def test_org_and_user_creation(env: dict[str, str], database_url: str) -> None:
    org = run_idp("org", "create", "Acme Corp", env=env)
    assert org.returncode == 0, org.stderr
    org_id = org.stdout.strip()
    assert len(org_id) == 36
    made = run_idp(
        "user",
        "create",
        "Alice@Example.com",
        "--password-stdin",
        "--org",
        "acme corp",
        "--role",
        "owner",
        "--first-name",
        "Alice",
        "--last-name",
        "Liddell",
        "--json",
        env=env,
        stdin=PASSWORD + "\n",
    )
    assert made.returncode == 0, made.stderr
    data = json.loads(made.stdout)
    assert data["email"] == "Alice@Example.com"
    engine = make_engine(database_url)
    with engine.connect() as conn:
        user = conn.execute(select(User)).one()
        assert user.email_normalized == "alice@example.com"
        assert user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash
        membership = conn.execute(select(Membership)).one()
        assert (membership.organization_id, membership.role) == (org_id, Role.OWNER)
        actions = set(conn.scalars(select(Event.action)))
        assert {"organization:create", "account:user:create"} <= actions
    engine.dispose()


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["user", "create", "not-an-email", "--password-stdin"], PASSWORD, "not a valid email"),
        (  # looks like alice@example.com
            ["user", "create", "alice\u200b@example.com", "--password-stdin"],
            PASSWORD,
            "not a valid email",
        ),
        (
            ["user", "create", "a@example.com", "--password-stdin", "--org", "Nope"],
            PASSWORD,
            "no organization named 'Nope'",
        ),
        (["user", "create", "a@example.com", "--password-stdin"], "short", "at least 12"),
        (["user", "create", "a@example.com", "--password-stdin"], "password1234", "too common"),
        (["user", "create", "a@example.com", "--password-stdin"], "", "no password"),
        (
            ["user", "create", "a@example.com", "--password-stdin", "--role", "owner"],
            PASSWORD,
            "--role needs --org",
        ),
        (
            [
                "user",
                "create",
                "a@example.com",
                "--password-stdin",
                "--org",
                "Acme",
                "--role",
                "king",
            ],
            PASSWORD,
            "'king' is not one of",
        ),
        (["user", "create", "a@example.com"], PASSWORD, "--password-stdin"),
        (
            ["user", "create", "a@example.com", "--password-stdin", "--first-name", "Al\u202eice"],
            PASSWORD,
            "first name contains characters that cannot be shown",
        ),
        (
            ["user", "create", "a@example.com", "--password-stdin", "--last-name", "\u200b"],
            PASSWORD,
            "last name contains characters that cannot be shown",
        ),
        (["org", "create", ""], "", "organization name"),
        (["frobnicate"], "", "No such command"),
    ],
)
def test_bad_input_gets_one_line_and_writes_nothing(
    env: dict[str, str], database_url: str, args: list[str], stdin: str, message: str
) -> None:
    _one_line_error(run_idp(*args, env=env, stdin=stdin + "\n" if stdin else ""), message)
    assert _count(database_url, User) == 0
    assert _count(database_url, Event) == 0


def test_duplicates_are_refused_case_insensitively(env: dict[str, str], database_url: str) -> None:
    assert run_idp("org", "create", "Acme", env=env).returncode == 0
    _one_line_error(run_idp("org", "create", "ACME", env=env), "already exists")
    assert (
        run_idp(
            "user", "create", "bob@example.com", "--password-stdin", env=env, stdin=PASSWORD + "\n"
        ).returncode
        == 0
    )
    _one_line_error(
        run_idp(
            "user", "create", "BOB@example.COM", "--password-stdin", env=env, stdin=PASSWORD + "\n"
        ),
        "already exists",
    )
    assert _count(database_url, User) == 1
    assert _count(database_url, Organization) == 1
    # the same letters composed otherwise (o + combining diaeresis) are the same address
    assert run_idp("user", "create", "j\u00f6rg@example.de", "--password-stdin", env=env,
                   stdin=PASSWORD + "\n").returncode == 0
    _one_line_error(
        run_idp("user", "create", "jo\u0308rg@example.de", "--password-stdin", env=env,
                stdin=PASSWORD + "\n"),
        "already exists",
    )
    assert _count(database_url, User) == 2


def test_bad_setting_stops_with_one_line_naming_it(env: dict[str, str]) -> None:
    _one_line_error(
        run_idp("db", "upgrade", env={**env, "IDP_ISSUER": "http://id.example.com"}), "IDP_ISSUER:"
    )
    _one_line_error(
        run_idp("org", "create", "X", env={**env, "IDP_SESSION_IDLE_MINUTES": "x"}),
        "IDP_SESSION_IDLE_MINUTES:",
    )


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    from tests.services import free_port

    env = idp_env(
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/x",
        data_dir=str(tmp_path),
        secret_key=SECRET_KEY,
    )
    for args in (["org", "create", "Acme"], ["db", "upgrade"]):
        result = run_idp(*args, env=env)
        # it said "(psycopg.OperationalError) connection failed: ...", naming a Python class
        _one_line_error(result, "database error: connection failed: ")
        assert "(psycopg" not in result.stderr


def test_db_upgrade_is_idempotent(env: dict[str, str]) -> None:
    for _ in range(2):
        result = run_idp("db", "upgrade", env=env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "database is up to date"


def test_the_embedded_default_database_still_gets_a_generated_key(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    env = idp_env(data_dir=str(data_dir))  # no IDP_DATABASE_URL: the SQLite file in data_dir
    result = run_idp("db", "upgrade", env=env)
    assert result.returncode == 0, result.stderr
    assert (data_dir / "idp.sqlite3").exists()
    assert len((data_dir / "secret_key").read_text().strip()) >= 32
    assert _count(f"sqlite:///{data_dir / 'idp.sqlite3'}", SigningKey) == 2


@pytest.mark.parametrize("args", [[], ["user"], ["keys"], ["client"]])
def test_a_command_group_alone_prints_its_usage_and_one_error_line(
    env: dict[str, str], args: list[str]
) -> None:
    result = run_idp(*args, env=env)
    assert result.returncode == 2
    assert result.stdout.startswith(" ".join(["Usage: idp", *args, "[OPTIONS] COMMAND"]))
    _one_line_error(result, "missing command")


def test_org_names_are_normalized_like_the_web_form(env: dict[str, str]) -> None:
    made = run_idp("org", "create", "  Acme \t  Corp  ", "--json", env=env)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["name"] == "Acme Corp"
    _one_line_error(run_idp("org", "create", "ACME CORP", env=env), "already exists")
    # "Café" with a combining accent made a second organization that looked the same, and
    # --org found a name only as typed (two spaces did not find "Acme Corp")
    assert run_idp("org", "create", "Caf\u00e9", env=env).returncode == 0
    _one_line_error(run_idp("org", "create", "Cafe\u0301", env=env), "already exists")
    for org in ("cafe\u0301", "acme  corp"):
        joined = run_idp("user", "create", f"{len(org)}@example.com", "--password-stdin",
                         "--org", org, env=env, stdin=PASSWORD + "\n")
        assert joined.returncode == 0, joined.stderr


def test_an_unverified_user_and_its_verification_mail_are_one_transaction(
    env: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the mail cannot be queued, no account is left behind without its link."""
    from click.testing import CliRunner

    from idp.cli import cli

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the outbox refused the mail")

    monkeypatch.setattr("idp.security.email_verification.queue_mail", refuse)
    result = CliRunner().invoke(
        cli,
        ["user", "create", "u@example.com", "--password-stdin", "--unverified"],
        input=PASSWORD + "\n",
        env={k: v for k, v in env.items() if k.startswith("IDP_")},
    )
    assert result.exit_code != 0 and isinstance(result.exception, RuntimeError)
    assert _count(database_url, User) == 0
    assert _count(database_url, Event) == 0
    made = run_idp(
        "user", "create", "u@example.com", "--password-stdin", "--unverified", "--json",
        env=env, stdin=PASSWORD + "\n",
    )
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["email_verified"] is False
    assert _count(database_url, OutboxItem) == 1


def test_serve_on_an_address_it_cannot_listen_on_says_so_in_one_line(tmp_path: Path) -> None:
    """A port already taken (the commonest mistake) or a host that is not this machine's:
    one line and a non-zero exit, not gunicorn's five seconds of retries and a dozen lines."""
    import socket

    env = idp_env(data_dir=str(tmp_path / "var"), secret_key=SECRET_KEY)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        _one_line_error(run_idp("serve", "--port", port, env=env), "Address already in use")
    _one_line_error(run_idp("serve", "--host", "192.0.2.1", "--port", port, env=env),
                    "cannot listen on 192.0.2.1")
    _one_line_error(run_idp("serve", "--host", "no-such-host.invalid", env=env),
                    "cannot listen on no-such-host.invalid:8000")


def test_a_setting_that_is_not_utf8_stops_with_one_line_and_changes_nothing(
    tmp_path: Path,
) -> None:
    """Bytes that are not UTF-8 in IDP_SECRET_KEY (os.environ holds them as lone surrogates)
    loaded: `idp db upgrade` migrated the database, then failed with "'utf-8' codec can't
    encode characters" and no word of which setting."""
    data_dir = tmp_path / "var"
    env = idp_env(data_dir=str(data_dir), secret_key="\udcff" + SECRET_KEY)
    _one_line_error(run_idp("db", "upgrade", env=env), "IDP_SECRET_KEY: is not UTF-8 text")
    assert not (data_dir / "idp.sqlite3").exists()


def test_bytes_that_are_not_utf8_get_one_line_and_write_nothing(
    env: dict[str, str], database_url: str
) -> None:
    """An argument or a password with bytes that are not UTF-8 (a shell in a Latin-1 locale)
    was refused with "'utf-8' codec can't encode character '\\udcff' ...", which says nothing
    about which input was wrong; now the line names it and shows the bytes."""
    import subprocess
    import sys

    from tests.services import ROOT

    _one_line_error(
        run_idp("user", "create", "\udcff@example.com", "--password-stdin", env=env,
                stdin=PASSWORD + "\n"),
        "an argument is not UTF-8 text: '\\xff@example.com'",
    )
    _one_line_error(run_idp("client", "show", "\udcff", env=env), "not UTF-8 text")
    for locale in ("C", "C.UTF-8"):  # surrogates, or a decoding error, depending on the locale
        raw = subprocess.run(
            [sys.executable, "-m", "idp", "user", "create", "u@example.com", "--password-stdin"],
            input=b"\xff" + PASSWORD.encode() + b"\n",
            env={**env, "LC_ALL": locale},
            capture_output=True,
            timeout=120,
            cwd=ROOT,
        )
        _one_line_error(
            subprocess.CompletedProcess(raw.args, raw.returncode, "", raw.stderr.decode()),
            "the password on standard input is not UTF-8 text",
        )
    assert _count(database_url, User) == 0
    assert _count(database_url, Event) == 0


@pytest.mark.parametrize("args", [["org", "create", "Acme"], ["db", "upgrade"]])
def test_a_database_that_never_answers_is_one_line_not_a_hang(
    tmp_path: Path, args: list[str]
) -> None:
    """A PostgreSQL address where something accepts the connection and never answers (a
    wrong port, a hung server, a proxy without backend): libpq waited forever, and so did
    every command (and the worker, and /readyz). Now it gives up after the connect timeout."""
    import socket
    import subprocess
    import sys

    from idp.db import CONNECT_TIMEOUT_SECONDS
    from tests.services import ROOT

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the handshake; nobody ever answers
        port = silent.getsockname()[1]
        env = idp_env(database_url=f"postgresql://postgres@127.0.0.1:{port}/x",
                      data_dir=str(tmp_path), secret_key=SECRET_KEY)
        result = subprocess.run(
            [sys.executable, "-m", "idp", *args],
            env=env, capture_output=True, text=True, cwd=ROOT,
            timeout=CONNECT_TIMEOUT_SECONDS + 30,
        )
    _one_line_error(result, "timeout")


@pytest.fixture(params=["sqlite", "postgresql"])
def unmigrated_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database that exists but has never been migrated."""
    if request.param == "sqlite":
        import sqlite3

        sqlite3.connect(tmp_path / "empty.sqlite3").close()
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    from tests.services import RUN_ID, create_postgres_database, drop_postgres_database

    name = f"idp_test_{RUN_ID}_empty"
    yield create_postgres_database(name)
    drop_postgres_database(name)


@pytest.mark.parametrize(
    "args",
    [
        ["org", "create", "Acme"],
        ["client", "list"],
        ["keys", "rotate"],
        ["user", "unlock", "a@example.com"],
        ["outbox", "failed"],
        ["worker"],
    ],
)
def test_a_database_without_this_releases_migrations_is_one_line_naming_the_fix(
    tmp_path: Path, unmigrated_database_url: str, redis_url: str, args: list[str]
) -> None:
    """Commands said "(sqlite3.OperationalError) no such table: organizations" (or
    psycopg's "relation ... does not exist"), and the worker logged that traceback every
    second forever; now each refuses at once and says what to run."""
    env = idp_env(database_url=unmigrated_database_url, redis_url=redis_url,
                  data_dir=str(tmp_path / "var"), secret_key=SECRET_KEY)
    _one_line_error(
        run_idp(*args, env=env),
        "the database schema is not up to date for this release: run `idp db upgrade` first",
    )


def test_a_sqlite_file_that_does_not_exist_is_refused_and_not_created(tmp_path: Path) -> None:
    """`idp user create` run from another directory than `idp serve` (the embedded default
    is ./var) left an empty ./var/idp.sqlite3 and a new ./var/secret_key there, and said
    "no such table: users"."""
    data_dir = tmp_path / "var"
    env = idp_env(data_dir=str(data_dir))
    result = run_idp("user", "create", "a@example.com", "--password-stdin", env=env,
                     stdin=PASSWORD + "\n")
    _one_line_error(result, f"no database at {data_dir / 'idp.sqlite3'}")
    assert "run `idp db upgrade` first" in result.stderr
    assert not data_dir.exists()


def test_unlock_and_reset_2fa_say_one_line_without_redis(env: dict[str, str]) -> None:
    """Without IDP_REDIS_URL (the embedded default) `idp user unlock` and `idp user reset-2fa`
    printed the server's "using an in-process store, correct for one process only" warning
    before their own line: two lines for an error, and stderr noise on success."""
    assert "IDP_REDIS_URL" not in env
    assert run_idp("user", "create", "a@example.com", "--password-stdin", env=env,
                   stdin=PASSWORD + "\n").returncode == 0
    for command in ("unlock", "reset-2fa"):
        _one_line_error(run_idp("user", command, "nobody@example.com", env=env),
                        "no user with email nobody@example.com")
        done = run_idp("user", command, "a@example.com", env=env)
        assert done.returncode == 0 and done.stdout.strip(), done.stderr
        assert done.stderr == ""


@pytest.mark.parametrize(
    ("args", "usage"),
    [
        (["serve"], "idp serve [OPTIONS]"),
        (["db", "upgrade"], "idp db upgrade [OPTIONS]"),
        (["org", "create"], "idp org create [OPTIONS] NAME"),
        (["user", "create"], "idp user create [OPTIONS] EMAIL"),
        (["user", "unlock"], "idp user unlock [OPTIONS] EMAIL"),
        (["client", "create"], "idp client create [OPTIONS] NAME"),
        (["keys", "rotate"], "idp keys rotate [OPTIONS]"),
        (["sso", "link"], "idp sso link [OPTIONS] ORG"),  # was ORGANIZATION
        (["worker"], "idp worker [OPTIONS]"),
    ],
)
def test_help_names_the_arguments_as_the_contract_does(
    tmp_path: Path, args: list[str], usage: str
) -> None:
    result = run_idp(*args, "--help", env=idp_env(data_dir=str(tmp_path / "var")))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"Usage: {usage}"
    assert not (tmp_path / "var").exists()  # --help touches nothing


@pytest.mark.parametrize("below", ["", "sub"])
def test_a_data_dir_that_is_a_file_is_one_line_naming_the_setting(
    tmp_path: Path, below: str
) -> None:
    """IDP_DATA_DIR naming a file (or a path under one) said "[Errno 20] Not a directory:
    '.../secret_key'", naming no setting."""
    a_file = tmp_path / "var"
    a_file.write_text("")
    env = idp_env(data_dir=str(a_file / below if below else a_file))
    for args in (["db", "upgrade"], ["serve", "--port", "1"]):
        _one_line_error(run_idp(*args, env=env), "IDP_DATA_DIR: ")
    assert a_file.read_text() == ""


@contextlib.contextmanager
def _at_the_password_prompt(
    env: dict[str, str],
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`idp user create a@example.com --password-stdin` run at a terminal (a pty as its
    stdin), once it has asked for the password on stderr: the process and the terminal's
    master side (what is typed there reaches the command; what it echoes can be read there)."""
    from tests.services import ROOT

    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "idp", "user", "create", "a@example.com", "--password-stdin"],
        stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT,
    )
    os.close(slave)
    try:
        asked = b""
        deadline = time.monotonic() + 30
        while b"(not shown): " not in asked and time.monotonic() < deadline:
            assert proc.stderr is not None
            if wait_for_io([proc.stderr], [], [], 0.5)[0]:
                asked += os.read(proc.stderr.fileno(), 1024)
        assert asked == b"Password (not shown): "
        yield proc, master
    finally:
        proc.kill()
        os.close(master)


def test_a_password_typed_at_a_terminal_is_not_shown(
    env: dict[str, str], database_url: str
) -> None:
    """`idp user create EMAIL --password-stdin` run at a terminal waited silently while the
    terminal echoed the password in the clear as it was typed; now it asks on stderr and
    turns the echo off (a pipe, the scripted way, is read as before)."""
    with _at_the_password_prompt(env) as (proc, master):
        os.write(master, PASSWORD.encode() + b"\n")
        out, err = proc.communicate(timeout=60)
        echoed = b""
        while wait_for_io([master], [], [], 0.2)[0]:
            try:
                echoed += os.read(master, 1024)
            except OSError:  # the child closed the terminal
                break
    assert proc.returncode == 0, err
    assert len(out.strip()) == 36  # the user id
    assert PASSWORD.encode() not in echoed
    assert _count(database_url, User) == 1


def test_ctrl_c_at_the_password_prompt_exits_130_and_creates_nobody(
    env: dict[str, str], database_url: str
) -> None:
    """Ctrl-C at the prompt ended with exit status 1, which scripts and shells read as a
    failure of the command rather than an interruption; now 130 (128 + SIGINT), one line."""
    with _at_the_password_prompt(env) as (proc, _):
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.decode().strip() == "idp: aborted" and b"Traceback" not in err
    assert out == b""
    assert _count(database_url, User) == 0


def test_the_worker_started_before_its_database_waits_for_it(tmp_path: Path) -> None:
    """The schema check at start must not turn a database that is still down (a boot order,
    a failover) into a worker that exits: it keeps retrying, as it always did."""
    import subprocess
    import sys
    import time

    from tests.services import ROOT, free_port

    env = idp_env(database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/x",
                  data_dir=str(tmp_path), secret_key=SECRET_KEY)
    worker = subprocess.Popen([sys.executable, "-m", "idp", "worker"], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(4)
        assert worker.poll() is None
    finally:
        worker.terminate()
        worker.wait(timeout=20)


@pytest.mark.parametrize("command", ["unlock", "reset-2fa"])
def test_an_unknown_address_with_a_line_break_is_still_one_line(
    env: dict[str, str], command: str
) -> None:
    """"idp: no user with email a" then "b@example.com" on a second line (a carriage
    return overwrote the start of the line instead)."""
    for typed, shown in (("a\nb@example.com", "'a\\nb@example.com'"),
                         ("a\rb@example.com", "'a\\rb@example.com'")):
        result = run_idp("user", command, typed, env=env)
        _one_line_error(result, f"no user with email {shown}")
        assert "\r" not in result.stderr


@pytest.mark.parametrize(
    ("args", "stdin", "shown"),
    [
        (["serve", "--host", "no\nsuch-host.invalid"], "", "cannot listen on no\\nsuch-host"),
        (["sso", "link", "Ac\nme", "--tenant-id", "11111111-1111-1111-1111-111111111111",
          "--client-id", "c", "--client-secret-stdin", "--domain", "acme.example"],
         "secret\n", "no organization named 'Ac\\nme'"),
        (["user", "create", "a@example.com", "--password-stdin", "--org", "Ac\nme"],
         PASSWORD + "\n", "no organization named 'Ac\\nme'"),
    ],
)
def test_a_typed_value_with_a_line_break_never_splits_the_error_line(
    env: dict[str, str], args: list[str], stdin: str, shown: str
) -> None:
    """Every error quoting what was typed (a host, an organization, a file name) printed it
    as is: a line break made the one line two."""
    _one_line_error(run_idp(*args, env=env, stdin=stdin), shown)
