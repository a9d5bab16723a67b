"""Whole numbers typed into our forms or carried in our links and parameters."""

from __future__ import annotations


def parse_whole(value: str, max_digits: int = 9) -> int | None:
    """The non-negative integer ``value`` spells in ASCII digits (at most ``max_digits``), or
    None.

    ``str.isdigit()`` alone is not enough: it accepts ``²`` and ``①``, on which ``int()``
    raises, and ``int()`` itself accepts other scripts' digits and, slowly, thousands of
    digits; none of that is a number a person or a relying service meant here."""
    if not value or len(value) > max_digits or not (value.isascii() and value.isdigit()):
        return None
    return int(value)
