"""The in-memory token bucket: bursts, refill, waits, and its bounded memory."""

from __future__ import annotations

import pytest

from playhouse.config import WebSettings
from playhouse.web.limits import Limits, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_a_minutes_worth_then_a_wait_that_shrinks() -> None:
    clock = Clock()
    limiter = RateLimiter(6, clock=clock)  # one token every 10 s, bursts of 6
    assert [limiter.hit("alice") for _ in range(6)] == [0.0] * 6
    assert limiter.hit("alice") == pytest.approx(10.0)
    assert limiter.hit("bob") == 0.0  # keys are separate
    clock.now += 4
    assert limiter.hit("alice") == pytest.approx(6.0)
    clock.now += 6
    assert limiter.hit("alice") == 0.0
    assert limiter.hit("alice") == pytest.approx(10.0)


def test_refill_never_exceeds_the_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(60, burst=3, clock=clock)
    for _ in range(3):
        assert limiter.hit("k") == 0.0
    clock.now += 3600
    assert [limiter.hit("k") for _ in range(4)][:3] == [0.0] * 3
    assert limiter.hit("k") > 0


def test_a_zero_rate_never_allows_past_the_burst() -> None:
    limiter = RateLimiter(0, burst=1, clock=Clock())
    assert limiter.hit("k") == 0.0
    assert limiter.hit("k") == float("inf")


def test_memory_stays_bounded_under_many_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    import playhouse.web.limits as limits

    monkeypatch.setattr(limits, "_MAX_KEYS", 100)
    clock = Clock()
    limiter = RateLimiter(1, clock=clock)
    for i in range(1000):
        limiter.hit(f"ip-{i}")
        clock.now += 0.01
    assert len(limiter._buckets) <= 100


async def test_take_is_hit_for_the_in_memory_limiter() -> None:
    limits = Limits.from_settings(WebSettings(posts_per_minute=2, login_failures_per_minute=5))
    assert isinstance(limits.posts_per_user, RateLimiter)
    assert [await limits.posts_per_user.take("u") for _ in range(2)] == [0.0, 0.0]
    assert await limits.posts_per_user.take("u") > 0
    assert limits.posts_per_ip.per_minute == 20 and limits.login_failures_per_client.per_minute == 5


def test_given_back_tokens_refill_a_bucket_and_untouched_means_full() -> None:
    clock = Clock()
    limiter = RateLimiter(6, clock=clock)
    assert limiter.full("alice")
    assert limiter.hit("alice", 2) == 0.0 and not limiter.full("alice")
    limiter.give("alice", 2)
    assert limiter.full("alice")
    limiter.give("alice", 50)  # never past the burst
    assert [limiter.hit("alice") for _ in range(7)][-1] > 0
