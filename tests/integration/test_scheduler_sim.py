"""A simulated day of the playhouse: 8 personas, 5 rooms, the real scheduler on Azurite.

A fake clock drives the scheduler's chores at the fire times APScheduler's own
``IntervalTrigger`` computes for them; the real worker answers every request at once
through a scripted engine (canned, seeded text: tests/integration/scripted.py), and the
web app's real results consumer applies the results and counts them. Timestamps written
by :mod:`playhouse.asking` and :mod:`playhouse.applying` come from the fake clock too.
Nothing depends on the wall clock, so the run is reproducible.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from apscheduler.triggers.interval import IntervalTrigger

from playhouse import applying, asking, ids
from playhouse.config import SchedulerSettings
from playhouse.personas import Cast, load_cast_strict
from playhouse.scheduling.policy import HOUR_S, post_cap
from playhouse.scheduling.scheduler import RoundReport, Scheduler
from playhouse.storage import Storage
from playhouse.storage.models import Comment, Room, Thread

from .scripted import Answering, ScriptedEngine

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = 1_717_200_000.0
"""2024-06-01 00:00 UTC: before any id this run makes, so id-time range queries include all."""
DAY = 86400.0

ROOMS = ("Lounge", "Tech", "Pets", "Games", "Kitchen")
PERSONAS = {
    # name: (rooms, posts/day, active hours, extra [activity] lines, positive keywords)
    "Host": (["Lounge", "Pets"], 6, (0, 24), "per_thread_cap = 3\nper_hour_cap = 3\n"
             "per_room_hour_cap = 2\nmax_chain = 2", ["welcome", "playhouse"]),
    "Geek": (["Tech", "Games"], 8, (6, 22), "max_chain = 3", ["code", "chips"]),
    "Kitty": (["Pets", "Lounge"], 5, (10, 2), "max_chain = 1", ["cats", "naps"]),
    "Chef": (["Kitchen", "Lounge"], 4, (8, 20), "max_bot_comments = 3", ["soup", "bread"]),
    "Gamer": (["Games", "Tech"], 10, (14, 6), "per_hour_cap = 2", ["level", "boss"]),
    "Owl": (["Lounge", "Games"], 3, (20, 4), "", ["moon", "night"]),
    "Critic": (["Kitchen", "Tech", "Pets"], 2, (0, 24), "max_chain = 2", ["taste", "review"]),
    "Admin": (["Lounge", "Tech"], 1, (15, 23), "max_chain = 0", ["policy", "rules"]),
}
SETTINGS = SchedulerSettings(
    sweep_interval_s=300.0, housekeeping_interval_s=3600.0, background_max_depth=1000,
    max_replies_per_sweep=40, reply_delay_s=900.0, seed=20240601,
)


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def write_cast(folder: Path) -> Cast:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rooms.toml").write_text(
        "".join(f'[[room]]\nname = "{r}"\n\n' for r in ROOMS), encoding="utf-8"
    )
    for name, (rooms, per_day, hours, extra, words) in PERSONAS.items():
        (folder / f"{name.lower()}.toml").write_text(
            f'name = "{name}"\ndisplay_name = "{name}"\nkind = "text"\nmodel = "m"\n'
            f"rooms = {rooms!r}\n\n[activity]\nposts_per_day = {per_day}\n"
            f"active_hours = [{hours[0]}, {hours[1]}]\nmax_age_hours = 6\n{extra}\n\n"
            f"[activity.weights]\nbase = -1.0\nbot = 0.4\n\n"
            f"[keywords]\npositive = {words!r}\n",
            encoding="utf-8",
        )
    return load_cast_strict(folder)


def fake_time(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> None:
    """Rows written when bots are asked and when they answer carry the fake time (and the
    id clock, which fake times ahead of the real one would push forward for good, is put
    back when the test ends)."""
    for module in (asking, applying):
        monkeypatch.setattr(module, "time", SimpleNamespace(time=clock))
    monkeypatch.setattr(ids, "_last_micros", ids._last_micros)
    monkeypatch.setattr(ids, "_counter", ids._counter)


async def seed_rooms(storage: Storage, names: Iterable[str], at: float) -> None:
    await storage.rooms.ensure(
        Room(name=n, description="", public=True, default_bot=None, bots=(),
             created_by="test", created_at=at, last_activity=at)
        for n in names
    )


@dataclass
class World:
    threads: list[Thread]
    comments: list[Comment]


async def read_world(storage: Storage, rooms: Iterable[str]) -> World:
    threads: list[Thread] = []
    comments: list[Comment] = []
    for room in rooms:
        page = await storage.threads.list(room, limit=1000)
        threads += page.items
        for t in page.items:
            comments += (await storage.comments.list(t.thread_id, limit=1000)).items
    return World(threads, comments)


async def human_post(storage: Storage, clock: FakeClock, room: str, title: str,
                     comment_text: str) -> None:
    """A person starts a thread and comments on it (what the web app would store)."""
    from playhouse import ids

    now = clock.now
    thread = Thread(thread_id=ids.new_id(), room=room, title=title, body="", url=None,
                    author="alice", is_bot=False, persona=None, created_at=now,
                    last_activity=now)
    await storage.threads.create(thread)
    await storage.comments.add(Comment(
        comment_id=ids.new_id(), thread_id=thread.thread_id, room=room, parent_id=None,
        author="alice", is_bot=False, persona=None, text=comment_text, created_at=now,
    ))
    await storage.threads.touch(thread.thread_id, comments=1, at=now)
    await storage.rooms.touch(room, threads=1, comments=1, at=now)


async def simulate(storage: Storage, cast: Cast, clock: FakeClock, *, hours: float,
                   humans: bool = True) -> list[tuple[float, str, str]]:
    """Drive the scheduler's jobs over ``hours`` of fake time; returns the request trace."""
    scheduler = Scheduler(storage, cast, SETTINGS, clock=clock)
    async with Answering(storage, cast, ScriptedEngine(cast, seed=7)).running() as worker:
        return await _simulate(scheduler, worker, storage, clock, hours=hours, humans=humans)


