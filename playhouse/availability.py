"""Whether a bot answers now: its hours, its caps, and what it is expected to do next.

Pure functions of a persona, the clock and the counts its rooms and threads keep (no
I/O). A person's call meets the same limits the scheduler keeps to: a bot that sleeps
(outside its ``active_hours``), or has answered ``per_thread_cap`` times in the thread, or
``per_room_hour_cap`` times in the room within the (persona-time) hour, declines — and says
so, with when it wakes or when the cap lifts (:func:`decline`, :func:`notice`). The
counts come from the room's and the thread's rows (``bot_recent``, ``bot_replies``), which
the web's counters move with every answer shown, so checking costs no storage request.
:func:`persona_now` is a bot's "now": awake or asleep, its next expected thread, the
replies its hourly cap leaves.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from playhouse.explain import Decline
from playhouse.views import PersonaNow, WaitState, iso

if TYPE_CHECKING:
    from playhouse.personas import Persona
    from playhouse.storage.models import Room, Thread

HOUR_S: Final = 3600.0
"""An hour of the caps (the scheduler's too, shrunk by its ``time_scale``)."""


def hour_utc(at: float) -> int:
    return int(at // HOUR_S) % 24


def is_awake(persona: Persona, at: float) -> bool:
    return persona.is_active(hour_utc(at))


def _next_change(persona: Persona, at: float, *, to_awake: bool) -> float | None:
    """The next full hour at which ``persona`` wakes (``to_awake``) or falls asleep;
    None when that never happens (awake all day, say)."""
    start = math.floor(at / HOUR_S) * HOUR_S
    for k in range(1, 25):
        when = start + k * HOUR_S
        if persona.is_active(hour_utc(when)) == to_awake:
            return when
    return None


def wakes_at(persona: Persona, at: float) -> float | None:
    """When an asleep ``persona`` wakes; None when it is awake at ``at``."""
    return None if is_awake(persona, at) else _next_change(persona, at, to_awake=True)


def sleeps_at(persona: Persona, at: float) -> float | None:
    """When an awake ``persona`` falls asleep; None when asleep, or awake all day."""
    return _next_change(persona, at, to_awake=False) if is_awake(persona, at) else None


def recent_answers(rooms: Iterable[Room], persona: str, since: float) -> list[float]:
    """When ``persona`` answered at or after ``since`` in ``rooms``, oldest first."""
    return sorted(t for room in rooms for name, t in room.bot_recent
                  if name == persona and t >= since)


def thread_answers(thread: Thread, persona: str) -> int:
    return sum(n for name, n in thread.bot_replies if name == persona)


def decline(persona: Persona, at: float, *, thread: Thread | None, room: Room | None,
            hour_s: float = HOUR_S, caps: bool = True) -> Decline | None:
    """Why ``persona`` will not take a person's call now; None when it will.

    ``hour_s`` is the persona-time hour of the caps (an hour shrunk by the scheduler's
    ``time_scale``); ``caps`` False: only sleep declines (``web.people_meet_caps``)."""
    activity = persona.activity
    if not is_awake(persona, at):
        return Decline(reason="asleep", active_hours=activity.active_hours,
                       wakes_at=wakes_at(persona, at))
    if not caps:
        return None
    if thread is not None:
        made = thread_answers(thread, persona.name)
        if made >= activity.per_thread_cap:
            return Decline(reason="thread_cap", count=made, cap=activity.per_thread_cap)
    if room is not None:
        recent = recent_answers([room], persona.name, at - hour_s)
        cap = activity.per_room_hour_cap
        if len(recent) >= cap:
            # The cap lifts when the oldest answer that keeps it full leaves the hour.
            lifts = recent[len(recent) - cap] + hour_s if cap > 0 else None
            return Decline(reason="hour_cap", count=len(recent), cap=cap, next_at=lifts)
    return None


def _utc(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%H:%M UTC")


def _hours(span: tuple[int, int]) -> str:
    return f"{span[0] % 24:02d}:00 to {span[1] % 24:02d}:00 UTC"


def _in(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def notice(persona: str, why: Decline, at: float, *,
           outcome: str = "it will not answer this") -> WaitState:
    """What a declined call's comment says (times in UTC; pages show the viewer's);
    ``outcome`` ends the sentence (a re-roll refused says to ask again later)."""
    if why.reason == "asleep":
        hours = why.active_hours or (0, 24)
        text = f"u/{persona} is asleep (awake {_hours(hours)})"
        if why.wakes_at is not None:
            text += f" and wakes at {_utc(why.wakes_at)}, in {_in(why.wakes_at - at)}"
        return WaitState(state="asleep", final=True, active_hours=hours,
                         wakes_at=iso(why.wakes_at) if why.wakes_at is not None else None,
                         text=f"{text}: {outcome}.")
    if why.reason == "thread_cap":
        return WaitState(
            state="thread_cap", final=True,
            text=f"u/{persona} has answered {why.count} times in this thread, its limit "
                 f"({why.cap}): {outcome}.")
    text = (f"u/{persona} has answered {why.count} times in this room within the hour, "
            f"its limit ({why.cap})")
    if why.next_at is not None:
        text += f"; it can answer again at {_utc(why.next_at)}, in {_in(why.next_at - at)}"
    return WaitState(state="hour_cap", final=True, text=f"{text}: {outcome}.",
                     next_at=iso(why.next_at) if why.next_at is not None else None)


def next_post_at(persona: Persona, at: float, *, time_scale: float = 1.0) -> float | None:
    """When ``persona``'s next thread is expected, on average.

    The scheduler draws a thread at each round with a constant chance while the persona
    is awake (``posts_per_day`` spread over its active hours), so the wait has no memory:
    from any moment, the next thread comes after the mean gap of *awake* time. This walks
    the clock forward, counting only the awake hours, until that much has passed. (The
    daily cap of threads is not counted: the rooms' rows do not keep threads per bot.)
    """
    hours = sum(1 for h in range(24) if persona.is_active(h))
    rate = persona.activity.posts_per_day * time_scale
    if hours == 0 or rate <= 0:
        return None
    gap = hours * HOUR_S / rate
    when = at
    left = gap
    for _ in range(24 * 400):  # at most a year of hours: the gap is below one
        boundary = (math.floor(when / HOUR_S) + 1) * HOUR_S
        if persona.is_active(hour_utc(when)):
            step = boundary - when
            if step >= left:
                return when + left
            left -= step
        when = boundary
    return None


def persona_now(persona: Persona, at: float, *, replies_last_hour: int,
                time_scale: float = 1.0) -> PersonaNow:
    """``persona`` at ``at``; ``replies_last_hour`` is what it answered in the last
    (persona-time) hour across the rooms."""
    awake = is_awake(persona, at)
    woken = wakes_at(persona, at)
    asleep = sleeps_at(persona, at)
    upcoming = next_post_at(persona, at, time_scale=time_scale)
    cap = persona.activity.per_hour_cap
    return PersonaNow(
        name=persona.name, awake=awake, active_hours=persona.activity.active_hours,
        wakes_at=iso(woken) if woken is not None else None,
        sleeps_at=iso(asleep) if asleep is not None else None,
        posts_per_day=persona.activity.posts_per_day,
        next_post_at=iso(upcoming) if upcoming is not None else None,
        replies_last_hour=replies_last_hour, per_hour_cap=cap,
        replies_left=max(0, cap - replies_last_hour), at=iso(at),
    )
