"""Two-factor authentication (TOTP and recovery codes): the account pages over HTTP and the
service's guarantees, on SQLite and PostgreSQL with real Redis."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from idp.events import EventTag
from idp.models import OutboxItem, RecoveryCode, User
from idp.runtime import Runtime
from idp.security.ratelimit import RateLimiter
from idp.security.reauth import PasswordConfirmation
from idp.security.secretbox import SecretBox, SecretBoxError
from idp.security.two_factor import (
    SEED_PURPOSE,
    AlreadyEnabled,
    TwoFactorError,
    TwoFactorService,
    hash_recovery_code,
    totp_box,
)
from tests.helpers import PASSWORD, count, create_user, csrf_token, events, sign_in
from tests.locks import waits_for
from tests.services import run_idp, runtime_env

T0 = datetime(2030, 5, 17, 12, 0, 10, tzinfo=UTC)
_SECRET = re.compile(r'data-testid="totp-secret">([A-Z2-7 ]+)</code>')
_RECOVERY = re.compile(r"<code>([a-z2-9]{5}-[a-z2-9]{5})</code>")


def _body(response: object) -> str:
    return response.get_data(as_text=True)  # type: ignore[attr-defined, no-any-return]


def _code(secret: str, when: datetime) -> str:
    return pyotp.TOTP(secret).at(when)


def _service(runtime: Runtime, db: object, now: datetime) -> TwoFactorService:
    return TwoFactorService(
        db,  # type: ignore[arg-type]
        runtime.passwords,
        totp_box(runtime.settings),
        clock=lambda: now,
        confirmation=PasswordConfirmation(
            runtime.passwords, RateLimiter(runtime.store), runtime.store
        ),
    )


def _user(runtime: Runtime, user_id: str) -> User:
    with runtime.session_factory() as db:
        user = db.get(User, user_id)
        assert user is not None
        return user


def _enable(runtime: Runtime, user_id: str, now: datetime = T0) -> tuple[str, list[str]]:
    """Turn two-factor authentication on through the service, at ``now``."""
    with runtime.session_factory() as db:
        user = db.get(User, user_id)
        assert user is not None
        service = _service(runtime, db, now)
        secret = service.start_enrollment(user, PASSWORD).secret
        codes = service.confirm_enrollment(user, secret, _code(secret, now))
    return secret, codes


def _verify(runtime: Runtime, user_id: str, code: str, now: datetime) -> str | None:
    with runtime.session_factory() as db:
        user = db.get(User, user_id)
        assert user is not None
        return _service(runtime, db, now).verify_second_factor(user, code)


def _post(client: FlaskClient, path: str, page: str, **fields: str) -> object:
    return client.post(path, data={"csrf_token": csrf_token(page), **fields})


def _start_enrollment(client: FlaskClient) -> str:
    """Ask for a seed over HTTP and return the enrollment page."""
    status = _body(client.get("/account/two-factor"))
    started = _post(client, "/account/two-factor/enroll", status, password=PASSWORD)
    assert started.status_code == 303  # type: ignore[attr-defined]
    assert started.headers["Location"] == "/account/two-factor/enroll"  # type: ignore[attr-defined]
    page = client.get("/account/two-factor/enroll")
    assert page.status_code == 200
    return _body(page)


def _shown_secret(page: str) -> str:
    match = _SECRET.search(page)
    assert match, "the enrollment page shows no key"
    return match.group(1).replace(" ", "")


def _enroll_over_http(client: FlaskClient) -> tuple[str, list[str]]:
    page = _start_enrollment(client)
    secret = _shown_secret(page)
    done = _post(client, "/account/two-factor/confirm", page, code=pyotp.TOTP(secret).now())
    assert done.status_code == 200  # type: ignore[attr-defined]
    return secret, _RECOVERY.findall(_body(done))


def _mails(runtime: Runtime, template: str) -> list[dict[str, object]]:
    with runtime.session_factory() as db:
        payloads = [item.payload for item in db.scalars(select(OutboxItem))]
    return [p for p in payloads if p.get("template") == template]


def _race(n: int, attempt: Callable[[threading.Barrier], str | None]) -> list[str | None]:
    barrier = threading.Barrier(n, timeout=30)
    results: list[str | None] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(attempt(barrier))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


# The pages ---------------------------------------------------------------------------------
def test_signed_out_visitors_are_sent_to_sign_in_and_back(client: FlaskClient) -> None:
    for path in ("/account/two-factor", "/account/two-factor/enroll"):
        response = client.get(path)
        assert response.status_code == 303
        location = urlsplit(response.headers["Location"])
        assert location.path == "/login"
        assert parse_qs(location.query) == {"next": [path]}


def test_enrolling_with_a_code_from_the_shown_key_turns_it_on_and_shows_recovery_codes_once(
    client: FlaskClient, runtime: Runtime
) -> None:
    user = create_user(runtime)
    sign_in(client)
    assert 'data-testid="two-factor">Off' in _body(client.get("/account"))
    assert "<strong>Off.</strong>" in _body(client.get("/account/two-factor"))

    page = _start_enrollment(client)
    secret = _shown_secret(page)
    assert re.search(r'<img src="data:image/svg\+xml;base64,[A-Za-z0-9+/=]+"', page)
    assert '<label for="code">' in page
    code_input = re.search(r'<input id="code"[^>]*>', page, re.S)
    assert code_input is not None
    assert 'autocomplete="one-time-code"' in code_input.group(0)
    assert 'inputmode="numeric"' in code_input.group(0)
    for field in re.findall(r"<input[^>]*>", page, re.S):  # the key is never sent back by forms
        assert secret not in field
    assert f"otpauth://totp/idp:alice%40example.com?secret={secret}" in page

    done = _post(client, "/account/two-factor/confirm", page, code=pyotp.TOTP(secret).now())
    assert done.status_code == 200  # type: ignore[attr-defined]
    codes = _RECOVERY.findall(_body(done))
    assert len(set(codes)) == 10
    assert "no-store" in done.headers["Cache-Control"]  # type: ignore[attr-defined]

    with runtime.session_factory() as db:
        stored = db.get(User, user.id)
        assert stored is not None and stored.totp_enabled_at is not None
    assert count(runtime, RecoveryCode, RecoveryCode.user_id == user.id) == 10
    (enabled,) = events(runtime, EventTag.TWO_FACTOR_ENABLED)
    assert enabled.user_id == user.id and enabled.ip == "127.0.0.1"

    status = _body(client.get("/account/two-factor"))
    assert "<strong>On</strong>" in status and "10 of 10 recovery codes left" in status
    assert not any(c in status for c in codes)  # shown once: not on later pages
    assert 'data-testid="two-factor">On' in _body(client.get("/account"))
    # The finished setup is gone: its page leads back to the status page.
    assert client.get("/account/two-factor/enroll").status_code == 303


def test_a_wrong_confirmation_code_leaves_two_factor_off_and_the_same_key_on_screen(
    client: FlaskClient, runtime: Runtime
) -> None:
    user = create_user(runtime)
    sign_in(client)
    page = _start_enrollment(client)
    secret = _shown_secret(page)
    right = pyotp.TOTP(secret).now()
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"

    for bad in (wrong, "", "12345", "not a code"):
        response = _post(client, "/account/two-factor/confirm", page, code=bad)
        assert response.status_code == 400  # type: ignore[attr-defined]
        again = _body(response)
        assert "That code is not right." in again
        assert 'aria-invalid="true"' in again
        assert _shown_secret(again) == secret
    assert _user(runtime, user.id).totp_enabled_at is None
    assert _user(runtime, user.id).totp_secret is None
    assert count(runtime, RecoveryCode) == 0
    assert events(runtime, EventTag.TWO_FACTOR_ENABLED) == []
    assert 'data-testid="two-factor">Off' in _body(client.get("/account"))

    done = _post(client, "/account/two-factor/confirm", page, code=pyotp.TOTP(secret).now())
    assert done.status_code == 200  # type: ignore[attr-defined]
    assert _user(runtime, user.id).totp_enabled_at is not None


def test_an_abandoned_setup_changes_nothing_and_belongs_to_its_browser_session(
    app: object, client: FlaskClient, runtime: Runtime
) -> None:
    user = create_user(runtime)
    sign_in(client)
    secret = _shown_secret(_start_enrollment(client))
    assert _user(runtime, user.id).totp_enabled_at is None

    # Kept server-side, sealed: the store holds no readable key.
    keys = list(runtime.store.client.scan_iter(match=runtime.store.prefix + "2fa-enrollment:*"))
    assert len(keys) == 1
    raw = runtime.store.client.get(keys[0])
    assert raw is not None and secret.encode() not in raw and secret.lower().encode() not in raw
    assert 0 < runtime.store.client.ttl(keys[0]) <= 600

    # Another browser signed in to the same account does not see or finish this setup.
    other = app.test_client()  # type: ignore[attr-defined]
    sign_in(other)
    assert other.get("/account/two-factor/enroll").status_code == 303
    status = _body(other.get("/account/two-factor"))
    response = _post(other, "/account/two-factor/confirm", status, code=pyotp.TOTP(secret).now())
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert "The setup expired." in _body(response)
    assert _user(runtime, user.id).totp_enabled_at is None


def test_turning_it_off_needs_the_right_password(client: FlaskClient, runtime: Runtime) -> None:
    user = create_user(runtime)
    sign_in(client)
    secret, codes = _enroll_over_http(client)
    page = _body(client.get("/account/two-factor"))
    field = 'id="disable-password" name="password" type="password" autocomplete="current-password"'
    assert field in page

    refused = _post(client, "/account/two-factor/disable", page, password="not my password")
    assert refused.status_code == 400  # type: ignore[attr-defined]
    assert "That is not your current password." in _body(refused)
    assert _user(runtime, user.id).totp_enabled_at is not None
    assert events(runtime, EventTag.TWO_FACTOR_DISABLED) == []
    assert _mails(runtime, "two_factor_disabled") == []

    done = _post(client, "/account/two-factor/disable", page, password=PASSWORD)
    assert done.status_code == 303  # type: ignore[attr-defined]
    assert "Two-factor authentication is now off." in _body(
        client.get(done.headers["Location"])  # type: ignore[attr-defined]
    )
    stored = _user(runtime, user.id)
    assert stored.totp_secret is None and stored.totp_enabled_at is None
    assert count(runtime, RecoveryCode) == 0
    (disabled,) = events(runtime, EventTag.TWO_FACTOR_DISABLED)
    assert disabled.user_id == user.id
    (mail,) = _mails(runtime, "two_factor_disabled")
    assert mail["to"] == "alice@example.com"
    later = datetime.now(UTC) + timedelta(seconds=60)
    assert _verify(runtime, user.id, codes[0], later) is None
    assert _verify(runtime, user.id, _code(secret, later), later) is None


def test_new_recovery_codes_need_the_password_and_replace_the_old_ones(
    client: FlaskClient, runtime: Runtime
) -> None:
    user = create_user(runtime)
    sign_in(client)
    _, old = _enroll_over_http(client)
    page = _body(client.get("/account/two-factor"))

    refused = _post(client, "/account/two-factor/recovery-codes", page, password="wrong one!")
    assert refused.status_code == 400  # type: ignore[attr-defined]
    assert "That is not your current password." in _body(refused)
    assert not _RECOVERY.findall(_body(refused))
    assert events(runtime, EventTag.RECOVERY_CODES_REGENERATED) == []
    assert _mails(runtime, "recovery_codes_regenerated") == []
    now = datetime.now(UTC)
    assert _verify(runtime, user.id, old[0], now) == "recovery"  # still the old set

    done = _post(client, "/account/two-factor/recovery-codes", page, password=PASSWORD)
    assert done.status_code == 200  # type: ignore[attr-defined]
    new = _RECOVERY.findall(_body(done))
    assert len(set(new)) == 10 and not set(new) & set(old)
    assert "Your earlier recovery codes no longer work." in _body(done)
    for code in old[1:]:
        assert _verify(runtime, user.id, code, now) is None
    assert _verify(runtime, user.id, new[0], now) == "recovery"
    assert "9 of 10 recovery codes left" in _body(client.get("/account/two-factor"))
    (regenerated,) = events(runtime, EventTag.RECOVERY_CODES_REGENERATED)
    assert regenerated.user_id == user.id
    assert len(_mails(runtime, "recovery_codes_regenerated")) == 1


def test_setting_up_again_while_on_is_refused(client: FlaskClient, runtime: Runtime) -> None:
    user = create_user(runtime)
    sign_in(client)
    _enable(runtime, user.id)
    page = _body(client.get("/account/two-factor"))
    assert "Set up two-factor authentication" not in page
    response = _post(client, "/account/two-factor/enroll", page, password=PASSWORD)
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert "already on" in _body(response)


# The stored seed ---------------------------------------------------------------------------
def test_the_seed_is_stored_sealed_and_opens_only_with_this_secret_key_for_this_user(
    runtime: Runtime,
) -> None:
    user = create_user(runtime)
    bob = create_user(runtime, "bob@example.com")
    secret, _ = _enable(runtime, user.id)
    stored = _user(runtime, user.id).totp_secret
    assert stored is not None and stored.startswith("v1:")
    assert secret not in stored and secret.lower() not in stored.lower()

    assert totp_box(runtime.settings).open(user.id, stored) == secret.encode()
    with pytest.raises(SecretBoxError):
        SecretBox("another secret key " * 3, SEED_PURPOSE).open(user.id, stored)
    with pytest.raises(SecretBoxError):  # copied onto another account's row, it is useless
        totp_box(runtime.settings).open(bob.id, stored)


def test_recovery_codes_are_stored_as_hashes_only(runtime: Runtime) -> None:
    user = create_user(runtime)
    _, codes = _enable(runtime, user.id)
    with runtime.session_factory() as db:
        hashes = list(db.scalars(select(RecoveryCode.code_hash)))
    assert sorted(hashes) == sorted(hash_recovery_code(user.id, c) for c in codes)
    for code in codes:
        assert not any(code in h or code.replace("-", "") in h for h in hashes)


# Verification ------------------------------------------------------------------------------
def test_a_code_is_accepted_once_and_never_after_a_later_one(runtime: Runtime) -> None:
    user = create_user(runtime)
    secret, _ = _enable(runtime, user.id, T0)
    # The code that confirmed the setup cannot be used to sign in.
    assert _verify(runtime, user.id, _code(secret, T0), T0) is None

    t1 = T0 + timedelta(seconds=30)
    assert _verify(runtime, user.id, _code(secret, t1), t1) == "otp"
    assert _verify(runtime, user.id, _code(secret, t1), t1) is None  # replayed
    t2 = T0 + timedelta(seconds=90)
    assert _verify(runtime, user.id, _code(secret, t2 + timedelta(seconds=30)), t2) == "otp"
    # Within the drift window, but older than the step just accepted.
    assert _verify(runtime, user.id, _code(secret, t2), t2) is None
    assert _user(runtime, user.id).totp_last_step == int(t2.timestamp()) // 30 + 1


def test_wrong_and_malformed_codes_are_refused(runtime: Runtime) -> None:
    user = create_user(runtime)
    bob = create_user(runtime, "bob@example.com")
    secret, _ = _enable(runtime, user.id, T0)
    t1 = T0 + timedelta(minutes=5)
    right = _code(secret, t1)
    for bad in (f"{(int(right) + 1) % 1_000_000:06d}", "", "12345", "1234567", "x" * 500):
        assert _verify(runtime, user.id, bad, t1) is None
    assert _verify(runtime, bob.id, right, t1) is None  # two-factor is off for bob
    assert _verify(runtime, user.id, f"{right[:3]} {right[3:]}", t1) == "otp"


def test_the_same_code_sent_twice_at_once_is_accepted_once(runtime: Runtime) -> None:
    user = create_user(runtime)
    secret, _ = _enable(runtime, user.id, T0)
    for round_ in range(1, 4):
        now = T0 + timedelta(seconds=30 * round_)
        code = _code(secret, now)

        def attempt(
            barrier: threading.Barrier, now: datetime = now, code: str = code
        ) -> str | None:
            with runtime.session_factory() as db:
                loaded = db.get(User, user.id)
                assert loaded is not None
                service = _service(runtime, db, now)
                barrier.wait()  # both have read the old last step before either claims
                return service.verify_second_factor(loaded, code)

        results = _race(2, attempt)
        assert sorted(results, key=str) == [None, "otp"], results


def test_a_recovery_code_works_once_however_it_is_typed(runtime: Runtime) -> None:
    user = create_user(runtime, organization="Acme")
    _, codes = _enable(runtime, user.id, T0)
    first = codes[0]
    typed = " " + first.replace("-", " ").upper() + " "
    assert _verify(runtime, user.id, typed, T0) == "recovery"
    assert _verify(runtime, user.id, first, T0) is None
    assert _verify(runtime, user.id, first.replace("-", ""), T0) is None
    assert _verify(runtime, user.id, codes[1], T0) == "recovery"
    used = events(runtime, EventTag.RECOVERY_CODE_USED)
    assert [e.details["remaining"] for e in used] == [9, 8]
    assert all(e.user_id == user.id and e.organization_id for e in used)
    with runtime.session_factory() as db:
        spent = list(db.scalars(select(RecoveryCode).where(RecoveryCode.used_at.is_not(None))))
    assert len(spent) == 2


def test_one_recovery_code_sent_twice_at_once_is_accepted_once(runtime: Runtime) -> None:
    user = create_user(runtime)
    _, codes = _enable(runtime, user.id, T0)

    def attempt(barrier: threading.Barrier) -> str | None:
        with runtime.session_factory() as db:
            loaded = db.get(User, user.id)
            assert loaded is not None
            service = _service(runtime, db, T0)
            barrier.wait()
            return service.verify_second_factor(loaded, codes[3])

    results = _race(2, attempt)
    assert sorted(results, key=str) == [None, "recovery"], results
    assert len(events(runtime, EventTag.RECOVERY_CODE_USED)) == 1


def test_a_second_tab_cannot_replace_the_seed_of_the_first(runtime: Runtime) -> None:
    user = create_user(runtime)
    secret, _ = _enable(runtime, user.id, T0)
    with runtime.session_factory() as db:
        stale = db.get(User, user.id)
        assert stale is not None
        stale.totp_enabled_at = None  # what a tab that loaded the user earlier believes
        db.expunge(stale)
        service = _service(runtime, db, T0)
        other = service.start_enrollment(stale, PASSWORD).secret
        with pytest.raises(AlreadyEnabled):
            service.confirm_enrollment(stale, other, _code(other, T0))
    t1 = T0 + timedelta(seconds=30)
    assert _verify(runtime, user.id, _code(secret, t1), t1) == "otp"


# Turning it on needs the password, and is mailed -------------------------------------------
def test_setting_up_needs_the_password(client: FlaskClient, runtime: Runtime) -> None:
    """Someone at a signed-in browser cannot turn it on with their own authenticator (the
    owner would be locked out: a password reset asks for the code too)."""
    user = create_user(runtime)
    sign_in(client)
    page = _body(client.get("/account/two-factor"))
    assert 'id="enroll-password" name="password" type="password"' in page
    for password in ("", "not my password"):
        refused = _post(client, "/account/two-factor/enroll", page, password=password)
        assert refused.status_code == 400  # type: ignore[attr-defined]
        assert "That is not your current password." in _body(refused)
        assert 'aria-describedby="enroll-error"' in _body(refused)
        assert client.get("/account/two-factor/enroll").status_code == 303  # no key to show
    for _ in range(4):  # the shared re-authentication limit: 5 guesses per 5 minutes
        _post(client, "/account/two-factor/enroll", page, password="still not it")
    limited = _post(client, "/account/two-factor/enroll", page, password=PASSWORD)
    assert limited.status_code == 429  # type: ignore[attr-defined]
    assert _user(runtime, user.id).totp_enabled_at is None


def test_turning_it_on_mails_the_owner(client: FlaskClient, runtime: Runtime) -> None:
    create_user(runtime)
    sign_in(client)
    assert _mails(runtime, "two_factor_enabled") == []
    _enroll_over_http(client)
    (mail,) = _mails(runtime, "two_factor_enabled")
    assert mail["to"] == "alice@example.com"


def test_an_account_without_a_password_confirms_by_a_fresh_sso_sign_in(runtime: Runtime) -> None:
    """An SSO-only account has no password to type: it confirms by a fresh sign-in with its
    organization, like every other sensitive change (it could turn it on, never off)."""
    user = create_user(runtime)
    _enable(runtime, user.id, T0)
    with runtime.session_factory() as db:
        db.execute(update(User).where(User.id == user.id).values(password_hash=None))
        db.commit()

    def service(db: Session, fresh: float | None) -> TwoFactorService:
        confirmation = PasswordConfirmation(
            runtime.passwords, RateLimiter(runtime.store), runtime.store, lambda: fresh
        )
        return TwoFactorService(
            db, runtime.passwords, totp_box(runtime.settings), confirmation=confirmation
        )

    with runtime.session_factory() as db:
        stored = db.get(User, user.id)
        assert stored is not None
        with pytest.raises(TwoFactorError, match="sign in again with your organization"):
            service(db, None).disable(stored, "")
        with pytest.raises(TwoFactorError, match="sign in again with your organization"):
            service(db, time.time() - 600).regenerate_recovery_codes(stored, "")
        service(db, time.time() - 10).disable(stored, "")
    assert _user(runtime, user.id).totp_enabled_at is None


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_new_recovery_codes_wait_for_a_concurrent_change_of_the_same_account(
    runtime: Runtime,
) -> None:
    """Two "new recovery codes" at once must not leave twenty working codes: each change takes
    the account's row lock first, so the second one waits for the first to commit."""
    user = create_user(runtime)
    _enable(runtime, user.id, T0)
    holder = runtime.session_factory()
    holder.execute(select(User.id).where(User.id == user.id).with_for_update())

    def regenerate() -> list[str]:
        with runtime.session_factory() as db:
            stored = db.get(User, user.id)
            assert stored is not None
            return _service(runtime, db, T0).regenerate_recovery_codes(stored, PASSWORD)

    made = waits_for(
        holder,
        regenerate,
        lambda: holder.add_all(  # what the concurrent change inserts before it commits
            RecoveryCode(user_id=user.id, code_hash=f"{n:064x}", created_at=T0) for n in range(10)
        ),
    )
    assert len(made) == 10
    assert count(runtime, RecoveryCode) == 10  # the other change's codes were replaced


