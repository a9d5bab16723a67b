"""Fixed-window rate limits in the store (OWASP Authentication Cheat Sheet, "Login Throttling").

One atomic script per hit: increment, set the window's expiry on the first hit, report the
count and the seconds left, so concurrent requests are counted exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from idp.store import Store

_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1])) end
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1])); ttl = tonumber(ARGV[1]) end
return {n, ttl}
"""

# Several limits in order, in one round trip: each key as in _HIT (ARGV: limit and window per
# key); stops at the first limit exceeded, so the later keys are not counted, exactly as calling
# check() for each in turn. Returns that key's seconds left (at least 1: TTL rounds the last
# half second down to 0), or 0 when none was exceeded.
_CHECK_ALL = """
for i, key in ipairs(KEYS) do
  local limit, window = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('EXPIRE', key, window) end
  local ttl = redis.call('TTL', key)
  if ttl < 0 then redis.call('EXPIRE', key, window); ttl = window end
  if n > limit then return math.max(ttl, 1) end
end
return 0
"""


@dataclass(frozen=True)
class Hit:
    count: int
    retry_after: int


class RateLimited(Exception):
    """Too many attempts; try again in ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"rate limited for {retry_after}s")
        self.retry_after = max(1, retry_after)


class RateLimiter:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._hit = store.client.register_script(_HIT)
        self._check_all = store.client.register_script(_CHECK_ALL)

    def hit(self, key: str, window_seconds: int) -> Hit:
        count, ttl = self._hit(keys=[key], args=[window_seconds])
        return Hit(int(count), int(ttl))

    def check(self, key: str, limit: int, window_seconds: int) -> None:
        """Count one attempt; raise :class:`RateLimited` past ``limit`` in the window."""
        hit = self.hit(key, window_seconds)
        if hit.count > limit:
            raise RateLimited(hit.retry_after)

    def check_all(self, limits: Sequence[tuple[str, int, int]]) -> None:
        """:meth:`check` for each ``(key, limit, window_seconds)`` in order, in one store round
        trip instead of one per limit (sign-in checks two on every attempt)."""
        args: list[int] = []
        for _, limit, window_seconds in limits:
            args += [limit, window_seconds]
        retry_after = int(self._check_all(keys=[key for key, _, _ in limits], args=args))
        if retry_after:
            raise RateLimited(retry_after)

    def reset(self, key: str) -> None:
        self.store.client.delete(key)
