"""Whole numbers from forms, links and parameters: ASCII digits only, and not too many."""

from __future__ import annotations

import pytest

from idp.numbers import parse_whole


def test_plain_numbers_are_read() -> None:
    assert parse_whole("0") == 0
    assert parse_whole("007") == 7
    assert parse_whole("123456789") == 123456789
    assert parse_whole("12", max_digits=2) == 12


@pytest.mark.parametrize(
    "value",
    ["", "-1", "+1", "1.5", " 1", "1e3", "\u00b2", "\u2460", "\u0661\u0662", "\uff11",
     "1234567890"],
)
def test_anything_else_is_no_number(value: str) -> None:
    assert parse_whole(value) is None  # superscripts, circled, Arabic-Indic, full-width, too long
