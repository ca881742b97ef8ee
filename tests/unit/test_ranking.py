"""Ranking formulas and the keys that make a range query return the best first."""

from __future__ import annotations

import random

from playhouse import ranking


def test_hot_weighs_a_tenfold_score_like_12_5_hours() -> None:
    t = 1_700_000_000.0
    assert ranking.hot(10, 0, t) == ranking.hot(1, 0, t + 45_000) or abs(
        ranking.hot(10, 0, t) - ranking.hot(1, 0, t + 45_000)) < 1e-6
    assert ranking.hot(0, 5, t) < ranking.hot(0, 0, t) < ranking.hot(5, 0, t)
    assert ranking.hot(0, 0, t + 1) > ranking.hot(0, 0, t)


def test_wilson_prefers_many_good_votes_to_one() -> None:
    assert ranking.wilson(0, 0) == 0.0
    assert ranking.wilson(90, 100) > ranking.wilson(1, 1)
    assert 0.0 <= ranking.wilson(1, 1) < 1.0
    assert ranking.wilson(5, 10) < ranking.wilson(8, 10)


def test_controversy_needs_both_kinds_and_rewards_even_splits() -> None:
    assert ranking.controversy(10, 0) == 0.0
    assert ranking.controversy(50, 50) > ranking.controversy(90, 10)
    assert ranking.controversy(50, 50) > ranking.controversy(5, 5)


def test_keys_sort_best_first() -> None:
    rng = random.Random(3)
    items = [(rng.randint(0, 500), rng.randint(0, 500), 1_600_000_000 + rng.random() * 1e8)
             for _ in range(300)]
    by_key = sorted(items, key=lambda i: ranking.hot_key(*i))
    by_rank = sorted(items, key=lambda i: -ranking.hot(*i))
    assert [ranking.hot(*i) for i in by_key] == [ranking.hot(*i) for i in by_rank]
    scores = [rng.randint(-10**6, 10**6) for _ in range(300)]
    assert sorted(scores, key=ranking.top_key) == sorted(scores, reverse=True)
    times = [rng.random() * 2e9 for _ in range(300)]
    assert sorted(times, key=ranking.recent_key) == sorted(times, reverse=True)
    assert len({len(ranking.hot_key(0, 10**9, 0.0)), len(ranking.hot_key(10**9, 0, 4e9))}) == 1
