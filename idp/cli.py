"""The ``idp`` command (CONTRACT.md): serve, db, org, user, ...

Every subcommand exits 0 on success; otherwise non-zero with one line on stderr saying what was
wrong. ``--json`` makes a command that prints data print one JSON object.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from idp.accounts import AccountError, AccountService
from idp.events import COMMAND_ACTOR, by_operator
from idp.federation.credentials import Credential
from idp.models import Role, SsoConnection
from idp.models.clients import DEFAULT_SCOPES
from idp.provider.clients import ClientError, ClientService
from idp.runtime import Runtime
from idp.security.passwords import PasswordPolicyError, PasswordService
from idp.settings import Settings, SettingsError, ensure_secret_key, load_settings

if TYPE_CHECKING:
    from idp.provider.keys import KeyService


class CommandError(click.ClickException):
    """A failure reported as one line: ``idp: <message>``."""


def _settings(*, creates_database: bool = False) -> Settings:
    """The settings, with the secret key (invented only for the embedded default database:
    see :func:`idp.settings.ensure_secret_key`). Unless the command creates the database
    (``serve``, ``db upgrade``), a SQLite file that does not exist is refused first: a command
    run from the wrong directory left an empty database and a new secret key there."""
    try:
        settings = load_settings()
        if not creates_database:
            _require_database_file(settings)
        return ensure_secret_key(settings)
    except SettingsError as exc:
        raise CommandError(str(exc)) from None


_RUN_UPGRADE = "run `idp db upgrade` first"


def _require_database_file(settings: Settings) -> None:
    from idp.schema import missing_sqlite_file

    path = missing_sqlite_file(settings.database_url)
    if path is not None:
        raise CommandError(
            f"no database at {path} (IDP_DATABASE_URL, or IDP_DATA_DIR): {_RUN_UPGRADE}"
        )


def _require_current_schema(engine: Engine, *, unreachable_ok: bool = False) -> None:
    """Refuse, before anything is read or written, a database without this release's
    migrations (it failed with "no such table: ..." or "column ... does not exist").
    ``unreachable_ok``: a database that does not answer yet is let through (the worker
    retries until it does)."""
    from sqlalchemy.exc import OperationalError

    from idp.schema import schema_state

    try:
        with engine.connect() as conn:
            state = schema_state(conn)
    except OperationalError:
        if unreachable_ok:
            return
        raise
    if state != "ok":
        raise CommandError(
            f"the database schema is not up to date for this release: {_RUN_UPGRADE}"
        )


def _require_servers_key(keys: KeyService) -> None:
    """Refuse, before anything is sealed, when ``IDP_SECRET_KEY`` cannot open the current
    signing keys: it is not the servers' key, and they could not open what it seals."""
    from idp.provider.keys import KeyDecryptionError

    try:
        keys.check_secret_key()
    except KeyDecryptionError as exc:
        raise CommandError(
            f"IDP_SECRET_KEY cannot open the current signing key {exc.kid}: give the servers' "
            "key (replaced it on purpose? `idp keys rotate --secret-key-changed`); "
            "nothing was changed"
        ) from None


@contextmanager
def _db(settings: Settings) -> Iterator[Session]:
    from idp.db import make_engine, make_session_factory

    engine = make_engine(settings.database_url)
    try:
        _require_current_schema(engine)
        with make_session_factory(engine)() as db:
            yield db
    finally:
        engine.dispose()


@contextmanager
def _accounts(settings: Settings) -> Iterator[AccountService]:
    with _db(settings) as db:
        yield AccountService(db, PasswordService(settings))


def _emit(as_json: bool, data: dict[str, Any], plain: str) -> None:
    """``data`` as one JSON object, or the ``plain`` lines; no lines print nothing (an empty
    list was one empty line, which `idp client list | wc -l` counted as a client)."""
    if as_json:
        click.echo(json.dumps(data))
    elif plain:
        click.echo(plain)


class CommandGroup(click.Group):
    """A group of subcommands. Called without one, it prints its usage on standard output
    and fails (exit 2, a usage error) with one line on stderr, like any other mistake."""

    group_class = type  # its subgroups (db, org, user, ...) are CommandGroups too

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and not ctx.resilient_parsing:
            click.echo(ctx.get_help())
            raise click.UsageError(f"missing command after `{ctx.command_path}`", ctx)
        return super().parse_args(ctx, args)


