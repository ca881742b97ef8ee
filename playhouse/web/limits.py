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

    from playhouse.config import WebSettings

log = structlog.get_logger()

_MAX_KEYS = 50_000


class Limiter(Protocol):
    per_minute: float

    @property
    def capacity(self) -> float:
        """The most tokens a key's bucket holds (the burst)."""
        ...

    async def take(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` tokens for ``key``: 0.0 when allowed, else seconds until it would be."""
        ...

    async def give_back(self, key: str, cost: float = 1.0) -> None:
        """Return ``cost`` tokens taken for an action that turned out not to count."""
        ...

    async def untouched(self, key: str) -> bool:
        """Whether ``key``'s bucket is full: nothing was taken from it recently."""
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

    def _bucket(self, key: str, now: float) -> _Bucket:
        """``key``'s bucket, refilled up to ``now`` (created full)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _MAX_KEYS:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(self.capacity, now)
        else:
            rate = self.per_minute / 60.0
            bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
        return bucket

    def hit(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` tokens for ``key``: 0.0 when allowed, else seconds until it would be."""
        bucket = self._bucket(key, self.clock())
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        rate = self.per_minute / 60.0
        if rate <= 0:
            return float("inf")
        return (cost - bucket.tokens) / rate

    def give(self, key: str, cost: float = 1.0) -> None:
        bucket = self._bucket(key, self.clock())
        bucket.tokens = min(self.capacity, bucket.tokens + cost)

    def full(self, key: str) -> bool:
        if key not in self._buckets:
            return True
        return self._bucket(key, self.clock()).tokens >= self.capacity

    async def take(self, key: str, cost: float = 1.0) -> float:
        return self.hit(key, cost)

    async def give_back(self, key: str, cost: float = 1.0) -> None:
        self.give(key, cost)

    async def untouched(self, key: str) -> bool:
        return self.full(key)

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


# KEYS[1] the bucket; ARGV: capacity, tokens per second, cost, expiry (s), mode ("take",
# "give" or "peek"). Redis's own clock, so every instance agrees on the time. Returns
# {wait in milliseconds (0: allowed, -1: never), tokens left (as text)}.
_BUCKET = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
local capacity, rate, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local mode = ARGV[5]
local b = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens, updated = tonumber(b[1]), tonumber(b[2])
if tokens == nil then tokens, updated = capacity, t end
tokens = math.min(capacity, tokens + (t - updated) * rate)
local wait = 0
if mode == 'take' then
  if tokens >= cost then tokens = tokens - cost
  elseif rate <= 0 then wait = -1
  else wait = math.ceil((cost - tokens) / rate * 1000) end
elseif mode == 'give' then
  tokens = math.min(capacity, tokens + cost)
end
if mode ~= 'peek' then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(t))
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
end
return {wait, tostring(tokens)}
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
        self._script: Any = redis.register_script(_BUCKET)

    @property
    def capacity(self) -> float:
        return self.local.capacity

    async def _run(self, key: str, cost: float, mode: str) -> tuple[float, float] | None:
        """(wait in seconds, tokens left), or None when Redis cannot be reached."""
        from redis.exceptions import RedisError

        rate = self.per_minute / 60.0
        expiry = int(self.capacity / rate) + 60 if rate > 0 else 3600
        try:
            wait_ms, tokens = await self._script(
                keys=[redis_key(self.namespace, RATE_LIMIT_PREFIX, self.name, key)],
                args=[self.capacity, rate, cost, expiry, mode],
            )
        except (RedisError, OSError) as exc:
            log.warning("limit.redis_unavailable", limit=self.name, reason=str(exc)[:200])
            return None
        wait = float("inf") if int(wait_ms) < 0 else int(wait_ms) / 1000.0
        return wait, float(tokens)

    async def take(self, key: str, cost: float = 1.0) -> float:
        answer = await self._run(key, cost, "take")
        return self.local.hit(key, cost) if answer is None else answer[0]

    async def give_back(self, key: str, cost: float = 1.0) -> None:
        if await self._run(key, cost, "give") is None:
            self.local.give(key, cost)

    async def untouched(self, key: str) -> bool:
        answer = await self._run(key, 0.0, "peek")
        return self.local.full(key) if answer is None else answer[1] >= self.capacity


@dataclass
class Limits:
    """Every limit the web app applies, built from :class:`~playhouse.config.WebSettings`."""

    posts_per_user: Limiter
    posts_per_ip: Limiter
    logins_per_ip: Limiter
    login_failures_per_client: Limiter
    """Wrong passwords for one user name from one address: the strict limit, which slows
    the one guessing without locking the owner out."""
    login_failures_per_user: Limiter
    """Wrong passwords for one user name from everywhere: a looser ceiling, past which only
    an address with no recent failures for that name may still try."""
    registrations_per_ip: Limiter
    bot_calls_per_user: Limiter
    """Bots one user asks (each bot a post calls takes one)."""
    rooms_per_user: Limiter
    """Rooms one user creates."""
    reports_per_user: Limiter
    """Reports one user files."""
    votes_per_user: Limiter
    """Votes (and changes of a vote) one user makes, by socket and form together."""

    @classmethod
    def from_settings(cls, web: WebSettings, redis: Redis | None = None, *,
                      namespace: str = "") -> Limits:
        """Per-IP posting allows ten users behind one address. With ``redis`` the buckets
        are shared by every instance using it (their keys under the storage
        ``namespace``)."""

        def limiter(name: str, per_minute: float, burst: float | None = None) -> Limiter:
            if redis is None:
                return RateLimiter(per_minute, burst)
            return SharedRateLimiter(redis, name, per_minute, burst, namespace=namespace)

        return cls(
            posts_per_user=limiter("posts_per_user", web.posts_per_minute),
            posts_per_ip=limiter("posts_per_ip", web.posts_per_minute * 10),
            logins_per_ip=limiter("logins_per_ip", web.logins_per_minute),
            login_failures_per_client=limiter("login_failures_per_client",
                                              web.login_failures_per_minute),
            login_failures_per_user=limiter("login_failures_per_user",
                                            web.login_failures_per_user_per_minute),
            registrations_per_ip=limiter("registrations_per_ip",
                                         max(1, web.logins_per_minute // 2)),
            bot_calls_per_user=limiter("bot_calls_per_user", web.bot_calls_per_minute),
            rooms_per_user=limiter("rooms_per_user", web.rooms_per_hour / 60.0,
                                   burst=max(1, web.rooms_per_hour)),
            reports_per_user=limiter("reports_per_user", web.reports_per_hour / 60.0,
                                     burst=max(1, web.reports_per_hour)),
            votes_per_user=limiter("votes_per_user", web.votes_per_minute),
        )