def test_an_operator_turns_it_off_for_an_owner_who_lost_everything(
    tmp_path: Path, client: FlaskClient, runtime: Runtime
) -> None:
    user = create_user(runtime)
    _enable(runtime, user.id, datetime.now(UTC) - timedelta(minutes=2))
    env = runtime_env(runtime.settings, tmp_path / "cli")
    done = run_idp("user", "reset-2fa", "ALICE@example.com", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "two-factor authentication turned off for alice@example.com"
    assert _user(runtime, user.id).totp_enabled_at is None
    assert count(runtime, RecoveryCode) == 0
    (event,) = events(runtime, EventTag.TWO_FACTOR_DISABLED)
    assert event.details == {"reason": "operator"}
    assert len(_mails(runtime, "two_factor_disabled")) == 1
    signed_in = sign_in(client)  # the password alone, no code asked
    assert signed_in.status_code == 303 and signed_in.headers["Location"] == "/account"
    again = run_idp("user", "reset-2fa", "alice@example.com", env=env)
    assert again.returncode == 0
    assert again.stdout.strip() == "alice@example.com has no two-factor authentication"
    missing = run_idp("user", "reset-2fa", "nobody@example.com", env=env)
    assert missing.returncode != 0
    assert missing.stderr.strip() == "idp: no user with email nobody@example.com"
    assert len(events(runtime, EventTag.TWO_FACTOR_DISABLED)) == 1