@click.group(cls=CommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """idp: identity provider and SSO gateway."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
def serve(host: str, port: int) -> None:
    """Run idp in one process (embedded default); upgrades an embedded database first."""
    from idp.server import serve as run_server

    settings = _settings(creates_database=True)
    _check_can_listen(host, port)
    mismatch = _issuer_elsewhere(settings.issuer, port)
    if mismatch:
        click.echo(f"idp serve: {mismatch}", err=True)
    if settings.uses_embedded_database:
        _upgrade(settings)
    run_server(settings, host, port)


def _issuer_elsewhere(issuer: str, port: int) -> str | None:
    """A warning when IDP_ISSUER is on this machine but on another port than the one served
    (`idp serve --port 8080` with the default issuer): sign-in works, but discovery, every
    protocol endpoint relying services are told of and mailed links point at the issuer's
    port. Not refused: a local proxy on the issuer's port may forward to this one."""
    from urllib.parse import urlsplit

    from idp.net import is_loopback

    parts = urlsplit(issuer)
    issuer_port = parts.port or (443 if parts.scheme == "https" else 80)
    if not is_loopback(parts.hostname or "") or issuer_port == port:
        return None
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return (
        f"IDP_ISSUER is {issuer} but this server listens on port {port}: OpenID Connect "
        f"discovery, tokens and mailed links point at port {issuer_port} (set IDP_ISSUER="
        f"{parts.scheme}://{host}:{port} unless a proxy there forwards here)"
    )


def _check_can_listen(host: str, port: int) -> None:
    """One line when the address cannot be listened on (port taken, unknown host, not an
    address of this machine), instead of gunicorn retrying for five seconds and printing a
    dozen lines."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn does
            probe.bind(address)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise CommandError(f"cannot listen on {host}:{port}: {reason}") from None


@cli.group()
def db() -> None:
    """Database schema."""


def _upgrade(settings: Settings) -> None:
    from idp.migrate import upgrade

    try:
        upgrade(settings.database_url)
    except Exception as exc:
        raise CommandError(f"database upgrade failed: {_describe(exc)}") from None


@db.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema up to date (and create the first signing keys)."""
    from idp.services import key_service_for

    settings = _settings(creates_database=True)
    _upgrade(settings)
    with _db(settings) as session:
        keys = key_service_for(session, settings)
        _require_servers_key(keys)
        keys.ensure_keys()
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
@click.option(
    "--unverified",
    is_flag=True,
    help="The address is not vouched for: mail a verification link; no sign-in before it is used.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def user_create(
    email: str,
    password_stdin: bool,
    organization: str | None,
    role: str | None,
    first_name: str,
    last_name: str,
    unverified: bool,
    as_json: bool,
) -> None:
    """Create a user; prints the user id (the OIDC subject). The email address counts as
    verified (the operator vouches for it) unless --unverified is given."""
    if role is not None and organization is None:
        raise CommandError("--role needs --org")
    password = _stdin_line("password")
    if not password:
        raise CommandError("no password on standard input")
    settings = _settings()
    with _accounts(settings) as accounts:
        try:
            created = accounts.create_user(
                email,
                password,
                first_name=first_name,
                last_name=last_name,
                organization=organization,
                role=Role(role or "member"),
                email_verified=not unverified,
                commit=not unverified,
            )
            if unverified:  # the account and its verification mail in one transaction
                from idp.security.email_verification import EmailVerificationService

                EmailVerificationService(
                    accounts.db, settings, accounts, actor=COMMAND_ACTOR
                ).start_email_verification(created)
                accounts.db.commit()
        except (AccountError, PasswordPolicyError) as exc:
            raise CommandError(
                f"password refused: {exc}" if isinstance(exc, PasswordPolicyError) else str(exc)
            ) from None
        _emit(
            as_json,
            {"id": created.id, "email": created.email, "email_verified": created.email_verified},
            created.id,
        )


@contextmanager
def _runtime(settings: Settings, *, one_shot: bool = True) -> Iterator[Runtime]:
    """The collaborators of a command that needs the store. A one-shot command says nothing
    about an in-process store: its warning was a second stderr line after every error (and
    noise on success), and the lockout a command lifts lives in the database anyway."""
    rt = Runtime(settings, one_shot=one_shot)
    try:
        _require_current_schema(rt.engine, unreachable_ok=not one_shot)
        yield rt
    finally:
        rt.close()


@user.command("unlock")
@click.argument("email")
def user_unlock(email: str) -> None:
    """Unlock a locked account (and mail its owner)."""
    from idp.mail.messages import UNLOCKED_BY_ADMIN
    from idp.security.lockout import LockoutService
    from idp.security.notifications import AccountNotifier

    settings = _settings()
    with _runtime(settings) as rt, rt.session_factory() as db:
        found = AccountService(db, rt.passwords).find_user_by_email(email)
        if found is None:
            raise CommandError(f"no user with email {_shown(email)}")
        lockout = LockoutService(db, rt.store, settings)
        if lockout.unlock(found, COMMAND_ACTOR, by="operator"):
            AccountNotifier(settings.issuer).account_unlocked(db, found, UNLOCKED_BY_ADMIN)
            db.commit()
            click.echo(f"unlocked {found.email}")
        else:
            click.echo(f"{found.email} is not locked")


@user.command("reset-2fa")
@click.argument("email")
def user_reset_two_factor(email: str) -> None:
    """Turn off two-factor authentication for an owner who lost both their authenticator and
    their recovery codes (check who is asking first); mails the owner and is logged."""
    from idp.security.two_factor import NotEnabled, TwoFactorService, totp_box

    settings = _settings()
    with _runtime(settings) as rt, rt.session_factory() as db:
        found = AccountService(db, rt.passwords).find_user_by_email(email)
        if found is None:
            raise CommandError(f"no user with email {_shown(email)}")
        service = TwoFactorService(db, rt.passwords, totp_box(settings), actor=COMMAND_ACTOR)
        try:
            service.reset(found)
        except NotEnabled:
            click.echo(f"{found.email} has no two-factor authentication")
            return
        click.echo(f"two-factor authentication turned off for {found.email}")


@cli.group()
def client() -> None:
    """Relying services (OAuth 2.0 / OpenID Connect clients)."""


@client.command("create")
@click.argument("name")
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    required=True,
    help="Exact redirect URI (repeatable): https, or http on loopback.",
)
@click.option("--public", is_flag=True, help="A public client (no secret; PKCE required).")
@click.option("--first-party", is_flag=True, help="Skip the consent page.")
@click.option("--post-logout-redirect-uri", "logout_uris", multiple=True)
@click.option("--backchannel-logout-uri", default=None)
@click.option(
    "--scope",
    "scopes",
    default=DEFAULT_SCOPES,
    show_default=True,
    help="Scopes the client may request.",
)
@click.option(
    "--id-token-alg",
    type=click.Choice(["RS256", "ES256"]),
    default="RS256",
    show_default=True,
    help="Signature algorithm of this client's ID tokens.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def client_create(
    name: str,
    redirect_uris: tuple[str, ...],
    public: bool,
    first_party: bool,
    logout_uris: tuple[str, ...],
    backchannel_logout_uri: str | None,
    scopes: str,
    id_token_alg: str,
    as_json: bool,
) -> None:
    """Register a client; prints client_id (and client_secret, shown only now)."""
    with _db(_settings()) as db:
        try:
            created = ClientService(db, changed_by=by_operator()).create(
                name,
                list(redirect_uris),
                public=public,
                first_party=first_party,
                post_logout_redirect_uris=list(logout_uris),
                backchannel_logout_uri=backchannel_logout_uri,
                scopes=scopes,
                id_token_alg=id_token_alg,
            )
        except ClientError as exc:
            raise CommandError(str(exc)) from None
        data = {"client_id": created.client.client_id}
        if created.secret:
            data["client_secret"] = created.secret
        _emit(as_json, data, "\n".join(f"{k}: {v}" for k, v in data.items()))


