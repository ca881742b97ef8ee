"""Row-key ids: shape, strict order within a process (also on a frozen clock), inversion,
and deterministic derived ids."""

from __future__ import annotations

import threading
from itertools import pairwise

import pytest

from playhouse import ids

FROZEN = 1_700_000_000.123456


@pytest.fixture(autouse=True)
def fresh_clock_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from a process that has made no id yet, and the ids a test makes
    on a chosen clock leave no trace for the other tests of the session."""
    monkeypatch.setattr(ids, "_last_micros", 0)
    monkeypatch.setattr(ids, "_counter", 0)


def test_new_id_is_26_lowercase_hex() -> None:
    value = ids.new_id()
    assert len(value) == ids.ID_LENGTH == 26
    assert set(value) <= set("0123456789abcdef")
    assert ids.is_id(value)


def test_new_id_carries_its_time() -> None:
    value = ids.new_id(now=FROZEN)
    assert ids.id_time(value) == pytest.approx(FROZEN, abs=1e-6)
    assert value[16:20] == "0000"  # first id of that microsecond


def test_ten_thousand_ids_strictly_increase() -> None:
    made = [ids.new_id() for _ in range(10_000)]
    assert all(a < b for a, b in pairwise(made))
    assert len(set(made)) == len(made)


def test_ids_strictly_increase_on_a_frozen_clock() -> None:
    made = [ids.new_id(now=FROZEN) for _ in range(10_000)]
    assert all(a < b for a, b in pairwise(made))
    assert all(ids.is_id(v) for v in made)


def test_ids_keep_increasing_past_the_counter_on_a_frozen_clock() -> None:
    """More ids in one microsecond than the 16-bit counter holds still sort in order."""
    made = [ids.new_id(now=FROZEN) for _ in range(0x10000 + 10)]
    assert all(a < b for a, b in pairwise(made))
    assert all(ids.is_id(v) for v in made)


def test_ids_never_go_back_when_the_clock_does() -> None:
    first = ids.new_id(now=FROZEN + 20)
    second = ids.new_id(now=FROZEN)  # the clock stepped back 20 s
    assert second > first
    assert ids.id_time(second) == ids.id_time(first)


def test_ids_from_several_threads_are_unique_and_ordered_per_thread() -> None:
    per_thread: list[list[str]] = [[] for _ in range(4)]

    def make(out: list[str]) -> None:
        out.extend(ids.new_id() for _ in range(2_000))

    threads = [threading.Thread(target=make, args=(out,)) for out in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [v for out in per_thread for v in out]
    assert len(set(everything)) == len(everything)
    for out in per_thread:
        assert out == sorted(out)


def test_invert_reverses_order() -> None:
    made = [ids.new_id() for _ in range(500)]
    inverted = [ids.invert(v) for v in made]
    assert sorted(inverted) == list(reversed(inverted))
    assert all(ids.is_id(v) for v in inverted)


def test_invert_is_its_own_inverse() -> None:
    value = ids.new_id()
    assert ids.invert(ids.invert(value)) == value
    assert ids.invert("0" * 26) == "f" * 26


def test_derived_id_is_deterministic_and_time_prefixed() -> None:
    seed = ids.new_id()
    derived = ids.derived_id(seed, "c")
    assert derived == ids.derived_id(seed, "c")
    assert ids.is_id(derived)
    assert derived[:16] == seed[:16]
    assert ids.id_time(derived) == ids.id_time(seed)


def test_derived_id_depends_on_seed_and_salt() -> None:
    seed = ids.new_id()
    other = ids.new_id()
    assert ids.derived_id(seed, "c") != ids.derived_id(seed, "t")
    assert ids.derived_id(seed, "c") != ids.derived_id(other, "c")
    assert ids.derived_id(seed, "c") != seed


@pytest.mark.parametrize(
    "value",
    [
        "",
        "0" * 25,
        "0" * 27,
        "0123456789ABCDEF0123456789",
        "0123456789abcdef012345678g",
        "0123456789abcdef01234567-9",
        " 123456789abcdef0123456789",
    ],
)
def test_is_id_rejects_other_shapes(value: str) -> None:
    assert not ids.is_id(value)
