"""Which email addresses accounts accept: what mail can be sent to, one address each."""

from __future__ import annotations

import pytest

from idp.accounts import AccountError, normalize_email, validate_email


@pytest.mark.parametrize(
    "address",
    [
        "alice@example.com",
        "Alice.Smith+idp@mail.example.co.uk",
        "o'brien@example.ie",
        "j\u00f6rg@example.de",
        "  padded@example.com  ",
    ],
)
def test_ordinary_addresses_are_accepted(address: str) -> None:
    assert validate_email(address) == address.strip()


@pytest.mark.parametrize(
    "address",
    [
        "a,b@example.com",  # two recipients to a mail program
        "x<y@example.com",
        "a;b@example.com",
        '"quoted"@example.com',
        "a(comment)@example.com",
        "back\\slash@example.com",
        "a b@example.com",
        "tab\t@example.com",
        "@example.com",
        "alice@localhost",
        "alice@-example.com",
        "alice@example..com",
        "x" * 65 + "@example.com",
        # characters that draw nothing: the address looks like alice@example.com's
        "alice\u200b@example.com",  # zero-width space
        "ecila\u202e@example.com",  # right-to-left override
        "\ufeffalice@example.com",  # byte order mark
        "alice\x9b@example.com",  # C1 control
        "alice\ue000@example.com",  # private use
        "\udcffalice@example.com",  # a byte that was not UTF-8
    ],
)
def test_addresses_mail_cannot_go_to_are_refused(address: str) -> None:
    with pytest.raises(AccountError, match="not a valid email address"):
        validate_email(address)


def test_an_address_is_one_address_however_its_letters_are_composed() -> None:
    """"jörg" typed with a precomposed ö and with o + combining diaeresis (macOS input, some
    mail programs) made two accounts whose addresses look the same; now both are the NFC
    form, and compare equal."""
    composed, decomposed = "j\u00f6rg@example.de", "jo\u0308rg@example.de"
    assert validate_email(decomposed) == composed
    assert normalize_email(decomposed) == normalize_email(composed) == composed