@client.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def client_list(as_json: bool) -> None:
    """List registered clients."""
    with _db(_settings()) as db:
        rows = ClientService(db).list_all()
        _emit(
            as_json,
            {"clients": [c.describe() for c in rows]},
            "\n".join(
                f"{c.client_id}\t{c.name}\t{'public' if c.public else 'confidential'}" for c in rows
            ),
        )


@client.command("show")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def client_show(client_id: str, as_json: bool) -> None:
    """Show one client's registration."""
    with _db(_settings()) as db:
        try:
            data = ClientService(db).require(client_id).describe()
        except ClientError as exc:
            raise CommandError(str(exc)) from None
        _emit(as_json, data, "\n".join(f"{k}: {v}" for k, v in data.items()))


@client.command("delete")
@click.argument("client_id")
def client_delete(client_id: str) -> None:
    """Delete a client with its consents and tokens."""
    with _db(_settings()) as db:
        try:
            ClientService(db, changed_by=by_operator()).delete(client_id)
        except ClientError as exc:
            raise CommandError(str(exc)) from None
        click.echo(f"deleted {client_id}")


@client.command("rotate-secret")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def client_rotate_secret(client_id: str, as_json: bool) -> None:
    """Replace a confidential client's secret; prints the new one (shown only now)."""
    with _db(_settings()) as db:
        try:
            secret = ClientService(db, changed_by=by_operator()).rotate_secret(client_id)
        except ClientError as exc:
            raise CommandError(str(exc)) from None
        _emit(
            as_json, {"client_id": client_id, "client_secret": secret}, f"client_secret: {secret}"
        )


