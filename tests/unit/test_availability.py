"""Whether a bot takes a person's call: its hours and its caps, said with when they lift."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import msgspec
import pytest

from playhouse.availability import (
    HOUR_S,
    decline,
    is_awake,
    next_post_at,
    notice,
    persona_now,
    sleeps_at,
    wakes_at,
)
from playhouse.personas import Persona, load_cast
from playhouse.storage.models import Room, Thread

PERSONAS = Path(__file__).resolve().parents[2] / "personas"
DAY = dt.datetime(2026, 3, 4, tzinfo=dt.UTC).timestamp()  # a midnight, UTC


@pytest.fixture(scope="module")
def spez() -> Persona:
    """Spez: awake 15:00 to 23:00 UTC, at most 3 replies per room and hour."""
    persona = load_cast(PERSONAS).personas["Spez"]
    assert persona.activity.active_hours == (15, 23)
    return persona


def at(hour: float) -> float:
    return DAY + hour * HOUR_S


def room(*answers: tuple[str, float]) -> Room:
    return Room(name="Technology", description="", public=True, default_bot=None, bots=(),
                created_by="x", created_at=0, last_activity=0, bot_recent=answers)


def thread(*replies: tuple[str, int]) -> Thread:
    return Thread(thread_id="t", room="Technology", title="t", body="", url=None, author="a",
                  is_bot=False, persona=None, created_at=0, last_activity=0,
                  bot_replies=replies)


def test_an_asleep_bot_declines_and_says_when_it_wakes(spez: Persona) -> None:
    why = decline(spez, at(9.5), thread=thread(), room=room())
    assert why is not None and why.reason == "asleep"
    assert why.wakes_at == at(15) and why.active_hours == (15, 23)
    said = notice("Spez", why, at(9.5))
    assert said.final and said.state == "asleep" and said.wakes_at == "2026-03-04T15:00:00.000Z"
    assert said.text == ("u/Spez is asleep (awake 15:00 to 23:00 UTC) and wakes at 15:00 UTC, "
                         "in 5 h 30 min: it will not answer this.")
    # After its hours it wakes the next day.
    assert wakes_at(spez, at(23.2)) == at(24 + 15)
    assert wakes_at(spez, at(16)) is None and sleeps_at(spez, at(16)) == at(23)


def test_an_awake_bot_under_its_caps_takes_the_call(spez: Persona) -> None:
    assert decline(spez, at(16), thread=thread(("Spez", 1)),
                   room=room(("Spez", at(15.5)), ("CoopBot", at(15.9)))) is None


def test_the_per_thread_and_hourly_caps_decline_with_when_they_lift(spez: Persona) -> None:
    cap = spez.activity.per_thread_cap
    why = decline(spez, at(16), thread=thread(("Spez", cap)), room=room())
    assert why is not None and (why.reason, why.count, why.cap) == ("thread_cap", cap, cap)
    hourly = spez.activity.per_room_hour_cap
    answers = [("Spez", at(15.1 + i * 0.1)) for i in range(hourly)]
    why = decline(spez, at(15.9), thread=None, room=room(*answers, ("Spez", at(14.0))))
    assert why is not None and why.reason == "hour_cap" and why.count == hourly
    assert why.next_at == pytest.approx(at(16.1))  # when the oldest in the hour leaves it
    assert "in 12 min" in notice("Spez", why, at(15.9)).text
    # A faster persona clock shrinks the hour: the same answers are old news.
    assert decline(spez, at(15.9), thread=None, room=room(*answers), hour_s=600) is None


def test_without_caps_for_people_only_sleep_declines(spez: Persona) -> None:
    cap = spez.activity.per_thread_cap
    full = thread(("Spez", cap))
    answers = [("Spez", at(15.1 + i * 0.1)) for i in range(spez.activity.per_room_hour_cap)]
    assert decline(spez, at(15.9), thread=full, room=room(*answers), caps=False) is None
    assert decline(spez, at(15.9), thread=full, room=room(*answers)) is not None
    asleep = next(h for h in range(24) if not is_awake(spez, at(h)))
    why = decline(spez, at(asleep), thread=full, room=room(), caps=False)
    assert why is not None and why.reason == "asleep"


def test_the_next_thread_is_expected_after_the_mean_gap_of_awake_time(spez: Persona) -> None:
    posting = msgspec.structs.replace(
        spez, activity=msgspec.structs.replace(spez.activity, posts_per_day=4.0))
    # 8 awake hours, 4 threads: one every 2 awake hours.
    assert next_post_at(posting, at(16)) == pytest.approx(at(18))
    # From 22:00, one awake hour is left today; the other comes after it wakes.
    assert next_post_at(posting, at(22)) == pytest.approx(at(24 + 16))
    assert next_post_at(posting, at(3)) == pytest.approx(at(17))
    assert next_post_at(posting, at(16), time_scale=2.0) == pytest.approx(at(17))
    silent = msgspec.structs.replace(
        spez, activity=msgspec.structs.replace(spez.activity, posts_per_day=0.0))
    assert next_post_at(silent, at(16)) is None


def test_a_bots_now(spez: Persona) -> None:
    now = persona_now(spez, at(10), replies_last_hour=2)
    assert not now.awake and now.wakes_at == "2026-03-04T15:00:00.000Z"
    assert now.replies_left == spez.activity.per_hour_cap - 2
    awake = persona_now(spez, at(20), replies_last_hour=99)
    assert awake.awake and awake.sleeps_at == "2026-03-04T23:00:00.000Z"
    assert awake.replies_left == 0