async def _simulate(scheduler: Scheduler, worker: Answering, storage: Storage,
                    clock: FakeClock, *, hours: float, humans: bool
                    ) -> list[tuple[float, str, str]]:
    start = datetime.fromtimestamp(clock.now, UTC)
    end = clock.now + hours * HOUR_S - 1
    specs = {chore.name: chore for chore in scheduler.chores()}
    assert set(specs) == {"round", "housekeeping"}
    triggers = {name: IntervalTrigger(seconds=s.interval_s, start_date=start, timezone=UTC)
                for name, s in specs.items()}
    due = {name: t.get_next_fire_time(None, start) for name, t in triggers.items()}
    human_hours = {12: ("Pets", "u/Kitty do cats dream?"), 11: ("Kitchen", "u/Chef bread?"),
                   17: ("Tech", "u/Admin what are the rules?")}
    trace: list[tuple[float, str, str]] = []
    while True:
        name = min(due, key=lambda n: (due[n], n))
        when = due[name]
        assert when is not None
        if when.timestamp() > end:
            break
        clock.now = when.timestamp()
        hour = int((clock.now - T0) // HOUR_S)
        if humans and name == "round" and hour in human_hours and clock.now % HOUR_S == 0:
            room, text = human_hours[hour]
            await human_post(storage, clock, room, f"alice asks in {room}", text)
        outcome = await specs[name].run()
        if isinstance(outcome, RoundReport):
            assert outcome.skipped == ""
            for request in [*outcome.posts, *outcome.replies]:
                trace.append((clock.now, request.persona, f"{request.kind}:{request.room}"))
            await worker.drain()
        due[name] = triggers[name].get_next_fire_time(when, when)
    engine = worker.engine
    assert isinstance(engine, ScriptedEngine)
    assert max(engine.generated.values(), default=1) == 1  # each generated once
    return trace


def parent_of(c: Comment) -> str:
    return c.parent_id or c.thread_id


def runs_ok(comments: dict[str, Comment], threads: dict[str, Thread], cast: Cast) -> list[str]:
    """Every bot comment whose alternating run with another bot passes its max_chain."""
    problems = []
    for c in comments.values():
        if not c.is_bot or c.persona is None:
            continue
        me = c.persona
        path: list[str | None] = []  # authors (bot names) going up from c's parent
        cur: str | None = parent_of(c)
        while cur is not None:
            if cur in comments:
                above = comments[cur]
                path.append(above.persona if above.is_bot else None)
                cur = parent_of(above)
            else:
                t = threads[cur]
                path.append(t.persona if t.is_bot else None)
                cur = None
        other = path[0]
        if other is None or other == me:
            continue
        replies_to_other = 1  # c itself
        expected, i = other, 0
        while i < len(path) and path[i] == expected:
            if path[i] == me and i + 1 < len(path) and path[i + 1] == other:
                replies_to_other += 1
            expected = me if expected == other else other
            i += 1
        if replies_to_other > cast.personas[me].activity.max_chain:
            problems.append(f"{me} answered {other} {replies_to_other} times in a row")
    return problems


def most_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] < t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


