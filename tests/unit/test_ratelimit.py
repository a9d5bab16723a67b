"""RateLimiter.check_all: several limits in one round trip, counted as check() counts them."""

from __future__ import annotations

import fakeredis
import pytest

from idp.security.ratelimit import RateLimited, RateLimiter
from idp.store import Store


def limiter() -> tuple[RateLimiter, fakeredis.FakeRedis]:
    client = fakeredis.FakeRedis()
    return RateLimiter(Store(client, "t:")), client


def test_check_all_counts_every_limit_and_sets_the_window() -> None:
    rl, client = limiter()
    rl.check_all([("t:ip", 5, 60), ("t:global", 5, 30)])
    rl.check_all([("t:ip", 5, 60), ("t:global", 5, 30)])
    assert client.get("t:ip") == b"2" and client.get("t:global") == b"2"
    assert 0 < client.ttl("t:ip") <= 60 and 0 < client.ttl("t:global") <= 30


def test_an_exceeded_first_limit_refuses_without_counting_the_next() -> None:
    rl, client = limiter()
    rl.check_all([("t:ip", 1, 60), ("t:global", 10, 60)])
    with pytest.raises(RateLimited) as refused:
        rl.check_all([("t:ip", 1, 60), ("t:global", 10, 60)])
    assert 0 < refused.value.retry_after <= 60
    assert client.get("t:ip") == b"2" and client.get("t:global") == b"1"


def test_an_exceeded_later_limit_refuses() -> None:
    rl, _ = limiter()
    rl.check_all([("t:ip", 10, 60), ("t:global", 1, 60)])
    with pytest.raises(RateLimited):
        rl.check_all([("t:ip", 10, 60), ("t:global", 1, 60)])


def test_an_exceeded_limit_in_its_last_half_second_still_refuses() -> None:
    """Redis rounds a TTL under half a second down to 0, which the script's answer uses for
    "nothing exceeded": the refusal must not slip through at the end of a window."""
    rl, client = limiter()
    client.set("t:ip", 5)
    client.pexpire("t:ip", 300)
    with pytest.raises(RateLimited) as refused:
        rl.check_all([("t:ip", 5, 60)])
    assert refused.value.retry_after == 1
