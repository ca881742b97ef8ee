"""What one client may cost the live endpoint: a message budget per socket, and caps on
the sockets open at once per address and per user.

:class:`SocketBudget` is a token bucket per socket. Every frame costs one token and a
``subscribe`` more, by the storage reads it makes (:func:`frame_cost`). A frame over the
budget is not handled: it is answered ``too_fast`` (with its client id, so the page
settles a post), and a socket that keeps sending past its budget runs out of *patience*
and is closed with 1008 (policy violation).

:class:`SocketSlots` counts open sockets per address and per logged-in user. A socket
lives on one instance, but people open pages through every instance, so with a Redis
(``web.redis_url``) the counts live there: one sorted set per address or user whose
members are socket ids scored by when their lease runs out. Each instance renews its
sockets' leases every :data:`LEASE_S` / 3 (:meth:`SocketSlots.renew`, a chore), so the
sockets of an instance that died drop out of the counts after :data:`LEASE_S`. When Redis cannot be
reached an instance counts its own sockets until it can.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import structlog

from playhouse.constants import SOCKETS_PREFIX, redis_key
from playhouse.web.limits import RateLimiter

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from playhouse.config import WebSettings

log = structlog.get_logger()

SUBSCRIBE_COST = 2.0
"""What a ``subscribe`` costs beyond its frame: it reads the room, the membership, the
thread and a page of history."""
PENDING_COST = 0.25
"""What each ``pending`` id of a ``subscribe`` costs (one comment read)."""
PATIENCE_REFILL_PER_S = 1.0
"""Refused frames forgiven per second (a socket refused more than its patience holds at
once, faster than this, is closed)."""
LEASE_S = 60.0
"""How long a socket's slot counts without being renewed (an instance that died)."""

Charge = Literal["ok", "refused", "close"]


def frame_cost(kind: str, pending: int = 0) -> float:
    """Tokens a decoded message costs beyond its frame's one."""
    if kind == "subscribe":
        return SUBSCRIBE_COST + PENDING_COST * pending
    return 0.0


@dataclass
class SocketBudget:
    """One socket's message budget: ``per_s`` tokens a second, bursts of ``burst``; up to
    ``patience`` frames refused in a row (forgiven at :data:`PATIENCE_REFILL_PER_S`)."""

    per_s: float
    burst: float
    patience: float
    clock: Callable[[], float] = time.monotonic
    refused: int = 0
    """Frames refused since the last one handled."""
    _tokens: RateLimiter = field(init=False)
    _patience: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        self._tokens = RateLimiter(self.per_s * 60.0, self.burst, clock=self.clock)
        self._patience = RateLimiter(PATIENCE_REFILL_PER_S * 60.0, self.patience,
                                     clock=self.clock)

    @classmethod
    def from_settings(cls, web: WebSettings) -> SocketBudget:
        return cls(per_s=web.ws_messages_per_s, burst=web.ws_message_burst,
                   patience=web.ws_patience)

    def charge(self, cost: float = 1.0) -> Charge:
        """Take ``cost``: ``ok`` (handle the frame), ``refused`` (drop it, say too_fast) or
        ``close`` (it kept sending past its budget)."""
        if not self._tokens.hit("", cost):
            self.refused = 0
            return "ok"
        self.refused += 1
        return "close" if self._patience.hit("") else "refused"


