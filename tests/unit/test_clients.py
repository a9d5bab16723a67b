"""Client identifiers."""

from __future__ import annotations

from idp.provider.clients import new_client_id


def test_client_ids_are_letters_and_digits_only() -> None:
    ids = {new_client_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 24 and i.isalnum() and i.isascii() for i in ids)