async def test_a_simulated_day(storage: Storage, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    cast = write_cast(tmp_path / "personas")
    clock = FakeClock(T0)
    fake_time(monkeypatch, clock)
    await seed_rooms(storage, ROOMS, T0)

    trace = await simulate(storage, cast, clock, hours=24)

    world = await read_world(storage, ROOMS)
    threads = {t.thread_id: t for t in world.threads}
    comments = {c.comment_id: c for c in world.comments}
    bot_comments = [c for c in world.comments if c.is_bot]
    assert all(c.status == "ok" for c in world.comments)
    assert len(trace) == sum(t.is_bot for t in world.threads) + len(bot_comments)

    # Posts: within each persona's daily cap, in its rooms, while it is awake.
    posts = Counter(t.persona for t in world.threads if t.is_bot)
    for name, persona in cast.personas.items():
        assert posts[name] <= post_cap(persona), name
    for t in world.threads:
        if t.is_bot:
            persona = cast.personas[str(t.persona)]
            assert persona.lives_in(t.room)
            assert persona.is_active(int(t.created_at // HOUR_S))
    assert sum(posts.values()) >= 20  # about 39 a day at these rates

    # Every room is alive.
    rooms_with_threads = {t.room for t in world.threads if t.is_bot}
    assert rooms_with_threads == set(ROOMS)
    assert {c.room for c in bot_comments} == set(ROOMS)

    # Replies: no self-reply, no duplicate, within every cap.
    by_parent = Counter((parent_of(c), c.persona) for c in bot_comments)
    assert max(by_parent.values()) == 1
    for c in bot_comments:
        parent = comments.get(c.parent_id) if c.parent_id else None
        author = (parent.persona if parent.is_bot else None) if parent else (
            threads[c.thread_id].persona)
        assert author != c.persona, c
        assert cast.personas[str(c.persona)].is_active(int(c.created_at // HOUR_S))
    per_persona: dict[str, list[float]] = defaultdict(list)
    per_room: dict[tuple[str, str], list[float]] = defaultdict(list)
    per_thread: Counter[tuple[str, str]] = Counter()
    for c in bot_comments:
        per_persona[str(c.persona)].append(c.created_at)
        per_room[(str(c.persona), c.room)].append(c.created_at)
        per_thread[(str(c.persona), c.thread_id)] += 1
    for name, persona in cast.personas.items():
        act = persona.activity
        assert most_in_window(per_persona[name], HOUR_S) <= act.per_hour_cap, name
        for room in persona.rooms:
            assert most_in_window(per_room[(name, room)], HOUR_S) <= act.per_room_hour_cap
    for (name, _), n in per_thread.items():
        assert n <= cast.personas[name].activity.per_thread_cap
    assert runs_ok(comments, threads, cast) == []
    # Chef stops joining threads that have 3 bot comments.
    for c in bot_comments:
        if c.persona == "Chef":
            before = [o for o in bot_comments
                      if o.thread_id == c.thread_id and o.comment_id < c.comment_id]
            assert len(before) < 3
    # Admin (max_chain = 0) never answers a bot.
    for c in bot_comments:
        if c.persona == "Admin" and c.parent_id:
            assert not comments[c.parent_id].is_bot

    # Bots talk to each other, and a mention by a person is answered.
    bot_to_bot = [c for c in bot_comments if c.parent_id and comments[c.parent_id].is_bot]
    assert len(bot_to_bot) >= 10
    assert len(bot_comments) >= 60
    mentioned = [c for c in bot_comments if c.parent_id and not comments[c.parent_id].is_bot]
    assert {c.persona for c in mentioned} >= {"Kitty", "Chef", "Admin"}


async def test_the_same_seed_gives_the_same_day(
    connection_string: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cast = write_cast(tmp_path / "personas")
    traces = []
    for run in range(2):
        clock = FakeClock(T0)
        fake_time(monkeypatch, clock)
        async with await Storage.connect(connection_string, namespace=f"simsame{run}x") as store:
            await store.ensure()
            await seed_rooms(store, ROOMS, T0)
            traces.append(await simulate(store, cast, clock, hours=4, humans=False))
    assert traces[0] == traces[1]
    assert len(traces[0]) >= 5
