"""Names people and organizations are shown by: one check for every way a name comes in (the
profile page, sign-up, registering through an invitation, ``idp user create``, organization
names, and names an Entra directory sends).

A name goes into member lists, mails, the activity log and the ``name`` claim, so it may hold
only characters that can be shown: control characters (Unicode category Cc, C0 and C1), format
characters (Cf: zero-width space, bidirectional overrides and isolates, soft hyphen, ...),
private-use (Co), surrogate (Cs) and unassigned (Cn) code points, and the fillers that are
letters but draw nothing (Hangul fillers, the blank Braille pattern), are refused. The zero-width
joiner and non-joiner are kept between two visible characters, where Persian, Indic scripts and
emoji sequences use them. Whitespace is trimmed and runs of it become one space, so a name of
only whitespace is empty.
"""

from __future__ import annotations

import unicodedata
from typing import Literal

from flask_babel import gettext

PERSON_NAME_MAX = 100

_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn"})
_TYPED_WHITESPACE = frozenset("\t\n\r")  # Cc, but only whitespace: collapsed to a space
_JOINERS = frozenset("\u200c\u200d")  # zero-width non-joiner and joiner
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")

Problem = Literal["too_long", "unshowable"]


class UnusableName(ValueError):
    """A name that cannot be stored: ``problem`` says why (the caller words it)."""

    def __init__(self, problem: Problem, message: str = "") -> None:
        super().__init__(message or problem)
        self.problem = problem
        self.message = message or problem


def _visible(c: str) -> bool:
    return not c.isspace() and unicodedata.category(c) not in _REFUSED_CATEGORIES


def _unshowable_at(value: str, i: int) -> bool:
    c = value[i]
    if c in _TYPED_WHITESPACE:
        return False
    if c in _BLANK_LETTERS:
        return True
    if unicodedata.category(c) not in _REFUSED_CATEGORIES:
        return False
    if c in _JOINERS:  # only inside a word: a visible character on both sides
        return not (0 < i < len(value) - 1 and _visible(value[i - 1]) and _visible(value[i + 1]))
    return True


def has_unshowable(value: str) -> bool:
    """Whether ``value`` holds a character a name may not have (see the module)."""
    return any(_unshowable_at(value, i) for i in range(len(value)))


def clean_name(value: str, max_length: int) -> str:
    """``value`` trimmed, with runs of whitespace made one space (whitespace only: ``""``),
    in Unicode NFC (so "Café" typed with a combining accent is the same name, not a second
    organization that looks identical). Raises :class:`UnusableName` ("unshowable" first,
    then "too_long")."""
    if has_unshowable(value):
        raise UnusableName("unshowable")
    cleaned = " ".join(unicodedata.normalize("NFC", value).split())
    if len(cleaned) > max_length:
        raise UnusableName("too_long")
    return cleaned


def name_key(value: str) -> str:
    """What a typed organization name is looked up by (``lower(name)`` of the stored one):
    cleaned as :func:`clean_name` stores it, in lower case."""
    return " ".join(unicodedata.normalize("NFC", value).split()).lower()


def showable_name(value: str, max_length: int) -> str:
    """For names that must be taken as they come (an Entra directory's): the characters a
    name may not have are dropped instead, whitespace collapsed, the result cut to length."""
    kept = "".join(c for i, c in enumerate(value) if not _unshowable_at(value, i))
    return " ".join(kept.split())[:max_length].strip()


def clean_person_name(which: Literal["first", "last"], value: str) -> str:
    """A first or last name typed by a person (at most :data:`PERSON_NAME_MAX` characters);
    :class:`UnusableName` with a translated message for them."""
    try:
        return clean_name(value, PERSON_NAME_MAX)
    except UnusableName as exc:
        if exc.problem == "unshowable":
            message = (
                gettext("The first name contains characters that cannot be shown.")
                if which == "first"
                else gettext("The last name contains characters that cannot be shown.")
            )
        else:
            message = (
                gettext("The first name must be at most %(n)s characters.", n=PERSON_NAME_MAX)
                if which == "first"
                else gettext("The last name must be at most %(n)s characters.", n=PERSON_NAME_MAX)
            )
        raise UnusableName(exc.problem, str(message)) from None
