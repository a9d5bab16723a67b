"""TOTP helpers (RFC 6238) and recovery codes: pure functions, no database."""

from __future__ import annotations

import base64
import hashlib
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest

from idp.security import totp
from idp.security.two_factor import (
    RECOVERY_ALPHABET,
    hash_recovery_code,
    new_recovery_codes,
    normalize_recovery_code,
)

NOW = datetime(2030, 5, 17, 12, 0, 10, tzinfo=UTC)
STEP = totp.time_step(NOW)
USER_ID = "0b0c3c4e-1d2f-4a5b-8c6d-7e8f9a0b1c2d"


def _code(secret: str, when: datetime) -> str:
    return pyotp.TOTP(secret).at(when)


@pytest.fixture
def secret() -> str:
    return totp.new_secret()


def test_new_secrets_are_160_bit_base32_and_differ() -> None:
    secrets = {totp.new_secret() for _ in range(50)}
    assert len(secrets) == 50
    for s in secrets:
        assert re.fullmatch(r"[A-Z2-7]{32}", s)
        assert len(base64.b32decode(s)) == 20


def test_rfc6238_test_vector_is_reproduced() -> None:
    # RFC 6238 Appendix B, SHA-1 seed "12345678901234567890", T = 59 s -> 94287082 (8 digits);
    # six digits are its last six.
    seed = base64.b32encode(b"12345678901234567890").decode()
    assert totp.code_at(seed, 59 // 30) == "287082"
    assert totp.verify(seed, "287082", None, datetime.fromtimestamp(59, UTC)) == 1


def test_the_code_of_the_current_step_is_accepted_and_its_step_returned(secret: str) -> None:
    assert totp.verify(secret, _code(secret, NOW), None, NOW) == STEP


def test_one_step_of_clock_drift_either_way_is_accepted(secret: str) -> None:
    before = _code(secret, NOW - timedelta(seconds=30))
    after = _code(secret, NOW + timedelta(seconds=30))
    assert totp.verify(secret, before, None, NOW) == STEP - 1
    assert totp.verify(secret, after, None, NOW) == STEP + 1


def test_codes_two_steps_away_are_refused(secret: str) -> None:
    for offset in (-2, 2, -10, 10):
        code = _code(secret, NOW + timedelta(seconds=30 * offset))
        if code in {_code(secret, NOW + timedelta(seconds=30 * d)) for d in (-1, 0, 1)}:
            continue  # a one-in-a-million collision with a code inside the window
        assert totp.verify(secret, code, None, NOW) is None


def test_a_code_is_refused_once_its_step_or_a_later_one_was_used(secret: str) -> None:
    code = _code(secret, NOW)
    assert totp.verify(secret, code, STEP, NOW) is None  # the same code again
    assert totp.verify(secret, code, STEP + 1, NOW) is None  # an older code after a newer one
    assert totp.verify(secret, code, STEP - 1, NOW) == STEP


def test_the_previous_steps_code_is_refused_after_the_current_one_was_used(secret: str) -> None:
    earlier = _code(secret, NOW - timedelta(seconds=30))
    assert totp.verify(secret, earlier, STEP, NOW) is None


def test_another_seeds_code_is_refused(secret: str) -> None:
    accepted = {_code(secret, NOW + timedelta(seconds=30 * d)) for d in (-1, 0, 1)}
    # Another seed whose current code is not, by a one-in-a-million chance, one of ours.
    code = next(c for c in (_code(totp.new_secret(), NOW) for _ in range(100))
                if c not in accepted)
    assert totp.verify(secret, code, None, NOW) is None


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "12345",
        "1234567",
        "abcdef",
        "12345a",
        "12 34",
        "١٢٣٤٥٦",
        "123456\x00",
        "-12345",
        "+12345",
        "1" * 1000,
        "12345\uff16",
    ],
)
def test_anything_but_six_digits_is_refused(secret: str, garbage: str) -> None:
    assert totp.verify(secret, garbage, None, NOW) is None


