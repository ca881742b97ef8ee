"""The queue loop's rules: one retry policy, and polling that costs what it must."""

from __future__ import annotations

import math

import pytest

from playhouse.config import Settings
from playhouse.queueloop import Polling, RetryPolicy


def test_one_retry_rule_for_every_consumer() -> None:
    policy = RetryPolicy(max_deliveries=3)
    # Handled on deliveries 1..3; a failure on the 3rd gives it up; a 4th delivery (the
    # ones before died without settling it) is given up before it is handled.
    assert [policy.last(n) for n in (1, 2, 3)] == [False, False, True]
    assert [policy.exhausted(n) for n in (1, 2, 3, 4)] == [False, False, False, True]
    with pytest.raises(ValueError):
        RetryPolicy(max_deliveries=0)


def test_an_idle_loop_backs_off_to_its_longest_wait() -> None:
    polling = Polling(min_s=0.05, max_s=2.0)
    waits = []
    wait = polling.min_s
    for _ in range(10):
        wait = polling.after_empty(wait, since_work_s=math.inf)
        waits.append(wait)
    assert waits[:4] == [0.1, 0.2, 0.4, 0.8]
    assert waits[-1] == 2.0 and max(waits) == 2.0


def test_it_stays_quick_for_the_linger_after_work() -> None:
    polling = Polling(min_s=0.05, max_s=2.0, linger_s=10.0)
    assert polling.after_empty(1.0, since_work_s=3.0) == 0.05
    assert polling.after_empty(1.0, since_work_s=30.0) == 2.0


def test_an_awaited_answer_is_polled_for_quickly_then_ever_more_slowly() -> None:
    polling = Polling(min_s=0.05, max_s=5.0, expect_ratio=0.1, hurry_min_s=0.02)
    assert polling.after_empty(5.0, since_work_s=math.inf, expected_for_s=0.0) == 0.02
    assert polling.after_empty(5.0, since_work_s=math.inf, expected_for_s=3.0) == \
        pytest.approx(0.3)
    assert polling.after_empty(5.0, since_work_s=math.inf, expected_for_s=600.0) == 5.0
    # A quick answer is seen within a tenth of its time; a slow one costs few polls.
    assert polling.polls_while_expecting(1.0) <= 30
    assert polling.polls_while_expecting(120.0) <= 150


def test_an_idle_web_instance_stays_under_its_request_budget() -> None:
    """Receives a minute by an idle web process at the shipped settings: its two result
    loops at their longest wait, and the call recovery's pass (nothing samples queue
    depths while nobody watches the status page)."""
    web = Settings().web
    per_loop = 60.0 / web.results_poll_max_s
    recovery = 60.0 / max(1.0, web.bot_call_grace_s / 3)
    assert 2 * per_loop + recovery <= 40