@cli.group()
def keys() -> None:
    """Token signing keys."""


@keys.command("rotate")
@click.option(
    "--secret-key-changed",
    is_flag=True,
    help="IDP_SECRET_KEY was replaced on purpose: make new keys although it cannot open the "
    "current ones.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def keys_rotate(secret_key_changed: bool, as_json: bool) -> None:
    """Make new signing keys current; older keys stay published until their tokens expire.
    Refused when IDP_SECRET_KEY cannot open the current keys (unless --secret-key-changed)."""
    from idp.services import key_service_for

    settings = _settings()
    with _db(settings) as db:
        service = key_service_for(db, settings)
        if not secret_key_changed:
            _require_servers_key(service)
        service.ensure_keys()
        details = {"secret_key_changed": True} if secret_key_changed else {}
        kids = service.rotate(recorded_by=by_operator(details))
        _emit(as_json, {"current": kids}, "\n".join(kids))


@cli.group()
def sso() -> None:
    """Enterprise SSO (Microsoft Entra ID connections)."""


@sso.command("link")
@click.argument("organization", metavar="ORG")
@click.option("--tenant-id", required=True, help="Entra tenant GUID (or a verified domain).")
@click.option("--client-id", required=True, help="Application (client) id of the app.")
@click.option(
    "--client-secret-stdin",
    is_flag=True,
    help="Read the client secret from standard input (first line).",
)
@click.option(
    "--certificate",
    "certificate_file",
    type=click.Path(dir_okay=False),
    help="PEM certificate uploaded to the app registration (instead of a secret).",
)
@click.option(
    "--private-key",
    "private_key_file",
    type=click.Path(dir_okay=False),
    help="PEM RSA private key of --certificate (unencrypted; keep the file private).",
)
@click.option("--domain", "domains", multiple=True, required=True, help="Email domain served.")
@click.option(
    "--jit/--no-jit",
    default=True,
    show_default=True,
    help="Create accounts on first sign-in (verified email in one of the domains only).",
)
@click.option("--enforce-sso", is_flag=True, help="Members of the domains cannot use a password.")
@click.option("--allow-guests", is_flag=True, help="Accept the tenant's B2B guest users.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def sso_link(
    organization: str,
    tenant_id: str,
    client_id: str,
    client_secret_stdin: bool,
    certificate_file: str | None,
    private_key_file: str | None,
    domains: tuple[str, ...],
    jit: bool,
    enforce_sso: bool,
    allow_guests: bool,
    as_json: bool,
) -> None:
    """Link ORG to its Entra ID tenant after testing the connection (secret never shown)."""
    from idp.federation.connections import (
        ConnectionService,
        LinkOptions,
        SsoConnectionError,
        secret_box,
    )
    from idp.federation.entra import EntraDirectory
    from idp.services import key_service_for

    credential = _sso_credential(client_secret_stdin, certificate_file, private_key_file)
    settings = _settings()
    with _db(settings) as db:
        _require_servers_key(key_service_for(db, settings))
        service = ConnectionService(
            db, EntraDirectory.from_settings(settings), secret_box(settings.secret_key)
        )
        try:
            connection = service.link(
                organization,
                tenant_id,
                client_id,
                credential,
                domains,
                LinkOptions(jit=jit, enforce_sso=enforce_sso, allow_guests=allow_guests),
            )
            _record_sso_saved(db, connection)
            db.commit()
        except SsoConnectionError as exc:
            raise CommandError(str(exc)) from None
        data = {
            "id": connection.id,
            "organization_id": connection.organization_id,
            "tenant_id": connection.tenant_id,
            "client_id": connection.client_id,
            "credential": "certificate" if connection.certificate else "secret",
            "domains": connection.domain_names,
            "jit": connection.jit,
            "enforce_sso": connection.enforce_sso,
            "allow_guests": connection.allow_guests,
        }
        _emit(
            as_json,
            data,
            f"linked {organization} to tenant {connection.tenant_id} "
            f"({', '.join(connection.domain_names)})",
        )


def _record_sso_saved(db: Session, connection: SsoConnection) -> None:
    """The ``organization:sso:save`` event of ``idp sso link``: no user, by the operator."""
    from idp.events import EventTag, record_event
    from idp.federation.connections import saved_event_details

    record_event(
        db,
        EventTag.SSO_CONNECTION_SAVED,
        organization_id=connection.organization_id,
        actor=COMMAND_ACTOR,
        details=by_operator(saved_event_details(connection)),
    )


def _sso_credential(
    secret_stdin: bool, certificate_file: str | None, private_key_file: str | None
) -> Credential:
    """The credential of ``idp sso link``: exactly one of a secret or certificate + key."""
    from idp.federation.credentials import ClientCertificate, ClientSecret, CredentialError

    if secret_stdin == bool(certificate_file or private_key_file):
        raise CommandError("give either --client-secret-stdin or --certificate with --private-key")
    if secret_stdin:
        secret = _stdin_line("client secret")
        if not secret:
            raise CommandError("no client secret on standard input")
        return ClientSecret(secret)
    if not (certificate_file and private_key_file):
        raise CommandError("--certificate and --private-key go together")
    try:
        with (
            open(certificate_file, encoding="utf-8") as cert,
            open(private_key_file, encoding="utf-8") as key,
        ):
            return ClientCertificate.parse(key.read(), cert.read())
    except OSError as exc:
        raise CommandError(f"cannot read {exc.filename}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError("--certificate and --private-key must be PEM text files") from None
    except CredentialError as exc:
        raise CommandError(str(exc)) from None


@cli.group("events")
def events_group() -> None:
    """The activity log."""


@events_group.command("purge")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def events_purge(as_json: bool) -> None:
    """Delete events older than IDP_EVENT_RETENTION_DAYS; prints how many."""
    from idp.activity import purge_events

    settings = _settings()
    with _db(settings) as db:
        result = purge_events(db, settings.event_retention_days)
    _emit(
        as_json,
        {
            "deleted": result.deleted,
            "before": result.before.isoformat(),
            "retention_days": result.retention_days,
        },
        f"deleted {result.deleted} events older than {result.retention_days} days "
        f"(before {result.before:%Y-%m-%d %H:%M} UTC)",
    )


@cli.group("outbox")
def outbox_group() -> None:
    """Queued work (mail, back-channel logouts, sign-ups) given up on after its retries."""


@outbox_group.command("failed")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def outbox_failed(as_json: bool) -> None:
    """List the items that failed for good (oldest first, at most 1000), with the last error."""
    from idp.outbox import failed_items

    settings = _settings()
    with _db(settings) as db:
        items = [
            {
                "id": item.id,
                "kind": item.kind,
                "attempts": item.attempts,
                "created_at": item.created_at.isoformat(),
                "failed_at": item.failed_at.isoformat() if item.failed_at else None,
                "last_error": item.last_error or "",
            }
            for item in failed_items(db)
        ]
    lines = [  # one line per item: an SMTP server's answer may have several
        f"{i['id']} {i['kind']}: {i['attempts']} attempts, failed {i['failed_at']}: "
        f"{' '.join(str(i['last_error']).split())[:200]}"
        for i in items
    ]
    _emit(as_json, {"failed": items}, "\n".join(lines) or "no failed items")


@outbox_group.command("retry")
@click.argument("ids", nargs=-1, type=click.IntRange(min=1, max=2**63 - 1))  # BIGINT ids
@click.option("--all", "every", is_flag=True, help="Every item that failed for good.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def outbox_retry(ids: tuple[int, ...], every: bool, as_json: bool) -> None:
    """Deliver failed items again (IDS, or --all): due now, attempts counted from zero."""
    from idp.outbox import NotFailed, requeue_failed

    if bool(ids) == every:
        raise CommandError("give the ids of failed items (see `idp outbox failed`) or --all")
    settings = _settings()
    with _db(settings) as db:
        try:
            count = requeue_failed(db, None if every else list(ids))
        except NotFailed as exc:
            raise CommandError(f"not a failed item: {exc}; nothing requeued") from None
    _emit(as_json, {"requeued": count}, f"requeued {count} failed items")


@cli.group("accounts")
def accounts_group() -> None:
    """Housekeeping of accounts."""


@accounts_group.command("purge-unverified")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def accounts_purge_unverified(as_json: bool) -> None:
    """Delete sign-up accounts never verified within IDP_UNVERIFIED_ACCOUNT_DAYS."""
    from idp.signup import purge_unverified_accounts

    settings = _settings()
    with _db(settings) as db:
        result = purge_unverified_accounts(db, settings.unverified_account_days)
    _emit(
        as_json,
        {
            "deleted": result.deleted,
            "before": result.before.isoformat(),
            "unverified_account_days": result.days,
        },
        f"deleted {result.deleted} sign-up accounts not verified within {result.days} days "
        f"(made before {result.before:%Y-%m-%d %H:%M} UTC)",
    )


@cli.command()
def worker() -> None:
    """Deliver queued work (mail, back-channel logouts, sign-ups) and do the hourly chores
    (deleting sign-up accounts never verified) until stopped."""
    import signal
    import threading

    from idp.worker import build_worker

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with _runtime(_settings(), one_shot=False) as rt:
        click.echo("idp worker: delivering the outbox", err=True)
        build_worker(rt).run_forever(stop)


def _stdin_line(what: str) -> str:
    """The first line of standard input (a password, a secret) without its line break. Typed
    at a terminal, it is asked for and not shown (the terminal echoed it in the clear)."""
    try:
        line = _read_unechoed(what) if sys.stdin.isatty() else sys.stdin.readline()
        line.encode("utf-8")  # a locale without UTF-8 hands undecodable bytes on as surrogates
    except UnicodeError:
        raise CommandError(f"the {what} on standard input is not UTF-8 text") from None
    return line.rstrip("\r\n")


def _read_unechoed(what: str) -> str:
    import termios

    fd = sys.stdin.fileno()
    before = termios.tcgetattr(fd)
    quiet = list(before)
    quiet[3] &= ~termios.ECHO  # local modes
    # Echo off first, then the prompt: TCSAFLUSH discards input not yet read, so a password
    # typed (or sent by a script) as soon as the prompt shows must arrive after it.
    termios.tcsetattr(fd, termios.TCSAFLUSH, quiet)
    click.echo(f"{what[0].upper()}{what[1:]} (not shown): ", err=True, nl=False)
    try:
        return sys.stdin.readline()
    finally:  # also on Ctrl-C: the terminal echoes again
        termios.tcsetattr(fd, termios.TCSAFLUSH, before)
        click.echo(err=True)


def _not_utf8(args: list[str]) -> str | None:
    """The first argument holding bytes that are not UTF-8 (Python keeps them as lone
    surrogates, which failed later as "'utf-8' codec can't encode ..."), shown as its bytes."""
    for arg in args:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            return repr(os.fsencode(arg))[1:]
    return None


def _shown(value: str) -> str:
    """``value`` as typed, or quoted with escapes when it holds a line break or another
    control character (which split the one error line in two, or overwrote it)."""
    return value if value.isprintable() else repr(value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


def _describe(exc: BaseException) -> str:
    """One line saying what failed: a database or store error says so, in the driver's words
    (SQLAlchemy's "(psycopg.OperationalError) ..." named a Python class instead)."""
    import redis
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"database error: {_first_line(exc.orig)}"
    if isinstance(exc, redis.RedisError):
        return f"store (IDP_REDIS_URL) error: {_first_line(exc)}"
    return _first_line(exc)


def main(argv: list[str] | None = None) -> None:
    """Entry point: click's own errors also become one ``idp: ...`` line."""
    bad = _not_utf8(sys.argv[1:] if argv is None else argv)
    if bad is not None:
        click.echo(f"idp: an argument is not UTF-8 text: {bad}", err=True)
        sys.exit(2)
    try:
        cli.main(args=argv, prog_name="idp", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        # Ctrl-C exits 130 (128 + SIGINT) as shells expect; end of input at a prompt, 1.
        interrupted = isinstance(exc, KeyboardInterrupt) or isinstance(
            exc.__context__, KeyboardInterrupt
        )
        click.echo("idp: aborted", err=True)
        sys.exit(130 if interrupted else 1)
    except click.ClickException as exc:
        click.echo(f"idp: {_one_line(exc.format_message())}", err=True)
        sys.exit(exc.exit_code if exc.exit_code else 1)
    except Exception as exc:  # e.g. database unreachable: one line, never a traceback
        click.echo(f"idp: {_one_line(_describe(exc))}", err=True)
        sys.exit(1)


def _one_line(message: str) -> str:
    """``message`` with its control characters escaped: a value quoted in it (an organization
    or host name as typed, a file name) must not break the one error line in two."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
