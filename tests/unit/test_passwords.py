"""argon2id hashing and the password policy."""

from __future__ import annotations

import pytest

from idp.security.passwords import PasswordPolicyError, PasswordService, common_passwords
from idp.settings import load_settings

FAST = {"IDP_ARGON2_MEMORY_KIB": "1024", "IDP_ARGON2_TIME_COST": "1"}


@pytest.fixture(scope="module")
def passwords() -> PasswordService:
    return PasswordService(load_settings(environ=FAST))


def test_default_hash_uses_owasp_argon2id_parameters() -> None:
    service = PasswordService(load_settings(environ={}))
    stored = service.hash("correct horse battery staple")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_verify_accepts_the_right_password_only(passwords: PasswordService) -> None:
    stored = passwords.hash("correct horse battery staple")
    assert passwords.verify(stored, "correct horse battery staple").ok
    assert not passwords.verify(stored, "Correct horse battery staple").ok
    assert not passwords.verify(None, "correct horse battery staple").ok
    assert not passwords.verify("not a hash", "correct horse battery staple").ok


def test_over_long_password_is_refused_without_hashing(passwords: PasswordService) -> None:
    stored = passwords.hash("a" * 1025)  # even if such a hash existed, it is not checked
    assert not passwords.verify(stored, "a" * 1025).ok


def test_hash_with_older_parameters_needs_rehash(passwords: PasswordService) -> None:
    stronger = PasswordService(load_settings(environ={**FAST, "IDP_ARGON2_TIME_COST": "3"}))
    old = passwords.hash("correct horse battery staple")
    result = stronger.verify(old, "correct horse battery staple")
    assert result.ok and result.needs_rehash
    assert not stronger.verify(
        stronger.hash("correct horse battery staple"), "correct horse battery staple"
    ).needs_rehash


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short pass", "at least 12"),
        ("x" * 1025, "at most 1024"),
        ("qazwsxedcrfv", "too common"),  # in the shipped list
        ("QAZWSXEDCRFV", "too common"),  # case does not help
        ("iloveyou123456!", "too common"),  # a common word with digits appended
        ("aaaaaaaaaaaaaaaa", "too common"),
        ("alice.liddell-2026!", "email address"),
    ],
)
def test_policy_refuses_with_the_reason(
    passwords: PasswordService, password: str, reason: str
) -> None:
    with pytest.raises(PasswordPolicyError, match=reason):
        passwords.check_policy(password, email="alice.liddell@example.com")


def test_policy_accepts_a_long_unusual_passphrase(passwords: PasswordService) -> None:
    passwords.check_policy("correct horse battery staple", email="alice@example.com")
    passwords.check_policy("Ünïcødé pässwörd ✓ 2026", email="alice@example.com")


def test_common_password_list_is_shipped() -> None:
    words = common_passwords()
    assert len(words) > 19000
    assert "password" in words and "qazwsxedcrfv" in words
