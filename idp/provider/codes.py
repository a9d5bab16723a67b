"""Authorization codes (RFC 6749 §4.1.2) in the store: short-lived and single-use.

Redeeming is one atomic step (a Lua script): the code is removed and a "used" marker that
remembers its token family is left in its place. A code presented again finds the marker:
the request fails with invalid_grant and every token issued from the code is revoked
(RFC 6749 §4.1.2, RFC 9700 §4.2.4). A client presenting another client's code does not
consume it.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from redis.commands.core import Script

from idp.store import Store

_REDEEM = """
local value = redis.call('GET', KEYS[1])
if not value then
  local family = redis.call('GET', KEYS[2])
  if family then return {'used', family} end
  return {'unknown', ''}
end
local data = cjson.decode(value)
if data['client_id'] ~= ARGV[1] then return {'other-client', ''} end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], data['family_id'], 'EX', tonumber(ARGV[2]))
return {'ok', value}
"""


@dataclass(frozen=True)
class AuthorizationCode:
    """What a code stands for; the attribute names follow authlib's AuthorizationCodeMixin."""

    client_id: str
    redirect_uri: str
    scope: str
    user_id: str
    session_id: str
    family_id: str
    auth_time: int
    amr: list[str]
    nonce: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str | None:
        return None

    def get_amr(self) -> list[str]:
        return self.amr


@dataclass(frozen=True)
class Redemption:
    status: str  # ok | used | unknown | other-client
    code: AuthorizationCode | None = None
    family_id: str | None = None


class AuthorizationCodeStore:
    def __init__(self, store: Store, lifetime_seconds: int, replay_memory_seconds: int) -> None:
        self.store = store
        self.lifetime = lifetime_seconds
        self.replay_memory = replay_memory_seconds

    @functools.cached_property
    def _redeem(self) -> Script:
        """The redeeming Lua script, made when a code is redeemed (this store is built for
        every provider request, most of which redeem nothing)."""
        return self.store.client.register_script(_REDEEM)

    @staticmethod
    def _digest(code: str) -> str:
        return hashlib.sha256(code.encode()).hexdigest()

    def save(self, code: str, data: AuthorizationCode) -> None:
        self.store.client.set(
            self.store.code_key(self._digest(code)), json.dumps(asdict(data)), ex=self.lifetime
        )

    def redeem(self, code: str, client_id: str) -> Redemption:
        digest = self._digest(code)
        status, value = self._redeem(
            keys=[self.store.code_key(digest), self.store.used_code_key(digest)],
            args=[client_id, self.replay_memory],
        )
        status = status.decode() if isinstance(status, bytes) else str(status)
        value = value.decode() if isinstance(value, bytes) else str(value)
        if status == "ok":
            data: dict[str, Any] = json.loads(value)
            return Redemption(status, code=AuthorizationCode(**data))
        if status == "used":
            return Redemption(status, family_id=value)
        return Redemption(status)
