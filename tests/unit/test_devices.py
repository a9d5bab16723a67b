"""Browser and OS names shown for a device come from the User-Agent."""

from __future__ import annotations

import pytest

from idp.security.devices import describe_user_agent


@pytest.mark.parametrize(
    ("ua", "browser", "os_name"),
    [
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36",
            "Chrome 131",
            "Windows 10",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
            "Mobile Safari 17",
            "iOS 17",
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            "Firefox 128",
            "Linux",
        ),
        ("", "", ""),
        ("garbage \x00\xff", "", ""),
    ],
)
def test_user_agent_is_described(ua: str, browser: str, os_name: str) -> None:
    assert describe_user_agent(ua) == (browser, os_name)
