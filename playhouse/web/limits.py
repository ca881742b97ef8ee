"""Token buckets: per-user and per-IP limits on logins and posts.

Litestar's ``RateLimitConfig`` counts requests per client across every route; these
buckets count one kind of action per key (a user name, an IP address). One instance keeps
them in memory (:class:`RateLimiter`); instances that share a Redis (``web.redis_url``)
keep them there (:class:`SharedRateLimiter`), so N instances behind a balancer allow the
configured rate, not N times it. When Redis cannot be reached, a shared limiter counts in
memory until it can: a Redis outage never stops people from posting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from playhouse.constants import RATE_LIMIT_PREFIX, redis_key

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = structlog.get_logger()

_MAX_KEYS = 50_000


class Limiter(Protocol):
    per_minute: float

    async def take(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` tokens for ``key``: 0.0 when allowed, else seconds until it would be."""
        ...


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """``per_minute`` actions per key, in bursts of up to ``burst`` (default: a minute's)."""

    per_minute: float
    burst: float | None = None
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    @property
    def capacity(self) -> float:
        return self.burst if self.burst is not None else max(1.0, self.per_minute)

    def hit(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` tokens for ``key``: 0.0 when allowed, else seconds until it would be."""
        now = self.clock()
        rate = self.per_minute / 60.0
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _MAX_KEYS:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(self.capacity, now)
        else:
            bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        if rate <= 0:
            return float("inf")
        return (cost - bucket.tokens) / rate

    async def take(self, key: str, cost: float = 1.0) -> float:
        return self.hit(key, cost)

    def _prune(self, now: float) -> None:
        """Forget the keys whose buckets have refilled (they hold no information)."""
        rate = self.per_minute / 60.0
        full = [
            key
            for key, b in self._buckets.items()
            if b.tokens + (now - b.updated) * rate >= self.capacity
        ]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= _MAX_KEYS:  # still full: drop the oldest half
            ordered = sorted(self._buckets, key=lambda k: self._buckets[k].updated)
            for key in ordered[: len(ordered) // 2]:
                del self._buckets[key]


# KEYS[1] the bucket; ARGV: capacity, tokens per second, cost, expiry (s). Redis's own clock,
# so every instance agrees on the time. Returns the wait in milliseconds (0: allowed).
_TAKE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
local capacity, rate, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens, updated = tonumber(b[1]), tonumber(b[2])
if tokens == nil then tokens, updated = capacity, t end
tokens = math.min(capacity, tokens + (t - updated) * rate)
local wait = 0
if tokens >= cost then tokens = tokens - cost
elseif rate <= 0 then wait = -1
else wait = math.ceil((cost - tokens) / rate * 1000) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(t))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return wait
"""


class SharedRateLimiter:
    """A :class:`RateLimiter` whose buckets live in Redis, shared by every instance."""

    def __init__(self, redis: Redis, name: str, per_minute: float,
                 burst: float | None = None, *, namespace: str = "") -> None:
        self.per_minute = per_minute
        self.name = name
        self.namespace = namespace
        self.local = RateLimiter(per_minute, burst)
        """Counts while Redis cannot be reached."""
        self._script: Any = redis.register_script(_TAKE)

    async def take(self, key: str, cost: float = 1.0) -> float:
        from redis.exceptions import RedisError

        rate = self.per_minute / 60.0
        expiry = int(self.local.capacity / rate) + 60 if rate > 0 else 3600
        try:
            wait_ms = int(await self._script(
                keys=[redis_key(self.namespace, RATE_LIMIT_PREFIX, self.name, key)],
                args=[self.local.capacity, rate, cost, expiry],
            ))
        except (RedisError, OSError) as exc:
            log.warning("limit.redis_unavailable", limit=self.name, reason=str(exc)[:200])
            return self.local.hit(key, cost)
        return float("inf") if wait_ms < 0 else wait_ms / 1000.0


@dataclass
class Limits:
    """Every limit the web app applies, built from :class:`~playhouse.config.WebSettings`."""

    posts_per_user: Limiter
    posts_per_ip: Limiter
    logins_per_ip: Limiter
    logins_per_user: Limiter
    registrations_per_ip: Limiter

    @classmethod
    def from_rates(cls, *, posts_per_minute: int, logins_per_minute: int,
                   redis: Redis | None = None, namespace: str = "") -> Limits:
        """Per-IP posting allows ten users behind one address; per-name logins half the IP's.
        With ``redis`` the buckets are shared by every instance using it (their keys under
        the storage ``namespace``)."""

        def limiter(name: str, per_minute: float) -> Limiter:
            if redis is None:
                return RateLimiter(per_minute)
            return SharedRateLimiter(redis, name, per_minute, namespace=namespace)

        return cls(
            posts_per_user=limiter("posts_per_user", posts_per_minute),
            posts_per_ip=limiter("posts_per_ip", posts_per_minute * 10),
            logins_per_ip=limiter("logins_per_ip", logins_per_minute),
            logins_per_user=limiter("logins_per_user", max(1, logins_per_minute // 2)),
            registrations_per_ip=limiter("registrations_per_ip",
                                         max(1, logins_per_minute // 2)),
        )
