"""Small in-process token buckets: per-user and per-IP limits on logins and posts.

Litestar's ``RateLimitConfig`` counts requests per client across every route; these
buckets count one kind of action per key (a user name, an IP address). Each instance
keeps its own buckets, so N instances behind a balancer allow up to N times the rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

_MAX_KEYS = 50_000


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


@dataclass
class Limits:
    """Every limit the web app applies, built from :class:`~playhouse.config.WebSettings`."""

    posts_per_user: RateLimiter
    posts_per_ip: RateLimiter
    logins_per_ip: RateLimiter
    logins_per_user: RateLimiter
    registrations_per_ip: RateLimiter

    @classmethod
    def from_rates(cls, *, posts_per_minute: int, logins_per_minute: int) -> Limits:
        """Per-IP posting allows ten users behind one address; per-name logins half the IP's."""
        return cls(
            posts_per_user=RateLimiter(posts_per_minute),
            posts_per_ip=RateLimiter(posts_per_minute * 10),
            logins_per_ip=RateLimiter(logins_per_minute),
            logins_per_user=RateLimiter(max(1, logins_per_minute // 2)),
            registrations_per_ip=RateLimiter(max(1, logins_per_minute // 2)),
        )
