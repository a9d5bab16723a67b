"""Only same-origin paths are followed after sign-in (no open redirect)."""

from __future__ import annotations

import pytest

from idp.security.redirects import safe_next


@pytest.mark.parametrize("target", ["/account", "/authorize?client_id=a&state=b", "/a/b#c"])
def test_same_origin_paths_are_kept(target: str) -> None:
    assert safe_next(target) == target


@pytest.mark.parametrize(
    "target",
    [
        None,
        "",
        "account",
        "https://evil.example",
        "//evil.example",
        "///evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "/\t/evil.example",
        "/\n/evil.example",
        "http:/evil.example",
        "data:text/html,x",
    ],
)
def test_anything_else_falls_back(target: str | None) -> None:
    assert safe_next(target) == "/account"
