"""Names shown to others (member lists, mails, the ``name`` claim): one check for every entry
point, refusing characters that cannot be shown, and trimming whitespace."""

from __future__ import annotations

import pytest

from idp.federation.signin import _names
from idp.names import UnusableName, clean_name, clean_person_name, showable_name

PERSIAN = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # a joiner inside a word


@pytest.mark.parametrize(
    "value",
    ["Al\x01ice", "Al\x7fice", "Al\x85ice", "Al\u200bice", "\u200b", "\u202eecilA",
     "Al\u2066ice", "\ufeffAlice", "Al\u00adice", "Al\ue000ice", "Al\U000e0001ice",
     "Al\u0378ice", "\u3164", "\u2800", "\u200dAlice", "Alice\u200c", "Al\u200d\u200dice",
     "Al\u200d ice"],
    ids=["C0", "DEL", "C1", "zero-width-space", "only-zero-width-space", "bidi-override",
         "bidi-isolate", "byte-order-mark", "soft-hyphen", "private-use", "tag", "unassigned",
         "hangul-filler", "braille-blank", "leading-joiner", "trailing-joiner",
         "two-joiners", "joiner-before-space"],
)
def test_characters_that_cannot_be_shown_are_refused(value: str) -> None:
    with pytest.raises(UnusableName) as refused:
        clean_name(value, 100)
    assert refused.value.problem == "unshowable"


@pytest.mark.parametrize(
    ("value", "kept"),
    [("  Alice \t Mary\n", "Alice Mary"), ("\u00a0\u3000 ", ""), ("Zoë-Ængus", "Zoë-Ængus"),
     (PERSIAN, PERSIAN), ("👩\u200d💻", "👩\u200d💻"), ("O\u2019Brien", "O\u2019Brien"),
     ("Cafe\u0301", "Caf\u00e9")],
    ids=["whitespace", "only-whitespace", "accents", "persian-zwnj", "emoji-zwj", "apostrophe",
         "combining-accent-composed"],
)
def test_names_that_can_be_shown_are_kept_trimmed(value: str, kept: str) -> None:
    assert clean_name(value, 100) == kept


def test_the_length_counts_after_trimming_and_the_invisible_is_said_first() -> None:
    assert clean_name(" " + "x" * 100 + " ", 100) == "x" * 100
    with pytest.raises(UnusableName, match="too_long"):
        clean_name("x" * 101, 100)
    with pytest.raises(UnusableName, match="unshowable"):
        clean_name("x" * 101 + "\x01", 100)


def test_a_person_is_told_which_name_and_why() -> None:
    with pytest.raises(UnusableName, match="The first name contains characters that cannot be"):
        clean_person_name("first", "Al\x01ice")
    with pytest.raises(UnusableName, match="The last name must be at most 100 characters"):
        clean_person_name("last", "x" * 101)


def test_names_from_an_entra_directory_lose_what_cannot_be_shown() -> None:
    assert showable_name(" \u202eAl\u200bice\x00 ", 100) == "Alice"
    assert _names({"given_name": "\u200b", "family_name": "Lid\u2066dell"}) == ("", "Liddell")
    assert _names({"name": "Alice\u200b  \u202eLiddell"}) == ("Alice", "Liddell")