def test_spaces_that_apps_show_inside_a_code_are_ignored(secret: str) -> None:
    code = _code(secret, NOW)
    assert totp.verify(secret, f" {code[:3]} {code[3:]} ", None, NOW) == STEP


def test_every_comparison_is_constant_time(secret: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = totp.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(totp.hmac, "compare_digest", counting)
    totp.verify(secret, _code(secret, NOW - timedelta(seconds=30)), None, NOW)
    totp.verify(secret, "000000", None, NOW)
    assert len(calls) == 6  # all three steps, matched early or not at all


def test_provisioning_uri_names_account_issuer_and_secret(secret: str) -> None:
    uri = totp.provisioning_uri(secret, "alice@example.com", issuer_name="Acme ID")
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth" and parts.netloc == "totp"
    assert parts.path == "/Acme%20ID:alice%40example.com"
    query = parse_qs(parts.query)
    assert query["secret"] == [secret]
    assert query["issuer"] == ["Acme ID"]
    parsed = pyotp.parse_uri(uri)
    assert isinstance(parsed, pyotp.TOTP)
    assert parsed.at(NOW) == _code(secret, NOW)
    assert totp.provisioning_uri(secret, "bob@example.com").startswith("otpauth://totp/idp:")


def test_qr_code_is_a_self_contained_svg(secret: str) -> None:
    uri = totp.provisioning_uri(secret, "alice@example.com")
    svg = totp.qr_svg(uri)
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    tags = {el.tag.split("}")[1] for el in root.iter()}
    assert tags <= {"svg", "g", "path", "rect"}
    lowered = svg.lower()
    for forbidden in ("<script", "href", "url(", "style", "javascript:"):
        assert forbidden not in lowered
    assert not re.search(r"\son\w+=", lowered)  # no event handler attributes
    assert secret not in svg  # the seed is in the modules, not in readable text
    data = totp.qr_data_uri(uri)
    assert data.startswith("data:image/svg+xml;base64,")
    assert base64.b64decode(data.split(",", 1)[1]).decode() == svg


def test_recovery_codes_are_ten_distinct_unambiguous_codes() -> None:
    codes = new_recovery_codes()
    assert len(codes) == len(set(codes)) == 10
    for code in codes:
        assert re.fullmatch(r"[a-z2-9]{5}-[a-z2-9]{5}", code)
        assert not set(code.replace("-", "")) & set("01ilo")
    assert not set(RECOVERY_ALPHABET) & set("01ilo")
    assert new_recovery_codes() != codes


def test_recovery_codes_hash_to_sha256_bound_to_their_account() -> None:
    code = new_recovery_codes(1)[0]
    digest = hash_recovery_code(USER_ID, code)
    canonical = code.replace("-", "")
    expected = f"idp recovery code|{USER_ID}|{canonical}"
    assert digest == hashlib.sha256(expected.encode()).hexdigest()
    assert len(digest) == 64 and canonical not in digest
    assert hash_recovery_code("another-user", code) != digest


@pytest.mark.parametrize(
    "typed", ["{}", "{u}", " {raw} ", "{a} {b}", "{A}-{B}", "{a}--{b}", "{a}\t{b}"]
)
def test_recovery_codes_are_accepted_whatever_the_case_and_separators(typed: str) -> None:
    code = new_recovery_codes(1)[0]
    a, b = code.split("-")
    entered = typed.format(code, u=code.upper(), raw=a + b, a=a, b=b, A=a.upper(), B=b.upper())
    assert normalize_recovery_code(entered) == a + b
    assert hash_recovery_code(USER_ID, entered) == hash_recovery_code(USER_ID, code)


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "123456",
        "abcde-abcd",
        "abcde-abcdef",
        "abcde-abcd0",
        "abcde_abcde",
        "abcdé-abcde",
        "x" * 100,
    ],
)
def test_malformed_recovery_codes_are_refused(garbage: str) -> None:
    assert normalize_recovery_code(garbage) is None
    with pytest.raises(ValueError):
        hash_recovery_code(USER_ID, garbage)
