"""The ``idp`` command (CONTRACT.md): serve, db, org, user, ...

Every subcommand exits 0 on success; otherwise non-zero with one line on stderr saying what was
wrong. ``--json`` makes a command that prints data print one JSON object.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from idp.accounts import AccountError, AccountService
from idp.models import Role
from idp.security.passwords import PasswordPolicyError, PasswordService
from idp.settings import Settings, SettingsError, ensure_secret_key, load_settings


class CommandError(click.ClickException):
    """A failure reported as one line: ``idp: <message>``."""


def _settings() -> Settings:
    try:
        return ensure_secret_key(load_settings())
    except SettingsError as exc:
        raise CommandError(str(exc)) from None


@contextmanager
def _accounts(settings: Settings) -> Iterator[AccountService]:
    from idp.db import make_engine, make_session_factory

    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as db:
            yield AccountService(db, PasswordService(settings))
    finally:
        engine.dispose()


def _emit(as_json: bool, data: dict[str, Any], plain: str) -> None:
    click.echo(json.dumps(data) if as_json else plain)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """idp: identity provider and SSO gateway."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
def serve(host: str, port: int) -> None:
    """Run idp in one process (embedded default); upgrades an embedded database first."""
    from idp.server import serve as run_server

    settings = _settings()
    if settings.uses_embedded_database:
        _upgrade(settings)
    run_server(settings, host, port)


@cli.group()
def db() -> None:
    """Database schema."""


def _upgrade(settings: Settings) -> None:
    from idp.migrate import upgrade

    try:
        upgrade(settings.database_url)
    except Exception as exc:
        raise CommandError(f"database upgrade failed: {_first_line(exc)}") from None


@db.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema up to date."""
    _upgrade(_settings())
    click.echo("database is up to date")


@cli.group()
def org() -> None:
    """Organizations."""


@org.command("create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def org_create(name: str, as_json: bool) -> None:
    """Create an organization; prints its id."""
    with _accounts(_settings()) as accounts:
        try:
            organization = accounts.create_organization(name)
        except AccountError as exc:
            raise CommandError(str(exc)) from None
        _emit(as_json, {"id": organization.id, "name": organization.name}, organization.id)


@cli.group()
def user() -> None:
    """User accounts."""


@user.command("create")
@click.argument("email")
@click.option(
    "--password-stdin",
    is_flag=True,
    required=True,
    help="Read the password from standard input (first line).",
)
@click.option("--org", "organization", default=None, help="Organization to join.")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    default=None,
    help="Role in --org (default: member).",
)
@click.option("--first-name", default="")
@click.option("--last-name", default="")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def user_create(
    email: str,
    password_stdin: bool,
    organization: str | None,
    role: str | None,
    first_name: str,
    last_name: str,
    as_json: bool,
) -> None:
    """Create a user; prints the user id (the OIDC subject)."""
    if role is not None and organization is None:
        raise CommandError("--role needs --org")
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise CommandError("no password on standard input")
    with _accounts(_settings()) as accounts:
        try:
            created = accounts.create_user(
                email,
                password,
                first_name=first_name,
                last_name=last_name,
                organization=organization,
                role=Role(role or "member"),
            )
        except (AccountError, PasswordPolicyError) as exc:
            raise CommandError(
                f"password refused: {exc}" if isinstance(exc, PasswordPolicyError) else str(exc)
            ) from None
        _emit(as_json, {"id": created.id, "email": created.email}, created.id)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


def main(argv: list[str] | None = None) -> None:
    """Entry point: click's own errors also become one ``idp: ...`` line."""
    try:
        cli.main(args=argv, prog_name="idp", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("idp: aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        click.echo(f"idp: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code if exc.exit_code else 1)
    except Exception as exc:  # e.g. database unreachable: one line, never a traceback
        click.echo(f"idp: {_first_line(exc)}", err=True)
        sys.exit(1)
