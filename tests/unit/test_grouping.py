"""Cutting a batch into generation calls: shared prefixes and similar lengths (pure logic)."""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from playhouse.generation.grouping import (
    CallCosts,
    call_cost,
    common_prefix,
    partition,
    plan_calls,
)
from playhouse.generation.text import split_by_length


def _brute(n: int, cost: object) -> float:
    """The cheapest cut of range(n) by trying every one (2^(n-1) of them)."""
    best = float("inf")
    for cuts in itertools.product((False, True), repeat=max(0, n - 1)):
        bounds = [0] + [k + 1 for k, c in enumerate(cuts) if c] + [n]
        total = sum(cost(i, j) for i, j in itertools.pairwise(bounds))  # type: ignore[operator]
        best = min(best, total)
    return best


@given(st.lists(st.integers(1, 60), min_size=1, max_size=8), st.floats(0, 200))
@settings(max_examples=60, deadline=None)
def test_partition_is_the_exact_optimum(lengths: list[int], step: float) -> None:
    lengths = sorted(lengths)

    def cost(i: int, j: int) -> float:
        return (j - i) * lengths[j - 1] + step

    ranges = partition(len(lengths), cost)
    assert [i for r in ranges for i in range(*r)] == list(range(len(lengths)))
    assert abs(sum(cost(i, j) for i, j in ranges) - _brute(len(lengths), cost)) < 1e-6


def test_split_by_length_keeps_its_behaviour() -> None:
    lengths = [300, 20, 25, 310, 22, 290]
    groups = split_by_length(lengths, step_cost=100)
    assert sorted(i for g in groups for i in g) == list(range(6))
    assert [sorted(g) for g in groups] == [[1, 2, 4], [0, 3, 5]]
    assert split_by_length(lengths, step_cost=1e9) == [[1, 4, 2, 5, 0, 3]]


def _thread(rng: random.Random, header: int, depth: int, vocab: int = 500) -> list[int]:
    return [rng.randrange(vocab) for _ in range(header + depth)]


def test_replies_in_one_thread_share_their_common_prefix() -> None:
    # Three threads; in each the bot answers four sibling comments (post header, one
    # comment, the bot's open tag): a long shared header, short remainders of like length.
    rng = random.Random(1)
    costs = CallCosts()
    prompts: list[list[int]] = []
    owner: list[int] = []
    for t in range(3):
        header = _thread(rng, 120, 0)
        for _ in range(4):
            comment = _thread(rng, 0, rng.randrange(8, 14))
            prompts.append(header + comment + [900 + t, 901])
            owner.append(t)
    calls = plan_calls(prompts, steps=20, costs=costs)
    assert sorted(r for c in calls for r in c.rows) == list(range(len(prompts)))
    shared = [c for c in calls if c.prefix]
    assert sorted({owner[r] for c in shared for r in c.rows}) == [0, 1, 2]
    for call in shared:
        assert len({owner[r] for r in call.rows}) == 1  # one thread per shared call
        for row in call.rows:
            assert tuple(prompts[row][: len(call.prefix)]) == call.prefix
            assert len(prompts[row]) > len(call.prefix)  # something of its own is left
        assert len(call.prefix) >= 120  # the whole post header at least
    # Without sharing the same rows are planned in plain calls only.
    plain = plan_calls(prompts, steps=20, costs=costs, share=False)
    assert not any(c.prefix for c in plain)
    assert sorted(r for c in plain for r in c.rows) == list(range(len(prompts)))


def test_a_prefix_is_not_shared_when_what_follows_differs_too_much() -> None:
    # Replies at depths 0, 20, 40, 60 of one thread: CTranslate2 would force the longer
    # remainders through the decode loop, or make four calls; neither beats the length groups.
    rng = random.Random(5)
    chain = _thread(rng, 120, 60)
    others = [_thread(rng, 140, 0) for _ in range(8)]
    prompts = [[*chain[: 120 + d], 900, 901] for d in (0, 20, 40, 60)] + others
    assert not any(c.prefix for c in plan_calls(prompts, steps=20, costs=CallCosts()))


def test_identical_prompts_keep_a_token_each_and_unrelated_ones_share_nothing() -> None:
    rng = random.Random(2)
    same = _thread(rng, 200, 0)
    calls = plan_calls([same, same, same], steps=10, costs=CallCosts())
    (call,) = calls
    assert len(call.prefix) == len(same) - 1 and sorted(call.rows) == [0, 1, 2]
    unrelated = [_thread(rng, 100, 0) for _ in range(5)]
    assert not any(c.prefix for c in plan_calls(unrelated, steps=10, costs=CallCosts()))
    assert plan_calls([], steps=10, costs=CallCosts()) == []


def test_very_different_lengths_go_to_different_calls() -> None:
    rng = random.Random(3)
    short = [_thread(rng, 20, 0) for _ in range(4)]
    long = [_thread(rng, 400, 0) for _ in range(4)]
    calls = plan_calls(short + long, steps=10, costs=CallCosts(max_tokens=0))
    assert {frozenset(c.rows) for c in calls} == {frozenset(range(4)), frozenset(range(4, 8))}


def test_a_call_never_exceeds_its_token_cap() -> None:
    rng = random.Random(4)
    prompts = [_thread(rng, 300, 0) for _ in range(12)]
    costs = CallCosts(max_tokens=1000)
    calls = plan_calls(prompts, steps=48, costs=costs)
    for call in calls:
        total = len(call.prefix) + sum(len(prompts[r]) - len(call.prefix) for r in call.rows)
        assert len(call.rows) == 1 or total <= 1000
    assert call_cost(0, [300] * 4, 10, costs) == float("inf")
    assert call_cost(0, [300], 10, costs) < float("inf")  # one row always fits


def test_common_prefix() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([1, 2], [1, 2, 3]) == 2
    assert common_prefix([], [1]) == 0