class SocketSlots:
    """Open sockets per address (``a:<ip>``) and per user (``u:<name>``), capped; shared
    through ``redis`` by every instance when given."""

    def __init__(self, *, per_address: int, per_user: int, redis: Redis | None = None,
                 lease_s: float = LEASE_S, namespace: str = "") -> None:
        self.namespace = namespace
        self.per_address = per_address
        self.per_user = per_user
        self.lease_s = lease_s
        self.local: dict[str, set[str]] = {}
        """Key → this instance's sockets (the counts without Redis; renewed with it)."""
        self._claim: Any = redis.register_script(_CLAIM) if redis is not None else None
        self._renew: Any = redis.register_script(_RENEW) if redis is not None else None
        self._redis = redis

    @classmethod
    def from_settings(cls, web: WebSettings, redis: Redis | None = None, *,
                      namespace: str = "") -> SocketSlots:
        return cls(per_address=web.ws_sockets_per_address, per_user=web.ws_sockets_per_user,
                   redis=redis, namespace=namespace)

    def _redis_key(self, key: str) -> str:
        return redis_key(self.namespace, SOCKETS_PREFIX, key)

    def _keys(self, address: str, user: str | None) -> list[tuple[str, int]]:
        keys = [(f"a:{address}", self.per_address)]
        if user is not None:
            keys.append((f"u:{user.casefold()}", self.per_user))
        return keys

    async def claim(self, socket_id: str, address: str, user: str | None) -> str | None:
        """Count ``socket_id`` in; None when it fits, else which cap it hit
        (``address`` or ``user``), and then it is not counted."""
        keys = self._keys(address, user)
        full: str | None = None
        if self._claim is not None:
            from redis.exceptions import RedisError

            try:
                index = int(await self._claim(
                    keys=[self._redis_key(key) for key, _ in keys],
                    args=[socket_id, self.lease_s, *(cap for _, cap in keys)],
                ))
            except (RedisError, OSError) as exc:
                log.warning("sockets.redis_unavailable", reason=str(exc)[:200])
            else:
                full = None if index == 0 else ("address", "user")[index - 1]
                if full is None:
                    for key, _ in keys:
                        self.local.setdefault(key, set()).add(socket_id)
                return full
        for n, (key, cap) in enumerate(keys):
            if len(self.local.get(key, ())) >= cap:
                return ("address", "user")[n]
        for key, _ in keys:
            self.local.setdefault(key, set()).add(socket_id)
        return None

    async def release(self, socket_id: str, address: str, user: str | None) -> None:
        keys = self._keys(address, user)
        for key, _ in keys:
            sockets = self.local.get(key)
            if sockets is not None:
                sockets.discard(socket_id)
                if not sockets:
                    del self.local[key]
        if self._redis is not None:
            from redis.exceptions import RedisError

            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key, _ in keys:
                        pipe.zrem(self._redis_key(key), socket_id)
                    await pipe.execute()
            except (RedisError, OSError) as exc:  # its lease runs out instead
                log.warning("sockets.redis_unavailable", reason=str(exc)[:200])

    async def renew(self) -> int:
        """Renew the leases of this instance's sockets in Redis; how many were renewed."""
        if self._renew is None or not self.local:
            return 0
        from redis.exceptions import RedisError

        pairs = [(key, socket_id) for key, sockets in self.local.items() for socket_id in sockets]
        try:
            await self._renew(keys=[self._redis_key(key) for key, _ in pairs],
                              args=[self.lease_s, *(socket_id for _, socket_id in pairs)])
        except (RedisError, OSError) as exc:
            log.warning("sockets.redis_unavailable", reason=str(exc)[:200])
            return 0
        return len(pairs)


# KEYS: the sets to count the socket in; ARGV: socket id, lease (s), then one cap per key.
# Drops the leases that ran out (Redis's clock), then adds the socket to every set, or to
# none: returns 0, or the (1-based) index of the first set that is full.
_CLAIM = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
local lease = tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', t)
  if redis.call('ZSCORE', key, ARGV[1]) == false
     and redis.call('ZCARD', key) >= tonumber(ARGV[2 + i]) then
    return i
  end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, t + lease, ARGV[1])
  redis.call('EXPIRE', key, math.ceil(lease) + 1)
end
return 0
"""

# KEYS[i] holds ARGV[i + 1] (a socket id); ARGV[1]: the lease (s). Renews each lease.
_RENEW = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
local lease = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, t + lease, ARGV[i + 1])
  redis.call('EXPIRE', key, math.ceil(lease) + 1)
end
return #KEYS
"""
